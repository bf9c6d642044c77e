"""A tenant's releases, their events and suite runs in the concierge database (SQLite
by default, PostgreSQL by DATABASE_URL). Sync SQLAlchemy: callers run these methods via
asyncio.to_thread.

Every change to a tenant's releases (create, promote, roll back, record a run) runs in
one transaction that first takes the tenant's lock (a PostgreSQL transaction-level
advisory lock; SQLite's write lock, taken at BEGIN), so numbers are gapless, a request id
makes one release, and the check "exactly one LIVE" and the switch happen together,
across replicas. A partial unique index holds "one LIVE per tenant" as well.

A canary (canary.py) is compared with the release that was live when it started, so any
change of the live release ends the running canary in the same transaction: promoting the
canary's release ends it PROMOTED; promoting another release, or a rollback, ends it STOPPED
(with a CANARY_STOPPED event by the same actor), since its comparison no longer holds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from google.protobuf import json_format
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from aftercare.concierge.v1 import releases_pb2
from servicekit.database import utcnow
from servicekit.errors import FailedPrecondition, NotFound
from services.concierge.models import CanaryRow, ReleaseEventRow, ReleaseRow, SuiteRunRow

CANDIDATE = "CANDIDATE"
LIVE = "LIVE"
RETIRED = "RETIRED"
# Who made the first release of a tenant (from its working copy, on its first conversation).
SYSTEM_ACTOR = "system"

_PROMOTIONS = ("PROMOTED", "PROMOTED_WITH_OVERRIDE")

# CanaryRow states: CanaryState value names without their prefix.
CANARY_RUNNING = "RUNNING"
CANARY_STOPPED = "STOPPED"
CANARY_ROLLED_BACK = "ROLLED_BACK"
CANARY_PROMOTED = "PROMOTED"


def release_not_found(release_id: str) -> NotFound:
    return NotFound(f"release {release_id!r} not found for this tenant", reason="RELEASE_NOT_FOUND")


@dataclass(frozen=True)
class Snapshot:
    """What a new release fixes: its components and the persona and fit it serves with."""

    components: releases_pb2.ReleaseComponents
    persona: dict[str, Any]
    fit: dict[str, Any] | None

    @property
    def digest(self) -> str:
        """sha256 over all of it, in canonical JSON: equal digests, equal releases."""
        body = {"components": _components_json(self.components), "persona": self.persona, "fit": self.fit}
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class StoredRelease:
    """A release as the API shows it, with the snapshots it serves with."""

    release: releases_pb2.Release
    persona: dict[str, Any]
    fit: dict[str, Any] | None


def _components_json(components: releases_pb2.ReleaseComponents) -> dict[str, Any]:
    return json_format.MessageToDict(components, preserving_proto_field_name=True)


def _timestamp(target: Any, value: dt.datetime | None) -> None:
    if value is not None:
        target.FromDatetime(value)


def _suite_run(row: SuiteRunRow) -> releases_pb2.SuiteRun:
    run = releases_pb2.SuiteRun(
        run_id=row.run_id, release_id=row.release_id, suite_digest=row.suite_digest, total=row.total,
        passed=row.passed, run_by=row.run_by, partial=row.partial,
        results=[
            releases_pb2.ScenarioResult(name=str(r["name"]), passed=bool(r["passed"]), failures=list(r["failures"]))
            for r in row.results
        ],
    )
    _timestamp(run.started_at, row.started_at)
    _timestamp(run.finished_at, row.finished_at)
    return run


def _release(row: ReleaseRow, latest_run: SuiteRunRow | None) -> releases_pb2.Release:
    release = releases_pb2.Release(
        tenant_id=row.tenant_id, release_id=row.release_id, number=row.number,
        # Enums by their stored names: a message's constructor takes a value's name as the value.
        state=f"RELEASE_STATE_{row.state}",
        description=row.description, created_by=row.created_by, digest=row.digest,
    )
    json_format.ParseDict(row.components, release.components, ignore_unknown_fields=True)
    _timestamp(release.created_at, row.created_at)
    _timestamp(release.promoted_at, row.promoted_at)
    if latest_run is not None:
        release.latest_suite_run.CopyFrom(_suite_run(latest_run))
    return release


def _event(row: ReleaseEventRow) -> releases_pb2.ReleaseEvent:
    event = releases_pb2.ReleaseEvent(
        sequence=row.sequence, tenant_id=row.tenant_id,
        kind=f"RELEASE_EVENT_KIND_{row.kind}",
        release_id=row.release_id, previous_release_id=row.previous_release_id, actor=row.actor, detail=row.detail,
    )
    _timestamp(event.occurred_at, row.at)
    return event


def suite_verdict(run: SuiteRunRow | None) -> str:
    """Why a release's latest run does not clear it for promotion; "" when it does."""
    if run is None:
        return "no suite run is recorded against it"
    if run.partial:
        return f"its latest suite run ({run.run_id}) covered only part of the suite"
    if run.total == 0 or run.passed != run.total:
        return f"its latest suite run ({run.run_id}) passed {run.passed} of {run.total} scenarios"
    return ""


