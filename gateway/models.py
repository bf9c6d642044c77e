"""Request and response bodies of the HTTP API, and their translation to and
from the protobuf messages of the backends.

This is the only place payloads are pydantic models; between services they
are protobuf. Enum values are exposed in lowercase without their prefix
(DECISION_ANSWERED -> "answered").
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.outreach.v1 import outreach_pb2
from aftercare.retrieval.v1 import retrieval_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import answer_pb2, conversation_pb2, customer_pb2
from servicekit.ids import CUSTOMER_ID_PATTERN, ID_PATTERN

# Ids in paths and bodies: what conversation ids, tenant ids and handoff ids look like
# (the grammar every service checks: servicekit.ids).
Id = Annotated[str, Field(pattern=ID_PATTERN, examples=["demo"])]
# The tenant's id of an end customer: the same grammar, up to 200 characters.
CustomerId = Annotated[str, Field(pattern=CUSTOMER_ID_PATTERN, examples=["web-3f9a1c"])]


def _iso_text_only(value: object) -> object:
    # pydantic also reads numbers (and numeric strings) as Unix times; an API
    # that documents ISO 8601 date-times refuses them rather than guess.
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and re.match(r"\d{4}-\d{2}-\d{2}", value):
        return value
    raise ValueError("must be an ISO 8601 date-time, e.g. 2026-11-24T09:30:00Z")


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_text_only)]


# --- enums -----------------------------------------------------------------


def enum_name(enum: Any, number: int) -> Any:
    """Lowercase value name without the enum's prefix; "unspecified" for numbers
    this build does not know (a newer backend), so a response still renders.
    Typed Any because the response model's Literal field is what checks it."""
    descriptor = enum.DESCRIPTOR
    prefix = descriptor.values_by_number[0].name.removesuffix("UNSPECIFIED")
    value = descriptor.values_by_number.get(number)
    return value.name.removeprefix(prefix).lower() if value is not None else "unspecified"


def proto_enum(enum: Any, name: str) -> str:
    """The full proto value name of a lowercase, prefix-less one ("chat" -> "CHANNEL_CHAT");
    protobuf constructors accept value names."""
    prefix = enum.DESCRIPTOR.values_by_number[0].name.removesuffix("UNSPECIFIED")
    full_name: str = enum.DESCRIPTOR.values_by_name[prefix + name.upper()].name
    return full_name


def to_timestamp(moment: datetime | None) -> Timestamp | None:
    """A proto Timestamp; a naive datetime is taken as UTC."""
    if moment is None:
        return None
    timestamp = Timestamp()
    timestamp.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return timestamp


