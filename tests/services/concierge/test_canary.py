"""Canaries (services/concierge/canary.py, with release_store.py and release_servicer.py): a
release served to a share of a tenant's conversations by a sticky random draw, started behind
the suite (or an admin's recorded override), compared with the live release by Newcombe's
interval on escalation and wrong-answer rates, and rolled back automatically by "system" when
worse past the policy's margin; promoting its release ends it PROMOTED, a rollback STOPPED.

The concierge is the real ConciergeServicer on the doubles of test_concierge.py, serving by the
real ReleaseBook with a real CanaryBook and HumanLabels on its database; the stand-in fit scores
every answer 0.88, so the live release (threshold 0.85) answers and a candidate with threshold
0.95 escalates everything."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from aftercare.concierge.v1 import concierge_pb2, releases_pb2
from servicekit.database import make_engine
from servicekit.errors import ApiError, FailedPrecondition, InvalidArgument, NotFound
from services.concierge.canary import CanaryBook, draw, newcombe_interval, wilson_interval
from services.concierge.human_labels import HumanLabels
from services.concierge.models import TurnRow
from services.concierge.release_servicer import ReleaseServicer
from services.concierge.releases import ReleaseBook
from services.concierge.servicer import ConciergeServicer
from services.concierge.settings import ConciergeSettings
from services.concierge.store import ConversationStore
from tests.services.concierge.test_concierge import (
    QUESTION,
    FakeEscalation,
    FakeLlm,
    FakeRetrieval,
    FakeTriage,
    _refuse,
    rate,
    request,
    stand_in,
)

D = concierge_pb2
R = releases_pb2
# The servicer's methods are called directly; none of them reads its context.
CONTEXT: Any = None
TENANT = "demo"
ADMIN = "admin-key-ops"
# Logit of the stand-in fit: score 0.88, above the default threshold 0.85.
HIGH = 2.0
# A candidate that escalates every answer the live release gives (score 0.88 < 0.95).
STRICT = {"": 0.95}
# Small minimums, so that a few dozen conversations decide.
QUICK = R.CanaryPolicy(min_turns=10, min_judged=8)
# z of a two-sided 95% interval.
Z95 = statistics.NormalDist().inv_cdf(0.975)


# --- the statistics and the draw --------------------------------------------------------


def test_newcombe_interval_matches_the_published_examples() -> None:
    # Newcombe (1998), "Interval estimation for the difference between independent proportions",
    # example (a): 56/70 - 48/80, 95% CI 0.0524 to 0.3339; example (e): 5/56 - 0/29, -0.0381 to 0.1926.
    low, high = newcombe_interval(56, 70, 48, 80, Z95)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    low, high = newcombe_interval(5, 56, 0, 29, Z95)
    assert (round(low, 4), round(high, 4)) == (-0.0381, 0.1926)
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion": 81/263, 0.2553 to 0.3662.
    low, high = wilson_interval(81, 263, Z95)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    # Swapping the arms mirrors the interval.
    low, high = newcombe_interval(48, 80, 56, 70, Z95)
    assert (round(low, 4), round(high, 4)) == (-0.3339, -0.0524)


def test_the_draw_is_sticky_and_close_to_the_percent() -> None:
    conversations = [f"web-{index:05d}" for index in range(10_000)]
    drawn = {c for c in conversations if draw("salt-a", c, 10)}
    # 10% of 10,000: the binomial's standard deviation is 30, so 900..1100 is over 3 of them.
    assert 900 <= len(drawn) <= 1100
    assert drawn == {c for c in conversations if draw("salt-a", c, 10)}, "the same draw every time"
    # Another canary (another salt) draws afresh: about 10% of the first one's conversations again.
    again = {c for c in conversations if draw("salt-b", c, 10)}
    assert 40 <= len(drawn & again) <= 170
    assert len({c for c in conversations if draw("salt-a", c, 50)}) in range(4800, 5201)
    assert not any(draw("salt-a", c, 0) for c in conversations)


# --- a concierge serving by release with canaries ---------------------------------------


@dataclass
class Canaried:
    servicer: ConciergeServicer
    service: ReleaseServicer
    book: ReleaseBook
    canaries: CanaryBook
    escalation: FakeEscalation
    engine: Engine
    candidates: int = 0

    async def say(self, conversation_id: str, text: str = QUESTION) -> D.ConverseResponse:
        return await self.servicer.Converse(request(text, conversation_id=conversation_id), CONTEXT)

    async def candidate(self, **overrides: object) -> str:
        self.candidates += 1
        stored = await self.book.create(
            TENANT, description="a candidate under test", created_by=ADMIN, request_id=f"candidate-{self.candidates}",
            overrides=R.ReleaseOverrides(**overrides),  # type: ignore[arg-type]
        )
        return stored.release.release_id

    async def start(
        self, release_id: str, percent: int = 50, policy: R.CanaryPolicy = QUICK, override: str = "planted in a test"
    ) -> R.StartCanaryResponse:
        return await self.service.StartCanary(R.StartCanaryRequest(
            tenant_id=TENANT, release_id=release_id, percent=percent, policy=policy, actor=ADMIN,
            override_reason=override,
        ), CONTEXT)

    async def canary(self) -> R.Canary:
        return (await self.service.GetCanary(R.GetCanaryRequest(tenant_id=TENANT), CONTEXT)).canary

    async def events(self) -> list[R.ReleaseEvent]:
        listed = await self.service.ListReleaseEvents(R.ListReleaseEventsRequest(tenant_id=TENANT), CONTEXT)
        return list(listed.events)

    def stored(self) -> dict[tuple[str, int], str]:
        """The release of each stored turn, by (conversation, turn index)."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(TurnRow.conversation_id, TurnRow.turn_index, TurnRow.release_id))
            return {(str(c), int(i)): str(r) for c, i, r in rows}


