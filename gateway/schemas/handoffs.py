"""Bodies of the handoffs router (gateway/routes/handoffs.py): handoffs with their context package,
thread and history, the agent's queue, reply and resolve, handoff settings, triage; the
events and deliveries routers use its ThreadMessage and HandoffStatus.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from google.protobuf.duration_pb2 import Duration
from pydantic import BaseModel, Field, StrictInt

from aftercare.escalation.v1 import escalation_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import conversation_pb2, customer_pb2, verdict_pb2
from gateway.schemas.common import (
    Citation,
    CustomerId,
    RequestBody,
    enum_name,
    json_or_none,
    time_field,
    whole_seconds,
)
from gateway.schemas.conversations import ConversationMessage

# --- handoffs (escalation) -------------------------------------------------


class AccountSignals(BaseModel):
    plan: str
    tenure_days: int
    contract_value_minor: int
    lifetime_value_minor: int
    open_tickets: int
    contacts_last_7_days: int

    @classmethod
    def from_proto(cls, account: customer_pb2.AccountSignals) -> AccountSignals:
        return cls(
            plan=account.plan,
            tenure_days=account.tenure_days,
            contract_value_minor=account.contract_value_minor,
            lifetime_value_minor=account.lifetime_value_minor,
            open_tickets=account.open_tickets,
            contacts_last_7_days=account.contacts_last_7_days,
        )


class AiAttempt(BaseModel):
    candidate_answer: str
    confidence: float
    explanation: str
    citations: list[Citation]


class SuggestedResolution(BaseModel):
    text: str
    sources: list[Citation]


AccountActionStateLabel = Literal[
    "unspecified", "proposed", "awaiting_approval", "executing", "succeeded", "failed", "cancelled", "rejected"
]


class RecordRead(BaseModel):
    """One of the customer's records read for the conversation (by the AI or an agent)."""

    tool: str = Field(description="The read tool, e.g. 'get_order_details'.")
    record_id: str = Field(description="The record's id in the company's system, e.g. '#W2611340'.")
    masked_arguments: Any = Field(description="The tool's arguments, personal data masked (a JSON object).")
    read_at: datetime | None

    @classmethod
    def from_proto(cls, record: escalation_pb2.RecordRead) -> RecordRead:
        return cls(
            tool=record.tool,
            record_id=record.record_id,
            masked_arguments=json_or_none(record.masked_arguments_json),
            read_at=time_field(record, "read_at"),
        )


class AccountAction(BaseModel):
    """One action on the customer's account in the conversation, in its current state."""

    action_id: str
    tool: str = Field(description="The write tool, e.g. 'cancel_pending_order'.")
    summary: str = Field(description="Every detail in words, as the customer was asked to say yes to it.")
    state: AccountActionStateLabel = Field(
        description="'executing' also while it waits to be re-sent after the company's system could not be reached."
    )
    approval_reasons: list[str] = Field(description="Why an agent must approve it; empty when no rule matched.")
    decided_by: str | None = Field(description="The agent who approved or rejected it; null until then.")
    dry_run: bool = Field(description="Executed without the write (dry-run).")
    error_message: str | None = Field(description="Why it failed, in words; null otherwise.")
    masked_arguments: Any = Field(description="The arguments, personal data masked (a JSON object).")
    updated_at: datetime | None
    fingerprint: str = Field(description="What a confirmation must name (POST .../actions/{id}:confirm).")

    @classmethod
    def from_proto(cls, action: escalation_pb2.AccountAction) -> AccountAction:
        return cls(
            action_id=action.action_id,
            tool=action.tool,
            summary=action.summary,
            state=enum_name(escalation_pb2.AccountActionState, action.state),
            approval_reasons=list(action.approval_reasons),
            decided_by=action.decided_by or None,
            dry_run=action.dry_run,
            error_message=action.error_message or None,
            masked_arguments=json_or_none(action.masked_arguments_json),
            updated_at=time_field(action, "updated_at"),
            fingerprint=action.fingerprint,
        )


class AccountActivity(BaseModel):
    """What was read of the customer's own records and done for them in the conversation, as of now."""

    verified_customer_id: str | None = Field(
        description="The customer verified in the conversation (the company's id); null when nobody was."
    )
    records: list[RecordRead] = Field(description="Records read, oldest first.")
    actions: list[AccountAction] = Field(description="Actions, newest first, in their current states.")
    complete: bool = Field(
        description="False when the actions service could not be reached or there is more than one page: "
        "the lists may then be incomplete."
    )

    @classmethod
    def from_proto(cls, activity: escalation_pb2.AccountActivity) -> AccountActivity:
        return cls(
            verified_customer_id=activity.verified_customer_id or None,
            records=[RecordRead.from_proto(record) for record in activity.records],
            actions=[AccountAction.from_proto(action) for action in activity.actions],
            complete=activity.complete,
        )


