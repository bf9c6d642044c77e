"""The reasons of a decision: each one's stable string code, the handoff reason escalation
records, the persona message the customer reads, and the span attributes and counter
that every decision is recorded in. A clarifying reply is built here too."""

from __future__ import annotations

from opentelemetry import metrics, trace

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import answer_pb2
from servicekit import attributes
from servicekit.tracing import current_trace_id
from services.concierge.turns import Turn

Decision = concierge_pb2.Decision
Reason = concierge_pb2.DecisionReason
HandoffReason = escalation_pb2.HandoffReason

# Stable string code and handoff reason of each decision reason (UNSPECIFIED: it never hands off).
CODES: dict[Reason, tuple[str, HandoffReason]] = {
    Reason.DECISION_REASON_CONFIDENT: ("confident", HandoffReason.HANDOFF_REASON_UNSPECIFIED),
    Reason.DECISION_REASON_LOW_CONFIDENCE: ("low_confidence", HandoffReason.HANDOFF_REASON_LOW_CONFIDENCE),
    Reason.DECISION_REASON_NO_KNOWLEDGE: ("no_knowledge", HandoffReason.HANDOFF_REASON_NO_KNOWLEDGE),
    Reason.DECISION_REASON_LLM_UNAVAILABLE: ("llm_unavailable", HandoffReason.HANDOFF_REASON_SYSTEM_UNAVAILABLE),
    Reason.DECISION_REASON_RETRIEVAL_UNAVAILABLE: (
        "retrieval_unavailable", HandoffReason.HANDOFF_REASON_SYSTEM_UNAVAILABLE,
    ),
    Reason.DECISION_REASON_HUMAN_REQUESTED: ("human_requested", HandoffReason.HANDOFF_REASON_CUSTOMER_REQUEST),
    Reason.DECISION_REASON_POLICY_ROUTE: ("policy_route", HandoffReason.HANDOFF_REASON_POLICY),
    Reason.DECISION_REASON_UNSAFE_PROMISE: ("unsafe_promise", HandoffReason.HANDOFF_REASON_POLICY),
    Reason.DECISION_REASON_PROMPT_INJECTION: ("prompt_injection", HandoffReason.HANDOFF_REASON_POLICY),
    Reason.DECISION_REASON_OFF_TOPIC: ("off_topic", HandoffReason.HANDOFF_REASON_UNSPECIFIED),
    Reason.DECISION_REASON_NEEDS_DETAIL: ("needs_detail", HandoffReason.HANDOFF_REASON_UNSPECIFIED),
    Reason.DECISION_REASON_MODEL_DOES_NOT_KNOW: ("model_does_not_know", HandoffReason.HANDOFF_REASON_NO_KNOWLEDGE),
    Reason.DECISION_REASON_WITH_AGENT: ("with_agent", HandoffReason.HANDOFF_REASON_UNSPECIFIED),
    # The account assistant's (services/concierge/account.py).
    Reason.DECISION_REASON_NEEDS_IDENTITY: ("needs_identity", HandoffReason.HANDOFF_REASON_UNSPECIFIED),
    Reason.DECISION_REASON_NEEDS_ARGUMENT: ("needs_argument", HandoffReason.HANDOFF_REASON_UNSPECIFIED),
    Reason.DECISION_REASON_FROM_RECORDS: ("from_records", HandoffReason.HANDOFF_REASON_UNSPECIFIED),
    Reason.DECISION_REASON_ACTION_PROPOSED: ("action_proposed", HandoffReason.HANDOFF_REASON_UNSPECIFIED),
    Reason.DECISION_REASON_ACTION_EXECUTED: ("action_executed", HandoffReason.HANDOFF_REASON_UNSPECIFIED),
    # The approval request reaches the agents as a handoff.
    Reason.DECISION_REASON_ACTION_AWAITING_APPROVAL: (
        "action_awaiting_approval", HandoffReason.HANDOFF_REASON_APPROVAL_REQUIRED,
    ),
    Reason.DECISION_REASON_ACTION_CANCELLED: ("action_cancelled", HandoffReason.HANDOFF_REASON_UNSPECIFIED),
    Reason.DECISION_REASON_ACTION_NOT_ALLOWED: ("action_not_allowed", HandoffReason.HANDOFF_REASON_UNSPECIFIED),
    Reason.DECISION_REASON_ACTIONS_UNAVAILABLE: (
        "actions_unavailable", HandoffReason.HANDOFF_REASON_SYSTEM_UNAVAILABLE,
    ),
}
# The persona message that tells the customer about each decision reason.
MESSAGE_OF = {
    Reason.DECISION_REASON_LOW_CONFIDENCE: "handoff",
    Reason.DECISION_REASON_NO_KNOWLEDGE: "dont_know",
    Reason.DECISION_REASON_MODEL_DOES_NOT_KNOW: "dont_know",
    Reason.DECISION_REASON_LLM_UNAVAILABLE: "unavailable",
    Reason.DECISION_REASON_RETRIEVAL_UNAVAILABLE: "unavailable",
    Reason.DECISION_REASON_HUMAN_REQUESTED: "human",
    Reason.DECISION_REASON_POLICY_ROUTE: "policy",
    Reason.DECISION_REASON_UNSAFE_PROMISE: "handoff",
    Reason.DECISION_REASON_PROMPT_INJECTION: "handoff",
    Reason.DECISION_REASON_OFF_TOPIC: "off_topic",
    Reason.DECISION_REASON_NEEDS_DETAIL: "needs_detail",
    Reason.DECISION_REASON_ACTION_AWAITING_APPROVAL: "handoff",
    Reason.DECISION_REASON_ACTIONS_UNAVAILABLE: "unavailable",
}


def reason_code(reason: Reason) -> str:
    return CODES[reason][0]


_decisions = metrics.get_meter("aftercare.concierge").create_counter(attributes.CONCIERGE_DECISIONS)


def record_decision(decision: str, reason: str) -> None:
    span = trace.get_current_span()
    span.set_attribute(attributes.CONCIERGE_DECISION, decision)
    span.set_attribute(attributes.CONCIERGE_DECISION_REASON, reason)
    _decisions.add(1, {attributes.CONCIERGE_DECISION: decision, attributes.CONCIERGE_DECISION_REASON: reason})


def clarify(turn: Turn, reason: Reason, message_key: str = "") -> concierge_pb2.ConverseResponse:
    code = reason_code(reason)
    if not turn.shadow:
        # A decision taken again in shadow is not one a customer got.
        record_decision("clarify", code)
    return concierge_pb2.ConverseResponse(
        reply=turn.persona.message(message_key or MESSAGE_OF[reason]),
        confidence=answer_pb2.Confidence(score=0.0, threshold=turn.persona.threshold_for(turn.intent)),
        decision=Decision.DECISION_CLARIFY,
        decision_reason=code,
        reason=reason,
        standalone_query=turn.standalone_query,
        lineage=answer_pb2.Lineage(trace_id=current_trace_id()),
    )