def canaried(engine: Engine, refresh_s: float = 1.0) -> Canaried:
    config = ConciergeSettings(
        port=0, retrieval_addr="x", triage_addr="x", escalation_addr="x", llm_base_url="http://llm.test/v1",
    )
    store = ConversationStore(engine)
    store.migrate()
    confidence = stand_in(config, HIGH)
    canaries = CanaryBook(engine, HumanLabels(engine, None), refresh_s=refresh_s)
    book = ReleaseBook(engine, config, confidence=confidence, canaries=canaries)
    escalation = FakeEscalation()
    servicer = ConciergeServicer(
        config, FakeRetrieval(), FakeTriage(), escalation, FakeLlm(fail=_refuse).client(), store,  # type: ignore[arg-type]
        confidence=confidence, releases=book,
    )
    return Canaried(servicer, ReleaseServicer(book), book, canaries, escalation, engine)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'concierge.db'}")
    yield engine
    engine.dispose()


def passing_run(release_id: str) -> R.RecordSuiteRunRequest:
    return R.RecordSuiteRunRequest(tenant_id=TENANT, run=R.SuiteRun(
        release_id=release_id, suite_digest="sha256:suite-v1", total=1, passed=1,
        results=[R.ScenarioResult(name="refund", passed=True)], run_by=ADMIN,
    ))


async def refused(call: object) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await call  # type: ignore[misc]
    return caught.value


# --- starting and ending ----------------------------------------------------------------


