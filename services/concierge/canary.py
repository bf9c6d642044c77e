"""Canaries: a release served to a share of a tenant's conversations, compared with the
live release as judgements arrive, and rolled back automatically when it is worse past the
policy's bound.

Assignment. A conversation is drawn once per canary: the first 8 hex digits of
sha256(salt + ":" + conversation_id), modulo 10,000, below percent x 100. The salt is random
per canary, so the draw is fixed for a conversation (every turn of it gets the same release),
new for the next canary, and unrelated to who the customer is. A replica re-reads the
tenant's running canary at most every second, so every replica follows a start, a stop or a
rollback within about a second (at once on the replica that made the change).

Statistics. Two rates of bad outcomes are compared, canary arm against live arm, on the
turns each served since the canary started: escalations per decided turn (turns a human
answered are not the release's decision and are left out), and answers judged wrong per
judged answer the arm gave (HumanLabels). Only answers the customer got count: an agent's
verdict on the candidate answer of an escalated turn is left out, since both arms match the
same candidate (only the gate differs) and a wrong candidate held back harmed nobody;
counting it would let a canary that answers too much look exactly as accurate as live.

For each rate, Newcombe's hybrid score interval for canary rate minus live rate (Wilson's
score interval per arm, Newcombe 1998, method 10) is computed at the policy's one-sided
confidence, and the canary is rolled back when, with at least the minimum observations in
both arms, the interval's lower end is above the margin. Why this interval: it stays honest
at small counts and at rates near 0 or 1, where the Wald interval is too narrow and would
roll back on noise; it has a closed form, cheap to recompute at every evaluation; and a lower
end above the margin reads directly as "worse by more than the margin", so a canary as good
as live is never rolled back for being no better. The evaluation is repeated as judgements
arrive, which inflates the false-alarm rate of any fixed-level test: the default one-sided
0.99 and the minimum counts keep it low.

Rollback. The live release never changes during a canary (promoting or rolling back ends the
canary, release_store.py), so rolling back ends the canary's serving and nothing else: in one
tenant_transaction the canary goes RUNNING -> ROLLED_BACK with a CANARY_ROLLED_BACK event by
"system" carrying the figures. Every replica runs the monitor; the transaction re-checks the
state, so exactly one of them rolls back. A turn already being served finishes on its release.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import math
import secrets
import statistics
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
import structlog
from google.protobuf import json_format
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from aftercare.concierge.v1 import concierge_pb2, releases_pb2
from servicekit.database import utcnow
from servicekit.errors import FailedPrecondition, NotFound
from services.concierge.human_labels import CUSTOMER, HumanLabels, TurnLabel
from services.concierge.models import CanaryRow, TurnRow
from services.concierge.release_store import (
    CANARY_ROLLED_BACK,
    CANARY_RUNNING,
    CANARY_STOPPED,
    LIVE,
    SYSTEM_ACTOR,
    ReleaseStore,
    release_not_found,
    suite_verdict,
)

log = structlog.get_logger(__name__)

# How stale a replica's idea of a tenant's running canary may be.
CANARY_REFRESH_S = 1.0
# The draw's resolution: a percent is 100 buckets.
DRAW_BUCKETS = 10_000
# The proto's CanaryPolicy defaults (its zero fields take these).
DEFAULT_POLICY = releases_pb2.CanaryPolicy(
    accuracy_margin=0.05, escalation_margin=0.10, min_judged=20, min_turns=30, confidence=0.99
)
_ESCALATED = concierge_pb2.Decision.Name(concierge_pb2.DECISION_ESCALATED)
# A human answered these turns: the release decided nothing.
_FORWARDED = concierge_pb2.Decision.Name(concierge_pb2.DECISION_FORWARDED)
# An answered turn as a TurnLabel spells its decision.
_ANSWERED_LABEL = concierge_pb2.Decision.Name(concierge_pb2.DECISION_ANSWERED).removeprefix("DECISION_").lower()


def draw(salt: str, conversation_id: str, percent: int) -> bool:
    """Whether the canary with `salt` serves the conversation (module doc)."""
    digest = hashlib.sha256(f"{salt}:{conversation_id}".encode()).hexdigest()
    return int(digest[:8], 16) % DRAW_BUCKETS < percent * (DRAW_BUCKETS // 100)


def with_defaults(policy: releases_pb2.CanaryPolicy) -> releases_pb2.CanaryPolicy:
    """The policy with its zero fields set to the defaults."""
    filled = releases_pb2.CanaryPolicy()
    filled.CopyFrom(DEFAULT_POLICY)
    for field in releases_pb2.CanaryPolicy.DESCRIPTOR.fields:
        value = getattr(policy, field.name)
        if value:
            setattr(filled, field.name, value)
    return filled


# --- statistics ---------------------------------------------------------------


def wilson_interval(successes: int, trials: int, z: float) -> tuple[float, float]:
    """Wilson's score interval for a proportion, at normal quantile `z`."""
    if trials <= 0:
        raise ValueError("a proportion needs at least one trial")
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    return centre - half, centre + half


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, z: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p1 - p2 (x1 of n1 against x2 of n2): the
    difference, widened on each side by the two Wilson intervals' distances in that direction
    (Newcombe 1998, method 10). z = 1.96: the two-sided 95% interval; for a one-sided bound at
    confidence c, z = the normal quantile of c."""
    p1, p2 = x1 / n1, x2 / n2
    low1, high1 = wilson_interval(x1, n1, z)
    low2, high2 = wilson_interval(x2, n2, z)
    difference = p1 - p2
    return (
        difference - math.sqrt((p1 - low1) ** 2 + (high2 - p2) ** 2),
        difference + math.sqrt((high1 - p1) ** 2 + (p2 - low2) ** 2),
    )


@dataclass(frozen=True)
class Comparison:
    """One bad-outcome rate, canary arm against live arm."""

    metric: str  # "escalation", "wrong answers"
    unit: str  # what is counted: "turns", "judged answers"
    canary_bad: int
    canary_total: int
    live_bad: int
    live_total: int
    minimum: int
    margin: float
    # Lower end of the one-sided interval for canary rate - live rate; None below the minimum.
    lower_bound: float | None

    @property
    def worse(self) -> bool:
        return self.lower_bound is not None and self.lower_bound > self.margin

    def words(self) -> str:
        if self.lower_bound is None:
            fewest = min(self.canary_total, self.live_total)
            return f"{self.metric}: not enough {self.unit} yet ({fewest} of {self.minimum} in each arm)"
        canary_rate, live_rate = self.canary_bad / self.canary_total, self.live_bad / self.live_total
        relation = ">" if self.worse else "<="
        return (
            f"{self.metric} {canary_rate:.2f} vs {live_rate:.2f}, lower bound {self.lower_bound:+.2f} "
            f"{relation} margin {self.margin:.2f} over {self.canary_total}/{self.live_total} {self.unit}"
        )


def compare(
    metric: str, unit: str, canary: tuple[int, int], live: tuple[int, int], *, minimum: int, margin: float,
    confidence: float,
) -> Comparison:
    """Compare (bad, total) of the two arms: the lower bound once both have `minimum` observations."""
    (canary_bad, canary_total), (live_bad, live_total) = canary, live
    lower_bound = None
    if min(canary_total, live_total) >= max(minimum, 1):
        z = statistics.NormalDist().inv_cdf(confidence)
        lower_bound = newcombe_interval(canary_bad, canary_total, live_bad, live_total, z)[0]
    return Comparison(metric, unit, canary_bad, canary_total, live_bad, live_total, minimum, margin, lower_bound)


def verdict(comparisons: Iterable[Comparison]) -> str:
    """The evaluation in words: what made the canary worse, else every comparison."""
    comparisons = list(comparisons)
    worse = [c.words() for c in comparisons if c.worse]
    if worse:
        return "canary worse: " + "; ".join(worse)
    return "no worse past the margins: " + "; ".join(c.words() for c in comparisons)


# --- the arms ---------------------------------------------------------------------


def arm(release_id: str, turns: tuple[int, int], labels: Iterable[TurnLabel]) -> releases_pb2.CanaryArm:
    """One arm's figures: (decided turns, escalated) and the human labels of its turns; judged
