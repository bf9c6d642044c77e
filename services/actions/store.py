"""Actions, their audit trail and the conversations' verified customers in the
relational store. Sync SQLAlchemy, called through asyncio.to_thread.

Every change of an action's state is one transaction holding a compare-and-set
update (`WHERE action_id = ? AND state IN (...)`) and the audit events that
describe it: of any number of concurrent callers exactly one moves the action,
and the trail never says something happened that did not (or the reverse).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from servicekit.database import utcnow
from services.actions.migrations import SCHEMA
from services.actions.models import ActionRow, AuditEventRow, VerificationRow

_ACTIONS: sa.Table = ActionRow.__table__  # type: ignore[assignment]
_EVENTS: sa.Table = AuditEventRow.__table__  # type: ignore[assignment]
_VERIFICATIONS: sa.Table = VerificationRow.__table__  # type: ignore[assignment]
_INSERTS: dict[str, Any] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


class _NextAttempt:
    """Marker for transition(): count one more attempt in the same UPDATE (attempts = attempts + 1)."""


NEXT_ATTEMPT: Any = _NextAttempt()


@dataclass(frozen=True)
class Event:
    """One audit event, as the engine writes it (already masked)."""

    tenant_id: str
    kind: str
    actor_kind: str
    actor_id: str = ""
    action_id: str = ""
    conversation_id: str = ""
    customer_id: str = ""
    tool: str = ""
    arguments_json: str = ""
    result_json: str = ""
    detail: str = ""
    trace_id: str = ""
    catalog_version: str = ""
    dry_run: bool = False

    def row(self, now: dt.datetime) -> dict[str, Any]:
        return {**self.__dict__, "occurred_at": now}


@dataclass(frozen=True)
class ActionFilter:
    tenant_id: str
    conversation_id: str = ""
    customer_id: str = ""
    action_id: str = ""
    states: Sequence[str] = field(default_factory=tuple)
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def encode_token(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any] | None:
    """The position a page token names, or None when it is not one of ours."""
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class ActionsStore:
    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name not in _INSERTS:
            raise RuntimeError(f"actions needs SQLite or PostgreSQL, not {engine.dialect.name!r}")
        self._engine = engine
        self._insert = _INSERTS[engine.dialect.name]

    @property
    def engine(self) -> Engine:
        return self._engine

    def migrate(self) -> None:
        SCHEMA.migrate(self._engine)

    # --- verification ---------------------------------------------------------

    def verified_customer(self, tenant_id: str, conversation_id: str) -> str | None:
        with Session(self._engine) as session:
            return session.scalar(
                sa.select(_VERIFICATIONS.c.customer_id).where(
                    _VERIFICATIONS.c.tenant_id == tenant_id, _VERIFICATIONS.c.conversation_id == conversation_id
                )
            )

    def verify(self, tenant_id: str, conversation_id: str, customer_id: str, tool: str, event: Event) -> str:
        """Record the conversation's customer unless it has one; returns the one it has.
        The event is written only when this customer is (or already was) the one."""
        now = utcnow()
        with Session(self._engine) as session, session.begin():
            session.execute(
                self._insert(_VERIFICATIONS)
                .values(
                    tenant_id=tenant_id,
                    conversation_id=conversation_id,
                    customer_id=customer_id,
                    tool=tool,
                    verified_at=now,
                )
                .on_conflict_do_nothing(index_elements=["tenant_id", "conversation_id"])
            )
            current = session.scalar(
                sa.select(_VERIFICATIONS.c.customer_id).where(
                    _VERIFICATIONS.c.tenant_id == tenant_id, _VERIFICATIONS.c.conversation_id == conversation_id
                )
            )
            if current == customer_id:
                session.execute(_EVENTS.insert().values(**event.row(now)))
            return str(current)

    # --- events -----------------------------------------------------------------

    def append(self, *events: Event) -> None:
        now = utcnow()
        with Session(self._engine) as session, session.begin():
            session.execute(_EVENTS.insert(), [event.row(now) for event in events])

    # --- actions ----------------------------------------------------------------

    def get(self, action_id: str) -> ActionRow | None:
        with Session(self._engine, expire_on_commit=False) as session:
            return session.get(ActionRow, action_id)

    def by_request(self, tenant_id: str, conversation_id: str, request_id: str) -> ActionRow | None:
        with Session(self._engine, expire_on_commit=False) as session:
            return session.scalar(
                sa.select(ActionRow).where(
                    ActionRow.tenant_id == tenant_id,
                    ActionRow.conversation_id == conversation_id,
                    ActionRow.request_id == request_id,
                )
            )

    def insert(
        self, values: dict[str, Any], events: Sequence[Event], *, replaces: tuple[str, Event] | None = None
    ) -> tuple[ActionRow, bool]:
        """Store a new action (and cancel the one it revises, if still pending); returns
        (the action, created). A repeated request id returns the stored action."""
        now = utcnow()
        try:
            with Session(self._engine) as session, session.begin():
                if replaces is not None:
                    replaced_id, cancelled = replaces
                    updated = session.execute(
                        _ACTIONS.update()
                        .where(
                            _ACTIONS.c.action_id == replaced_id,
                            _ACTIONS.c.state.in_(["PROPOSED", "AWAITING_APPROVAL"]),
                        )
                        .values(state="CANCELLED", updated_at=now, error_reason="REVISED",
                                error_message=f"revised by {values['action_id']}")
                    )
                    if updated.rowcount == 1:  # type: ignore[attr-defined]
                        session.execute(_EVENTS.insert().values(**cancelled.row(now)))
                    else:
                        values = {**values, "replaces_action_id": ""}
                session.execute(_ACTIONS.insert().values(**values, created_at=now, updated_at=now))
                session.execute(_EVENTS.insert(), [event.row(now) for event in events])
        except IntegrityError:
            existing = self.by_request(values["tenant_id"], values["conversation_id"], values["request_id"])
            if existing is None:
                raise
            return existing, False
        stored = self.get(values["action_id"])
        assert stored is not None
        return stored, True

    def transition(
        self,
        action_id: str,
        from_states: Sequence[str],
        to_state: str,
        events: Sequence[Event],
        *,
        attempt: int | None = None,
        lease_expired_before: dt.datetime | None = None,
        not_expired_at: dt.datetime | None = None,
        not_sent: bool = False,
        **values: Any,
    ) -> ActionRow | None:
        """Move an action from one of `from_states` to `to_state` with its events, in one
        transaction; None when another caller moved it first (nothing is written).
        `attempt`: only the execution that claimed that attempt may record its outcome.
        `attempts=NEXT_ATTEMPT` counts a new attempt."""
        now = utcnow()
        conditions = [_ACTIONS.c.action_id == action_id, _ACTIONS.c.state.in_(list(from_states))]
        if attempt is not None:
            conditions.append(_ACTIONS.c.attempts == attempt)
        if lease_expired_before is not None:
            conditions.append(_ACTIONS.c.lease_expires_at < lease_expired_before)
        if not_expired_at is not None:
            conditions.append(_ACTIONS.c.expires_at > not_expired_at)
        if not_sent:
            conditions.append(_ACTIONS.c.may_have_executed.is_(False))
        if values.get("attempts") is NEXT_ATTEMPT:
            values["attempts"] = _ACTIONS.c.attempts + 1
        with Session(self._engine) as session, session.begin():
            updated = session.execute(
                _ACTIONS.update().where(*conditions).values(state=to_state, updated_at=now, **values)
            )
            if updated.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                return None
            if events:
                session.execute(_EVENTS.insert(), [event.row(now) for event in events])
        return self.get(action_id)

    def acted_on_by(self, action_id: str, agent_id: str) -> bool:
        """Whether this agent proposed or confirmed the action (they may not also approve it)."""
        with Session(self._engine) as session:
            found = session.scalar(
                sa.select(sa.func.count()).where(
                    _EVENTS.c.action_id == action_id,
                    _EVENTS.c.actor_kind == "AGENT",
                    _EVENTS.c.actor_id == agent_id,
                    _EVENTS.c.kind.in_(["PROPOSED", "CONFIRMED"]),
                )
            )
        return bool(found)

    def due_for_reconciliation(self, now: dt.datetime, max_attempts: int, limit: int = 50) -> list[ActionRow]:
        """Executions whose executor is presumed dead (lease expired), and retryable
        actions that may have executed and are due for another attempt."""
        with Session(self._engine, expire_on_commit=False) as session:
            return list(
                session.scalars(
                    sa.select(ActionRow)
                    .where(
                        sa.or_(
                            sa.and_(ActionRow.state == "EXECUTING", ActionRow.lease_expires_at < now),
                            sa.and_(
                                ActionRow.state == "RETRYABLE",
                                ActionRow.may_have_executed.is_(True),
                                ActionRow.next_attempt_at <= now,
                                ActionRow.attempts < max_attempts,
                            ),
                        )
                    )
                    .order_by(ActionRow.updated_at)
                    .limit(limit)
                )
            )

    def list_actions(self, selection: ActionFilter, page_size: int, token: dict[str, Any] | None) -> tuple[
        list[ActionRow], str
    ]:
        """Newest first; the token is the last (created_at, action_id) of the previous page."""
        query = sa.select(ActionRow).where(ActionRow.tenant_id == selection.tenant_id)
        if selection.conversation_id:
            query = query.where(ActionRow.conversation_id == selection.conversation_id)
        if selection.customer_id:
            query = query.where(ActionRow.customer_id == selection.customer_id)
        if selection.states:
            query = query.where(ActionRow.state.in_(list(selection.states)))
        if token is not None:
            after = dt.datetime.fromisoformat(str(token["t"]))
            query = query.where(
                sa.or_(
                    ActionRow.created_at < after,
                    sa.and_(ActionRow.created_at == after, ActionRow.action_id < str(token["a"])),
                )
            )
        query = query.order_by(ActionRow.created_at.desc(), ActionRow.action_id.desc()).limit(page_size + 1)
        with Session(self._engine, expire_on_commit=False) as session:
            rows = list(session.scalars(query))
        if len(rows) <= page_size:
            return rows, ""
        last = rows[page_size - 1]
        return rows[:page_size], encode_token({"t": last.created_at.isoformat(), "a": last.action_id})

    def _event_query(self, selection: ActionFilter) -> sa.Select[Any]:
        query = sa.select(AuditEventRow).where(AuditEventRow.tenant_id == selection.tenant_id)
        if selection.conversation_id:
            query = query.where(AuditEventRow.conversation_id == selection.conversation_id)
        if selection.customer_id:
            query = query.where(AuditEventRow.customer_id == selection.customer_id)
        if selection.action_id:
            query = query.where(AuditEventRow.action_id == selection.action_id)
        if selection.since is not None:
            query = query.where(AuditEventRow.occurred_at >= selection.since)
        if selection.until is not None:
            query = query.where(AuditEventRow.occurred_at < selection.until)
        return query

    def list_events(self, selection: ActionFilter, page_size: int, after: int) -> tuple[list[AuditEventRow], int]:
        """Oldest first after a sequence number; returns the page and the next position (0: none)."""
        query = (
            self._event_query(selection)
            .where(AuditEventRow.sequence > after)
            .order_by(AuditEventRow.sequence)
            .limit(page_size + 1)
        )
        with Session(self._engine, expire_on_commit=False) as session:
            rows = list(session.scalars(query))
        if len(rows) <= page_size:
            return rows, 0
        return rows[:page_size], rows[page_size - 1].sequence

    def iter_events(self, selection: ActionFilter, batch: int = 500) -> Iterator[list[AuditEventRow]]:
        """Every selected event, oldest first, in batches (bounded memory)."""
        after = 0
        while True:
            rows, after = self.list_events(selection, batch, after)
            if rows:
                yield rows
            if not after:
                return

