"""Conversations in the relational store (SQLite by default, PostgreSQL by
DATABASE_URL). Sync SQLAlchemy: the servicer calls these methods via
asyncio.to_thread; a turn and its conversation's counter are written in one
transaction, so a turn is either fully stored or not at all."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from google.protobuf import json_format
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aftercare.concierge.v1 import concierge_pb2
from aftercare.type.v1 import conversation_pb2, customer_pb2
from servicekit.database import utcnow
from servicekit.errors import FailedPrecondition, NotFound
from services.concierge.migrations import SCHEMA
from services.concierge.models import ConversationRow, PendingForwardRow, TurnRatingRow, TurnRow

log = structlog.get_logger("services.concierge.store")

# Racing writers of one conversation retry with the next position this often.
_WRITE_ATTEMPTS = 4

_T = TypeVar("_T")


async def off_loop(call: Callable[..., _T], *args: object, **kwargs: object) -> _T:
    """A store call off the event loop. Not stored means not acknowledged (nothing is
    half-written); the runtime answers a database that is down with UNAVAILABLE."""
    return await asyncio.to_thread(call, *args, **kwargs)


@dataclass(frozen=True)
class StoredTurn:
    customer_text: str
    standalone_query: str
    outcome: concierge_pb2.ConverseResponse
    created_at: dt.datetime
    rating: int = concierge_pb2.TURN_RATING_UNSPECIFIED


@dataclass(frozen=True)
class RatedTurn:
    """A stored rating and what escalation needs to judge the answer."""

    changed: bool
    confidence: float
    answered_at: dt.datetime


@dataclass(frozen=True)
class StoredConversation:
    customer_id: str
    channel: str
    turns: list[StoredTurn] = field(default_factory=list)
    # The account assistant's state: the customer verified in the conversation ("" before)
    # and the action awaiting their yes (None when none).
    verified_customer_id: str = ""
    pending_action: concierge_pb2.PendingAction | None = None
    # The request waiting for a detail the assistant asked for (see ConversationRow.account_draft).
    account_draft: dict[str, Any] | None = None

    def latest_handoff(self) -> concierge_pb2.ConverseResponse | None:
        """The outcome of the newest turn that handed over (or forwarded) to a human."""
        return next((turn.outcome for turn in reversed(self.turns) if turn.outcome.handoff_id), None)

    def as_proto(self, conversation_id: str) -> concierge_pb2.GetConversationResponse:
        # The channel by its stored name: a message's constructor takes a value's name as the value.
        response = concierge_pb2.GetConversationResponse(
            conversation=conversation_pb2.Conversation(conversation_id=conversation_id, channel=self.channel)
        )
        for turn in self.turns:
            for role, text in (
                (conversation_pb2.ROLE_CUSTOMER, turn.customer_text),
                (conversation_pb2.ROLE_ASSISTANT, turn.outcome.reply),
            ):
                if not text:
                    continue  # a forwarded message: the AI said nothing, the agent answers
                message = response.conversation.messages.add(role=role, text=text)
                message.sent_at.FromDatetime(turn.created_at)
            stored = response.turns.add(customer_text=turn.customer_text, outcome=turn.outcome, rating=turn.rating)
            stored.created_at.FromDatetime(turn.created_at)
        return response


@dataclass(frozen=True)
class PendingForward:
    """A stored customer message that escalation has not taken yet."""

    customer: customer_pb2.CustomerRef
    conversation_id: str
    turn_index: int
    # By its stored name, as StoredConversation.channel.
    channel: str
    message_key: str
    text: str
    handoff_request: bytes | None
    attempts: int


def _pending_key(pending: PendingForward) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        PendingForwardRow.tenant_id == pending.customer.tenant_id,
        PendingForwardRow.conversation_id == pending.conversation_id,
        PendingForwardRow.turn_index == pending.turn_index,
    )


def _outcome(row: TurnRow) -> concierge_pb2.ConverseResponse:
    outcome = concierge_pb2.ConverseResponse()
    json_format.ParseDict(row.outcome, outcome, ignore_unknown_fields=True)
    return outcome


def _pending_action(stored: dict[str, Any] | None) -> concierge_pb2.PendingAction | None:
    if not stored:
        return None
    pending = concierge_pb2.PendingAction()
    json_format.ParseDict(stored, pending, ignore_unknown_fields=True)
    return pending


def _record_account_state(conversation: ConversationRow, outcome: concierge_pb2.ConverseResponse) -> None:
    """The turn's outcome decides the conversation's account state, in the turn's transaction:
    the first verified customer stays; an action still PROPOSED waits for the next turn,
    anything else (done, cancelled, refused, another subject) leaves nothing pending."""
    if outcome.verified_customer_id and not conversation.verified_customer_id:
        conversation.verified_customer_id = outcome.verified_customer_id
    pending = outcome.pending_action
    if outcome.HasField("pending_action") and pending.state == concierge_pb2.ACTION_STATE_PROPOSED:
        conversation.pending_action = json_format.MessageToDict(pending, preserving_proto_field_name=True)
    else:
        conversation.pending_action = None


def _turn(row: TurnRow, rating: int) -> StoredTurn:
    return StoredTurn(row.customer_text, row.standalone_query, _outcome(row), row.created_at, rating)


class OtherCustomersConversation(FailedPrecondition):
    def __init__(self) -> None:
        super().__init__(
            "conversation_id is in use by another customer of this tenant",
            reason="CONVERSATION_OF_ANOTHER_CUSTOMER",
        )


class ConversationStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def migrate(self) -> None:
        """Bring the schema to the latest migration (a no-op when it is there)."""
        SCHEMA.migrate(self._engine)

    def load(self, customer: customer_pb2.CustomerRef, conversation_id: str) -> StoredConversation | None:
        """The conversation with its turns, oldest first; None when it does not exist yet.

        Raises OtherCustomersConversation when the id belongs to another customer.
        """
        with Session(self._engine) as session:
            row = session.get(ConversationRow, (customer.tenant_id, conversation_id))
            if row is None:
                return None
            if row.customer_id != customer.customer_id:
                raise OtherCustomersConversation()
            turns = session.scalars(
                sa.select(TurnRow)
                .where(TurnRow.tenant_id == customer.tenant_id, TurnRow.conversation_id == conversation_id)
                .order_by(TurnRow.turn_index)
            ).all()
            ratings = {
                rated.turn_index: concierge_pb2.TurnRating.Value(rated.rating)
                for rated in session.scalars(
                    sa.select(TurnRatingRow).where(
                        TurnRatingRow.tenant_id == customer.tenant_id,
                        TurnRatingRow.conversation_id == conversation_id,
                    )
                )
            }
            return StoredConversation(
                row.customer_id,
                row.channel,
                [_turn(turn, ratings.get(turn.turn_index, 0)) for turn in turns],
                verified_customer_id=row.verified_customer_id or "",
                pending_action=_pending_action(row.pending_action),
                account_draft=row.account_draft,
            )

    def find_turn(
        self, tenant_id: str, conversation_id: str, client_message_id: str
    ) -> concierge_pb2.ConverseResponse | None:
        """The stored outcome of a message already answered, by the channel's message id."""
        if not client_message_id:
            return None
        with Session(self._engine) as session:
            row = session.scalars(
                sa.select(TurnRow).where(
                    TurnRow.tenant_id == tenant_id,
                    TurnRow.conversation_id == conversation_id,
                    TurnRow.client_message_id == client_message_id,
                ).limit(1)
            ).first()
            return None if row is None else _outcome(row)

    def append(
        self,
        *,
        customer: customer_pb2.CustomerRef,
        conversation_id: str,
        channel: conversation_pb2.Channel,
        client_message_id: str,
        customer_text: str,
        standalone_query: str,
        outcome: concierge_pb2.ConverseResponse,
        forward_key: str = "",
        handoff_request: bytes | None = None,
        account_draft: dict[str, Any] | None = None,
        intent: str = "",
    ) -> concierge_pb2.ConverseResponse:
        """Store one acknowledged turn (with the intent triage gave it); returns the outcome with
        its turn_index set.

        A message id stored already returns the stored outcome (a retry raced us).
        With a forward_key, the message is also queued, in the same transaction, for the
        agent who has the conversation (see pending_forwards), or, with a handoff_request,
        for the handoff that could not be made.
        """
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                return self._append_once(
                    customer, conversation_id, channel, client_message_id, customer_text, standalone_query, outcome,
                    forward_key, handoff_request, account_draft, intent,
                )
            except IntegrityError:
                # Another writer took the position (or created the conversation) first.
                log.info("concierge_turn_write_raced", attempt=attempt)
                stored = self.find_turn(customer.tenant_id, conversation_id, client_message_id)
                if stored is not None:
                    return stored
        raise RuntimeError("could not store the turn after repeated write conflicts")

    def _append_once(
        self,
        customer: customer_pb2.CustomerRef,
        conversation_id: str,
        channel: conversation_pb2.Channel,
        client_message_id: str,
        customer_text: str,
        standalone_query: str,
        outcome: concierge_pb2.ConverseResponse,
        forward_key: str,
        handoff_request: bytes | None,
        account_draft: dict[str, Any] | None,
        intent: str,
    ) -> concierge_pb2.ConverseResponse:
        now = utcnow()
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            conversation = session.get(
                ConversationRow, (customer.tenant_id, conversation_id), with_for_update=True
            )
            if conversation is None:
                conversation = ConversationRow(
                    tenant_id=customer.tenant_id,
                    conversation_id=conversation_id,
                    customer_id=customer.customer_id,
                    channel=conversation_pb2.Channel.Name(channel or conversation_pb2.CHANNEL_CHAT),
                    turn_count=0,
                    created_at=now,
                    updated_at=now,
                    verified_customer_id="",
                )
                session.add(conversation)
                session.flush()
            elif conversation.customer_id != customer.customer_id:
                raise OtherCustomersConversation()
            if client_message_id:
                stored = session.scalars(
                    sa.select(TurnRow).where(
                        TurnRow.tenant_id == customer.tenant_id,
                        TurnRow.conversation_id == conversation_id,
                        TurnRow.client_message_id == client_message_id,
                    ).limit(1)
                ).first()
                if stored is not None:
                    return _outcome(stored)
            stored_outcome = concierge_pb2.ConverseResponse()
            stored_outcome.CopyFrom(outcome)
            stored_outcome.turn_index = conversation.turn_count
            session.add(
                TurnRow(
                    tenant_id=customer.tenant_id,
                    conversation_id=conversation_id,
                    turn_index=conversation.turn_count,
                    client_message_id=client_message_id or None,
                    customer_text=customer_text,
                    standalone_query=standalone_query,
                    reply=outcome.reply,
                    decision=concierge_pb2.Decision.Name(outcome.decision),
                    decision_reason=outcome.decision_reason,
                    confidence=outcome.confidence.score,
                    handoff_id=outcome.handoff_id,
                    model=outcome.lineage.model,
                    prompt_template_version=outcome.lineage.prompt_template_version,
                    calibration_version=outcome.confidence.calibration_version,
                    trace_id=outcome.lineage.trace_id,
                    release_id=outcome.lineage.release_id,
                    intent=intent,
                    sources=[
                        json_format.MessageToDict(source, preserving_proto_field_name=True)
                        for source in outcome.lineage.sources
                    ],
                    outcome=json_format.MessageToDict(stored_outcome, preserving_proto_field_name=True),
                    created_at=now,
                )
            )
            if forward_key:
                session.add(
                    PendingForwardRow(
                        tenant_id=customer.tenant_id,
                        conversation_id=conversation_id,
                        turn_index=conversation.turn_count,
                        customer_id=customer.customer_id,
                        channel=conversation.channel,
                        message_key=forward_key,
                        text=customer_text,
                        handoff_request=handoff_request,
                        attempts=0,
                        created_at=now,
                    )
                )
            _record_account_state(conversation, outcome)
            conversation.account_draft = account_draft
            conversation.turn_count += 1
            conversation.updated_at = now
        return stored_outcome

    def pending_forwards(
        self, tenant_id: str = "", conversation_id: str = "", limit: int = 100
    ) -> list[PendingForward]:
        """Messages still to forward to the agent, oldest first: of one conversation, or of all."""
        query = sa.select(PendingForwardRow).order_by(PendingForwardRow.created_at, PendingForwardRow.turn_index)
        if conversation_id:
            query = query.where(
                PendingForwardRow.tenant_id == tenant_id, PendingForwardRow.conversation_id == conversation_id
            )
        with Session(self._engine) as session:
            return [
                PendingForward(
                    customer=customer_pb2.CustomerRef(tenant_id=row.tenant_id, customer_id=row.customer_id),
                    conversation_id=row.conversation_id,
                    turn_index=row.turn_index,
                    channel=row.channel,
                    message_key=row.message_key,
                    text=row.text,
                    handoff_request=row.handoff_request,
                    attempts=row.attempts,
                )
                for row in session.scalars(query.limit(limit))
            ]

    def forwarded(self, pending: PendingForward) -> None:
        """Escalation has the message: it leaves the outbox (a second delete is a no-op)."""
        with Session(self._engine) as session, session.begin():
            session.execute(sa.delete(PendingForwardRow).where(*_pending_key(pending)))

    def forward_failed(self, pending: PendingForward) -> None:
        with Session(self._engine) as session, session.begin():
            session.execute(
                sa.update(PendingForwardRow).where(*_pending_key(pending))
                .values(attempts=PendingForwardRow.attempts + 1)
            )

    def rate(self, customer: customer_pb2.CustomerRef, conversation_id: str, turn_index: int, rating: int) -> RatedTurn:
        """Store the customer's rating of an answered turn, replacing an earlier one.

        Raises NotFound for a conversation or turn this customer does not have, and
        FailedPrecondition (TURN_NOT_ANSWERED) for a turn that was not an answer.
        """
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                return self._rate_once(customer, conversation_id, turn_index, rating)
            except IntegrityError:
                # A racing first rating of the same turn inserted the row: replace it now.
                log.info("concierge_rating_write_raced", attempt=attempt)
        raise RuntimeError("could not store the rating after repeated write conflicts")

    def _rate_once(
        self, customer: customer_pb2.CustomerRef, conversation_id: str, turn_index: int, rating: int
    ) -> RatedTurn:
        with Session(self._engine) as session, session.begin():
            conversation = session.get(ConversationRow, (customer.tenant_id, conversation_id))
            # Another customer's conversation is "not found": its existence is not theirs to learn.
            if conversation is None or conversation.customer_id != customer.customer_id:
                raise NotFound("no conversation with this id for this customer")
            turn = session.scalars(
                sa.select(TurnRow).where(
                    TurnRow.tenant_id == customer.tenant_id,
                    TurnRow.conversation_id == conversation_id,
                    TurnRow.turn_index == turn_index,
                )
            ).first()
            if turn is None:
                raise NotFound("the conversation has no turn with this index")
            if turn.decision != concierge_pb2.Decision.Name(concierge_pb2.DECISION_ANSWERED):
                raise FailedPrecondition("only an answered turn can be rated", reason="TURN_NOT_ANSWERED")
            name = concierge_pb2.TurnRating.Name(rating)
            stored = session.get(TurnRatingRow, (customer.tenant_id, conversation_id, turn_index))
            changed = stored is None or stored.rating != name
            if stored is None:
                session.add(
                    TurnRatingRow(
                        tenant_id=customer.tenant_id,
                        conversation_id=conversation_id,
                        turn_index=turn_index,
                        rating=name,
                        rated_at=utcnow(),
                    )
                )
            elif changed:
                stored.rating = name
                stored.rated_at = utcnow()
            return RatedTurn(changed=changed, confidence=turn.confidence, answered_at=turn.created_at)