are the answers it gave that humans judged (module doc)."""
    decided, escalated = turns
    judged = [label for label in labels if label.decision == _ANSWERED_LABEL and label.correct is not None]
    rated = [label for label in judged if label.source == CUSTOMER]
    judged_correct = sum(1 for label in judged if label.correct)
    return releases_pb2.CanaryArm(
        release_id=release_id,
        turns=decided,
        escalated=escalated,
        escalation_rate=escalated / decided if decided else 0.0,
        judged=len(judged),
        judged_correct=judged_correct,
        judged_accuracy=judged_correct / len(judged) if judged else 0.0,
        rated=len(rated),
        rated_helpful=sum(1 for label in rated if label.correct),
    )


def comparisons(
    canary: releases_pb2.CanaryArm, live: releases_pb2.CanaryArm, policy: releases_pb2.CanaryPolicy
) -> list[Comparison]:
    """Both metrics of the policy, canary arm against live arm."""
    return [
        compare(
            "escalation", "turns", (canary.escalated, canary.turns), (live.escalated, live.turns),
            minimum=policy.min_turns, margin=policy.escalation_margin, confidence=policy.confidence,
        ),
        compare(
            "wrong answers", "judged answers",
            (canary.judged - canary.judged_correct, canary.judged), (live.judged - live.judged_correct, live.judged),
            minimum=policy.min_judged, margin=policy.accuracy_margin, confidence=policy.confidence,
        ),
    ]


# --- stored canaries ------------------------------------------------------------------


def _message_json(message: releases_pb2.CanaryPolicy | releases_pb2.CanaryArm) -> dict[str, object]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _canary(row: CanaryRow) -> releases_pb2.Canary:
    canary = releases_pb2.Canary(
        tenant_id=row.tenant_id, canary_id=row.canary_id, release_id=row.release_id,
        live_release_id=row.live_release_id, percent=row.percent,
        # Enums by their stored names: a message's constructor takes a value's name as the value.
        state=f"CANARY_STATE_{row.state}",
        started_by=row.started_by, end_reason=row.end_reason,
    )
    json_format.ParseDict(row.policy, canary.policy, ignore_unknown_fields=True)
    if row.evaluation is not None:
        json_format.ParseDict(row.evaluation["canary"], canary.canary, ignore_unknown_fields=True)
        json_format.ParseDict(row.evaluation["live"], canary.live, ignore_unknown_fields=True)
        canary.verdict = row.evaluation["verdict"]
    canary.started_at.FromDatetime(row.started_at)
    if row.ended_at is not None:
        canary.ended_at.FromDatetime(row.ended_at)
    if row.evaluated_at is not None:
        canary.evaluated_at.FromDatetime(row.evaluated_at)
    return canary


def policy_words(policy: releases_pb2.CanaryPolicy) -> str:
    return (
        f"rolled back when worse than live by more than {policy.escalation_margin:.2f} in escalation rate "
        f"(from {policy.min_turns} turns per arm) or {policy.accuracy_margin:.2f} in wrong answers (from "
        f"{policy.min_judged} judged answers per arm), at one-sided confidence {policy.confidence:g}"
    )


@dataclass(frozen=True)
class Assignment:
    """A tenant's running canary as the draw needs it."""

    release_id: str
    percent: int
    salt: str