class ContextPackage(BaseModel):
    summary: str = Field(description="One sentence: what the customer wants.")
    detail: str
    intent: str
    intent_confidence: float
    sentiment_score: float
    account: AccountSignals | None
    ai_attempt: AiAttempt | None
    suggested_resolutions: list[SuggestedResolution]
    draft_reply: str
    customer_summary: str = Field(description="Plan, tenure, value, open issues, recent contacts, in words.")
    ai_attempt_summary: str = Field(description="What the AI tried and why it handed over, in words.")
    summary_method: str = Field(
        description="'llm' (generated and checked), 'extractive', or 'pending' (the LLM's is being written)."
    )
    draft_method: str = Field(
        description="'llm' (written by the model and checked), 'template' (from the top suggestion, checked), "
        "or 'pending' (the template for now: the model's draft is being written)."
    )
    sentiment_label: str
    sources: list[Citation] = Field(description="Passages the package is grounded in (its lineage).")
    account_activity: AccountActivity | None = Field(
        default=None,
        description="The customer's records read and the actions taken or pending in the conversation, read live "
        "(current states); null where the handoff comes without it (a list of handoffs).",
    )

    @classmethod
    def from_proto(cls, context: escalation_pb2.ContextPackage) -> ContextPackage:
        attempt = context.ai_attempt
        # The JSON keeps the strings clients know, made from the enums; the deprecated strings
        # stand in only for an escalation from before them.
        draft_method = _named(escalation_pb2.DraftOrigin, context.draft_origin, context.draft_method)
        return cls(
            summary=context.summary,
            detail=context.detail,
            intent=context.intent,
            intent_confidence=context.intent_confidence,
            sentiment_score=context.sentiment_score,
            account=AccountSignals.from_proto(context.account) if context.HasField("account") else None,
            ai_attempt=AiAttempt(
                candidate_answer=attempt.candidate_answer,
                confidence=attempt.confidence.score,
                explanation=attempt.explanation,
                citations=[Citation.from_proto(c) for c in attempt.citations],
            )
            if context.HasField("ai_attempt")
            else None,
            suggested_resolutions=[
                SuggestedResolution(text=r.text, sources=[Citation.from_proto(c) for c in r.sources])
                for r in context.suggested_resolutions
            ],
            draft_reply=context.draft_reply,
            customer_summary=context.customer_summary,
            ai_attempt_summary=context.ai_attempt_summary,
            summary_method=_named(escalation_pb2.SummaryOrigin, context.summary_origin, context.summary_method),
            draft_method=draft_method,
            sentiment_label=_named(verdict_pb2.SentimentLabel, context.sentiment, context.sentiment_label),
            sources=[Citation.from_proto(c) for c in context.lineage.sources],
            account_activity=AccountActivity.from_proto(context.account_activity)
            if context.HasField("account_activity")
            else None,
        )


def _named(enum: Any, number: int, deprecated: str) -> str:
    """An enum's lowercase name ("llm", "negative"); the deprecated string where this build cannot
    name it (unspecified: an escalation from before the enums; or a value newer than this build)."""
    name = str(enum_name(enum, number))
    return deprecated if name == "unspecified" else name


HandoffStateLabel = Literal[
    "unspecified", "waiting", "assigned", "waiting_on_customer", "reopened", "resolved"
]


class ThreadMessage(BaseModel):
    """One message of the human part of a conversation: the customer's while a human had it, or an agent's."""

    message_id: str = Field(description="Server-assigned id; a channel integration's idempotency key.")
    sequence: int = Field(description="Position in the conversation's thread, from 1, gapless (the SSE event id).")
    role: Literal["unspecified", "customer", "assistant", "agent"]
    author_name: str | None = Field(description="For an agent's message: the name shown to the customer.")
    text: str
    sent_at: datetime | None

    @classmethod
    def from_proto(cls, message: escalation_pb2.ThreadMessage) -> ThreadMessage:
        return cls(
            message_id=message.message_id,
            sequence=message.sequence,
            role=enum_name(conversation_pb2.Role, message.message.role),
            author_name=message.author_name or message.message.author_name or None,
            text=message.message.text,
            sent_at=time_field(message.message, "sent_at"),
        )