async def test_a_canary_starts_only_behind_a_passed_suite_or_a_recorded_override(engine: Engine) -> None:
    rig = canaried(engine)
    assert (await refused(rig.canary())).reason == "NO_CANARY"
    candidate = await rig.candidate(thresholds=STRICT)

    unproven = await refused(rig.start(candidate, override=""))
    assert isinstance(unproven, FailedPrecondition) and unproven.reason == "SUITE_NOT_PASSED"
    assert (await refused(rig.start("r1"))).reason == "RELEASE_IS_LIVE"
    assert (await refused(rig.start("r9"))).reason == "RELEASE_NOT_FOUND"

    await rig.service.RecordSuiteRun(passing_run(candidate), CONTEXT)
    started = await rig.start(candidate, percent=10, policy=R.CanaryPolicy(min_turns=40), override="")
    canary = started.canary
    assert (canary.release_id, canary.live_release_id, canary.percent) == (candidate, "r1", 10)
    assert (canary.state, canary.started_by) == (R.CANARY_STATE_RUNNING, ADMIN)
    # Zero fields take the proto's defaults; the one set stays.
    assert canary.policy == R.CanaryPolicy(
        accuracy_margin=0.05, escalation_margin=0.10, min_judged=20, min_turns=40, confidence=0.99
    )
    assert (started.event.kind, started.event.actor) == (R.RELEASE_EVENT_KIND_CANARY_STARTED, ADMIN)
    assert started.event.detail.startswith("10% of conversations, compared with live r1")
    assert await rig.canary() == canary

    other = await rig.candidate()
    assert (await refused(rig.start(other))).reason == "CANARY_RUNNING"

    stop = R.StopCanaryRequest(tenant_id=TENANT, actor=ADMIN, reason="enough for today")
    stopped = (await rig.service.StopCanary(stop, CONTEXT)).canary
    assert (stopped.state, stopped.end_reason) == (R.CANARY_STATE_STOPPED, "enough for today")
    assert stopped.HasField("ended_at")
    assert (await refused(rig.service.StopCanary(stop, CONTEXT))).reason == "NO_CANARY"
    # Without a passed suite, with an override: started, and the event records why.
    overridden = await rig.start(other, override="hotfix for the refund wording")
    assert "started by override: hotfix for the refund wording" in overridden.event.detail
    assert "no suite run is recorded against it" in overridden.event.detail
    canary_kinds = (R.RELEASE_EVENT_KIND_CANARY_STARTED, R.RELEASE_EVENT_KIND_CANARY_STOPPED)
    kinds = [(e.kind, e.release_id, e.actor) for e in await rig.events() if e.kind in canary_kinds]
    assert kinds == [
        (R.RELEASE_EVENT_KIND_CANARY_STARTED, other, ADMIN),
        (R.RELEASE_EVENT_KIND_CANARY_STOPPED, candidate, ADMIN),
        (R.RELEASE_EVENT_KIND_CANARY_STARTED, candidate, ADMIN),
    ]


async def test_promoting_the_canary_ends_it_promoted_and_a_rollback_stops_it(engine: Engine) -> None:
    rig = canaried(engine)
    await rig.book.live_release_id(TENANT, fresh=True)
    candidate = await rig.candidate()
    await rig.start(candidate)
    promote = R.PromoteReleaseRequest(tenant_id=TENANT, release_id=candidate, actor=ADMIN, override_reason="canary ok")
    await rig.service.PromoteRelease(promote, CONTEXT)
    promoted = await rig.canary()
    assert promoted.state == R.CANARY_STATE_PROMOTED and promoted.HasField("ended_at")
    assert promoted.end_reason == f"release {candidate} was promoted: the canary's release is live"

    # A canary of another release when the live one is rolled back: its comparison is gone.
    third = await rig.candidate()
    await rig.start(third)
    rollback = R.RollbackReleaseRequest(tenant_id=TENANT, actor=ADMIN, reason="the promotion hurt")
    await rig.service.RollbackRelease(rollback, CONTEXT)
    stopped = await rig.canary()
    assert stopped.state == R.CANARY_STATE_STOPPED
    assert stopped.end_reason == (
        f"the live release was rolled back to r1: the canary was compared with {candidate}, no longer live"
    )
    newest = (await rig.events())[0]
    assert (newest.kind, newest.release_id, newest.actor) == (R.RELEASE_EVENT_KIND_CANARY_STOPPED, third, ADMIN)
    # Nothing runs: every conversation is the live release's.
    assert (await rig.say("c-after")).lineage.release_id == "r1"


