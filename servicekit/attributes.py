"""Every custom span attribute and metric name aftercare emits, in one place.

Standard names come from the OpenTelemetry semantic conventions (rpc.*, http.*
by instrumentation; gen_ai.* on the LLM call). Anything of our own is
namespaced `aftercare.*` and declared here with what it means; a test fails
when code uses an `aftercare.*` name that is not declared below. Values never
carry personal data (no message text, no customer ids).
"""

from __future__ import annotations

# --- span attributes -------------------------------------------------------
CONCIERGE_DECISION = "aftercare.concierge.decision"
"""answered | escalated | clarify: what the concierge did with the message."""
CONCIERGE_DECISION_REASON = "aftercare.concierge.decision_reason"
"""Stable reason code of the decision, e.g. low_confidence, no_knowledge."""
CONCIERGE_CONFIDENCE = "aftercare.concierge.confidence"
"""Confidence score in [0, 1] of the answer that was (or would have been) given."""
TENANT_ID = "aftercare.tenant_id"
"""Tenant the request belongs to (a company id, not personal data)."""
LLM_TIME_TO_FIRST_TOKEN_MS = "aftercare.llm.time_to_first_token_ms"
"""Milliseconds from sending the LLM request to the first streamed token."""

ESCALATION_QUEUE = "aftercare.escalation.queue"
"""Name of a handoff queue, e.g. general, billing."""
ESCALATION_SUMMARY_METHOD = "aftercare.escalation.summary_method"
"""llm | extractive: how a context package's summary was made (extractive when the LLM failed its check)."""
ESCALATION_DRAFT_METHOD = "aftercare.escalation.draft_method"
"""llm | template: how a context package's draft reply was made."""
ESCALATION_SUGGESTIONS = "aftercare.escalation.suggestions"
"""Number of grounded suggested resolutions in a context package (0-3)."""
RPC_OUTCOME = "aftercare.rpc.outcome"
"""OK | ERROR | ABORTED_BY_HANDLER: how a gRPC handler ended (the status code is on the span)."""

# --- metrics ---------------------------------------------------------------
RPC_SERVER_DURATION = "rpc.server.duration"
"""Histogram (ms) of gRPC server call durations, by rpc.method and rpc.grpc.status_code (semconv name)."""
GEN_AI_TOKEN_USAGE = "gen_ai.client.token.usage"
"""Histogram of tokens per LLM call, by gen_ai.token.type input|output (semconv name)."""
GEN_AI_TTFT = "gen_ai.server.time_to_first_token"
"""Histogram (s) of time to first token of LLM calls (semconv name)."""
LLM_OUTPUT_TOKENS_PER_SECOND = "aftercare.llm.output_tokens_per_second"
"""Histogram of generated tokens per second of each LLM call."""
CONCIERGE_DECISIONS = "aftercare.concierge.decisions"
"""Counter of concierge decisions, by decision and reason."""
ESCALATION_QUEUE_DEPTH = "aftercare.escalation.queue_depth"
"""Gauge of handoffs waiting for an agent."""
OUTREACH_AGENT_REPLIES = "aftercare.outreach.agent_replies"
"""Counter of agents' email replies outreach took from escalation's feed, by outcome."""
OUTREACH_REPLY_OUTCOME = "aftercare.outreach.reply_outcome"
"""queued | undeliverable (no reply route for the conversation): what became of an agent's email reply."""

DECLARED = frozenset(
    value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, str)
)
