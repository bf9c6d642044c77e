"""The human part of a conversation: customers' messages for the agent who has
it, escalations added to an open handoff, reopening within the tenant's window,
the thread as read, watched and fed to channel integrations, CSAT and the
per-tenant handoff settings. Sync SQLAlchemy, one transaction per write (the
servicer calls in via asyncio.to_thread).

Rules: a conversation has at most one open handoff (the database's unique index
on open_conversation_id). A customer's message goes to the conversation's newest
handoff: appended while it is open, reopening it when it was resolved within the
reopen window, else not taken (the AI answers). Writes that lose a race (a
sequence number or the conversation taken meanwhile) run again from the start.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
import structlog
from google.protobuf import json_format
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import conversation_pb2, customer_pb2
from servicekit.database import utcnow
from services.escalation import lifecycle
from services.escalation.lifecycle import (
    AGENT_ROLE,
    AI_ACTOR,
    CUSTOMER_ACTOR,
    CUSTOMER_ROLE,
    OPEN_STATES,
    REOPENED,
    RESOLVED,
    describe,
    event_row,
)
from services.escalation.models import HandoffEventRow, HandoffRow, HandoffSettingsRow, ThreadMessageRow
from services.escalation.store import WRITE_ATTEMPTS, HandoffNotFound, WrongState

log = structlog.get_logger("services.escalation.thread")
P = ParamSpec("P")
T = TypeVar("T")


class ConversationNotFound(Exception):
    """The conversation belongs to another customer (reported like a missing one)."""


class _Raced(Exception):
    """The handoff changed between our read and our write: run again."""


@dataclass(frozen=True)
class CustomerMessage:
    tenant_id: str
    customer_id: str
    conversation_id: str
    text: str
    client_message_id: str
    channel: int


@dataclass(frozen=True)
class Appended:
    appended: bool
    handoff: escalation_pb2.Handoff | None = None
    message: escalation_pb2.ThreadMessage | None = None
    reopened: bool = False


@dataclass(frozen=True)
class Marker:
    """What tells a watcher that the conversation's handoff changed."""

    handoff_id: str
    version: int
    updated_at: dt.datetime


def customer_key(client_message_id: str) -> str:
    return f"customer:{client_message_id}"


def escalation_key(idempotency_key: str) -> str:
    return f"escalation:{idempotency_key}"


def _newest_handoff(session: Session, tenant_id: str, conversation_id: str, *, lock: bool = False) -> HandoffRow | None:
    query = (
        sa.select(HandoffRow)
        .where(HandoffRow.tenant_id == tenant_id, HandoffRow.conversation_id == conversation_id)
        .order_by(HandoffRow.created_at.desc(), HandoffRow.handoff_id.desc())
        .limit(1)
    )
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def _guarded_update(session: Session, row: HandoffRow, state: str, now: dt.datetime, **values: Any) -> None:
    """Write the row only if nobody changed it since we read it; a state change is a new version."""
    version = row.version + 1 if state != row.state else row.version
    changed = lifecycle.changed_rows(
        session,
        sa.update(HandoffRow)
        .where(
            HandoffRow.handoff_id == row.handoff_id, HandoffRow.version == row.version, HandoffRow.state == row.state
        )
        .values(state=state, version=version, updated_at=now, **values)
        .execution_options(synchronize_session=False),
    )
    if changed != 1:
        raise _Raced(row.handoff_id)


def _newest_customer_text(conversation: conversation_pb2.Conversation) -> str:
    for message in reversed(conversation.messages):
        if message.role == conversation_pb2.ROLE_CUSTOMER and message.text.strip():
            return message.text
    return ""


