"""What an escalation request must be: each RPC's checks, gathered into one
INVALID_ARGUMENT with every field violation (servicekit.errors), and the values the
checks parse on the way (a correction, a period, a window). The limits keep a request
far below gRPC's 4 MB and PostgreSQL's text rules (no NUL)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from aftercare.escalation.v1 import escalation_pb2
from aftercare.retrieval.v1 import retrieval_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import conversation_pb2, search_pb2, verdict_pb2
from servicekit.database import utcnow
from servicekit.errors import Violations
from servicekit.ids import check_customer_id, check_id
from services.escalation.approvals import OUTCOME_MESSAGE_PREFIX
from services.escalation.judgements import AGENT_JUDGEMENT_KEY_PREFIX
from services.escalation.store import Correction

MAX_ID_CHARS = 200
MAX_QUEUE_CHARS = 100
MAX_LABEL_CHARS = 200
MAX_MESSAGES = 200
MAX_TRANSCRIPT_CHARS = 100_000
MAX_REPLY_CHARS = 10_000
MAX_RESOLUTION_CHARS = 4_000
MAX_QUESTION_CHARS = 4_000
# Passages a caller may pass on from its search (retrieval's own top_k bound).
MAX_RETRIEVED = 50
MAX_RETRIEVED_CHARS = 200_000
DEFAULT_INSIGHT_DAYS = 30
MAX_INSIGHT_DAYS = 366
MAX_CLIENT_MESSAGE_ID_CHARS = 128
MAX_CUSTOMER_MESSAGE_CHARS = 4_000
MAX_AGENT_NAME_CHARS = 200
MAX_COMMENT_CHARS = 2_000
# An approval's note is told to the customer with a rejection.
MAX_APPROVAL_NOTE_CHARS = 1_000
# A concierge release id ("r3"), as the handoff's column holds it.
MAX_RELEASE_ID_CHARS = 32
MAX_REOPEN_WINDOW = dt.timedelta(days=90)


def check_key(problems: Violations, value: str, field: str) -> None:
    """An idempotency key, handoff or agent id: required, bounded, any characters."""
    if not value.strip():
        problems.add(field, "required")
    elif len(value) > MAX_ID_CHARS:
        problems.add(field, f"at most {MAX_ID_CHARS} characters")


def check_text(problems: Violations, value: str, field: str, limit: int) -> None:
    if not value.strip():
        problems.add(field, "required")
    elif len(value) > limit:
        problems.add(field, f"at most {limit} characters")
    check_no_nul(problems, value, field)


def check_no_nul(problems: Violations, value: str, field: str) -> None:
    # PostgreSQL cannot store NUL in text: refuse it here rather than fail on write.
    problems.check("\x00" not in value, field, "must not contain NUL characters")


def check_client_message_id(problems: Violations, value: str) -> None:
    if not value.strip():
        problems.add("client_message_id", "required")
    elif len(value) > MAX_CLIENT_MESSAGE_ID_CHARS:
        problems.add("client_message_id", f"at most {MAX_CLIENT_MESSAGE_ID_CHARS} characters")
    check_no_nul(problems, value, "client_message_id")


def validate_tenant(tenant_id: str) -> None:
    problems = Violations()
    check_id(problems, tenant_id, "tenant_id")
    problems.raise_if_any()


# --- handoffs -------------------------------------------------------------------------


def validate_create(request: escalation_pb2.CreateHandoffRequest) -> None:
    problems = Violations()
    check_key(problems, request.idempotency_key, "idempotency_key")
    check_id(problems, request.customer.tenant_id, "customer.tenant_id")
    check_customer_id(problems, request.customer.customer_id, "customer.customer_id")
    if request.conversation.conversation_id:
        check_id(problems, request.conversation.conversation_id, "conversation.conversation_id")
    messages = request.conversation.messages
    problems.check(len(messages) > 0, "conversation.messages", "at least one message is required")
    problems.check(len(messages) <= MAX_MESSAGES, "conversation.messages", f"at most {MAX_MESSAGES} messages")
    problems.check(
        sum(len(message.text) for message in messages) <= MAX_TRANSCRIPT_CHARS,
        "conversation.messages",
        f"at most {MAX_TRANSCRIPT_CHARS} characters of text in total",
    )
    for index, message in enumerate(messages):
        problems.check(
            message.role != conversation_pb2.ROLE_UNSPECIFIED,
            f"conversation.messages[{index}].role",
            "must be set",
        )
    problems.check(0 <= request.priority <= 100, "priority", "must be between 0 and 100")
    problems.check(len(request.queue) <= MAX_QUEUE_CHARS, "queue", f"at most {MAX_QUEUE_CHARS} characters")
    if request.release_id:
        check_id(problems, request.release_id, "release_id", max_chars=MAX_RELEASE_ID_CHARS)
    # The deprecated fields are checked as before (v1 callers, and callers that fill both).
    _check_verdict(problems, request.intent, request.intent_confidence, request.sentiment_score, "")
    problems.check(request.tier in triage_pb2.Tier.values(), "tier", "unknown tier")
    _check_hits(problems, request.retrieved, "retrieved")
    if request.HasField("triage"):
        verdict = request.triage
        _check_verdict(problems, verdict.intent, verdict.intent_confidence, verdict.sentiment_score, "triage.")
        problems.check(verdict.tier in verdict_pb2.Tier.values(), "triage.tier", "unknown tier")
    if request.HasField("search"):
        _check_hits(problems, request.search.hits, "search.hits")
    problems.raise_if_any()


def _check_verdict(problems: Violations, intent: str, confidence: float, sentiment: float, prefix: str) -> None:
    problems.check(len(intent) <= MAX_LABEL_CHARS, f"{prefix}intent", f"at most {MAX_LABEL_CHARS} characters")
    problems.check(0.0 <= confidence <= 1.0, f"{prefix}intent_confidence", "must be between 0 and 1")
    problems.check(-1.0 <= sentiment <= 1.0, f"{prefix}sentiment_score", "must be between -1 and 1")


def _check_hits(
    problems: Violations, hits: Sequence[retrieval_pb2.SearchHit | search_pb2.SearchHit], field: str
) -> None:
    problems.check(len(hits) <= MAX_RETRIEVED, field, f"at most {MAX_RETRIEVED} passages")
    problems.check(
        sum(len(hit.text) for hit in hits) <= MAX_RETRIEVED_CHARS,
        field,
        f"at most {MAX_RETRIEVED_CHARS} characters of passage text in total",
    )
    for index, hit in enumerate(hits):
        problems.check(-1.0 <= hit.similarity <= 1.0, f"{field}[{index}].similarity", "must be between -1 and 1")


def validate_get(request: escalation_pb2.GetHandoffRequest) -> None:
    problems = Violations()
    check_id(problems, request.tenant_id, "tenant_id")
    check_key(problems, request.handoff_id, "handoff_id")
    problems.raise_if_any()


def validate_list(request: escalation_pb2.ListHandoffsRequest) -> None:
    problems = Violations()
    check_id(problems, request.tenant_id, "tenant_id")
    problems.check(request.page_size >= 0, "page_size", "must not be negative")
    problems.check(request.tier in triage_pb2.Tier.values(), "tier", "unknown tier")
    problems.check(request.routing_tier in verdict_pb2.Tier.values(), "routing_tier", "unknown tier")
    problems.check(request.state in escalation_pb2.HandoffState.values(), "state", "unknown state")
    problems.raise_if_any()


def _check_change(problems: Violations, tenant_id: str, handoff_id: str, agent_id: str, version: int) -> None:
    check_id(problems, tenant_id, "tenant_id")
    check_key(problems, handoff_id, "handoff_id")
    check_key(problems, agent_id, "agent_id")
    problems.check(version >= 0, "expected_version", "must not be negative")


def validate_assign(request: escalation_pb2.AssignHandoffRequest) -> None:
    problems = Violations()
    _check_change(problems, request.tenant_id, request.handoff_id, request.agent_id, request.expected_version)
    problems.raise_if_any()


def validate_reply(request: escalation_pb2.SubmitAgentReplyRequest) -> Correction | None:
    """The checks of an agent's reply; the intent correction it carries, if any."""
    problems = Violations()
    _check_change(problems, request.tenant_id, request.handoff_id, request.agent_id, request.expected_version)
    check_text(problems, request.final_text, "final_text", MAX_REPLY_CHARS)
    correction = None
    if request.HasField("intent_correction"):
        fix = request.intent_correction
        problems.check(
            len(fix.original_label) <= MAX_LABEL_CHARS,
            "intent_correction.original_label",
            f"at most {MAX_LABEL_CHARS} characters",
        )
        check_text(problems, fix.corrected_label, "intent_correction.corrected_label", MAX_LABEL_CHARS)
        correction = Correction(fix.original_label.strip(), fix.corrected_label.strip())
    problems.check(
        len(request.client_message_id) <= MAX_CLIENT_MESSAGE_ID_CHARS,
        "client_message_id",
        f"at most {MAX_CLIENT_MESSAGE_ID_CHARS} characters",
    )
    problems.check(
        not request.client_message_id.startswith(OUTCOME_MESSAGE_PREFIX),
        "client_message_id",
        f"the prefix {OUTCOME_MESSAGE_PREFIX!r} is reserved for approvals' outcome messages",
    )
    problems.check(
        len(request.agent_name) <= MAX_AGENT_NAME_CHARS, "agent_name", f"at most {MAX_AGENT_NAME_CHARS} characters"
    )
    check_no_nul(problems, request.agent_name, "agent_name")
    check_no_nul(problems, request.client_message_id, "client_message_id")
    problems.raise_if_any()
    return correction