# --- serving and the automatic rollback ----------------------------------------------------


async def test_conversations_keep_their_draw_whoever_the_customer_is(sqlite_engine: Engine) -> None:
    rig = canaried(sqlite_engine)
    candidate = await rig.candidate(thresholds=STRICT)
    await rig.start(candidate, policy=R.CanaryPolicy(min_turns=1000))
    # One customer, forty conversations: both releases serve them, each conversation keeps its own.
    for index in range(40):
        await rig.say(f"c{index}")
        await rig.say(f"c{index}", "And what about annual plans?")
    stored = rig.stored()
    by_conversation = {c: {stored[(c, 0)], stored[(c, 1)]} for c, _ in stored}
    assert all(len(releases) == 1 for releases in by_conversation.values())
    served = [releases.pop() for releases in by_conversation.values()]
    assert set(served) == {"r1", candidate}
    with sqlite_engine.connect() as connection:
        salt: str = connection.execute(sa.text("SELECT salt FROM concierge_canaries")).scalar_one()
    assert served == [candidate if draw(salt, f"c{i}", 50) else "r1" for i in range(40)]
    # The live release is named explicitly: it serves, whatever the draw.
    drawn = next(f"c{i}" for i in range(40) if draw(salt, f"c{i}", 50))
    named = await rig.servicer.Converse(request("One more", conversation_id=drawn, release_id="live"), CONTEXT)
    assert named.lineage.release_id == "r1"


async def test_a_canary_that_escalates_far_more_is_rolled_back_by_system(sqlite_engine: Engine) -> None:
    rig = canaried(sqlite_engine)
    candidate = await rig.candidate(thresholds=STRICT)
    await rig.start(candidate)
    not_yet = await rig.canaries.evaluate(TENANT)
    assert not_yet.state == R.CANARY_STATE_RUNNING
    assert not_yet.verdict == (
        "no worse past the margins: escalation: not enough turns yet (0 of 10 in each arm); "
        "wrong answers: not enough judged answers yet (0 of 8 in each arm)"
    )
    replies = [await rig.say(f"c{index}") for index in range(60)]

    canary = await rig.canaries.evaluate(TENANT)

    served = {r.lineage.release_id for r in replies}
    assert served == {"r1", candidate}
    arms = {canary.canary.release_id: canary.canary, canary.live.release_id: canary.live}
    assert arms[candidate].turns == arms[candidate].escalated == sum(r.lineage.release_id == candidate for r in replies)
    assert arms["r1"].escalated == 0 and arms["r1"].turns == sum(r.lineage.release_id == "r1" for r in replies)
    assert arms[candidate].escalation_rate == 1.0
    assert canary.state == R.CANARY_STATE_ROLLED_BACK and canary.HasField("ended_at")
    assert canary.verdict.startswith("canary worse: escalation 1.00 vs 0.00, lower bound +0.")
    assert f"> margin 0.10 over {arms[candidate].turns}/{arms['r1'].turns} turns" in canary.verdict
    assert canary.end_reason == canary.verdict
    assert await rig.canary() == canary
    newest = (await rig.events())[0]
    assert (newest.kind, newest.release_id, newest.actor) == (
        R.RELEASE_EVENT_KIND_CANARY_ROLLED_BACK, candidate, "system"
    )
    assert newest.detail == f"{canary.verdict} (canary {candidate} against live r1)"
    # Rolled back: every conversation, drawn or not, is served by the live release again.
    assert {(await rig.say(f"c{index}", "Thanks")).lineage.release_id for index in range(20)} == {"r1"}
    # Evaluating again changes nothing.
    assert await rig.canaries.evaluate(TENANT) == canary


