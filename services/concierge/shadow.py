"""Releases running in shadow: a release that does not serve decides a share of a tenant's live
turns too, after the live reply is stored and off the customer's path, and its decision is
stored beside the live one, for the report (shadow_report.py) that compares both with what
humans did.

One shadow per tenant (a partial unique index holds it too). Starting and stopping run in the
tenant's release transaction (release_store.py), so they see the live release as promotions do,
and each is a release event. Replicas follow within about a second: the active shadow is re-read
at most every ACTIVE_REFRESH_S, like the live pointer.

The decision itself is the servicer's (`_decide` on a copy of the live turn marked `shadow`, see
turns.py); this module bounds it. At most `max_in_flight` shadow decisions run at once per
replica, each for at most `timeout_s`; a sampled turn arriving while the budget is full is
skipped and counted, never queued, so a slow candidate costs the live path a counter and nothing
more. Whatever fails in shadow is logged, never raised into the live path.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from aftercare.concierge.v1 import concierge_pb2, releases_pb2
from servicekit.database import utcnow
from servicekit.errors import FailedPrecondition, NotFound
from servicekit.pii import mask
from services.concierge.human_labels import HumanLabels
from services.concierge.models import ShadowDecisionRow, ShadowRow
from services.concierge.release_store import LIVE, release_not_found
from services.concierge.releases import LIVE_ALIAS, ReleaseBook
from services.concierge.shadow_report import shadow_report

log = structlog.get_logger(__name__)

# How stale a replica's idea of a tenant's active shadow may be.
ACTIVE_REFRESH_S = 1.0


@dataclass(frozen=True)
class ActiveShadow:
    """A tenant's running shadow, as a turn needs it."""

    shadow_id: str
    release_id: str
    sample_rate: float


@dataclass(frozen=True)
class OfferedTurn:
    """A stored live turn offered to the shadow."""

    tenant_id: str
    conversation_id: str
    turn_index: int
    # The release that served it.
    live_release_id: str
    # Triage's intent for it ("" when none): the shadow decides with the same verdict.
    intent: str


def shadow_proto(row: ShadowRow) -> releases_pb2.Shadow:
    shadow = releases_pb2.Shadow(
        tenant_id=row.tenant_id, shadow_id=row.shadow_id, release_id=row.release_id,
        live_release_id=row.live_release_id, sample_rate=row.sample_rate, active=row.active,
        started_by=row.started_by, shadowed_turns=row.shadowed_turns, skipped_turns=row.skipped_turns,
    )
    shadow.started_at.FromDatetime(row.started_at)
    if row.stopped_at is not None:
        shadow.stopped_at.FromDatetime(row.stopped_at)
    return shadow


def _no_shadow() -> NotFound:
    return NotFound("no shadow runs for this tenant", reason="NO_SHADOW")