def validate_resolve(request: escalation_pb2.ResolveHandoffRequest) -> None:
    problems = Violations()
    _check_change(problems, request.tenant_id, request.handoff_id, request.agent_id, request.expected_version)
    check_text(problems, request.resolution, "resolution", MAX_RESOLUTION_CHARS)
    problems.raise_if_any()


# --- feedback loop and insights -------------------------------------------------------------


def validate_outcome(request: escalation_pb2.RecordOutcomeRequest) -> None:
    problems = Violations()
    check_key(problems, request.idempotency_key, "idempotency_key")
    check_id(problems, request.customer.tenant_id, "customer.tenant_id")
    problems.check(
        request.decision in (escalation_pb2.OUTCOME_DECISION_ANSWERED, escalation_pb2.OUTCOME_DECISION_CLARIFIED),
        "decision",
        "must be ANSWERED or CLARIFIED",
    )
    problems.check(len(request.intent) <= MAX_LABEL_CHARS, "intent", f"at most {MAX_LABEL_CHARS} characters")
    problems.check(0.0 <= request.confidence <= 1.0, "confidence", "must be between 0 and 1")
    problems.check(
        len(request.question) <= MAX_QUESTION_CHARS, "question", f"at most {MAX_QUESTION_CHARS} characters"
    )
    problems.raise_if_any()


