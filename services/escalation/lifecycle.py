"""A handoff's life as rows: its states, its timestamped events, its thread
messages and what a customer is told while it waits. Helpers that work inside
the caller's session (store.py and thread.py own the transactions).

Ordering of the thread: every thread write first takes one lock (a PostgreSQL
transaction-level advisory lock; SQLite has a single writer anyway), so the
global message id grows in commit order and a deliveries cursor never skips a
message committed late, and each conversation's sequence is gapless.
"""

from __future__ import annotations

import datetime as dt
import secrets
import statistics
import uuid
import zlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa
from google.protobuf import json_format
from sqlalchemy.orm import Session

from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import conversation_pb2, customer_pb2
from services.escalation import origins
from services.escalation.models import HandoffEventRow, HandoffRow, ThreadMessageRow

State = escalation_pb2.HandoffState
EventKind = escalation_pb2.HandoffEventKind
WAITING = State.Name(escalation_pb2.HANDOFF_STATE_WAITING)
ASSIGNED = State.Name(escalation_pb2.HANDOFF_STATE_ASSIGNED)
RESOLVED = State.Name(escalation_pb2.HANDOFF_STATE_RESOLVED)
WAITING_ON_CUSTOMER = State.Name(escalation_pb2.HANDOFF_STATE_WAITING_ON_CUSTOMER)
REOPENED = State.Name(escalation_pb2.HANDOFF_STATE_REOPENED)
# A conversation has at most one handoff in these states.
OPEN_STATES = (WAITING, ASSIGNED, WAITING_ON_CUSTOMER, REOPENED)

CUSTOMER_ROLE = conversation_pb2.Role.Name(conversation_pb2.ROLE_CUSTOMER)
AGENT_ROLE = conversation_pb2.Role.Name(conversation_pb2.ROLE_AGENT)
DEFAULT_AGENT_NAME = "Support agent"
CUSTOMER_ACTOR = "customer"
AI_ACTOR = "ai"

# No 0/O, 1/I/L or U: a reference read over the phone or typed from an email stays right.
REFERENCE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
REFERENCE_LENGTH = 6

# Expected wait without any history of the tenant's assignments (stated to the customer as such).
DEFAULT_TIME_TO_ASSIGNMENT = dt.timedelta(minutes=5)
# The median time to assignment is taken over the tenant's newest assigned handoffs.
RECENT_ASSIGNMENTS = 50
RECENT_ASSIGNMENT_DAYS = 30

_THREAD_LOCK_KEY = zlib.crc32(b"escalation.thread_messages")


def new_reference() -> str:
    return "HO-" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH))


def channel_name(channel: int) -> str:
    """The stored channel; unspecified is chat (as the contract says)."""
    return conversation_pb2.Channel.Name(channel or conversation_pb2.CHANNEL_CHAT)


def state_after_customer_wrote(row: HandoffRow) -> str:
    """The customer answered an agent: the agent's turn again (back in the queue if nobody has it)."""
    if row.state == WAITING_ON_CUSTOMER:
        return ASSIGNED if row.assigned_agent_id else WAITING
    return row.state


def event_row(
    row: HandoffRow,
    kind: int,
    at: dt.datetime,
    actor: str,
    state: str,
    *,
    message_id: str | None = None,
    idempotency_key: str | None = None,
) -> HandoffEventRow:
    """One step of the handoff's life, with the state it left the handoff in."""
    return HandoffEventRow(
        handoff_id=row.handoff_id,
        tenant_id=row.tenant_id,
        kind=EventKind.Name(kind),
        at=at,
        actor=actor or AI_ACTOR,
        state=state,
        message_id=message_id,
        idempotency_key=idempotency_key,
    )


def changed_rows(session: Session, statement: sa.Executable) -> int:
    """How many rows an UPDATE or DELETE changed. Session.execute is typed to return a Result;
    for these statements it is a CursorResult, which has the rowcount."""
    return cast(sa.CursorResult[Any], session.execute(statement)).rowcount


def lock_thread_writes(session: Session) -> None:
    """Serialize thread writes until this transaction ends (see the module doc)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _THREAD_LOCK_KEY})


def find_message(
    session: Session, tenant_id: str, conversation_id: str, client_message_id: str
) -> ThreadMessageRow | None:
    return session.scalars(
        sa.select(ThreadMessageRow).where(
            ThreadMessageRow.tenant_id == tenant_id,
            ThreadMessageRow.conversation_id == conversation_id,
            ThreadMessageRow.client_message_id == client_message_id,
        )
    ).one_or_none()


def add_message(
    session: Session,
    row: HandoffRow,
    *,
    role: str,
    text: str,
    channel: str,
    client_message_id: str,
    at: dt.datetime,
    author_id: str = "",
    author_name: str = "",
) -> ThreadMessageRow:
    """Append a message to the handoff's conversation thread (the caller holds the thread lock)."""
    last = session.scalar(
        sa.select(sa.func.max(ThreadMessageRow.sequence)).where(
            ThreadMessageRow.tenant_id == row.tenant_id, ThreadMessageRow.conversation_id == row.conversation_id
        )
    )
    message = ThreadMessageRow(
        message_id=str(uuid.uuid4()),
        tenant_id=row.tenant_id,
        conversation_id=row.conversation_id,
        handoff_id=row.handoff_id,
        sequence=(last or 0) + 1,
        role=role,
        author_id=author_id,
        author_name=author_name,
        text=text,
        channel=channel,
        sent_at=at,
        client_message_id=client_message_id,
    )
    session.add(message)
    session.flush()
    return message