@dataclass(frozen=True)
class RunningCanary:
    """What an evaluation reads of the running canary before it counts."""

    canary_id: str
    release_id: str
    live_release_id: str
    started_at: dt.datetime
    policy: releases_pb2.CanaryPolicy


class CanaryBook:
    """A concierge replica's view of the tenants' canaries (module doc)."""

    def __init__(self, engine: Engine, labels: HumanLabels | None, *, refresh_s: float = CANARY_REFRESH_S):
        self._engine = engine
        self.store = ReleaseStore(engine)
        # None: no human judgements are read; only escalation rates are compared.
        self._labels = labels
        self._refresh_s = refresh_s
        # Per tenant: when its running canary was read (monotonic seconds) and what it was.
        self._assignments: dict[str, tuple[float, Assignment | None]] = {}

    # --- serving ---------------------------------------------------------------------

    async def assigned_release(self, tenant_id: str, conversation_id: str) -> str | None:
        """The canary's release when the tenant runs one and the conversation is drawn into it."""
        cached = self._assignments.get(tenant_id)
        if cached is None or time.monotonic() - cached[0] >= self._refresh_s:
            read_at = time.monotonic()
            cached = (read_at, await asyncio.to_thread(self._assignment, tenant_id))
            self._assignments[tenant_id] = cached
        assignment = cached[1]
        if assignment is None or not draw(assignment.salt, conversation_id, assignment.percent):
            return None
        return assignment.release_id

    def forget(self, tenant_id: str) -> None:
        """This replica changed the tenant's canary (or its live release): read it again at once."""
        self._assignments.pop(tenant_id, None)

    def _assignment(self, tenant_id: str) -> Assignment | None:
        with Session(self._engine) as session:
            row = session.execute(
                sa.select(CanaryRow.release_id, CanaryRow.percent, CanaryRow.salt)
                .where(CanaryRow.tenant_id == tenant_id, CanaryRow.state == CANARY_RUNNING)
            ).first()
        return Assignment(row.release_id, row.percent, row.salt) if row is not None else None

    # --- starting, stopping, reading ------------------------------------------------------

    async def start(
        self,
        tenant_id: str,
        release_id: str,
        percent: int,
        policy: releases_pb2.CanaryPolicy,
        actor: str,
        override_reason: str,
    ) -> tuple[releases_pb2.Canary, releases_pb2.ReleaseEvent]:
        """Serve `release_id` to `percent` of the tenant's conversations: refused for the live
        release (RELEASE_IS_LIVE), while another canary runs (CANARY_RUNNING), and while the
        release's suite has not passed without an override reason (SUITE_NOT_PASSED)."""
        started = await asyncio.to_thread(
            self._start, tenant_id, release_id, percent, with_defaults(policy), actor, override_reason
        )
        self.forget(tenant_id)
        log.info("canary_started", tenant_id=tenant_id, release_id=release_id, percent=percent, by=actor)
        return started

    def _start(
        self,
        tenant_id: str,
        release_id: str,
        percent: int,
        policy: releases_pb2.CanaryPolicy,
        actor: str,
        override_reason: str,
    ) -> tuple[releases_pb2.Canary, releases_pb2.ReleaseEvent]:
        with self.store.tenant_transaction(tenant_id) as session:
            target = self.store.row(session, tenant_id, release_id)
            if target is None:
                raise release_not_found(release_id)
            if target.state == LIVE:
                raise FailedPrecondition(
                    f"release {release_id!r} is live: a canary serves a release that is not", reason="RELEASE_IS_LIVE"
                )
            running = self.store.running_canary(session, tenant_id)
            if running is not None:
                raise FailedPrecondition(
                    f"canary {running.canary_id} of release {running.release_id!r} is running: stop it first",
                    reason="CANARY_RUNNING",
                )
            live = self.store.live_row(session, tenant_id)
            if live is None:
                raise FailedPrecondition("the tenant has no live release to compare with", reason="NO_LIVE_RELEASE")
            not_passed = suite_verdict(self.store.latest_run(session, tenant_id, release_id))
            if not_passed and not override_reason:
                raise FailedPrecondition(
                    f"release {release_id!r} cannot serve as a canary: {not_passed}; run its suite "
                    "(bench/scenarios.py) or give an override reason",
                    reason="SUITE_NOT_PASSED",
                )
            row = CanaryRow(
                canary_id=str(uuid.uuid4()), tenant_id=tenant_id, release_id=release_id,
                live_release_id=live.release_id, percent=percent, salt=secrets.token_hex(16), state=CANARY_RUNNING,
                policy=_message_json(policy), started_by=actor, started_at=utcnow(), end_reason="",
            )
            session.add(row)
            session.flush()
            detail = f"{percent}% of conversations, compared with live {live.release_id}; {policy_words(policy)}"
            if not_passed:
                detail += f"; started by override: {override_reason} (suite not passed: {not_passed})"
            event = self.store.add_event(session, tenant_id, "CANARY_STARTED", release_id, "", actor, detail)
            return _canary(row), event

    async def stop(self, tenant_id: str, actor: str, reason: str) -> releases_pb2.Canary:
        """End the running canary by hand (STOPPED); NotFound (NO_CANARY) when none runs."""
        stopped = await asyncio.to_thread(self._stop, tenant_id, actor, reason)
        self.forget(tenant_id)
        log.info("canary_stopped", tenant_id=tenant_id, release_id=stopped.release_id, by=actor)
        return stopped

    def _stop(self, tenant_id: str, actor: str, reason: str) -> releases_pb2.Canary:
        with self.store.tenant_transaction(tenant_id) as session:
            running = self.store.running_canary(session, tenant_id)
            if running is None:
                raise NotFound("the tenant runs no canary", reason="NO_CANARY")
            self.store.end_canary(session, running, CANARY_STOPPED, reason)
            self.store.add_event(session, tenant_id, "CANARY_STOPPED", running.release_id, "", actor, reason)
            return _canary(running)

    async def get(self, tenant_id: str) -> releases_pb2.Canary:
        """The running canary, else the latest; NotFound (NO_CANARY) if the tenant never ran one."""
        return await asyncio.to_thread(self._get, tenant_id)

    def _get(self, tenant_id: str) -> releases_pb2.Canary:
        with Session(self._engine) as session:
            row = self.store.running_canary(session, tenant_id) or session.scalars(
                sa.select(CanaryRow).where(CanaryRow.tenant_id == tenant_id)
                .order_by(CanaryRow.started_at.desc()).limit(1)
            ).first()
            if row is None:
                raise NotFound("the tenant never ran a canary", reason="NO_CANARY")
            return _canary(row)

    # --- evaluating --------------------------------------------------------------------

    async def evaluate(self, tenant_id: str) -> releases_pb2.Canary:
        """Evaluate the running canary once, store the figures, and roll it back when it is
        worse past the policy's bound (module doc). Without a running canary: the latest."""
        running = await asyncio.to_thread(self._running, tenant_id)
        if running is None:
            return await self.get(tenant_id)
        release_ids = (running.release_id, running.live_release_id)
        turns = await asyncio.to_thread(self._turn_counts, tenant_id, running.started_at, release_ids)
        labels: dict[str, list[TurnLabel]] = {release_id: [] for release_id in release_ids}
        if self._labels is not None:
            for label in await self._labels.labels(tenant_id, since=running.started_at, release_ids=release_ids):
                labels.setdefault(label.release_id, []).append(label)
        canary_arm, live_arm = (
            arm(release_id, turns.get(release_id, (0, 0)), labels[release_id]) for release_id in release_ids
        )
        compared = comparisons(canary_arm, live_arm, running.policy)
        canary, rolled_back = await asyncio.to_thread(
            self._record, tenant_id, running.canary_id, canary_arm, live_arm, compared
        )
        if rolled_back:
            self.forget(tenant_id)
            log.warning("canary_rolled_back", tenant_id=tenant_id, release_id=running.release_id,
                        verdict=canary.verdict)
        return canary

    def _running(self, tenant_id: str) -> RunningCanary | None:
        with Session(self._engine) as session:
            row = self.store.running_canary(session, tenant_id)
            if row is None:
                return None
            policy = releases_pb2.CanaryPolicy()
            json_format.ParseDict(row.policy, policy, ignore_unknown_fields=True)
            return RunningCanary(row.canary_id, row.release_id, row.live_release_id, row.started_at, policy)

    def _turn_counts(
        self, tenant_id: str, since: dt.datetime, release_ids: Iterable[str]
    ) -> dict[str, tuple[int, int]]:
        """Per release: (turns it decided, of those escalated) since `since`."""
        # COUNT skips NULLs: the case is NULL for every turn not escalated.
        escalated = sa.func.count(sa.case((TurnRow.decision == _ESCALATED, 1)))
        with Session(self._engine) as session:
            rows = session.execute(
                sa.select(TurnRow.release_id, sa.func.count(), escalated)
                .where(
                    TurnRow.tenant_id == tenant_id,
                    TurnRow.release_id.in_(list(release_ids)),
                    TurnRow.created_at >= since,
                    TurnRow.decision != _FORWARDED,
                )
                .group_by(TurnRow.release_id)
            )
            return {release_id: (total, bad) for release_id, total, bad in rows}

    def _record(
        self,
        tenant_id: str,
        canary_id: str,
        canary_arm: releases_pb2.CanaryArm,
        live_arm: releases_pb2.CanaryArm,
        compared: list[Comparison],
    ) -> tuple[releases_pb2.Canary, bool]:
        """Store the evaluation and roll back when worse, unless the canary ended meanwhile;
        with whether it rolled back now."""
        words = verdict(compared)
        with self.store.tenant_transaction(tenant_id) as session:
            row = session.get(CanaryRow, canary_id)
            assert row is not None  # canaries are never deleted
            if row.state != CANARY_RUNNING:
                return _canary(row), False
            row.evaluation = {"canary": _message_json(canary_arm), "live": _message_json(live_arm), "verdict": words}
            row.evaluated_at = utcnow()
            rolled_back = any(c.worse for c in compared)
            if rolled_back:
                self.store.end_canary(session, row, CANARY_ROLLED_BACK, words)
                self.store.add_event(
                    session, tenant_id, "CANARY_ROLLED_BACK", row.release_id, "", SYSTEM_ACTOR,
                    f"{words} (canary {canary_arm.release_id} against live {live_arm.release_id})",
                )
            session.flush()
            return _canary(row), rolled_back

    async def run_monitor(self, interval_s: float) -> None:
        """Evaluate every running canary every `interval_s` seconds, until cancelled. A failed
        evaluation is logged and tried again at the next interval."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                tenants = await asyncio.to_thread(self._running_tenants)
            except Exception:  # the database is away: try again at the next interval
                log.exception("canary_monitor_failed")
                continue
            for tenant_id in tenants:
                try:
                    await self.evaluate(tenant_id)
                except Exception:  # one tenant's failure never stops the others' monitoring
                    log.exception("canary_evaluation_failed", tenant_id=tenant_id)

    def _running_tenants(self) -> list[str]:
        with Session(self._engine) as session:
            return list(session.scalars(sa.select(CanaryRow.tenant_id).where(CanaryRow.state == CANARY_RUNNING)))
