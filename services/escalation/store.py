"""Handoffs in the relational store. Sync SQLAlchemy: the servicer calls these
methods via asyncio.to_thread; every write is one transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
import structlog
from google.protobuf import json_format
from google.protobuf.message import Message
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import customer_pb2
from servicekit.database import utcnow
from services.escalation.models import Base, HandoffRow

log = structlog.get_logger("services.escalation.store")


@dataclass(frozen=True)
class PageCursor:
    """Where the previous page ended, in ListHandoffs order (keyset pagination: stable under inserts)."""

    priority: int
    created_at: dt.datetime
    handoff_id: str


def _to_json(message: Message) -> dict[str, object]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _to_proto(row: HandoffRow) -> escalation_pb2.Handoff:
    handoff = escalation_pb2.Handoff(
        handoff_id=row.handoff_id,
        customer=customer_pb2.CustomerRef(tenant_id=row.tenant_id, customer_id=row.customer_id),
        reason=escalation_pb2.HandoffReason.Value(row.reason),
        queue=row.queue,
        priority=row.priority,
        state=escalation_pb2.HandoffState.Value(row.state),
        assigned_agent_id=row.assigned_agent_id,
    )
    json_format.ParseDict(row.conversation, handoff.conversation)
    json_format.ParseDict(row.context, handoff.context)
    handoff.created_at.FromDatetime(row.created_at)
    handoff.updated_at.FromDatetime(row.updated_at)
    return handoff


class HandoffStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create_schema(self) -> None:
        # Schema by create_all for now; a later issue replaces this with migrations.
        Base.metadata.create_all(self._engine)

    def _find_by_key(self, tenant_id: str, idempotency_key: str) -> escalation_pb2.Handoff | None:
        with Session(self._engine) as session:
            row = session.scalars(
                sa.select(HandoffRow).where(
                    HandoffRow.tenant_id == tenant_id, HandoffRow.idempotency_key == idempotency_key
                )
            ).one_or_none()
            return None if row is None else _to_proto(row)

    def create(
        self,
        request: escalation_pb2.CreateHandoffRequest,
        queue: str,
        context: escalation_pb2.ContextPackage,
    ) -> tuple[escalation_pb2.Handoff, bool]:
        """Store a new handoff, or return the one already stored under the idempotency key.

        Returns (handoff, created). The unique constraint decides races: the loser's
        insert fails and it reads back the winner's row.
        """
        tenant_id, key = request.customer.tenant_id, request.idempotency_key
        existing = self._find_by_key(tenant_id, key)
        if existing is not None:
            return existing, False
        now = utcnow()
        row = HandoffRow(
            handoff_id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            customer_id=request.customer.customer_id,
            idempotency_key=key,
            conversation_id=request.conversation.conversation_id,
            conversation=_to_json(request.conversation),
            reason=escalation_pb2.HandoffReason.Name(request.reason),
            ai_attempt=_to_json(request.ai_attempt),
            account=_to_json(request.account),
            context=_to_json(context),
            queue=queue,
            priority=request.priority,
            state=escalation_pb2.HandoffState.Name(escalation_pb2.HANDOFF_STATE_WAITING),
            assigned_agent_id="",
            created_at=now,
            updated_at=now,
        )
        try:
            with Session(self._engine, expire_on_commit=False) as session, session.begin():
                session.add(row)
        except IntegrityError:
            winner = self._find_by_key(tenant_id, key)
            if winner is None:
                raise
            log.info("handoff_create_raced", tenant_id=tenant_id, handoff_id=winner.handoff_id)
            return winner, False
        return _to_proto(row), True

    def waiting_by_queue(self) -> dict[tuple[str, str], int]:
        """Handoffs waiting for an agent, per (tenant, queue): the queue-depth metric."""
        waiting = escalation_pb2.HandoffState.Name(escalation_pb2.HANDOFF_STATE_WAITING)
        with Session(self._engine) as session:
            rows = session.execute(
                sa.select(HandoffRow.tenant_id, HandoffRow.queue, sa.func.count())
                .where(HandoffRow.state == waiting)
                .group_by(HandoffRow.tenant_id, HandoffRow.queue)
            ).all()
        return {(tenant, queue): int(count) for tenant, queue, count in rows}

    def get(self, tenant_id: str, handoff_id: str) -> escalation_pb2.Handoff | None:
        with Session(self._engine) as session:
            row = session.get(HandoffRow, handoff_id)
            # Another tenant's handoff is reported exactly like a missing one.
            if row is None or row.tenant_id != tenant_id:
                return None
            return _to_proto(row)

    def list_page(
        self,
        tenant_id: str,
        queue: str,
        states: Sequence[int],
        page_size: int,
        after: PageCursor | None,
    ) -> tuple[list[escalation_pb2.Handoff], PageCursor | None]:
        """One page by priority (high first), then age (old first); the cursor of the next page or None."""
        query = sa.select(HandoffRow).where(
            HandoffRow.tenant_id == tenant_id,
            HandoffRow.state.in_([escalation_pb2.HandoffState.Name(state) for state in states]),
        )
        if queue:
            query = query.where(HandoffRow.queue == queue)
        if after is not None:
            query = query.where(
                sa.or_(
                    HandoffRow.priority < after.priority,
                    sa.and_(HandoffRow.priority == after.priority, HandoffRow.created_at > after.created_at),
                    sa.and_(
                        HandoffRow.priority == after.priority,
                        HandoffRow.created_at == after.created_at,
                        HandoffRow.handoff_id > after.handoff_id,
                    ),
                )
            )
        query = query.order_by(
            HandoffRow.priority.desc(), HandoffRow.created_at.asc(), HandoffRow.handoff_id.asc()
        ).limit(page_size + 1)
        with Session(self._engine) as session:
            rows = list(session.scalars(query))
            page = rows[:page_size]
            cursor = None
            if len(rows) > page_size:
                last = page[-1]
                cursor = PageCursor(last.priority, last.created_at, last.handoff_id)
            return [_to_proto(row) for row in page], cursor