def message_proto(row: ThreadMessageRow) -> escalation_pb2.ThreadMessage:
    # Enums by their stored names: a message's constructor takes a value's name as the value
    # (an unknown name raises ValueError, as Enum.Value does).
    message = escalation_pb2.ThreadMessage(
        message_id=row.message_id,
        sequence=row.sequence,
        handoff_id=row.handoff_id,
        message=conversation_pb2.Message(role=row.role, text=row.text, author_name=row.author_name),
        author_id=row.author_id,
        author_name=row.author_name,
        channel=row.channel,
        conversation_id=row.conversation_id,
    )
    message.message.sent_at.FromDatetime(row.sent_at)
    return message


def handoff_proto(row: HandoffRow) -> escalation_pb2.Handoff:
    """The handoff as its row holds it (history, thread size and wait come from `describe`)."""
    handoff = escalation_pb2.Handoff(
        handoff_id=row.handoff_id,
        customer=customer_pb2.CustomerRef(tenant_id=row.tenant_id, customer_id=row.customer_id),
        # Enums by their stored names, as in message_proto.
        reason=row.reason,
        queue=row.queue,
        priority=row.priority,
        state=row.state,
        assigned_agent_id=row.assigned_agent_id,
        # By the stored name too, which both Tier enums share (tier is the deprecated one, for v1 clients).
        tier=row.tier,
        routing_tier=row.tier,
        version=row.version,
        resolved_by_agent_id=row.resolved_by,
        resolution=row.resolution,
        reference=row.reference or "",
        conversation_id=row.conversation_id,
        csat_rating=row.csat_rating or 0,
        release_id=row.release_id or "",
    )
    json_format.ParseDict(row.conversation, handoff.conversation)
    json_format.ParseDict(row.context, handoff.context)
    origins.fill_enums(handoff.context)
    handoff.created_at.FromDatetime(row.created_at)
    handoff.updated_at.FromDatetime(row.updated_at)
    for name in ("assigned_at", "resolved_at", "first_replied_at"):
        value = getattr(row, name)
        if value is not None:
            getattr(handoff, name).FromDatetime(value)
    return handoff


def describe(session: Session, rows: Sequence[HandoffRow]) -> list[escalation_pb2.Handoff]:
    """The handoffs with their history, thread size and, while waiting, queue position and
    expected wait: a few queries for the whole batch."""
    handoffs = [handoff_proto(row) for row in rows]
    if not rows:
        return handoffs
    by_id = {handoff.handoff_id: handoff for handoff in handoffs}
    for event in session.scalars(
        sa.select(HandoffEventRow).where(HandoffEventRow.handoff_id.in_(by_id)).order_by(HandoffEventRow.id)
    ):
        item = by_id[event.handoff_id].history.add(
            kind=EventKind.Value(event.kind), actor=event.actor, state=State.Value(event.state)
        )
        item.at.FromDatetime(event.at)
    for handoff_id, count in session.execute(
        sa.select(ThreadMessageRow.handoff_id, sa.func.count())
        .where(ThreadMessageRow.handoff_id.in_(by_id))
        .group_by(ThreadMessageRow.handoff_id)
    ):
        by_id[handoff_id].thread_messages = int(count)
    _add_waits(session, [row for row in rows if row.state == WAITING], by_id)
    return handoffs


def _add_waits(session: Session, waiting: Sequence[HandoffRow], by_id: dict[str, escalation_pb2.Handoff]) -> None:
    """Position in the queue (ListHandoffs' order) times the tenant's median time to assignment."""
    medians: dict[str, dt.timedelta] = {}
    queues: dict[tuple[str, str], list[HandoffRow]] = defaultdict(list)
    for row in waiting:
        queues[(row.tenant_id, row.queue)].append(row)
    for (tenant_id, queue), members in queues.items():
        ahead = session.execute(
            sa.select(HandoffRow.priority, HandoffRow.created_at, HandoffRow.handoff_id).where(
                HandoffRow.tenant_id == tenant_id, HandoffRow.queue == queue, HandoffRow.state == WAITING
            )
        ).all()
        order = sorted(ahead, key=lambda item: (-item[0], item[1], item[2]))
        positions = {handoff_id: index + 1 for index, (_, _, handoff_id) in enumerate(order)}
        if tenant_id not in medians:
            medians[tenant_id] = median_time_to_assignment(session, tenant_id)
        for row in members:
            handoff = by_id[row.handoff_id]
            handoff.queue_position = positions.get(row.handoff_id, len(order) + 1)
            handoff.expected_wait.FromTimedelta(medians[tenant_id] * handoff.queue_position)


def median_time_to_assignment(session: Session, tenant_id: str) -> dt.timedelta:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=RECENT_ASSIGNMENT_DAYS)
    pairs = session.execute(
        sa.select(HandoffRow.created_at, HandoffRow.assigned_at)
        .where(HandoffRow.tenant_id == tenant_id, HandoffRow.assigned_at.is_not(None), HandoffRow.assigned_at >= since)
        .order_by(HandoffRow.assigned_at.desc())
        .limit(RECENT_ASSIGNMENTS)
    ).all()
    waits = [(assigned - created).total_seconds() for created, assigned in pairs if assigned is not None]
    if not waits:
        return DEFAULT_TIME_TO_ASSIGNMENT
    return dt.timedelta(seconds=round(max(0.0, statistics.median(waits))))