async def test_a_canary_whose_answers_are_judged_wrong_is_rolled_back(sqlite_engine: Engine) -> None:
    rig = canaried(sqlite_engine)
    candidate = await rig.candidate(thresholds={"": 0.5})  # answers as live does
    await rig.start(candidate)
    for index in range(40):
        reply = await rig.say(f"c{index}")
        assert reply.decision == D.DECISION_ANSWERED
        helpful = reply.lineage.release_id == "r1"
        await rate(rig, D.TURN_RATING_HELPFUL if helpful else D.TURN_RATING_NOT_HELPFUL,  # type: ignore[arg-type]
                   conversation_id=f"c{index}")

    canary = await rig.canaries.evaluate(TENANT)

    assert canary.state == R.CANARY_STATE_ROLLED_BACK
    assert canary.canary.judged == canary.canary.rated == canary.canary.turns > 0
    assert (canary.canary.judged_correct, canary.canary.rated_helpful, canary.canary.judged_accuracy) == (0, 0, 0.0)
    assert canary.live.judged == canary.live.rated_helpful == canary.live.judged_correct == canary.live.turns > 0
    assert canary.live.judged_accuracy == 1.0
    assert canary.verdict.startswith("canary worse: wrong answers 1.00 vs 0.00")
    assert "escalation" not in canary.verdict


async def test_a_canary_as_good_as_live_keeps_running(sqlite_engine: Engine) -> None:
    rig = canaried(sqlite_engine)
    candidate = await rig.candidate(thresholds={"": 0.5})
    await rig.start(candidate)
    for index in range(60):
        await rig.say(f"c{index}")
        # Every third answer is judged wrong, whichever release gave it.
        rating = D.TURN_RATING_NOT_HELPFUL if index % 3 == 0 else D.TURN_RATING_HELPFUL
        await rate(rig, rating, conversation_id=f"c{index}")  # type: ignore[arg-type]

    canary = await rig.canaries.evaluate(TENANT)

    assert canary.state == R.CANARY_STATE_RUNNING and not canary.HasField("ended_at")
    assert canary.canary.turns + canary.live.turns == 60
    assert canary.canary.judged + canary.live.judged == 60
    assert canary.verdict.startswith("no worse past the margins: escalation 0.00 vs 0.00, lower bound -0.")
    assert "wrong answers" in canary.verdict and canary.HasField("evaluated_at")
    assert (await rig.events())[0].kind == R.RELEASE_EVENT_KIND_CANARY_STARTED


async def test_rollback_under_concurrent_traffic_loses_no_turn(sqlite_engine: Engine) -> None:
    """The monitor rolls the canary back while conversations run at once: every message gets its
    reply and its stored turn, each naming the canary's or the live release, and conversations
    started after the rollback (and the refresh) are the live release's."""
    refresh_s = 0.2
    rig = canaried(sqlite_engine, refresh_s=refresh_s)
    candidate = await rig.candidate(thresholds=STRICT)
    await rig.start(candidate)
    monitor = asyncio.create_task(rig.canaries.run_monitor(0.05))
    at_once = asyncio.Semaphore(16)
    replies: dict[tuple[str, int], str] = {}

    async def conversation(conversation_id: str) -> None:
        for turn_index, text in enumerate((QUESTION, "And annual plans?", "Thanks")):
            async with at_once:
                reply = await rig.say(conversation_id, text)
            replies[(conversation_id, turn_index)] = reply.lineage.release_id

    before = asyncio.gather(*(conversation(f"before-{index}") for index in range(150)))
    try:
        deadline = time.monotonic() + 30
        while (await rig.canary()).state == R.CANARY_STATE_RUNNING:
            assert time.monotonic() < deadline, "the monitor never rolled the canary back"
            await asyncio.sleep(0.02)
        assert not before.done(), "the traffic should still be running when the canary is rolled back"
        await asyncio.sleep(refresh_s)
        await asyncio.gather(*(conversation(f"after-{index}") for index in range(30)))
        await before
    finally:
        before.cancel()
        monitor.cancel()
        await asyncio.gather(before, monitor, return_exceptions=True)

    stored = rig.stored()
    assert len(replies) == (150 + 30) * 3
    assert stored == replies, "every reply has its stored turn, naming the same release"
    assert set(stored.values()) == {"r1", candidate}
    assert {release for (c, _), release in stored.items() if c.startswith("after-")} == {"r1"}
    assert (await rig.canary()).state == R.CANARY_STATE_ROLLED_BACK
    events = [e for e in await rig.events() if e.kind == R.RELEASE_EVENT_KIND_CANARY_ROLLED_BACK]
    assert [e.actor for e in events] == ["system"], "rolled back once, by the monitor"


