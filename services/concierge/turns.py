"""One customer message being answered (the Turn, with the tenant's release that serves it)
and what the concierge worked out for it (the Attempt); the idempotency keys of a message and
of an answered turn; the conversation as escalation and triage receive it (personal data masked).

A Turn marked `shadow` is the same message decided again by a release running in shadow
(shadow.py): a copy of the live turn, with the live turn's triage verdict and search results,
that decides without handing over, phrasing or recording anything."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.retrieval.v1 import retrieval_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import answer_pb2, conversation_pb2
from servicekit.pii import mask
from services.concierge.matching import Signals
from services.concierge.persona import Persona
from services.concierge.releases import ServingRelease
from services.concierge.store import PendingForward, StoredConversation, StoredTurn
from services.concierge.streaming import Events

Decision = concierge_pb2.Decision


@dataclass
class Attempt:
    """What the concierge worked out for one message, before deciding."""

    reply: str = ""
    # Passages the reply is grounded in (shown to the customer with an answer).
    citations: list[answer_pb2.Citation] = field(default_factory=list)
    # Every relevant passage the AI looked at (handed to the agent on escalation).
    considered: list[answer_pb2.Citation] = field(default_factory=list)
    signals: Signals | None = None
    model: str = ""
    prompt_version: str = ""


@dataclass(frozen=True)
class Searched:
    """What retrieval found for a message: answer units and passages, and the question as it
    was searched (typos read as the knowledge base's words), which the match is measured on."""

    units: list[retrieval_pb2.SearchHit]
    passages: list[retrieval_pb2.SearchHit]
    query: str


@dataclass
class Turn:
    """One message being answered: the request, its stored conversation, triage."""

    request: concierge_pb2.ConverseRequest
    persona: Persona
    history: list[str]
    masked_text: str
    stored: StoredConversation | None = None
    standalone_query: str = ""
    triaged: triage_pb2.TriageContactResponse | None = None
    # Triage was asked (triaged stays None when it could not answer): asked once a turn.
    triage_asked: bool = False
    events: Events | None = None
    # A reply to the assistant ("thanks"): not a contact, so escalation's rates do not count it.
    acknowledgement: bool = False
    # The handoff escalation could not take (see ConciergeServicer._escalate): held in the outbox, made later.
    held_handoff: escalation_pb2.CreateHandoffRequest | None = None
    # The account request this turn asked a detail of (stored with the turn; see ConversationRow.account_draft).
    account_draft: dict[str, Any] | None = None
    # The tenant's release serving this turn (its persona is `persona`); None without releases.
    release: ServingRelease | None = None
    # What the answer units' search and the passages' search found, once they ran: a shadow
    # decision of the same message reuses them instead of searching again.
    searched: Searched | None = None
    # Decided in shadow (shadow.py): never shown to the customer, no handoff, no phrasing, no record.
    shadow: bool = False

    @property
    def position(self) -> int:
        """This message's position in the stored conversation."""
        return len(self.stored.turns) if self.stored else 0

    @property
    def intent(self) -> str:
        return self.triaged.intent.label if self.triaged else ""

    @property
    def release_id(self) -> str:
        """The serving release's id, for lineage ("" without releases)."""
        return self.release.release_id if self.release else ""

    @property
    def llm_model(self) -> str:
        """The model the serving release asks the LLM server for ("" keeps the client's)."""
        return self.release.llm_model if self.release else ""


def message_key(turn: Turn) -> str:
    """One key per customer message: the channel's own message id, however often it retries
    it (one handoff, one outcome); without one, the message's position in the conversation,
    so that the same words sent again later ("Any update?") are a new message."""
    request = turn.request
    message = f"id:{request.client_message_id}" if request.client_message_id else f"turn:{turn.position}"
    text = f"{request.customer.tenant_id}|{request.conversation_id}|{message}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def turn_key(tenant_id: str, conversation_id: str, turn_index: int) -> str:
    """One key per answered turn, however often it is rated: escalation keeps the latest verdict."""
    return hashlib.sha256(f"{tenant_id}|{conversation_id}|{turn_index}".encode()).hexdigest()[:32]


def had_handoff(stored: StoredConversation | None) -> bool:
    """Whether a human has had the conversation: a turn handed over or forwarded (with or
    without a handoff id: a handoff held for escalation is made later), or an action sent to
    an agent for approval (the agent's decision reaches the customer on the conversation)."""
    handed = (Decision.DECISION_ESCALATED, Decision.DECISION_FORWARDED)
    approval = concierge_pb2.DECISION_REASON_ACTION_AWAITING_APPROVAL
    return stored is not None and any(
        turn.outcome.decision in handed or turn.outcome.reason == approval for turn in stored.turns
    )


def _ai_said(past: StoredTurn) -> bool:
    """Whether a stored turn has an AI reply for the agent to read: a forwarded message has none
    (a held one's notice is about delivery, not the question)."""
    return bool(past.outcome.reply) and past.outcome.decision != Decision.DECISION_FORWARDED


def stored_conversation(stored: StoredConversation | None, held: PendingForward) -> conversation_pb2.Conversation:
    """A stored conversation's last turns, as a handoff's conversation (already masked)."""
    conversation = conversation_pb2.Conversation(conversation_id=held.conversation_id, channel=held.channel)
    for past in (stored.turns if stored else [])[-10:]:
        conversation.messages.add(role=conversation_pb2.ROLE_CUSTOMER, text=past.customer_text)
        if _ai_said(past):
            conversation.messages.add(role=conversation_pb2.ROLE_ASSISTANT, text=past.outcome.reply)
    return conversation


def masked_conversation(turn: Turn) -> conversation_pb2.Conversation:
    """The conversation so far with the new message, personal data masked."""
    conversation = conversation_pb2.Conversation(
        conversation_id=turn.request.conversation_id, channel=turn.request.channel
    )
    for past in (turn.stored.turns if turn.stored else [])[-10:]:
        conversation.messages.add(role=conversation_pb2.ROLE_CUSTOMER, text=mask(past.customer_text))
        if _ai_said(past):
            conversation.messages.add(role=conversation_pb2.ROLE_ASSISTANT, text=past.outcome.reply)
    conversation.messages.add(role=conversation_pb2.ROLE_CUSTOMER, text=turn.masked_text)
    return conversation