class ShadowBook:
    """A concierge replica's shadows: their start and stop, the active one per tenant, and the
    bounded runner of shadow decisions (module doc)."""

    def __init__(
        self,
        engine: Engine,
        releases: ReleaseBook,
        labels: HumanLabels,
        *,
        max_in_flight: int = 2,
        timeout_s: float = 30.0,
        active_refresh_s: float = ACTIVE_REFRESH_S,
    ):
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1 (no shadow at all: no ShadowBook)")
        self._engine = engine
        self._releases = releases
        self._store = releases.store
        self._labels = labels
        self._max_in_flight = max_in_flight
        self._timeout_s = timeout_s
        self._active_refresh_s = active_refresh_s
        # Per tenant: when its active shadow was read (monotonic seconds) and what it was.
        self._active: dict[str, tuple[float, ActiveShadow | None]] = {}
        self._in_flight = 0
        # Turns skipped per shadow id, not written yet: a running decision writes them when it ends
        # (a turn is only skipped while one runs).
        self._skipped: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- start, stop, report -----------------------------------------------------------

    async def start(
        self, tenant_id: str, release_id: str, sample_rate: float, actor: str
    ) -> tuple[releases_pb2.Shadow, releases_pb2.ReleaseEvent]:
        """Run `release_id` in shadow on `sample_rate` of the tenant's live turns (0 means all),
        stopping the shadow running before; FAILED_PRECONDITION (RELEASE_IS_LIVE) for the live
        release, NOT_FOUND (RELEASE_NOT_FOUND) for one the tenant does not have."""
        # A tenant without releases gets its first, live, so that there is a live release to compare with.
        await self._releases.live_release_id(tenant_id, fresh=True)
        row, event = await asyncio.to_thread(self._start, tenant_id, release_id, sample_rate or 1.0, actor)
        self._follow(row)
        log.info("shadow_started", tenant_id=tenant_id, shadow_id=row.shadow_id, release_id=row.release_id,
                 sample_rate=row.sample_rate)
        return shadow_proto(row), event

    async def stop(self, tenant_id: str, actor: str) -> releases_pb2.Shadow:
        """Stop the tenant's shadow (its decisions stay for the report); NOT_FOUND (NO_SHADOW)."""
        row = await asyncio.to_thread(self._stop, tenant_id, actor)
        self._follow(row)
        log.info("shadow_stopped", tenant_id=tenant_id, shadow_id=row.shadow_id)
        return shadow_proto(row)

    async def report(
        self, tenant_id: str, shadow_id: str, max_disagreements: int
    ) -> releases_pb2.GetShadowReportResponse:
        """The report of one shadow ("": the tenant's latest): see shadow_report.py."""
        row = await asyncio.to_thread(self._find, tenant_id, shadow_id)
        return await shadow_report(self._engine, self._labels, shadow_proto(row), max_disagreements)

    def _start(
        self, tenant_id: str, release_id: str, sample_rate: float, actor: str
    ) -> tuple[ShadowRow, releases_pb2.ReleaseEvent]:
        now = utcnow()
        with self._store.tenant_transaction(tenant_id) as session:
            live = self._store.live_row(session, tenant_id)
            target = live if release_id == LIVE_ALIAS else self._store.row(session, tenant_id, release_id)
            if target is None:
                raise release_not_found(release_id)
            if live is None:  # made above; gone only if the tenant's releases were deleted since
                raise FailedPrecondition("the tenant has no live release to compare with", reason="NO_LIVE_RELEASE")
            if target.state == LIVE:
                raise FailedPrecondition(
                    f"release {target.release_id!r} is live: a shadow runs a release beside the live one",
                    reason="RELEASE_IS_LIVE",
                )
            running = self._running(session, tenant_id)
            if running is not None:
                self._stop_row(session, running, actor, f"replaced by a shadow of {target.release_id}")
            row = ShadowRow(
                shadow_id=str(uuid.uuid4()), tenant_id=tenant_id, release_id=target.release_id,
                live_release_id=live.release_id, sample_rate=sample_rate, active=True, started_by=actor,
                started_at=now, stopped_at=None, shadowed_turns=0, skipped_turns=0,
            )
            session.add(row)
            session.flush()
            event = self._store.add_event(
                session, tenant_id, "SHADOW_STARTED", target.release_id, "", actor,
                f"deciding {sample_rate:.0%} of the live turns in shadow, beside live release {live.release_id}",
            )
            return row, event

    def _stop(self, tenant_id: str, actor: str) -> ShadowRow:
        with self._store.tenant_transaction(tenant_id) as session:
            running = self._running(session, tenant_id)
            if running is None:
                raise _no_shadow()
            self._stop_row(session, running, actor, "stopped")
            return running

    def _stop_row(self, session: Session, row: ShadowRow, actor: str, why: str) -> None:
        row.active = False
        row.stopped_at = utcnow()
        # The one-active index sees it stopped before another starts.
        session.flush()
        self._store.add_event(
            session, row.tenant_id, "SHADOW_STOPPED", row.release_id, "", actor,
            f"{why} after {row.shadowed_turns} turns decided in shadow ({row.skipped_turns} skipped)",
        )

    def _find(self, tenant_id: str, shadow_id: str) -> ShadowRow:
        with Session(self._engine) as session:
            query = sa.select(ShadowRow).where(ShadowRow.tenant_id == tenant_id)
            if shadow_id:
                row = session.scalars(query.where(ShadowRow.shadow_id == shadow_id)).first()
                if row is None:
                    raise NotFound(f"shadow {shadow_id!r} not found for this tenant", reason="SHADOW_NOT_FOUND")
                return row
            row = session.scalars(query.order_by(ShadowRow.started_at.desc()).limit(1)).first()
            if row is None:
                raise NotFound("the tenant has never run a shadow", reason="NO_SHADOW")
            return row

    @staticmethod
    def _running(session: Session, tenant_id: str) -> ShadowRow | None:
        return session.scalars(
            sa.select(ShadowRow).where(ShadowRow.tenant_id == tenant_id, ShadowRow.active.is_(True))
        ).first()

    # --- the live path's side: a cached check and a non-blocking submit ----------------

    async def active(self, tenant_id: str) -> ActiveShadow | None:
        """The tenant's running shadow as read at most ACTIVE_REFRESH_S ago; None when none
        runs, or when it cannot be read (logged: the live turn goes on)."""
        cached = self._active.get(tenant_id)
        if cached is not None and time.monotonic() - cached[0] < self._active_refresh_s:
            return cached[1]
        read_at = time.monotonic()
        try:
            active = await asyncio.to_thread(self._read_active, tenant_id)
        except SQLAlchemyError as error:
            log.warning("shadow_lookup_failed", tenant_id=tenant_id, error=str(error))
            active = None
        self._active[tenant_id] = (read_at, active)
        return active

    def _read_active(self, tenant_id: str) -> ActiveShadow | None:
        with Session(self._engine) as session:
            row = self._running(session, tenant_id)
            return None if row is None else ActiveShadow(row.shadow_id, row.release_id, row.sample_rate)

    def _follow(self, row: ShadowRow) -> None:
        """This replica started or stopped the tenant's shadow: follow it at once."""
        active = ActiveShadow(row.shadow_id, row.release_id, row.sample_rate) if row.active else None
        self._active[row.tenant_id] = (time.monotonic(), active)

    def submit(
        self,
        shadow: ActiveShadow,
        turn: OfferedTurn,
        decide: Callable[[], Awaitable[concierge_pb2.ConverseResponse]],
    ) -> bool:
        """Decide `turn` in shadow in the background when the sample draw hits and the budget
        has room; False when it does not run (a full budget counts the turn as skipped). Never
        waits, never raises."""
        if random.random() >= shadow.sample_rate:
            return False
        if self._in_flight >= self._max_in_flight:
            self._skipped[shadow.shadow_id] += 1
            return False
        self._in_flight += 1
        task = asyncio.create_task(self._run(shadow, turn, decide))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def drain(self) -> None:
        """Wait for the shadow decisions running now to be stored."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Cancel the shadow decisions running now (shutdown: they are not stored)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- the runner ---------------------------------------------------------------------

    async def _run(
        self,
        shadow: ActiveShadow,
        turn: OfferedTurn,
        decide: Callable[[], Awaitable[concierge_pb2.ConverseResponse]],
    ) -> None:
        started = time.monotonic()
        outcome: concierge_pb2.ConverseResponse | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                outcome = await decide()
        except Exception as error:
            # Whatever fails in shadow (a slow or broken candidate) stays in shadow.
            log.warning("shadow_decision_failed", tenant_id=turn.tenant_id, shadow_id=shadow.shadow_id,
                        error_type=type(error).__name__, error=str(error))
        finally:
            self._in_flight -= 1
        duration_ms = (time.monotonic() - started) * 1000
        skipped, self._skipped = self._skipped, Counter()
        try:
            await asyncio.to_thread(self._record, shadow, turn, outcome, duration_ms, skipped)
        except SQLAlchemyError as error:
            log.warning("shadow_decision_not_stored", tenant_id=turn.tenant_id, shadow_id=shadow.shadow_id,
                        error=str(error))

    def _record(
        self,
        shadow: ActiveShadow,
        turn: OfferedTurn,
        outcome: concierge_pb2.ConverseResponse | None,
        duration_ms: float,
        skipped: Counter[str],
    ) -> None:
        """Store the decision (when there is one) and bump the counters, in one transaction."""
        with Session(self._engine) as session, session.begin():
            for shadow_id, count in skipped.items():
                session.execute(
                    sa.update(ShadowRow).where(ShadowRow.shadow_id == shadow_id)
                    .values(skipped_turns=ShadowRow.skipped_turns + count)
                )
            if outcome is None:
                return
            session.add(ShadowDecisionRow(
                shadow_id=shadow.shadow_id, tenant_id=turn.tenant_id, conversation_id=turn.conversation_id,
                turn_index=turn.turn_index, release_id=shadow.release_id, live_release_id=turn.live_release_id,
                decision=concierge_pb2.Decision.Name(outcome.decision).removeprefix("DECISION_").lower(),
                decision_reason=outcome.decision_reason, confidence=outcome.confidence.score,
                threshold=outcome.confidence.threshold, intent=turn.intent, reply=mask(outcome.reply),
                duration_ms=duration_ms, created_at=utcnow(),
            ))
            session.execute(
                sa.update(ShadowRow).where(ShadowRow.shadow_id == shadow.shadow_id)
                .values(shadowed_turns=ShadowRow.shadowed_turns + 1)
            )
