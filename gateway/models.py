"""Request and response bodies of the HTTP API, and their translation to and
from the protobuf messages of the backends.

This is the only place payloads are pydantic models; between services they
are protobuf. Enum values are exposed in lowercase without their prefix
(DECISION_ANSWERED -> "answered").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from google.protobuf.message import Message as ProtoMessage
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ConfigDict, Field

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.retrieval.v1 import retrieval_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import answer_pb2, conversation_pb2, customer_pb2

# Ids in paths and bodies: what conversation ids, tenant ids and handoff ids look like.
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
Id = Annotated[str, Field(pattern=ID_PATTERN, examples=["demo"])]


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


def _time(message: ProtoMessage, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    timestamp: Timestamp = getattr(message, field)
    moment: datetime = timestamp.ToDatetime(tzinfo=UTC)
    return moment


# --- shared ----------------------------------------------------------------


class _Request(BaseModel):
    # Unknown fields are refused: a misspelt optional field would otherwise be ignored silently.
    model_config = ConfigDict(extra="forbid")


class Customer(_Request):
    tenant_id: Id = Field(description="Tenant (the company using aftercare).")
    customer_id: str = Field(min_length=1, max_length=256, description="The tenant's id of the end customer.")

    def to_proto(self) -> customer_pb2.CustomerRef:
        return customer_pb2.CustomerRef(tenant_id=self.tenant_id, customer_id=self.customer_id)


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

    def to_proto(self, conversation_id: str) -> concierge_pb2.ConverseRequest:
        return concierge_pb2.ConverseRequest(
            conversation_id=conversation_id,
            customer=self.customer.to_proto(),
            text=self.text,
            channel=proto_enum(conversation_pb2.Channel, self.channel),
        )


class MessageReply(BaseModel):
    conversation_id: str
    reply: str = Field(description="Text to show: the answer, or the transparent handoff message.")
    citations: list[Citation]
    confidence: float = Field(description="Calibrated probability that the answer is right.")
    decision: Literal["answered", "escalated", "clarify"]
    decision_reason: str = Field(description="Stable reason code, e.g. 'confident', 'low_confidence'.")
    handoff_id: str | None = Field(description="Set when the conversation was handed to a human.")
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
            decision=enum_name(concierge_pb2.Decision, response.decision),
            decision_reason=response.decision_reason,
            handoff_id=response.handoff_id or None,
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
    state: Literal["unspecified", "waiting", "assigned", "resolved"]
    assigned_agent_id: str | None
    context: ContextPackage | None
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_proto(cls, handoff: escalation_pb2.Handoff) -> HandoffReply:
        conversation = handoff.conversation
        return cls(
            handoff_id=handoff.handoff_id,
            tenant_id=handoff.customer.tenant_id,
            customer_id=handoff.customer.customer_id,
            conversation_id=conversation.conversation_id,
            channel=enum_name(conversation_pb2.Channel, conversation.channel),
            messages=[
                ConversationMessage(
                    role=enum_name(conversation_pb2.Role, m.role),
                    text=m.text,
                    sent_at=_time(m, "sent_at"),
                )
                for m in conversation.messages
            ],
            reason=enum_name(escalation_pb2.HandoffReason, handoff.reason),
            queue=handoff.queue,
            priority=handoff.priority,
            state=enum_name(escalation_pb2.HandoffState, handoff.state),
            assigned_agent_id=handoff.assigned_agent_id or None,
            context=ContextPackage.from_proto(handoff.context) if handoff.HasField("context") else None,
            created_at=_time(handoff, "created_at"),
            updated_at=_time(handoff, "updated_at"),
        )


# --- knowledge base (retrieval) --------------------------------------------

DocType = Literal["unspecified", "article", "faq", "changelog", "policy", "resolved_ticket"]


class SearchRequest(_Request):
    query: str = Field(min_length=1, max_length=2000)
    top_k: int = Field(default=5, ge=1, le=50)
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
    customer_id: str = Field(min_length=1, max_length=256)

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