class HandoffStatus(BaseModel):
    """What a customer may see of the handoff of their conversation (data of an SSE `handoff` event)."""

    handoff_id: str
    reference: str = Field(description="Human-readable reference, e.g. 'HO-7KQ2M9'.")
    state: HandoffStateLabel
    expected_wait_s: int | None = Field(description="While waiting: expected seconds until an agent takes it.")
    queue_position: int | None = Field(description="While waiting: position in its queue, from 1.")
    csat_rating: int | None = Field(description="The customer's rating, 1 to 5; null when not rated.")

    @classmethod
    def from_proto(cls, handoff: escalation_pb2.Handoff) -> HandoffStatus:
        return cls(
            handoff_id=handoff.handoff_id,
            reference=handoff.reference,
            state=enum_name(escalation_pb2.HandoffState, handoff.state),
            expected_wait_s=whole_seconds(handoff, "expected_wait"),
            queue_position=handoff.queue_position or None,
            csat_rating=handoff.csat_rating or None,
        )


class HandoffEvent(BaseModel):
    """One timestamped step of a handoff's life."""

    kind: Literal[
        "unspecified", "created", "assigned", "agent_replied", "customer_wrote", "escalated_again", "resolved",
        "reopened", "rated",
    ]
    at: datetime | None
    actor: str = Field(description="An agent id, 'customer' or 'ai'.")
    state: HandoffStateLabel = Field(description="The handoff's state after it.")

    @classmethod
    def from_proto(cls, event: escalation_pb2.HandoffEvent) -> HandoffEvent:
        return cls(
            kind=enum_name(escalation_pb2.HandoffEventKind, event.kind),
            at=time_field(event, "at"),
            actor=event.actor,
            state=enum_name(escalation_pb2.HandoffState, event.state),
        )


class HandoffReply(BaseModel):
    handoff_id: str
    tenant_id: str
    customer_id: str
    conversation_id: str
    channel: Literal["unspecified", "chat", "email", "api"]
    messages: list[ConversationMessage]
    reason: Literal[
        "unspecified", "low_confidence", "customer_request", "policy", "no_knowledge", "system_unavailable",
        "approval_required",
    ]
    queue: str
    priority: int = Field(description="0 (can wait) to 100 (now).")
    state: HandoffStateLabel
    assigned_agent_id: str | None
    context: ContextPackage | None
    created_at: datetime | None
    updated_at: datetime | None
    tier: Literal["unspecified", "ai_resolved", "ai_assisted", "specialist", "manager_flagged"]
    version: int = Field(description="Incremented by every change; send it back as expected_version.")
    assigned_at: datetime | None
    resolved_at: datetime | None
    resolved_by_agent_id: str | None
    resolution: str | None
    reference: str = Field(default="", description="Human-readable reference the customer is given.")
    history: list[HandoffEvent] = Field(default_factory=list, description="Every step of its life, oldest first.")
    first_replied_at: datetime | None = None
    expected_wait_s: int | None = Field(default=None, description="While waiting: expected seconds until taken.")
    queue_position: int | None = Field(default=None, description="While waiting: position in its queue, from 1.")
    csat_rating: int | None = Field(default=None, description="The customer's rating, 1 to 5; null when not rated.")
    thread_messages: int = Field(default=0, description="Messages in its thread (customer and agents) so far.")
    release_id: str | None = Field(
        default=None,
        description="The tenant's release (of the assistant) that handed over, e.g. 'r3'; null when the handoff "
        "was made otherwise or before releases.",
    )

    @classmethod
    def from_proto(cls, handoff: escalation_pb2.Handoff) -> HandoffReply:
        conversation = handoff.conversation
        return cls(
            handoff_id=handoff.handoff_id,
            tenant_id=handoff.customer.tenant_id,
            customer_id=handoff.customer.customer_id,
            conversation_id=handoff.conversation_id or conversation.conversation_id,
            channel=enum_name(conversation_pb2.Channel, conversation.channel),
            messages=[ConversationMessage.from_proto(m) for m in conversation.messages],
            reason=enum_name(escalation_pb2.HandoffReason, handoff.reason),
            queue=handoff.queue,
            priority=handoff.priority,
            state=enum_name(escalation_pb2.HandoffState, handoff.state),
            assigned_agent_id=handoff.assigned_agent_id or None,
            context=ContextPackage.from_proto(handoff.context) if handoff.HasField("context") else None,
            created_at=time_field(handoff, "created_at"),
            updated_at=time_field(handoff, "updated_at"),
            # The deprecated tier only from an escalation that does not send routing_tier yet.
            tier=enum_name(verdict_pb2.Tier, handoff.routing_tier or handoff.tier),
            version=handoff.version,
            assigned_at=time_field(handoff, "assigned_at"),
            resolved_at=time_field(handoff, "resolved_at"),
            resolved_by_agent_id=handoff.resolved_by_agent_id or None,
            resolution=handoff.resolution or None,
            reference=handoff.reference,
            history=[HandoffEvent.from_proto(e) for e in handoff.history],
            first_replied_at=time_field(handoff, "first_replied_at"),
            expected_wait_s=whole_seconds(handoff, "expected_wait"),
            queue_position=handoff.queue_position or None,
            csat_rating=handoff.csat_rating or None,
            thread_messages=handoff.thread_messages,
            release_id=handoff.release_id or None,
        )


