"""The customer hears the outcome of an approved action that finished late.

An approval whose action the company's system did not answer within the actions service's
wait comes back EXECUTING (or RETRYABLE); the actions service settles it later (its own
reconciler), but tells nobody. So DecideActionApproval stores a pending outcome: one row
per action, in the database, so that a restart or another replica carries it on. Every
replica's loop reads the due rows, asks the actions service for each action, and once it
is final posts the outcome message exactly as the decision would have (outcome_text, the
same client id: a message already stored, by a retried decision or another replica, is not
stored again), then deletes the row. An action still running, or an actions service out of
reach, backs its row off (doubling from the poll interval, at most 5 minutes).

A replica claims a row by moving its next_check_at forward where it still holds the value
it read (the same on SQLite and PostgreSQL): two replicas rarely read one action, and when
they do the fixed client id keeps it to one message.

Nothing is said while the action runs: the actions service re-sends it by itself, and one
it stops retrying waits for an agent, who sees it on the handoff and speaks for it; a "still
working on it" in the agent's name would promise what nobody is doing. A row still running
after 7 days is given up (logged); whoever settles such an action tells the customer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aftercare.actions.v1 import actions_pb2
from aftercare.escalation.v1 import escalation_pb2
from servicekit.database import utcnow
from servicekit.errors import NotFound
from services.escalation.approvals import Approvals, outcome_message, outcome_text
from services.escalation.models import PendingOutcomeRow
from services.escalation.store import HandoffStore
from services.escalation.watch import Notifier

log = structlog.get_logger("services.escalation.late_outcomes")

# Due rows read per pass (their actions are read at once, each within the actions service's deadline).
BATCH = 50
# A claimed row waits this long before another replica may take it: its check's calls are done by
# then (the actions service's deadline is 30 s; gRPC retries UNAVAILABLE within it).
CLAIM_S = 60.0
MAX_BACKOFF_S = 300.0
GIVE_UP_AFTER = dt.timedelta(days=7)


@dataclass(frozen=True)
class PendingOutcome:
    tenant_id: str
    action_id: str
    handoff_id: str
    agent_id: str
    agent_name: str
    note: str
    created_at: dt.datetime
    attempts: int


class PendingOutcomeStore:
    """The pending outcomes' rows. Sync SQLAlchemy (called through asyncio.to_thread); one
    transaction per write."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, outcome: PendingOutcome, first_check_at: dt.datetime) -> bool:
        """Store an outcome to tell; False when the action has one already (a retried decision)."""
        row = PendingOutcomeRow(
            tenant_id=outcome.tenant_id,
            action_id=outcome.action_id,
            handoff_id=outcome.handoff_id,
            agent_id=outcome.agent_id,
            agent_name=outcome.agent_name,
            note=outcome.note,
            created_at=outcome.created_at,
            attempts=outcome.attempts,
            next_check_at=first_check_at,
        )
        try:
            with Session(self._engine) as session, session.begin():
                session.add(row)
        except IntegrityError:
            return False
        return True

    def claim_due(self, now: dt.datetime, limit: int, claim_until: dt.datetime) -> list[PendingOutcome]:
        """Up to `limit` rows due by `now`, soonest first, each moved to `claim_until` so that
        no other replica takes it meanwhile; a row another replica moved first is left to it."""
        with Session(self._engine) as session:
            due = session.scalars(
                sa.select(PendingOutcomeRow)
                .where(PendingOutcomeRow.next_check_at <= now)
                .order_by(PendingOutcomeRow.next_check_at)
                .limit(limit)
            ).all()
        claimed = []
        for row in due:
            with Session(self._engine) as session, session.begin():
                # An UPDATE's result is a CursorResult: its rowcount says whether this replica moved it.
                moved = cast(
                    sa.CursorResult[Any],
                    session.execute(
                        sa.update(PendingOutcomeRow)
                        .where(
                            PendingOutcomeRow.tenant_id == row.tenant_id,
                            PendingOutcomeRow.action_id == row.action_id,
                            PendingOutcomeRow.next_check_at == row.next_check_at,
                        )
                        .values(next_check_at=claim_until)
                    ),
                )
            if moved.rowcount == 1:
                claimed.append(_pending(row))
        return claimed

    def back_off(self, tenant_id: str, action_id: str, attempts: int, next_check_at: dt.datetime) -> None:
        with Session(self._engine) as session, session.begin():
            session.execute(
                sa.update(PendingOutcomeRow)
                .where(PendingOutcomeRow.tenant_id == tenant_id, PendingOutcomeRow.action_id == action_id)
                .values(attempts=attempts, next_check_at=next_check_at)
            )

    def remove(self, tenant_id: str, action_id: str) -> None:
        with Session(self._engine) as session, session.begin():
            session.execute(
                sa.delete(PendingOutcomeRow).where(
                    PendingOutcomeRow.tenant_id == tenant_id, PendingOutcomeRow.action_id == action_id
                )
            )