def _time(message: ProtoMessage, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    timestamp: Timestamp = getattr(message, field)
    moment: datetime = timestamp.ToDatetime(tzinfo=UTC)
    return moment


def _whole_seconds(message: ProtoMessage, field: str) -> int | None:
    """A Duration field in whole seconds, rounded up (a wait is never shown shorter); None when unset."""
    if not message.HasField(field):
        return None
    duration: Duration = getattr(message, field)
    return math.ceil(duration.ToTimedelta().total_seconds())


# --- shared ----------------------------------------------------------------


class _Request(BaseModel):
    # Unknown fields are refused: a misspelt optional field would otherwise be ignored silently.
    # Numbers and flags are strict (StrictInt, StrictBool): JSON `false` is not 0, "5" is not 5.
    model_config = ConfigDict(extra="forbid")


class Customer(_Request):
    tenant_id: Id | None = Field(
        default=None, description="Tenant (the company using aftercare); the API key's tenant when omitted."
    )
    customer_id: CustomerId = Field(description="The tenant's id of the end customer.")

    def to_proto(self, tenant_id: str) -> customer_pb2.CustomerRef:
        return customer_pb2.CustomerRef(tenant_id=tenant_id, customer_id=self.customer_id)


class Citation(BaseModel):
    doc_id: str
    chunk_id: str
    title: str
    url: str
    score: float

    @classmethod
    def from_proto(cls, citation: answer_pb2.Citation) -> Citation:
        return cls(
            doc_id=citation.doc_id,
            chunk_id=citation.chunk_id,
            title=citation.title,
            url=citation.url,
            score=citation.score,
        )


class FieldError(BaseModel):
    field: str = Field(description="Path of the offending field, e.g. 'body.text'.")
    description: str


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (media type application/problem+json)."""

    type: str = "about:blank"
    title: str = Field(description="HTTP status phrase.")
    status: int
    detail: str = Field(description="What went wrong, for a human.")
    reason: str = Field(description="Stable machine-readable reason, e.g. 'INVALID_ARGUMENT'.")
    trace_id: str = Field(description="OpenTelemetry trace id of the request; quote it when reporting.")
    errors: list[FieldError] | None = Field(default=None, description="Every invalid field, for 400.")


# --- the caller ------------------------------------------------------------


class Me(BaseModel):
    """Who an API key belongs to (the console asks once, to learn its tenant)."""

    key_id: str
    tenant_id: str
    role: Literal["channel", "agent", "admin"]
    name: str


# --- health ----------------------------------------------------------------


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    backends: dict[str, Literal["SERVING", "NOT_SERVING", "UNAVAILABLE"]]


# --- conversations (concierge) -------------------------------------------


class PostMessageRequest(_Request):
    text: str = Field(min_length=1, max_length=4000, description="The customer's new message.")
    customer: Customer
    channel: Literal["chat", "email", "api"] = "chat"
    client_message_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Your id of this message: a retry with the same id gets the stored answer, not a second one.",
    )

    def to_proto(self, conversation_id: str, tenant_id: str) -> concierge_pb2.ConverseRequest:
        return concierge_pb2.ConverseRequest(
            conversation_id=conversation_id,
            customer=self.customer.to_proto(tenant_id),
            text=self.text,
            channel=proto_enum(conversation_pb2.Channel, self.channel),
            client_message_id=self.client_message_id or "",
        )


class MessageReply(BaseModel):
    conversation_id: str
    reply: str = Field(description="Text to show: the answer, or the transparent handoff message.")
    citations: list[Citation]
    confidence: float = Field(
        description="Probability that the answer is right: calibrated when `calibrated` is true, otherwise the "
        "score of an uncalibrated rule (which never answers on its own)."
    )
    calibrated: bool = Field(
        description="True when the confidence comes from a fit made for exactly the serving configuration; "
        "false for an uncalibrated rule, under which the AI does not answer alone."
    )
    configuration_id: str = Field(
        description="Id of the serving configuration (answer path, model, quantization, prompt version) the "
        "confidence's fit belongs to; may be empty when uncalibrated."
    )
    calibration_version: str = Field(
        description="Id of the fit that scored the confidence ('uncalibrated' when there is none)."
    )
    decision: Literal["unspecified", "answered", "escalated", "clarify", "forwarded"] = Field(
        description="'forwarded': a human has the conversation; the message went to them, `reply` is empty "
        "and the agent answers on the conversation (its event stream)."
    )
    decision_reason: str = Field(description="Stable reason code, e.g. 'confident', 'low_confidence', 'with_agent'.")
    handoff_id: str | None = Field(description="Set when the conversation was handed to a human.")
    handoff_reference: str | None = Field(
        default=None, description="The handoff's reference for the customer (e.g. 'HO-7KQ2M9'), when escalated "
        "or forwarded."
    )
    expected_wait_s: int | None = Field(
        default=None, description="Expected seconds until an agent takes the conversation; null when not waiting."
    )
    threshold: float = Field(description="Confidence threshold in force; below it the AI hands over.")
    turn_index: int = Field(description="Position of this turn in the stored conversation, from 0.")
    trace_id: str = Field(description="OpenTelemetry trace id of this request.")

    @classmethod
    def from_proto(
        cls, conversation_id: str, response: concierge_pb2.ConverseResponse, trace_id: str
    ) -> MessageReply:
        return cls(
            conversation_id=conversation_id,
            reply=response.reply,
            citations=[Citation.from_proto(c) for c in response.citations],
            confidence=response.confidence.score,
            calibrated=response.confidence.calibrated,
            configuration_id=response.confidence.configuration_id,
            calibration_version=response.confidence.calibration_version,
            decision=enum_name(concierge_pb2.Decision, response.decision),
            decision_reason=response.decision_reason,
            handoff_id=response.handoff_id or None,
            handoff_reference=response.handoff_reference or None,
            expected_wait_s=_whole_seconds(response, "expected_wait"),
            threshold=response.confidence.threshold,
            turn_index=response.turn_index,
            trace_id=trace_id,
        )


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


class ConversationMessage(BaseModel):
    role: Literal["unspecified", "customer", "assistant", "agent"]
    text: str
    sent_at: datetime | None
    author_name: str | None = Field(default=None, description="For an agent's message: the name shown.")

    @classmethod
    def from_proto(cls, message: conversation_pb2.Message) -> ConversationMessage:
        return cls(
            role=enum_name(conversation_pb2.Role, message.role),
            text=message.text,
            sent_at=_time(message, "sent_at"),
            author_name=message.author_name or None,
        )


class AiAttempt(BaseModel):
    candidate_answer: str
    confidence: float
    explanation: str
    citations: list[Citation]


class SuggestedResolution(BaseModel):
    text: str
    sources: list[Citation]


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

    @classmethod
    def from_proto(cls, context: escalation_pb2.ContextPackage) -> ContextPackage:
        attempt = context.ai_attempt
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
            summary_method=context.summary_method,
            draft_method=context.draft_method,
            sentiment_label=context.sentiment_label,
            sources=[Citation.from_proto(c) for c in context.lineage.sources],
        )


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
            sent_at=_time(message.message, "sent_at"),
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
            expected_wait_s=_whole_seconds(handoff, "expected_wait"),
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
            at=_time(event, "at"),
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
        "unspecified", "low_confidence", "customer_request", "policy", "no_knowledge", "system_unavailable"
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
            created_at=_time(handoff, "created_at"),
            updated_at=_time(handoff, "updated_at"),
            tier=enum_name(triage_pb2.Tier, handoff.tier),
            version=handoff.version,
            assigned_at=_time(handoff, "assigned_at"),
            resolved_at=_time(handoff, "resolved_at"),
            resolved_by_agent_id=handoff.resolved_by_agent_id or None,
            resolution=handoff.resolution or None,
            reference=handoff.reference,
            history=[HandoffEvent.from_proto(e) for e in handoff.history],
            first_replied_at=_time(handoff, "first_replied_at"),
            expected_wait_s=_whole_seconds(handoff, "expected_wait"),
            queue_position=handoff.queue_position or None,
            csat_rating=handoff.csat_rating or None,
            thread_messages=handoff.thread_messages,
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


# --- knowledge base (retrieval) --------------------------------------------

DocType = Literal["unspecified", "article", "faq", "changelog", "policy", "resolved_ticket"]


class SearchRequest(_Request):
    query: str = Field(min_length=1, max_length=2000)
    top_k: StrictInt = Field(default=5, ge=1, le=50)
    mode: Literal["hybrid", "dense", "keyword"] = "hybrid"

    def to_proto(self, tenant_id: str) -> retrieval_pb2.SearchRequest:
        return retrieval_pb2.SearchRequest(
            tenant_id=tenant_id,
            query=self.query,
            top_k=self.top_k,
            mode=proto_enum(retrieval_pb2.SearchMode, self.mode),
        )


class SearchHit(BaseModel):
    doc_id: str
    chunk_id: str
    title: str
    heading_path: list[str]
    text: str
    url: str
    score: float = Field(description="Cosine for dense, BM25 for keyword, RRF for hybrid.")
    similarity: float = Field(description="Cosine similarity to the query, in every mode.")
    unit_question: str = Field(
        description="The question this chunk answers when it is an answer unit (an FAQ entry's question, a "
        "resolved ticket's problem, a how-to section's task); empty for chunks that answer no one question."
    )
    question_similarity: float = Field(description="Cosine similarity of the query to unit_question (0 without one).")
    doc_type: DocType
    version: str


class SearchReply(BaseModel):
    hits: list[SearchHit]
    embedding_model: str

    @classmethod
    def from_proto(cls, response: retrieval_pb2.SearchResponse) -> SearchReply:
        return cls(
            hits=[
                SearchHit(
                    doc_id=h.doc_id,
                    chunk_id=h.chunk_id,
                    title=h.title,
                    heading_path=list(h.heading_path),
                    text=h.text,
                    url=h.url,
                    score=h.score,
                    similarity=h.similarity,
                    unit_question=h.unit_question,
                    question_similarity=h.question_similarity,
                    doc_type=enum_name(retrieval_pb2.DocumentType, h.doc_type),
                    version=h.version,
                )
                for h in response.hits
            ],
            embedding_model=response.embedding_model,
        )


# --- triage ----------------------------------------------------------------


class TriageRequest(_Request):
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


# --- streaming and email intake (concierge) --------------------------------


class DeltaEvent(BaseModel):
    """Data of an SSE `delta` event: the next piece of the reply (a whole, checked sentence)."""

    text: str


class RetractionEvent(BaseModel):
    """Data of an SSE `retraction` event: the reply text streamed so far is withdrawn,
    because a check failed after it was shown; show `replacement` instead."""

    reason: str = Field(description="Stable reason code, as the outcome's decision_reason, e.g. 'unsafe_promise'.")
    replacement: str = Field(description="The text that replaces it (the handoff message the outcome also carries).")

    @classmethod
    def from_proto(cls, retraction: concierge_pb2.Retraction) -> RetractionEvent:
        return cls(
            reason=enum_name(concierge_pb2.DecisionReason, retraction.reason), replacement=retraction.replacement
        )


class EmailIntakeRequest(_Request):
    """An inbound email or ticket, as a mail webhook delivers it."""

    sender: str = Field(
        min_length=3,
        max_length=320,
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="Sender address. The customer id is a pseudonym of it (see the reply); the address "
        "itself is kept only by outreach, to send agents' replies, and erased with the customer's data.",
    )
    subject: str = Field(default="", max_length=300)
    body: str = Field(min_length=1, max_length=3600, description="Plain-text body, quoted history removed.")
    thread_id: Id | None = Field(
        default=None,
        description="The mail system's thread or ticket id; replies in one thread share a conversation. "
        "When omitted, the sender and the subject (without Re:/Fwd:) name the conversation.",
    )
    message_id: str | None = Field(
        default=None,
        max_length=900,
        pattern=r"^<?[^<>\s@]+@[^<>\s@]+>?$",
        description="The mail's Message-ID header, e.g. '<abc@mail.example>': agents' replies answer it "
        "(In-Reply-To), so the customer's mail client threads them.",
    )

    def customer_id(self, tenant_id: str, pseudonym_key: bytes) -> str:
        """The sender's pseudonym: the same address always gives the same id (one
        customer history), and the id does not give the address back."""
        address = f"{tenant_id}\n{self.sender.strip().lower()}".encode()
        return "email-" + hmac.new(pseudonym_key, address, hashlib.sha256).hexdigest()[:32]

    def conversation_id(self, customer_id: str) -> str:
        if self.thread_id:
            return self.thread_id
        subject = self.subject
        while (stripped := _REPLY_PREFIX.sub("", subject, count=1)) != subject:
            subject = stripped
        # An answer to an agent's reply ("Re: <subject> [HO-7KQ2M9]") stays in the conversation.
        subject = _HANDOFF_TAG.sub("", subject)
        thread = f"{customer_id}\n{subject.strip().casefold()}"
        return "email-" + hashlib.sha256(thread.encode()).hexdigest()[:24]

    def to_proto(self, tenant_id: str, pseudonym_key: bytes) -> concierge_pb2.ConverseRequest:
        customer_id = self.customer_id(tenant_id, pseudonym_key)
        text = f"{self.subject.strip()}\n\n{self.body}" if self.subject.strip() else self.body
        return concierge_pb2.ConverseRequest(
            conversation_id=self.conversation_id(customer_id),
            customer=customer_pb2.CustomerRef(tenant_id=tenant_id, customer_id=customer_id),
            text=text,
            channel=conversation_pb2.CHANNEL_EMAIL,
        )

    def reply_route(self, converse: concierge_pb2.ConverseRequest) -> outreach_pb2.RecordReplyRouteRequest:
        """Where agents' replies to this conversation go. Outreach keeps the address for that
        alone (erased with the customer's data); the gateway stores and logs only the pseudonym."""
        return outreach_pb2.RecordReplyRouteRequest(
            customer=converse.customer,
            conversation_id=converse.conversation_id,
            address=self.sender.strip(),
            subject=self.subject,
            message_id=self.message_id or "",
        )


class EmailIntakeReply(MessageReply):
    customer_id: str = Field(
        description="The sender's pseudonymous customer id (the address is kept only for replies): "
        "use it to read the conversation back."
    )


_REPLY_PREFIX = re.compile(r"^\s*(re|fwd?|aw|wg|tr)\s*:\s*", re.IGNORECASE)
_HANDOFF_TAG = re.compile(r"\s*\[HO-[0-9A-Z]{4,12}\]\s*$", re.IGNORECASE)


# --- Tier 0 (triage) -------------------------------------------------------


class BrowsingEventRequest(_Request):
    """What a signed-in user is looking at in the product."""

    customer_id: CustomerId
    page: str = Field(min_length=1, max_length=512, description="Page path or screen name.")
    feature: str = Field(default="", max_length=128)
    dwell_seconds: StrictInt = Field(default=0, ge=0, le=86_400)
    recent_errors: list[Annotated[str, Field(max_length=256)]] = Field(default_factory=list, max_length=20)
    search_query: str = Field(default="", max_length=512)
    dismissed_doc_ids: list[Annotated[str, Field(max_length=256)]] = Field(default_factory=list, max_length=100)

    def to_proto(self, tenant_id: str) -> triage_pb2.SuggestForContextRequest:
        return triage_pb2.SuggestForContextRequest(
            customer=customer_pb2.CustomerRef(tenant_id=tenant_id, customer_id=self.customer_id),
            context=triage_pb2.BrowsingContext(
                page=self.page,
                feature=self.feature,
                dwell_seconds=self.dwell_seconds,
                recent_errors=self.recent_errors,
                search_query=self.search_query,
            ),
            dismissed_doc_ids=self.dismissed_doc_ids,
        )


class Suggestion(BaseModel):
    doc_id: str
    title: str
    snippet: str = Field(description="One-sentence tip.")
    url: str
    relevance: float
    reason: str
    kind: Literal["unspecified", "article", "tip"] = Field(description="Link an article, or show the tip inline.")


class SuggestionReply(BaseModel):
    suggestion: Suggestion | None = Field(description="null means: show nothing.")
    no_suggestion_reason: str | None = Field(description="Why nothing is suggested, e.g. 'rate_limited'.")
    retry_after_seconds: int | None = Field(default=None, description="When rate-limited: seconds until the next.")

    @classmethod
    def from_proto(cls, response: triage_pb2.SuggestForContextResponse) -> SuggestionReply:
        if not response.HasField("suggestion"):
            return cls(
                suggestion=None,
                no_suggestion_reason=response.no_suggestion_reason or None,
                retry_after_seconds=response.retry_after_seconds or None,
            )
        found = response.suggestion
        return cls(
            suggestion=Suggestion(
                doc_id=found.doc_id,
                title=found.title,
                snippet=found.snippet,
                url=found.url,
                relevance=found.relevance,
                reason=found.reason,
                kind=enum_name(triage_pb2.SuggestionKind, found.kind),
            ),
            no_suggestion_reason=None,
        )


# --- knowledge-base documents (retrieval) ----------------------------------


class DocumentIn(_Request):
    doc_id: Id = Field(description="Your stable id; uploading the same id again replaces the document.")
    title: str = Field(min_length=1, max_length=512)
    body: str = Field(min_length=1, max_length=1_000_000)
    format: Literal["markdown", "html", "text"] = "markdown"
    doc_type: Literal["article", "faq", "changelog", "policy", "resolved_ticket"] = "article"
    url: str = Field(default="", max_length=2048)
    product: str = Field(default="", max_length=128)
    version: str = Field(default="", max_length=64)
    updated_at: IsoDateTime | None = None

    def to_proto(self, tenant_id: str) -> retrieval_pb2.Document:
        return retrieval_pb2.Document(
            tenant_id=tenant_id,
            doc_id=self.doc_id,
            title=self.title,
            body=self.body,
            format=proto_enum(retrieval_pb2.DocumentFormat, self.format),
            doc_type=proto_enum(retrieval_pb2.DocumentType, self.doc_type),
            url=self.url,
            product=self.product,
            version=self.version,
            updated_at=to_timestamp(self.updated_at),
        )


class UploadDocumentsRequest(_Request):
    documents: list[DocumentIn] = Field(min_length=1, max_length=200)


class IngestResult(BaseModel):
    doc_id: str
    outcome: Literal["unspecified", "created", "updated", "unchanged"]
    chunk_count: int
    content_hash: str


class UploadDocumentsReply(BaseModel):
    results: list[IngestResult]
    chunks_written: int

    @classmethod
    def from_proto(cls, response: retrieval_pb2.IngestDocumentsResponse) -> UploadDocumentsReply:
        return cls(
            results=[
                IngestResult(
                    doc_id=r.doc_id,
                    outcome=enum_name(retrieval_pb2.IngestOutcome, r.outcome),
                    chunk_count=r.chunk_count,
                    content_hash=r.content_hash,
                )
                for r in response.results
            ],
            chunks_written=response.chunks_written,
        )


class DocumentSummary(BaseModel):
    doc_id: str
    title: str
    url: str
    doc_type: DocType
    product: str
    version: str
    updated_at: datetime | None
    content_hash: str
    chunk_count: int


class DocumentListReply(BaseModel):
    documents: list[DocumentSummary]
    next_page_token: str | None

    @classmethod
    def from_proto(cls, response: retrieval_pb2.ListDocumentsResponse) -> DocumentListReply:
        return cls(
            documents=[
                DocumentSummary(
                    doc_id=d.doc_id,
                    title=d.title,
                    url=d.url,
                    doc_type=enum_name(retrieval_pb2.DocumentType, d.doc_type),
                    product=d.product,
                    version=d.version,
                    updated_at=_time(d, "updated_at"),
                    content_hash=d.content_hash,
                    chunk_count=d.chunk_count,
                )
                for d in response.documents
            ],
            next_page_token=response.next_page_token or None,
        )


class DeleteDocumentReply(BaseModel):
    doc_id: str
    deleted: Literal[True] = True


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


class IntentCorrection(_Request):
    original_label: str = Field(min_length=1, max_length=128)
    corrected_label: str = Field(min_length=1, max_length=128)


class AgentReplyRequest(_Request):
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


class ResolveRequest(_Request):
    resolution: str = Field(min_length=1, max_length=2000, description="How it was resolved, in words.")
    expected_version: StrictInt = _expected_version()


class AssignRequest(_Request):
    expected_version: StrictInt = _expected_version()


class DismissRequest(_Request):
    customer_id: CustomerId


class DismissReply(BaseModel):
    newly_dismissed: bool = Field(description="False when this user had already dismissed it.")


# --- insights and feedback (escalation) -------------------------------------


class TopicPoint(BaseModel):
    day: datetime | None
    contacts: int
    mean_confidence: float
    automation_rate: float
    escalation_rate: float
    edit_rate: float
    mean_csat: float = Field(description="Mean satisfaction (1-5) of the handoffs rated that day; 0 when none.")
    csat_ratings: int = Field(description="Handoffs rated that day.")


class TopicSeries(BaseModel):
    topic: str
    points: list[TopicPoint]
    confidence_drop_flagged: bool
    confidence_drop_detail: str = Field(description="Why the topic was flagged, in words; empty when not.")


class ReliabilityBin(BaseModel):
    lower: float = Field(description="Lower edge of the confidence interval (inclusive).")
    upper: float = Field(description="Upper edge (exclusive, except 1.0).")
    count: int = Field(description="Judged answers whose confidence fell in the interval.")
    mean_confidence: float
    accuracy: float = Field(description="Share of them judged right.")


class Reliability(BaseModel):
    """The confidence's reliability diagram: judged answers binned by confidence."""

    bins: list[ReliabilityBin] = Field(description="Ten bins of width 0.1, lowest first; empty bins have count 0.")
    judged: int = Field(description="Judged answers in all bins.")
    judged_by_agents: int = Field(description="Of those, judged by an agent's reply on a handoff.")
    judged_by_customers: int = Field(description="Of those, rated by the customer.")
    ece: float = Field(description="Expected calibration error: count-weighted mean |accuracy - mean_confidence|.")

    @classmethod
    def from_proto(cls, reliability: escalation_pb2.Reliability) -> Reliability:
        return cls(
            bins=[
                ReliabilityBin(
                    lower=b.lower, upper=b.upper, count=b.count, mean_confidence=b.mean_confidence, accuracy=b.accuracy
                )
                for b in reliability.bins
            ],
            judged=reliability.judged,
            judged_by_agents=reliability.judged_by_agents,
            judged_by_customers=reliability.judged_by_customers,
            ece=reliability.ece,
        )


class TopicInsightsReply(BaseModel):
    topics: list[TopicSeries]
    reliability: Reliability

    @classmethod
    def from_proto(cls, response: escalation_pb2.GetTopicInsightsResponse) -> TopicInsightsReply:
        return cls(
            reliability=Reliability.from_proto(response.reliability),
            topics=[
                TopicSeries(
                    topic=t.topic,
                    confidence_drop_flagged=t.confidence_drop_flagged,
                    confidence_drop_detail=t.confidence_drop_detail,
                    points=[
                        TopicPoint(
                            day=_time(p, "day"),
                            contacts=p.contacts,
                            mean_confidence=p.mean_confidence,
                            automation_rate=p.automation_rate,
                            escalation_rate=p.escalation_rate,
                            edit_rate=p.edit_rate,
                            mean_csat=p.mean_csat,
                            csat_ratings=p.csat_ratings,
                        )
                        for p in t.points
                    ],
                )
                for t in response.topics
            ],
        )


class KnowledgeGap(BaseModel):
    gap_id: str
    suggested_title: str
    question_count: int
    examples: list[str]
    last_seen: datetime | None


class KnowledgeGapsReply(BaseModel):
    gaps: list[KnowledgeGap]

    @classmethod
    def from_proto(cls, response: escalation_pb2.ListKnowledgeGapsResponse) -> KnowledgeGapsReply:
        return cls(
            gaps=[
                KnowledgeGap(
                    gap_id=g.gap_id,
                    suggested_title=g.suggested_title,
                    question_count=g.question_count,
                    examples=list(g.examples),
                    last_seen=_time(g, "last_seen"),
                )
                for g in response.gaps
            ]
        )


class FeedbackExportReply(BaseModel):
    record_count: int
    jsonl: str = Field(description='JSON Lines, one {"prompt","rejected","chosen"} object per line.')
    resume_since: datetime | None = Field(description="Set when the export stopped at its size limit: ask again "
                                          "with since set to this.")

    @classmethod
    def from_proto(cls, response: escalation_pb2.ExportFeedbackResponse) -> FeedbackExportReply:
        return cls(record_count=response.record_count, jsonl=response.jsonl,
                   resume_since=_time(response, "resume_since"))


class IntentCorrectionsReply(BaseModel):
    example_count: int
    jsonl: str = Field(description='JSON Lines of {"text","label"}: what triage\'s Retrain and train CLI accept.')


# --- usage events and outreach ---------------------------------------------


class UsageEventIn(_Request):
    event_id: str = Field(min_length=1, max_length=128, description="Unique id; a repeat is counted once.")
    account_id: str = Field(min_length=1, max_length=256)
    occurred_at: IsoDateTime
    feature: str = Field(default="", max_length=128)
    endpoint: str = Field(default="", max_length=256)
    status_code: StrictInt = Field(default=0, ge=0, le=999)
    error_code: str = Field(default="", max_length=64)
    count: StrictInt = Field(default=1, ge=1, le=1_000_000)
    client_version: str = Field(default="", max_length=64)

    def to_proto(self, tenant_id: str) -> outreach_pb2.UsageEvent:
        return outreach_pb2.UsageEvent(
            event_id=self.event_id,
            tenant_id=tenant_id,
            account_id=self.account_id,
            occurred_at=to_timestamp(self.occurred_at),
            feature=self.feature,
            endpoint=self.endpoint,
            status_code=self.status_code,
            error_code=self.error_code,
            count=self.count,
            client_version=self.client_version,
        )


class UsageEventsRequest(_Request):
    events: list[UsageEventIn] = Field(min_length=1, max_length=1000)


class RejectedEvent(BaseModel):
    event_id: str
    reason: str


class UsageEventsReply(BaseModel):
    accepted: int
    duplicates: int
    late: int = Field(description="Accepted events whose day was already closed; they amend its aggregates.")
    rejected: list[RejectedEvent]

    @classmethod
    def from_proto(cls, response: outreach_pb2.RecordUsageResponse) -> UsageEventsReply:
        return cls(
            accepted=response.accepted,
            duplicates=response.duplicates,
            late=response.late,
            rejected=[RejectedEvent(event_id=r.event_id, reason=r.reason) for r in response.rejected],
        )


class Evidence(BaseModel):
    statement: str
    metric: str
    before: float
    after: float


def _evidence(items: Any) -> list[Evidence]:
    return [Evidence(statement=e.statement, metric=e.metric, before=e.before, after=e.after) for e in items]


class RiskFinding(BaseModel):
    finding_id: str
    account_ids: list[str]
    kind: Literal["unspecified", "activity_drop", "error_spike", "release_cluster", "churn_trend"]
    feature: str
    endpoint: str
    error_code: str
    release: str
    evidence: list[Evidence]
    detected_at: datetime | None
    cause: str = Field(description="One-line analysed cause.")
    severity: float = Field(description="In [0, 1]; findings come most severe first.")
    suggested_fix: str = Field(description="Fix or next step from the best knowledge-base passage; may be empty.")
    sources: list[Citation] = Field(description="Passages that explain or fix it.")
    knowledge_unavailable: bool

    @classmethod
    def from_proto(cls, finding: outreach_pb2.RiskFinding) -> RiskFinding:
        return cls(
            finding_id=finding.finding_id,
            account_ids=list(finding.account_ids),
            kind=enum_name(outreach_pb2.RiskKind, finding.kind),
            feature=finding.feature,
            endpoint=finding.endpoint,
            error_code=finding.error_code,
            release=finding.release,
            evidence=_evidence(finding.evidence),
            detected_at=_time(finding, "detected_at"),
            cause=finding.cause,
            severity=finding.severity,
            suggested_fix=finding.suggested_fix,
            sources=[Citation.from_proto(c) for c in finding.sources],
            knowledge_unavailable=finding.knowledge_unavailable,
        )


class DetectRisksRequest(_Request):
    as_of: IsoDateTime | None = Field(default=None, description="Evaluate as of this time; now when omitted.")


class DetectRisksReply(BaseModel):
    findings: list[RiskFinding]


DraftStateName = Literal["pending_review", "approved", "rejected", "sent"]


class OutreachDraft(BaseModel):
    draft_id: str
    account_id: str = Field(description="The one account it goes to; empty for a draft to several (recipients).")
    recipient_account_ids: list[str] = Field(
        description="Every account it goes to: account_id alone, or the accounts of a cross-customer incident."
    )
    finding_id: str
    subject: str
    body: str
    state: Literal["unspecified", "pending_review", "approved", "rejected", "sent"]
    created_at: datetime | None
    generator: str = Field(description="'llm' or 'template' (the deterministic fallback).")
    reviewer_id: str | None
    original_body: str = Field(description="Body as first drafted, before a reviewer's edit.")
    sources: list[Citation] = Field(description="Passages the text is grounded in (its lineage).")

    @classmethod
    def from_proto(cls, draft: outreach_pb2.OutreachDraft) -> OutreachDraft:
        return cls(
            draft_id=draft.draft_id,
            account_id=draft.account_id,
            recipient_account_ids=list(draft.recipient_account_ids) or ([draft.account_id] if draft.account_id else []),
            finding_id=draft.finding_id,
            subject=draft.subject,
            body=draft.body,
            state=enum_name(outreach_pb2.DraftState, draft.state),
            created_at=_time(draft, "created_at"),
            generator=draft.generator,
            reviewer_id=draft.reviewer_id or None,
            original_body=draft.original_body,
            sources=[Citation.from_proto(c) for c in draft.lineage.sources],
        )


class SkippedAccount(BaseModel):
    account_id: str
    reason: str = Field(description="'opted_out', 'frequency_cap', 'churned' or 'no_contact'.")


class DraftsReply(BaseModel):
    drafts: list[OutreachDraft]
    skipped: list[SkippedAccount] = Field(default_factory=list, description="Affected accounts that got no draft.")


class ReviewDraftRequest(_Request):
    action: Literal["approve", "edit", "reject"]
    edited_body: str | None = Field(default=None, min_length=1, max_length=20_000, description="For action edit.")


class AccountIn(_Request):
    account_id: str = Field(min_length=1, max_length=256, description="As in usage events.")
    name: str = Field(default="", max_length=256)
    contact_name: str = Field(default="", max_length=128, description="First name messages are addressed to.")
    contact_email: str = Field(default="", max_length=320)
    csm_name: str = Field(default="", max_length=128)
    csm_email: str = Field(default="", max_length=320)
    timezone: str = Field(default="", max_length=64, description="IANA time zone, for quiet hours; UTC when empty.")
    opted_out: StrictBool = False
    churned_at: IsoDateTime | None = None

    def to_proto(self, tenant_id: str) -> outreach_pb2.Account:
        return outreach_pb2.Account(
            tenant_id=tenant_id,
            account_id=self.account_id,
            name=self.name,
            contact_name=self.contact_name,
            contact_email=self.contact_email,
            csm_name=self.csm_name,
            csm_email=self.csm_email,
            timezone=self.timezone,
            opted_out=self.opted_out,
            churned_at=to_timestamp(self.churned_at),
        )


class UpsertAccountsRequest(_Request):
    accounts: list[AccountIn] = Field(min_length=1, max_length=1000)


class UpsertAccountsReply(BaseModel):
    created: int
    updated: int


# --- conversation history (concierge) -----------------------------------------


def _rating(rating: int) -> Any:
    name = enum_name(concierge_pb2.TurnRating, rating)
    return None if name == "unspecified" else name


class RateTurnRequest(_Request):
    customer_id: CustomerId = Field(description="Whose conversation it is.")
    rating: Literal["helpful", "not_helpful"] = Field(description="The customer's verdict on the answer.")

    def to_proto(self, tenant_id: str, conversation_id: str, turn_index: int) -> concierge_pb2.RateTurnRequest:
        return concierge_pb2.RateTurnRequest(
            customer=customer_pb2.CustomerRef(tenant_id=tenant_id, customer_id=self.customer_id),
            conversation_id=conversation_id,
            turn_index=turn_index,
            rating=proto_enum(concierge_pb2.TurnRating, self.rating),
        )


class RatingReply(BaseModel):
    changed: bool = Field(description="False when the turn already had this same rating.")


class ConversationTurn(BaseModel):
    customer_text: str
    outcome: MessageReply
    created_at: datetime | None
    rating: Literal["helpful", "not_helpful"] | None = Field(description="The customer's verdict; null if none.")


class ConversationReply(BaseModel):
    conversation_id: str
    messages: list[ConversationMessage]
    turns: list[ConversationTurn]

    @classmethod
    def from_proto(cls, conversation_id: str, response: concierge_pb2.GetConversationResponse) -> ConversationReply:
        return cls(
            conversation_id=conversation_id,
            messages=[ConversationMessage.from_proto(m) for m in response.conversation.messages],
            turns=[
                ConversationTurn(
                    customer_text=t.customer_text,
                    outcome=MessageReply.from_proto(conversation_id, t.outcome, trace_id=t.outcome.lineage.trace_id),
                    created_at=_time(t, "created_at"),
                    rating=_rating(t.rating),
                )
                for t in response.turns
            ],
        )


# --- a handoff as a conversation: ratings, deliveries, settings (escalation) ----

# Reopen windows a tenant may set: none (0) to 90 days, as escalation accepts.
MAX_REOPEN_WINDOW_S = 90 * 24 * 3600


class RateHandoffRequest(_Request):
    rating: StrictInt = Field(ge=1, le=5, description="1 (very dissatisfied) to 5 (very satisfied).")
    comment: str = Field(default="", max_length=2000)

    def to_proto(self, tenant_id: str, customer_id: str, handoff_id: str) -> escalation_pb2.RateHandoffRequest:
        return escalation_pb2.RateHandoffRequest(
            customer=customer_pb2.CustomerRef(tenant_id=tenant_id, customer_id=customer_id),
            handoff_id=handoff_id,
            rating=self.rating,
            comment=self.comment,
        )


class HandoffRatingReply(BaseModel):
    changed: bool = Field(description="False when the handoff already had this same rating.")
    csat_rating: int = Field(description="The rating now recorded, 1 to 5.")


class Delivery(BaseModel):
    """One agent message for a channel integration to deliver."""

    message: ThreadMessage = Field(description="Its message_id is the integration's idempotency key.")
    conversation_id: str
    handoff_id: str
    channel: Literal["unspecified", "chat", "email", "api"]
    customer_id: str = Field(description="Who to deliver it to.")
    reference: str = Field(description="The handoff's reference, e.g. for a subject line.")
    cursor: str = Field(description="Position in the feed; pass the last one as `after`.")

    @classmethod
    def from_proto(cls, delivery: escalation_pb2.Delivery) -> Delivery:
        message = delivery.message
        return cls(
            message=ThreadMessage.from_proto(message),
            conversation_id=message.conversation_id,
            handoff_id=message.handoff_id,
            channel=enum_name(conversation_pb2.Channel, message.channel),
            customer_id=delivery.customer.customer_id,
            reference=delivery.reference,
            cursor=delivery.cursor,
        )


class DeliveriesReply(BaseModel):
    deliveries: list[Delivery] = Field(description="Oldest first.")
    next_cursor: str = Field(description="Pass as `after` for what comes next (the same one when nothing came).")

    @classmethod
    def from_proto(cls, response: escalation_pb2.ListDeliveriesResponse) -> DeliveriesReply:
        return cls(
            deliveries=[Delivery.from_proto(d) for d in response.deliveries], next_cursor=response.next_cursor
        )


class HandoffSettingsRequest(_Request):
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