class HandoffDetailReply(HandoffReply):
    """One handoff with its conversation's thread."""

    thread: list[ThreadMessage] = Field(
        description="The conversation's thread (customer's messages while a human had it, agents' replies), "
        "oldest first."
    )

    @classmethod
    def from_get_response(cls, response: escalation_pb2.GetHandoffResponse) -> HandoffDetailReply:
        handoff = HandoffReply.from_proto(response.handoff)
        return cls(**dict(handoff), thread=[ThreadMessage.from_proto(m) for m in response.thread])


# --- handoffs: queue, reply, resolve (escalation) ---------------------------

HandoffStateName = Literal["waiting", "assigned", "waiting_on_customer", "reopened", "resolved"]


def _expected_version() -> Any:
    return Field(default=0, ge=0, description="The handoff version you read; a stale one is refused (409). 0: any.")


TierName = Literal["ai_resolved", "ai_assisted", "specialist", "manager_flagged"]


class HandoffListReply(BaseModel):
    handoffs: list[HandoffReply]
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last.")

    @classmethod
    def from_proto(cls, response: escalation_pb2.ListHandoffsResponse) -> HandoffListReply:
        return cls(
            handoffs=[HandoffReply.from_proto(h) for h in response.handoffs],
            next_page_token=response.next_page_token or None,
        )


class IntentCorrection(RequestBody):
    original_label: str = Field(min_length=1, max_length=128)
    corrected_label: str = Field(min_length=1, max_length=128)


class AgentReplyRequest(RequestBody):
    final_text: str = Field(min_length=1, max_length=10_000, description="What the agent sent the customer.")
    intent_correction: IntentCorrection | None = None
    expected_version: StrictInt = _expected_version()
    client_message_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Your id of this Send: a retry with the same id stores and delivers nothing new and returns "
        "the first result.",
    )
    agent_name: str | None = Field(
        default=None, min_length=1, max_length=128, description="Name shown to the customer; 'Support agent' "
        "when omitted."
    )

    def to_proto(self, tenant_id: str, handoff_id: str, agent_id: str) -> escalation_pb2.SubmitAgentReplyRequest:
        correction = self.intent_correction
        return escalation_pb2.SubmitAgentReplyRequest(
            tenant_id=tenant_id,
            handoff_id=handoff_id,
            agent_id=agent_id,
            final_text=self.final_text,
            expected_version=self.expected_version,
            client_message_id=self.client_message_id or "",
            agent_name=self.agent_name or "",
            intent_correction=escalation_pb2.IntentCorrection(
                original_label=correction.original_label, corrected_label=correction.corrected_label
            )
            if correction
            else None,
        )


class AgentReplyReply(BaseModel):
    draft_use: Literal["unspecified", "accepted", "edited", "rewritten", "discarded"]
    edit_ratio: float = Field(description="Normalised edit distance between the AI draft and the sent text.")
    handoff: HandoffReply | None = Field(description="The handoff after the reply.")
    message: ThreadMessage | None = Field(
        default=None, description="The reply as stored in the conversation and delivered to the customer."
    )

    @classmethod
    def from_proto(cls, response: escalation_pb2.SubmitAgentReplyResponse) -> AgentReplyReply:
        return cls(
            draft_use=enum_name(escalation_pb2.DraftUse, response.draft_use),
            edit_ratio=response.edit_ratio,
            handoff=HandoffReply.from_proto(response.handoff) if response.HasField("handoff") else None,
            message=ThreadMessage.from_proto(response.message) if response.HasField("message") else None,
        )