# --- what the RPCs accept ----------------------------------------------------------------


GOOD_POLICY = R.CanaryPolicy(accuracy_margin=0.05, escalation_margin=0.1, min_judged=20, min_turns=30, confidence=0.99)


@pytest.mark.parametrize(
    ("call", "fields"),
    [
        (R.StartCanaryRequest(tenant_id=TENANT, release_id="r2", percent=0, actor=ADMIN), ["percent"]),
        (R.StartCanaryRequest(tenant_id=TENANT, release_id="r2", percent=51, actor=ADMIN), ["percent"]),
        (R.StartCanaryRequest(tenant_id=TENANT, release_id="live", percent=5, actor=""), ["release_id", "actor"]),
        (R.StartCanaryRequest(
            tenant_id=TENANT, release_id="r2", percent=5, actor=ADMIN, override_reason="x" * 501,
            policy=R.CanaryPolicy(accuracy_margin=1.0, escalation_margin=-0.1, min_judged=-1, min_turns=-1,
                                  confidence=0.4),
        ), ["policy.accuracy_margin", "policy.escalation_margin", "policy.min_judged", "policy.min_turns",
            "policy.confidence", "override_reason"]),
        (R.StartCanaryRequest(tenant_id=TENANT, release_id="r2", percent=5, actor=ADMIN,
                              policy=R.CanaryPolicy(confidence=1.0)), ["policy.confidence"]),
        (R.StopCanaryRequest(tenant_id=TENANT, actor=ADMIN, reason=""), ["reason"]),
        (R.GetCanaryRequest(tenant_id="bad tenant"), ["tenant_id"]),
        (R.StartShadowRequest(tenant_id=TENANT, release_id="r2", sample_rate=1.5, actor=ADMIN), ["sample_rate"]),
        (R.StartShadowRequest(tenant_id=TENANT, release_id="r2", sample_rate=-0.1, actor=ADMIN), ["sample_rate"]),
        (R.StopShadowRequest(tenant_id=TENANT, actor=""), ["actor"]),
        (R.GetShadowReportRequest(tenant_id=TENANT, shadow_id="no spaces", max_disagreements=101),
         ["shadow_id", "max_disagreements"]),
        (R.RefitConfidenceRequest(tenant_id=TENANT, actor=ADMIN, request_id="", target_accuracy=0.5),
         ["request_id", "target_accuracy"]),
        (R.RefitConfidenceRequest(tenant_id=TENANT, actor=ADMIN, request_id="x" * 129, target_accuracy=1.0),
         ["request_id", "target_accuracy"]),
    ],
)
async def test_bad_requests_name_their_fields(sqlite_engine: Engine, call: Any, fields: list[str]) -> None:
    service = canaried(sqlite_engine).service
    method = getattr(service, type(call).__name__.removesuffix("Request"))
    with pytest.raises(InvalidArgument) as invalid:
        await method(call, CONTEXT)
    assert [name for name, _ in invalid.value.violations] == fields


async def test_good_policy_values_pass_validation(sqlite_engine: Engine) -> None:
    rig = canaried(sqlite_engine)
    # Valid requests reach the book: here a release the tenant does not have.
    with pytest.raises(NotFound):
        await rig.start("r9", percent=50, policy=GOOD_POLICY)
    with pytest.raises(NotFound):
        await rig.start("r9", percent=1, policy=R.CanaryPolicy())