class ReleaseStore:
    def __init__(self, engine: Engine):
        self._engine = engine

    # --- reads ---------------------------------------------------------------

    def live_release_id(self, tenant_id: str) -> str | None:
        with Session(self._engine) as session:
            return session.scalar(
                sa.select(ReleaseRow.release_id).where(ReleaseRow.tenant_id == tenant_id, ReleaseRow.state == LIVE)
            )

    def load(self, tenant_id: str, release_id: str) -> StoredRelease | None:
        """One release by id ("r3"); None when the tenant has none of that id."""
        with Session(self._engine) as session:
            row = self._row(session, tenant_id, release_id)
            if row is None:
                return None
            runs = self._latest_runs(session, tenant_id, [row.release_id])
            return StoredRelease(_release(row, runs.get(row.release_id)), row.persona, row.fit)

    def list_page(
        self, tenant_id: str, page_size: int, before_number: int | None
    ) -> tuple[list[releases_pb2.Release], int | None]:
        """Releases newest first, below `before_number` when given; with the number to
        continue below, None on the last page."""
        with Session(self._engine) as session:
            query = sa.select(ReleaseRow).where(ReleaseRow.tenant_id == tenant_id)
            if before_number is not None:
                query = query.where(ReleaseRow.number < before_number)
            rows = list(session.scalars(query.order_by(ReleaseRow.number.desc()).limit(page_size + 1)))
            more = len(rows) > page_size
            rows = rows[:page_size]
            runs = self._latest_runs(session, tenant_id, [row.release_id for row in rows])
            releases = [_release(row, runs.get(row.release_id)) for row in rows]
            return releases, (rows[-1].number if more and rows else None)

    def events_page(
        self, tenant_id: str, page_size: int, before_sequence: int | None
    ) -> tuple[list[releases_pb2.ReleaseEvent], int | None]:
        """Events newest first, below `before_sequence` when given (as list_page)."""
        with Session(self._engine) as session:
            query = sa.select(ReleaseEventRow).where(ReleaseEventRow.tenant_id == tenant_id)
            if before_sequence is not None:
                query = query.where(ReleaseEventRow.sequence < before_sequence)
            rows = list(session.scalars(query.order_by(ReleaseEventRow.sequence.desc()).limit(page_size + 1)))
            more = len(rows) > page_size
            rows = rows[:page_size]
            return [_event(row) for row in rows], (rows[-1].sequence if more and rows else None)

    # --- changes -------------------------------------------------------------

    def create(
        self,
        tenant_id: str,
        snapshot: Snapshot,
        *,
        description: str,
        created_by: str,
        request_id: str | None,
        live: bool = False,
    ) -> tuple[StoredRelease, bool]:
        """A new release (CANDIDATE; LIVE for a tenant's first, `live=True`), with its events;
        and whether it was made now. A request id seen before returns that release; a tenant
        that has a live release by the time `live=True` gets the lock gets that one."""
        now = utcnow()
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            self._lock(session, tenant_id)
            existing: ReleaseRow | None = None
            if request_id is not None:
                existing = session.scalars(
                    sa.select(ReleaseRow).where(ReleaseRow.tenant_id == tenant_id, ReleaseRow.request_id == request_id)
                ).first()
            if live and existing is None:
                existing = self._live_row(session, tenant_id)
            if existing is not None:
                runs = self._latest_runs(session, tenant_id, [existing.release_id])
                return StoredRelease(_release(existing, runs.get(existing.release_id)), existing.persona,
                                     existing.fit), False
            number = (session.scalar(
                sa.select(sa.func.max(ReleaseRow.number)).where(ReleaseRow.tenant_id == tenant_id)
            ) or 0) + 1
            row = ReleaseRow(
                tenant_id=tenant_id, number=number, release_id=f"r{number}", state=LIVE if live else CANDIDATE,
                components=_components_json(snapshot.components), persona=snapshot.persona, fit=snapshot.fit,
                digest=snapshot.digest, description=description, created_by=created_by, created_at=now,
                promoted_at=now if live else None, request_id=request_id,
            )
            session.add(row)
            session.add(self._event_row(tenant_id, "CREATED", row.release_id, "", created_by, description, now))
            if live:
                session.add(self._event_row(
                    tenant_id, "PROMOTED", row.release_id, "", created_by,
                    "the tenant's first release: its working copy, live until another is promoted", now,
                ))
            session.flush()
            return StoredRelease(_release(row, None), row.persona, row.fit), True

    def find_by_request(self, tenant_id: str, request_id: str) -> StoredRelease | None:
        """The release a request id made, if any (a retried refit returns it unchanged)."""
        with Session(self._engine) as session:
            row = session.scalars(
                sa.select(ReleaseRow).where(ReleaseRow.tenant_id == tenant_id, ReleaseRow.request_id == request_id)
            ).first()
            if row is None:
                return None
            runs = self._latest_runs(session, tenant_id, [row.release_id])
            return StoredRelease(_release(row, runs.get(row.release_id)), row.persona, row.fit)

    def record_suite_run(self, tenant_id: str, run: releases_pb2.SuiteRun) -> releases_pb2.SuiteRun:
        """Store a run against one of the tenant's releases (its results failures first)."""
        now = utcnow()
        results = sorted(run.results, key=lambda result: result.passed)  # stable: failures first, in order
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            self._lock(session, tenant_id)
            if self._row(session, tenant_id, run.release_id) is None:
                raise release_not_found(run.release_id)
            row = SuiteRunRow(
                run_id=f"run-{uuid.uuid4().hex}", tenant_id=tenant_id, release_id=run.release_id,
                suite_digest=run.suite_digest, total=run.total, passed=run.passed,
                results=[{"name": r.name, "passed": r.passed, "failures": list(r.failures)} for r in results],
                partial=run.partial,
                started_at=run.started_at.ToDatetime(dt.UTC) if run.HasField("started_at") else now,
                finished_at=run.finished_at.ToDatetime(dt.UTC) if run.HasField("finished_at") else now,
                run_by=run.run_by,
            )
            session.add(row)
            score = f"{run.passed}/{run.total} scenarios passed" + (" (part of the suite)" if run.partial else "")
            session.add(self._event_row(
                tenant_id, "SUITE_RECORDED", run.release_id, "", run.run_by, f"{score}, run {row.run_id}", now
            ))
            session.flush()
            return _suite_run(row)

    def promote(
        self, tenant_id: str, release_id: str, actor: str, override_reason: str
    ) -> tuple[releases_pb2.Release, releases_pb2.ReleaseEvent]:
        """Make a CANDIDATE or RETIRED release LIVE, the live one RETIRED: only when its latest
        suite run is complete and all passed, or with an override reason (recorded)."""
        now = utcnow()
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            self._lock(session, tenant_id)
            target = self._row(session, tenant_id, release_id)
            if target is None:
                raise release_not_found(release_id)
            if target.state == LIVE:
                raise FailedPrecondition(f"release {release_id!r} is live already", reason="RELEASE_ALREADY_LIVE")
            latest = self._latest_runs(session, tenant_id, [release_id]).get(release_id)
            not_passed = suite_verdict(latest)
            if not_passed and not override_reason:
                raise FailedPrecondition(
                    f"release {release_id!r} cannot be promoted: {not_passed}; run its suite "
                    "(bench/scenarios.py) or give an override reason",
                    reason="SUITE_NOT_PASSED",
                )
            if not_passed:
                kind, detail = "PROMOTED_WITH_OVERRIDE", f"{override_reason} (suite not passed: {not_passed})"
            else:
                assert latest is not None
                kind = "PROMOTED"
                detail = f"suite passed: {latest.passed}/{latest.total} scenarios, run {latest.run_id}"
            event = self._switch(session, target, kind, actor, detail, now)
            self._end_canary_on_switch(session, target, actor, f"release {release_id} was promoted", now)
            return _release(target, latest), _event(event)

    def rollback(
        self, tenant_id: str, to_release_id: str, actor: str, reason: str
    ) -> tuple[releases_pb2.Release, releases_pb2.ReleaseEvent]:
        """Make a RETIRED release LIVE again: the named one, or the one the live release
        replaced when it was promoted (so rolling back twice walks further back)."""
        now = utcnow()
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            self._lock(session, tenant_id)
            current = self._live_row(session, tenant_id)
            if current is None:
                raise FailedPrecondition("the tenant has no live release to roll back", reason="NO_LIVE_RELEASE")
            if not to_release_id:
                to_release_id = session.scalar(
                    sa.select(ReleaseEventRow.previous_release_id)
                    .where(
                        ReleaseEventRow.tenant_id == tenant_id,
                        ReleaseEventRow.release_id == current.release_id,
                        ReleaseEventRow.kind.in_(_PROMOTIONS),
                    )
                    .order_by(ReleaseEventRow.sequence.desc())
                    .limit(1)
                ) or ""
                if not to_release_id:
                    raise FailedPrecondition(
                        f"no release was live before {current.release_id!r}", reason="NO_EARLIER_RELEASE"
                    )
            target = self._row(session, tenant_id, to_release_id)
            if target is None:
                raise release_not_found(to_release_id)
            if target.state != RETIRED:
                raise FailedPrecondition(
                    f"release {to_release_id!r} is {target.state}: only a retired release (one that served "
                    "before) can be rolled back to",
                    reason="RELEASE_NOT_RETIRED",
                )
            event = self._switch(session, target, "ROLLED_BACK", actor, reason, now)
            self._end_canary_on_switch(
                session, target, actor, f"the live release was rolled back to {target.release_id}", now
            )
            latest = self._latest_runs(session, tenant_id, [target.release_id]).get(target.release_id)
            return _release(target, latest), _event(event)

    @contextlib.contextmanager
    def tenant_transaction(self, tenant_id: str) -> Iterator[Session]:
        """A transaction holding the tenant's release lock: shadows and canaries change with it,
        so they see the same live release as promotions and rollbacks."""
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            self._lock(session, tenant_id)
            yield session

    def add_event(
        self, session: Session, tenant_id: str, kind: str, release_id: str, previous: str, actor: str, detail: str
    ) -> releases_pb2.ReleaseEvent:
        """Record an event in the caller's tenant_transaction; `kind` is a ReleaseEventKind name
        without its prefix."""
        row = self._event_row(tenant_id, kind, release_id, previous, actor, detail, utcnow())
        session.add(row)
        session.flush()
        return _event(row)

    def live_row(self, session: Session, tenant_id: str) -> ReleaseRow | None:
        """The tenant's live release in the caller's transaction."""
        return self._live_row(session, tenant_id)

    def row(self, session: Session, tenant_id: str, release_id: str) -> ReleaseRow | None:
        """One release in the caller's transaction."""
        return self._row(session, tenant_id, release_id)

    def latest_run(self, session: Session, tenant_id: str, release_id: str) -> SuiteRunRow | None:
        """The release's latest suite run in the caller's transaction (what suite_verdict judges)."""
        return self._latest_runs(session, tenant_id, [release_id]).get(release_id)

    @staticmethod
    def running_canary(session: Session, tenant_id: str) -> CanaryRow | None:
        """The tenant's running canary in the caller's transaction."""
        return session.scalars(
            sa.select(CanaryRow).where(CanaryRow.tenant_id == tenant_id, CanaryRow.state == CANARY_RUNNING)
        ).first()

    @staticmethod
    def end_canary(session: Session, canary: CanaryRow, state: str, reason: str) -> None:
        """End a running canary (STOPPED, ROLLED_BACK or PROMOTED) in the caller's tenant_transaction."""
        canary.state = state
        canary.ended_at = utcnow()
        canary.end_reason = reason
        session.flush()

    # --- helpers (inside the caller's transaction) ---------------------------

    def _switch(
        self, session: Session, target: ReleaseRow, kind: str, actor: str, detail: str, now: dt.datetime
    ) -> ReleaseEventRow:
        """Retire the live release and make `target` live, with the event (the tenant is locked)."""
        current = self._live_row(session, target.tenant_id)
        if current is not None:
            current.state = RETIRED
            # The partial unique index sees the old live one retired before the new one is live.
            session.flush()
        target.state = LIVE
        target.promoted_at = now
        event = self._event_row(
            target.tenant_id, kind, target.release_id, current.release_id if current else "", actor, detail, now
        )
        session.add(event)
        session.flush()
        return event

    def _end_canary_on_switch(
        self, session: Session, live: ReleaseRow, actor: str, change: str, now: dt.datetime
    ) -> None:
        """`live` just became the tenant's live release (`change` says how): end the running
        canary (module doc)."""
        canary = self.running_canary(session, live.tenant_id)
        if canary is None:
            return
        if canary.release_id == live.release_id:
            self.end_canary(session, canary, CANARY_PROMOTED, f"{change}: the canary's release is live")
            return
        reason = f"{change}: the canary was compared with {canary.live_release_id}, no longer live"
        self.end_canary(session, canary, CANARY_STOPPED, reason)
        session.add(self._event_row(live.tenant_id, "CANARY_STOPPED", canary.release_id, "", actor, reason, now))
        session.flush()

    @staticmethod
    def _event_row(
        tenant_id: str, kind: str, release_id: str, previous: str, actor: str, detail: str, now: dt.datetime
    ) -> ReleaseEventRow:
        return ReleaseEventRow(
            tenant_id=tenant_id, kind=kind, release_id=release_id, previous_release_id=previous, actor=actor,
            detail=detail, at=now,
        )

    @staticmethod
    def _lock(session: Session, tenant_id: str) -> None:
        """Serialize the tenant's release changes until the transaction ends (module doc)."""
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            key = zlib.crc32(f"concierge.releases/{tenant_id}".encode())
            session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        elif dialect == "sqlite":
            # The write lock now, not at the first write: two writers cannot both read the same state.
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")

    @staticmethod
    def _row(session: Session, tenant_id: str, release_id: str) -> ReleaseRow | None:
        return session.scalars(
            sa.select(ReleaseRow).where(ReleaseRow.tenant_id == tenant_id, ReleaseRow.release_id == release_id)
        ).first()

    @staticmethod
    def _live_row(session: Session, tenant_id: str) -> ReleaseRow | None:
        return session.scalars(
            sa.select(ReleaseRow).where(ReleaseRow.tenant_id == tenant_id, ReleaseRow.state == LIVE)
        ).first()

    @staticmethod
    def _latest_runs(session: Session, tenant_id: str, release_ids: Sequence[str]) -> dict[str, SuiteRunRow]:
        if not release_ids:
            return {}
        newest = (
            sa.select(sa.func.max(SuiteRunRow.sequence))
            .where(SuiteRunRow.tenant_id == tenant_id, SuiteRunRow.release_id.in_(release_ids))
            .group_by(SuiteRunRow.release_id)
        )
        rows = session.scalars(sa.select(SuiteRunRow).where(SuiteRunRow.sequence.in_(newest)))
        return {row.release_id: row for row in rows}