class ResolveRequest(RequestBody):
    resolution: str = Field(min_length=1, max_length=2000, description="How it was resolved, in words.")
    expected_version: StrictInt = _expected_version()


class AssignRequest(RequestBody):
    expected_version: StrictInt = _expected_version()


# --- handoff settings (escalation) ----------------------------------------

# Reopen windows a tenant may set: none (0) to 90 days, as escalation accepts.
MAX_REOPEN_WINDOW_S = 90 * 24 * 3600


class HandoffSettingsRequest(RequestBody):
    reopen_window_s: StrictInt = Field(
        ge=0,
        le=MAX_REOPEN_WINDOW_S,
        description="How long after resolution a customer's new message reopens the handoff instead of going to "
        "the AI; 0 never reopens.",
    )

    def to_proto(self) -> escalation_pb2.HandoffSettings:
        window = Duration()
        window.FromSeconds(self.reopen_window_s)
        return escalation_pb2.HandoffSettings(reopen_window=window)


class HandoffSettingsReply(BaseModel):
    reopen_window_s: int = Field(description="Seconds after resolution in which the customer's new message reopens "
                                 "the handoff; 0: never.")

    @classmethod
    def from_proto(cls, settings: escalation_pb2.HandoffSettings) -> HandoffSettingsReply:
        return cls(reopen_window_s=int(settings.reopen_window.ToTimedelta().total_seconds()))


# --- triage ----------------------------------------------------------------


class TriageRequest(RequestBody):
    text: str = Field(min_length=1, max_length=4000, description="The customer's message.")
    customer_id: CustomerId

    def to_proto(self, tenant_id: str) -> triage_pb2.TriageContactRequest:
        return triage_pb2.TriageContactRequest(
            customer=customer_pb2.CustomerRef(tenant_id=tenant_id, customer_id=self.customer_id),
            conversation=conversation_pb2.Conversation(
                messages=[conversation_pb2.Message(role=conversation_pb2.ROLE_CUSTOMER, text=self.text)],
            ),
        )


class IntentCandidate(BaseModel):
    label: str
    confidence: float


class Intent(BaseModel):
    label: str = Field(description="Empty when no model is trained for the tenant.")
    confidence: float
    alternatives: list[IntentCandidate]
    out_of_scope: bool
    model_version: str


class Sentiment(BaseModel):
    label: Literal["unspecified", "negative", "neutral", "positive"]
    score: float = Field(description="Compound score in [-1, 1].")
    trajectory: float


class PriorityReason(BaseModel):
    code: str
    points: float


class Priority(BaseModel):
    score: int = Field(description="0 (can wait) to 100 (now).")
    reasons: list[PriorityReason]


class Route(BaseModel):
    tier: Literal["unspecified", "ai_resolved", "ai_assisted", "specialist", "manager_flagged"]
    queue: str
    reason_codes: list[str]


RiskFlag = Literal[
    "unspecified", "churn", "legal", "repeated_contact", "human_requested", "high_value", "escalating_anger"
]


class TriageReply(BaseModel):
    intent: Intent
    sentiment: Sentiment
    risk_flags: list[RiskFlag]
    priority: Priority
    route: Route

    @classmethod
    def from_proto(cls, response: triage_pb2.TriageContactResponse) -> TriageReply:
        intent, sentiment = response.intent, response.sentiment
        return cls(
            intent=Intent(
                label=intent.label,
                confidence=intent.confidence,
                alternatives=[IntentCandidate(label=a.label, confidence=a.confidence) for a in intent.alternatives],
                out_of_scope=intent.out_of_scope,
                model_version=intent.model_version,
            ),
            sentiment=Sentiment(
                label=enum_name(triage_pb2.SentimentLabel, sentiment.label),
                score=sentiment.score,
                trajectory=sentiment.trajectory,
            ),
            risk_flags=[enum_name(triage_pb2.RiskFlag, f) for f in response.risk_flags],
            priority=Priority(
                score=response.priority.score,
                reasons=[PriorityReason(code=r.code, points=r.points) for r in response.priority.reasons],
            ),
            route=Route(
                tier=enum_name(triage_pb2.Tier, response.route.tier),
                queue=response.route.queue,
                reason_codes=list(response.route.reason_codes),
            ),
        )