class ThreadStore:
    def __init__(self, engine: Engine, default_reopen_window: dt.timedelta) -> None:
        self._engine = engine
        self._default_reopen_window = default_reopen_window

    def _retrying(self, write: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        for _ in range(WRITE_ATTEMPTS):
            try:
                return write(*args, **kwargs)
            except (IntegrityError, _Raced):
                log.info("thread_write_raced", write=write.__name__)
        raise RuntimeError("thread write kept conflicting")

    # --- escalations and customers' messages ----------------------------------------

    def append_escalation(self, request: escalation_pb2.CreateHandoffRequest) -> escalation_pb2.Handoff | None:
        """Add a CreateHandoff to the conversation's open handoff (an ESCALATED_AGAIN event and
        the newest customer message); None when the conversation has no open handoff. A
        repeated key adds nothing twice."""
        if not request.conversation.conversation_id:
            return None
        return self._retrying(self._append_escalation_once, request)

    def _append_escalation_once(self, request: escalation_pb2.CreateHandoffRequest) -> escalation_pb2.Handoff | None:
        tenant_id, key = request.customer.tenant_id, request.idempotency_key
        conversation_id = request.conversation.conversation_id
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            lifecycle.lock_thread_writes(session)
            done = session.scalar(
                sa.select(HandoffEventRow.handoff_id).where(
                    HandoffEventRow.tenant_id == tenant_id, HandoffEventRow.idempotency_key == key
                )
            )
            if done is not None:
                return describe(session, [session.get_one(HandoffRow, done)])[0]
            row = session.scalars(
                sa.select(HandoffRow)
                .where(HandoffRow.tenant_id == tenant_id, HandoffRow.open_conversation_id == conversation_id)
                .with_for_update()
            ).one_or_none()
            if row is None:
                return None
            now = utcnow()
            state = lifecycle.state_after_customer_wrote(row)
            _guarded_update(
                session,
                row,
                state,
                now,
                priority=max(row.priority, request.priority),
                # The agent reads the whole conversation so far.
                conversation=json_format.MessageToDict(request.conversation, preserving_proto_field_name=True),
            )
            message_id = None
            text = _newest_customer_text(request.conversation)
            if text:
                message = lifecycle.add_message(
                    session,
                    row,
                    role=CUSTOMER_ROLE,
                    text=text,
                    channel=lifecycle.channel_name(request.conversation.channel),
                    client_message_id=escalation_key(key),
                    at=now,
                )
                message_id = message.message_id
            session.add(
                event_row(
                    row,
                    escalation_pb2.HANDOFF_EVENT_KIND_ESCALATED_AGAIN,
                    now,
                    AI_ACTOR,
                    state,
                    message_id=message_id,
                    idempotency_key=key,
                )
            )
            session.flush()
            session.refresh(row)
            log.info("escalation_appended", tenant_id=tenant_id, handoff_id=row.handoff_id)
            return describe(session, [row])[0]

    def append_customer_message(self, message: CustomerMessage) -> Appended:
        """Give the customer's message to the human who has the conversation (see the module doc)."""
        window = self.reopen_window(message.tenant_id)
        return self._retrying(self._append_once, message, window)

    def _append_once(self, incoming: CustomerMessage, window: dt.timedelta) -> Appended:
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            lifecycle.lock_thread_writes(session)
            earlier = lifecycle.find_message(
                session, incoming.tenant_id, incoming.conversation_id, customer_key(incoming.client_message_id)
            )
            if earlier is not None:
                return self._replayed(session, earlier, incoming.customer_id)
            row = _newest_handoff(session, incoming.tenant_id, incoming.conversation_id, lock=True)
            if row is None:
                return Appended(False)
            if row.customer_id != incoming.customer_id:
                raise ConversationNotFound(incoming.conversation_id)
            now = utcnow()
            if row.state in OPEN_STATES:
                kind, state, values = (
                    escalation_pb2.HANDOFF_EVENT_KIND_CUSTOMER_WROTE,
                    lifecycle.state_after_customer_wrote(row),
                    {},
                )
            elif _reopens(row, now, window):
                kind, state = escalation_pb2.HANDOFF_EVENT_KIND_REOPENED, REOPENED
                values = {
                    "open_conversation_id": row.conversation_id,
                    "resolved_at": None,
                    "resolved_by": "",
                    "resolution": "",
                }
            else:
                return Appended(False)
            _guarded_update(session, row, state, now, **values)
            channel = incoming.channel or conversation_pb2.Channel.Value(
                str((row.conversation or {}).get("channel", "CHANNEL_UNSPECIFIED"))
            )
            stored = lifecycle.add_message(
                session,
                row,
                role=CUSTOMER_ROLE,
                text=incoming.text,
                channel=lifecycle.channel_name(channel),
                client_message_id=customer_key(incoming.client_message_id),
                at=now,
            )
            session.add(event_row(row, kind, now, CUSTOMER_ACTOR, state, message_id=stored.message_id))
            session.flush()
            session.refresh(row)
            reopened = kind == escalation_pb2.HANDOFF_EVENT_KIND_REOPENED
            log.info("customer_message_appended", tenant_id=row.tenant_id, handoff_id=row.handoff_id, reopened=reopened)
            return Appended(True, describe(session, [row])[0], lifecycle.message_proto(stored), reopened)

    def _replayed(self, session: Session, message: ThreadMessageRow, customer_id: str) -> Appended:
        row = session.get_one(HandoffRow, message.handoff_id)
        if row.customer_id != customer_id:
            raise ConversationNotFound(message.conversation_id)
        reopened = session.scalar(
            sa.select(HandoffEventRow.id).where(
                HandoffEventRow.message_id == message.message_id,
                HandoffEventRow.kind
                == escalation_pb2.HandoffEventKind.Name(escalation_pb2.HANDOFF_EVENT_KIND_REOPENED),
            )
        )
        return Appended(True, describe(session, [row])[0], lifecycle.message_proto(message), reopened is not None)

    # --- reading the thread ----------------------------------------------------------

    def conversation(
        self, tenant_id: str, conversation_id: str, after_sequence: int, customer_id: str, limit: int
    ) -> tuple[list[escalation_pb2.ThreadMessage], escalation_pb2.Handoff | None]:
        """Messages after a sequence, oldest first, and the newest handoff. A conversation of
        another customer (when customer_id is given) raises ConversationNotFound."""
        with Session(self._engine) as session:
            row = _newest_handoff(session, tenant_id, conversation_id)
            if row is not None and customer_id and row.customer_id != customer_id:
                raise ConversationNotFound(conversation_id)
            messages = self._messages(session, tenant_id, conversation_id, after_sequence, limit)
            return messages, (describe(session, [row])[0] if row is not None else None)

    def messages_after(
        self, tenant_id: str, conversation_id: str, after_sequence: int, limit: int
    ) -> list[escalation_pb2.ThreadMessage]:
        with Session(self._engine) as session:
            return self._messages(session, tenant_id, conversation_id, after_sequence, limit)

    def _messages(
        self, session: Session, tenant_id: str, conversation_id: str, after_sequence: int, limit: int
    ) -> list[escalation_pb2.ThreadMessage]:
        rows = session.scalars(
            sa.select(ThreadMessageRow)
            .where(
                ThreadMessageRow.tenant_id == tenant_id,
                ThreadMessageRow.conversation_id == conversation_id,
                ThreadMessageRow.sequence > after_sequence,
            )
            .order_by(ThreadMessageRow.sequence)
            .limit(limit)
        )
        return [lifecycle.message_proto(row) for row in rows]

    def marker(self, tenant_id: str, conversation_id: str) -> tuple[Marker | None, str]:
        """The newest handoff's change marker and its customer (a cheap read for watchers)."""
        with Session(self._engine) as session:
            found = session.execute(
                sa.select(HandoffRow.handoff_id, HandoffRow.version, HandoffRow.updated_at, HandoffRow.customer_id)
                .where(HandoffRow.tenant_id == tenant_id, HandoffRow.conversation_id == conversation_id)
                .order_by(HandoffRow.created_at.desc(), HandoffRow.handoff_id.desc())
                .limit(1)
            ).one_or_none()
        if found is None:
            return None, ""
        handoff_id, version, updated_at, customer_id = found
        return Marker(handoff_id, version, updated_at), customer_id

    def newest_handoff(self, tenant_id: str, conversation_id: str) -> escalation_pb2.Handoff | None:
        """The conversation's newest handoff, open or resolved; None when it has none."""
        with Session(self._engine) as session:
            row = _newest_handoff(session, tenant_id, conversation_id)
            return describe(session, [row])[0] if row is not None else None

    def handoff(self, tenant_id: str, handoff_id: str) -> escalation_pb2.Handoff | None:
        with Session(self._engine) as session:
            row = session.get(HandoffRow, handoff_id)
            if row is None or row.tenant_id != tenant_id:
                return None
            return describe(session, [row])[0]

    def thread_of(self, tenant_id: str, handoff_id: str, limit: int) -> list[escalation_pb2.ThreadMessage]:
        """The whole thread of the handoff's conversation, oldest first."""
        with Session(self._engine) as session:
            row = session.get(HandoffRow, handoff_id)
            if row is None or row.tenant_id != tenant_id:
                return []
            return self._messages(session, tenant_id, row.conversation_id, 0, limit)

    def deliveries(self, tenant_id: str, channel: int, after_id: int, limit: int) -> list[escalation_pb2.Delivery]:
        """Agents' messages after a feed position, in the order they were committed."""
        query = (
            sa.select(ThreadMessageRow, HandoffRow.customer_id, HandoffRow.reference)
            .join(HandoffRow, HandoffRow.handoff_id == ThreadMessageRow.handoff_id)
            .where(ThreadMessageRow.role == AGENT_ROLE, ThreadMessageRow.id > after_id)
            .order_by(ThreadMessageRow.id)
            .limit(limit)
        )
        if tenant_id:
            query = query.where(ThreadMessageRow.tenant_id == tenant_id)
        if channel:
            query = query.where(ThreadMessageRow.channel == lifecycle.channel_name(channel))
        with Session(self._engine) as session:
            return [
                escalation_pb2.Delivery(
                    message=lifecycle.message_proto(row),
                    customer=customer_pb2.CustomerRef(tenant_id=row.tenant_id, customer_id=customer_id),
                    reference=reference,
                    cursor=str(row.id),
                )
                for row, customer_id, reference in session.execute(query)
            ]

    # --- CSAT -------------------------------------------------------------------------

    def rate(
        self, tenant_id: str, customer_id: str, handoff_id: str, rating: int, comment: str
    ) -> tuple[escalation_pb2.Handoff, bool]:
        """The customer's rating of their resolved handoff; rating again replaces it.
        Raises HandoffNotFound (also for another customer's) or WrongState (not resolved)."""
        return self._retrying(self._rate_once, tenant_id, customer_id, handoff_id, rating, comment)

    def _rate_once(
        self, tenant_id: str, customer_id: str, handoff_id: str, rating: int, comment: str
    ) -> tuple[escalation_pb2.Handoff, bool]:
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            row = session.get(HandoffRow, handoff_id)
            if row is None or row.tenant_id != tenant_id or row.customer_id != customer_id:
                raise HandoffNotFound(handoff_id)
            if row.state != RESOLVED:
                raise WrongState(row.state)
            if row.csat_rating == rating and row.csat_comment == comment:
                return describe(session, [row])[0], False
            now = utcnow()
            _guarded_update(session, row, RESOLVED, now, csat_rating=rating, csat_comment=comment, rated_at=now)
            session.add(event_row(row, escalation_pb2.HANDOFF_EVENT_KIND_RATED, now, CUSTOMER_ACTOR, RESOLVED))
            session.flush()
            session.refresh(row)
            return describe(session, [row])[0], True

    # --- settings ---------------------------------------------------------------------

    def reopen_window(self, tenant_id: str) -> dt.timedelta:
        with Session(self._engine) as session:
            row = session.get(HandoffSettingsRow, tenant_id)
        return self._default_reopen_window if row is None else dt.timedelta(seconds=row.reopen_window_s)

    def set_reopen_window(self, tenant_id: str, window: dt.timedelta) -> dt.timedelta:
        seconds = int(window.total_seconds())
        for _ in range(WRITE_ATTEMPTS):
            try:
                with Session(self._engine) as session, session.begin():
                    row = session.get(HandoffSettingsRow, tenant_id)
                    if row is None:
                        session.add(
                            HandoffSettingsRow(tenant_id=tenant_id, reopen_window_s=seconds, updated_at=utcnow())
                        )
                    else:
                        row.reopen_window_s, row.updated_at = seconds, utcnow()
                return dt.timedelta(seconds=seconds)
            except IntegrityError:
                continue  # another first write of the tenant's row: update it now
        raise RuntimeError("settings write kept conflicting")


def _reopens(row: HandoffRow, now: dt.datetime, window: dt.timedelta) -> bool:
    return (
        row.state == RESOLVED
        and row.resolved_at is not None
        and window > dt.timedelta(0)
        and now - row.resolved_at <= window
    )
