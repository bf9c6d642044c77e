"""Bodies of the conversations router (gateway/routes/conversations.py): chat messages, whole or
streamed, a conversation's history and ratings, email intake, Tier-0 browsing events, the caller.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictInt

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import conversation_pb2, customer_pb2
from gateway.schemas.common import (
    Citation,
    CustomerId,
    Id,
    RequestBody,
    enum_name,
    proto_enum,
    time_field,
    whole_seconds,
)

# --- the caller ------------------------------------------------------------


class Me(BaseModel):
    """Who an API key belongs to (the console asks once, to learn its tenant)."""

    key_id: str
    tenant_id: str
    role: Literal["channel", "agent", "admin"]
    name: str


# --- conversations (concierge) -------------------------------------------


class Customer(RequestBody):
    tenant_id: Id | None = Field(
        default=None, description="Tenant (the company using aftercare); the API key's tenant when omitted."
    )
    customer_id: CustomerId = Field(description="The tenant's id of the end customer.")

    def to_proto(self, tenant_id: str) -> customer_pb2.CustomerRef:
        return customer_pb2.CustomerRef(tenant_id=tenant_id, customer_id=self.customer_id)


class ActionReply(RequestBody):
    """The customer's explicit answer to the action the previous reply proposed (its Yes / No buttons)."""

    action_id: str = Field(min_length=1, max_length=128, description="The proposed action's `action_id`.")
    fingerprint: str = Field(
        min_length=1, max_length=128,
        description="The proposed action's `fingerprint`: a yes to anything else is refused.",
    )
    confirmed: bool = Field(description="True for yes, false for no.")

    def to_proto(self) -> concierge_pb2.ActionReply:
        return concierge_pb2.ActionReply(
            action_id=self.action_id, fingerprint=self.fingerprint, confirmed=self.confirmed
        )


class PostMessageRequest(RequestBody):
    text: str = Field(min_length=1, max_length=4000, description="The customer's new message.")
    customer: Customer
    channel: Literal["chat", "email", "api"] = "chat"
    client_message_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Your id of this message: a retry with the same id gets the stored answer, not a second one.",
    )
    action_reply: ActionReply | None = Field(
        default=None,
        description="The customer's yes or no to `pending_action` of the previous reply; `text` is then a short "
        "echo such as 'Yes'.",
    )

    def to_proto(self, conversation_id: str, tenant_id: str, release_id: str = "") -> concierge_pb2.ConverseRequest:
        request = concierge_pb2.ConverseRequest(
            conversation_id=conversation_id,
            customer=self.customer.to_proto(tenant_id),
            text=self.text,
            channel=proto_enum(conversation_pb2.Channel, self.channel),
            client_message_id=self.client_message_id or "",
            release_id=release_id,
        )
        if self.action_reply is not None:
            request.action_reply.CopyFrom(self.action_reply.to_proto())
        return request


class PendingAction(BaseModel):
    """An action on the customer's account that the assistant proposed (or acted on)."""

    action_id: str
    tool: str = Field(description="Catalog tool, e.g. 'cancel_pending_order'.")
    summary: str = Field(description="Every detail of it in words: what the customer says yes to.")
    fingerprint: str = Field(description="Send it back in `action_reply` with the customer's yes or no.")
    state: Literal[
        "unspecified", "proposed", "awaiting_approval", "executed", "cancelled", "rejected", "failed", "dry_run"
    ]
    approval_reasons: list[str] = Field(description="Why an agent must approve it, when one must.")

    @classmethod
    def from_proto(cls, pending: concierge_pb2.PendingAction) -> PendingAction:
        return cls(
            action_id=pending.action_id,
            tool=pending.tool,
            summary=pending.summary,
            fingerprint=pending.fingerprint,
            state=enum_name(concierge_pb2.ActionState, pending.state),
            approval_reasons=list(pending.approval_reasons),
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
    decision: Literal["unspecified", "answered", "escalated", "clarify", "forwarded", "confirm_action", "acted"] = (
        Field(
            description="'forwarded': a human has the conversation; the message went to them, `reply` is empty "
            "and the agent answers on the conversation (its event stream). 'confirm_action': `pending_action` "
            "awaits the customer's explicit yes (nothing is done before it). 'acted': the confirmed action was "
            "done, sent to an agent for approval, or cancelled (`pending_action.state` says which)."
        )
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
    release_id: str | None = Field(
        default=None,
        description="The tenant's release that served this turn (its lineage, e.g. 'r3'); null for a turn "
        "served before releases.",
    )
    # Absent rather than null when unset: a knowledge-base reply reads as it always has.
    pending_action: PendingAction | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Present only with 'confirm_action' (the action proposed: show its summary with Yes / No) "
        "and 'acted' (the action acted on), and when an action still waits for the customer's answer.",
    )
    verified_customer_id: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Present only once the customer's identity was verified in this conversation: their id in "
        "the company's system.",
    )

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
            decision_reason=_reason_code(response),
            handoff_id=response.handoff_id or None,
            handoff_reference=response.handoff_reference or None,
            expected_wait_s=whole_seconds(response, "expected_wait"),
            threshold=response.confidence.threshold,
            turn_index=response.turn_index,
            trace_id=trace_id,
            release_id=response.lineage.release_id or None,
            pending_action=(
                PendingAction.from_proto(response.pending_action) if response.HasField("pending_action") else None
            ),
            verified_customer_id=response.verified_customer_id or None,
        )


def _reason_code(response: concierge_pb2.ConverseResponse) -> str:
    """The decision reason's stable code: the typed reason's lowercase name ("low_confidence",
    "with_agent"); the deprecated string only where this build cannot name the reason (unset,
    or one newer than this build)."""
    code = str(enum_name(concierge_pb2.DecisionReason, response.reason))
    return response.decision_reason if code == "unspecified" else code


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
            sent_at=time_field(message, "sent_at"),
            author_name=message.author_name or None,
        )


# --- a conversation's history and its turns' ratings (concierge) -----------


def _rating(rating: int) -> Any:
    name = enum_name(concierge_pb2.TurnRating, rating)
    return None if name == "unspecified" else name


class RateTurnRequest(RequestBody):
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
                    created_at=time_field(t, "created_at"),
                    rating=_rating(t.rating),
                )
                for t in response.turns
            ],
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


class EmailIntakeRequest(RequestBody):
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


class EmailIntakeReply(MessageReply):
    customer_id: str = Field(
        description="The sender's pseudonymous customer id (the address is kept only for replies): "
        "use it to read the conversation back."
    )


# --- Tier 0 (triage) -------------------------------------------------------


class BrowsingEventRequest(RequestBody):
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


class DismissRequest(RequestBody):
    customer_id: CustomerId


class DismissReply(BaseModel):
    newly_dismissed: bool = Field(description="False when this user had already dismissed it.")


# --- rating a handoff (escalation) ----------------------------------------


class RateHandoffRequest(RequestBody):
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