def validate_judgement(request: escalation_pb2.RecordJudgementRequest) -> dt.datetime | None:
    """The checks of a customer's judgement; when the judged answer was given, if said."""
    problems = Violations()
    check_key(problems, request.idempotency_key, "idempotency_key")
    problems.check(
        not request.idempotency_key.startswith(AGENT_JUDGEMENT_KEY_PREFIX),
        "idempotency_key",
        f"the prefix {AGENT_JUDGEMENT_KEY_PREFIX!r} is reserved for agents' judgements",
    )
    # Like RecordOutcome, only the tenant is an id here: customer ids are the channel's, in any form.
    check_id(problems, request.customer.tenant_id, "customer.tenant_id")
    problems.check(
        request.source == escalation_pb2.JUDGEMENT_SOURCE_CUSTOMER,
        "source",
        "must be CUSTOMER (agents judge through SubmitAgentReply)",
    )
    problems.check(len(request.intent) <= MAX_LABEL_CHARS, "intent", f"at most {MAX_LABEL_CHARS} characters")
    problems.check(
        math.isfinite(request.confidence) and 0.0 <= request.confidence <= 1.0,
        "confidence",
        "must be between 0 and 1",
    )
    answered_at = None
    if request.HasField("answered_at"):
        try:
            answered_at = request.answered_at.ToDatetime(dt.UTC)
        except (ValueError, OverflowError):
            problems.add("answered_at", "not a valid timestamp")
    problems.raise_if_any()
    return answered_at


def validate_list_judgements(request: escalation_pb2.ListJudgementsRequest) -> dt.datetime | None:
    """The checks of a judgements read; the time it reads from, if said."""
    problems = Violations()
    check_id(problems, request.tenant_id, "tenant_id")
    problems.check(request.page_size >= 0, "page_size", "must not be negative")
    since = None
    if request.HasField("since"):
        try:
            since = request.since.ToDatetime(dt.UTC)
        except (ValueError, OverflowError):
            problems.add("since", "not a valid timestamp")
    problems.raise_if_any()
    return since


def validate_insights_period(request: escalation_pb2.GetTopicInsightsRequest) -> tuple[dt.datetime, dt.datetime]:
    """The checks of an insights request; its period (start, end), the last 30 days unless said."""
    problems = Violations()
    check_id(problems, request.tenant_id, "tenant_id")
    end = request.end_time.ToDatetime(dt.UTC) if request.HasField("end_time") else utcnow()
    start = (
        request.start_time.ToDatetime(dt.UTC)
        if request.HasField("start_time")
        else end - dt.timedelta(days=DEFAULT_INSIGHT_DAYS)
    )
    problems.check(start < end, "start_time", "must be before end_time")
    problems.check(
        end - start <= dt.timedelta(days=MAX_INSIGHT_DAYS),
        "start_time",
        f"at most {MAX_INSIGHT_DAYS} days before end_time",
    )
    problems.raise_if_any()
    return start, end