def _pending(row: PendingOutcomeRow) -> PendingOutcome:
    return PendingOutcome(
        tenant_id=row.tenant_id,
        action_id=row.action_id,
        handoff_id=row.handoff_id,
        agent_id=row.agent_id,
        agent_name=row.agent_name,
        note=row.note,
        created_at=row.created_at,
        attempts=row.attempts,
    )


class LateOutcomes:
    """Remembers the outcomes still to tell and tells them once their actions settle."""

    def __init__(
        self,
        store: PendingOutcomeStore,
        handoffs: HandoffStore,
        approvals: Approvals,
        notifier: Notifier,
        poll_s: float,
    ) -> None:
        self._store = store
        self._handoffs = handoffs
        self._approvals = approvals
        # Wakes this process's watchers of the conversation once the message is stored.
        self._notifier = notifier
        self._poll_s = poll_s
        self._loop: asyncio.Task[None] | None = None

    async def remember(
        self, request: escalation_pb2.DecideActionApprovalRequest, action_id: str, handoff_id: str
    ) -> None:
        """The decided action is still running: tell its outcome once it settles (once per action)."""
        now = utcnow()
        outcome = PendingOutcome(
            tenant_id=request.tenant_id,
            action_id=action_id,
            handoff_id=handoff_id,
            agent_id=request.agent_id,
            agent_name=request.agent_name,
            note=request.note,
            created_at=now,
            attempts=0,
        )
        added = await asyncio.to_thread(self._store.add, outcome, now + dt.timedelta(seconds=self._poll_s))
        log.info("late_outcome_pending", tenant_id=request.tenant_id, action_id=action_id, added=added)

    def start(self) -> None:
        """Check due outcomes every poll interval until closed (rows a stopped process left are due too)."""
        self._loop = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop checking; a check cut short leaves its row claimed a while, then due again."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.check_due()
            except Exception as error:  # the database out of reach: the next pass tries again
                log.warning("late_outcomes_pass_failed", error=type(error).__name__)
            await asyncio.sleep(self._poll_s)

    async def check_due(self) -> None:
        """One pass: the due outcomes (a bounded batch) checked together."""
        now = utcnow()
        claimed = await asyncio.to_thread(self._store.claim_due, now, BATCH, now + dt.timedelta(seconds=CLAIM_S))
        await asyncio.gather(*(self._check(pending) for pending in claimed))

    async def _check(self, pending: PendingOutcome) -> None:
        tenant_id, action_id = pending.tenant_id, pending.action_id
        try:
            action = await self._approvals.action(tenant_id, action_id)
            text = outcome_text(action, pending.note)
            if text is not None:
                posted, sent = await asyncio.to_thread(
                    self._handoffs.post_agent_message,
                    tenant_id,
                    pending.handoff_id,
                    pending.agent_id,
                    text,
                    outcome_message(action_id, pending.agent_name),
                )
                self._notifier.notify(tenant_id, posted.conversation_id)
                await asyncio.to_thread(self._store.remove, tenant_id, action_id)
                log.info(
                    "late_outcome_told",
                    tenant_id=tenant_id,
                    action_id=action_id,
                    state=actions_pb2.ActionState.Name(action.state),
                    message_id=sent.message_id,
                )
                return
            state = actions_pb2.ActionState.Name(action.state)
        except NotFound:
            # The actions service no longer knows it (another store, a tenant removed): nothing will settle.
            await asyncio.to_thread(self._store.remove, tenant_id, action_id)
            log.warning("late_outcome_action_gone", tenant_id=tenant_id, action_id=action_id)
            return
        except Exception as error:  # the actions service or the database out of reach: try again later
            state = f"unchecked ({type(error).__name__})"
        await self._back_off(pending, state)

    async def _back_off(self, pending: PendingOutcome, state: str) -> None:
        now = utcnow()
        if now - pending.created_at >= GIVE_UP_AFTER:
            await asyncio.to_thread(self._store.remove, pending.tenant_id, pending.action_id)
            log.warning("late_outcome_given_up", tenant_id=pending.tenant_id, action_id=pending.action_id, state=state)
            return
        attempts = pending.attempts + 1
        delay = min(self._poll_s * 2 ** min(attempts, 20), MAX_BACKOFF_S)
        await asyncio.to_thread(
            self._store.back_off,
            pending.tenant_id,
            pending.action_id,
            attempts,
            now + dt.timedelta(seconds=delay),
        )
        log.info(
            "late_outcome_still_pending",
            tenant_id=pending.tenant_id,
            action_id=pending.action_id,
            state=state,
            attempts=attempts,
        )