def validate_gaps(request: escalation_pb2.ListKnowledgeGapsRequest) -> None:
    problems = Violations()
    check_id(problems, request.tenant_id, "tenant_id")
    problems.check(request.limit >= 0, "limit", "must not be negative")
    problems.raise_if_any()


# --- the handoff as a conversation ------------------------------------------------------


def validate_customer_message(request: escalation_pb2.AppendCustomerMessageRequest) -> None:
    problems = Violations()
    check_id(problems, request.customer.tenant_id, "customer.tenant_id")
    check_customer_id(problems, request.customer.customer_id, "customer.customer_id")
    check_id(problems, request.conversation_id, "conversation_id")
    check_text(problems, request.text, "text", MAX_CUSTOMER_MESSAGE_CHARS)
    check_client_message_id(problems, request.client_message_id)
    problems.check(request.channel in conversation_pb2.Channel.values(), "channel", "unknown channel")
    problems.raise_if_any()


def validate_conversation_read(
    request: escalation_pb2.ListConversationMessagesRequest | escalation_pb2.WatchConversationRequest,
) -> None:
    problems = Violations()
    check_id(problems, request.tenant_id, "tenant_id")
    check_id(problems, request.conversation_id, "conversation_id")
    problems.check(request.after_sequence >= 0, "after_sequence", "must not be negative")
    if request.customer_id:
        check_customer_id(problems, request.customer_id, "customer_id")
    problems.raise_if_any()


def validate_deliveries(request: escalation_pb2.ListDeliveriesRequest) -> int:
    """The checks of a deliveries read; the message id it reads after (0: from the start)."""
    problems = Violations()
    if request.tenant_id:
        check_id(problems, request.tenant_id, "tenant_id")
    problems.check(request.channel in conversation_pb2.Channel.values(), "channel", "unknown channel")
    problems.check(request.page_size >= 0, "page_size", "must not be negative")
    cursor = request.after_cursor.strip()
    problems.check(
        not cursor or (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18),
        "after_cursor",
        "must be a cursor from a previous response",
    )
    problems.raise_if_any()
    return int(cursor) if cursor else 0


def validate_rating(request: escalation_pb2.RateHandoffRequest) -> None:
    problems = Violations()
    check_id(problems, request.customer.tenant_id, "customer.tenant_id")
    check_customer_id(problems, request.customer.customer_id, "customer.customer_id")
    check_key(problems, request.handoff_id, "handoff_id")
    problems.check(1 <= request.rating <= 5, "rating", "must be between 1 and 5")
    problems.check(len(request.comment) <= MAX_COMMENT_CHARS, "comment", f"at most {MAX_COMMENT_CHARS} characters")
    check_no_nul(problems, request.comment, "comment")
    problems.raise_if_any()


def validate_settings_update(request: escalation_pb2.UpdateHandoffSettingsRequest) -> dt.timedelta:
    """The checks of a settings change; the reopen window it sets."""
    problems = Violations()
    check_id(problems, request.tenant_id, "tenant_id")
    window = dt.timedelta(0)
    if not request.settings.HasField("reopen_window"):
        problems.add("settings.reopen_window", "required")
    else:
        reopen = request.settings.reopen_window
        window = dt.timedelta(seconds=reopen.seconds)
        problems.check(
            reopen.nanos == 0 and dt.timedelta(0) <= window <= MAX_REOPEN_WINDOW,
            "settings.reopen_window",
            f"whole seconds from 0 to {MAX_REOPEN_WINDOW.days} days",
        )
    problems.raise_if_any()
    return window


# --- approvals ---------------------------------------------------------------------------


def validate_decide_approval(request: escalation_pb2.DecideActionApprovalRequest) -> None:
    problems = Violations()
    check_id(problems, request.tenant_id, "tenant_id")
    if request.handoff_id:
        check_key(problems, request.handoff_id, "handoff_id")
    check_id(problems, request.action_id, "action_id")
    problems.check(
        request.choice in (escalation_pb2.APPROVAL_CHOICE_APPROVE, escalation_pb2.APPROVAL_CHOICE_REJECT),
        "choice",
        "must be APPROVE or REJECT",
    )
    # The actions service records the agent under its customer-id grammar.
    check_customer_id(problems, request.agent_id, "agent_id")
    problems.check(
        len(request.agent_name) <= MAX_AGENT_NAME_CHARS, "agent_name", f"at most {MAX_AGENT_NAME_CHARS} characters"
    )
    check_no_nul(problems, request.agent_name, "agent_name")
    problems.check(
        len(request.note) <= MAX_APPROVAL_NOTE_CHARS, "note", f"at most {MAX_APPROVAL_NOTE_CHARS} characters"
    )
    check_no_nul(problems, request.note, "note")
    problems.raise_if_any()
