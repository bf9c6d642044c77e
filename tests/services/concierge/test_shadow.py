"""Shadow (services/concierge/shadow.py, shadow_report.py and the servicer's dry run): a release
that does not serve decides a tenant's live turns again, after the live reply is stored, and
its decisions are compared with the live ones and with what humans did.

What the issue asks of it, each a test here: it never changes what the customer sees, never
makes a handoff, an action or an outcome record; its extra load is bounded (a slowed-down
candidate leaves the live p50 where it was, and the turns it had no room for are counted); its
report's figures are the ones computed by hand from planted ratings and agents' verdicts; one
shadow per tenant, started and stopped as events.

The rig: the real ReleaseBook, ShadowBook and HumanLabels on the concierge's database, the
backend doubles of test_concierge.py, and an escalation double whose ListJudgements gives
planted agents' verdicts. The stand-in fit scores every match 0.88: the live release (the
tenant's working copy, threshold 0.85, refunds 0.95) answers everything but refunds; the
candidate (refunds and shipping 0.5, everything else 0.95) answers refunds and shipping only.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from google.protobuf import json_format
from sqlalchemy.engine import Engine

from aftercare.actions.v1 import actions_pb2
from aftercare.concierge.v1 import concierge_pb2, releases_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import customer_pb2
from servicekit.database import make_engine
from servicekit.errors import FailedPrecondition, NotFound
from services.concierge.human_labels import HumanLabels
from services.concierge.migrations import SCHEMA
from services.concierge.models import ShadowDecisionRow, ShadowRow, TurnRow
from services.concierge.persona import PersonaBook
from services.concierge.releases import ReleaseBook
from services.concierge.servicer import ConciergeServicer
from services.concierge.settings import ConciergeSettings
from services.concierge.shadow import ActiveShadow, OfferedTurn, ShadowBook
from services.concierge.shadow_report import METHOD
from services.concierge.store import ConversationStore
from services.concierge.turns import Turn
from tests.services.concierge.test_concierge import (
    PHRASED,
    QUESTION,
    UNIT_ANSWER,
    FakeEscalation,
    FakeLlm,
    FakeRetrieval,
    FakeTriage,
    request,
    stand_in,
)

D = concierge_pb2
R = releases_pb2
# The servicer's methods are called directly; none of them reads its context.
CONTEXT: Any = None
TENANT = "demo"
# The stand-in fit's logit: every match scores sigmoid(2.0) = 0.8808.
HIGH = 2.0
# The candidate's thresholds (the live ones are the persona file's below).
CANDIDATE_THRESHOLDS = {"refund_request": 0.5, "shipping": 0.5, "": 0.95}
# What the customer reads when the AI hands over for low confidence without a reference or wait.
HANDED_OVER = (
    "I'm not confident enough in an answer to this, so I've passed your question to our support team. "
    "Someone will reply here as soon as they can. You won't need to repeat yourself."
)
NEEDS_DETAIL = "Happy to help. Could you tell me a bit more about what you're trying to do?"
ACKNOWLEDGED = "Okay. If there's anything else about our product I can help with, just ask."


class JudgingEscalation(FakeEscalation):
    """The escalation double with ListJudgements: the agents' verdicts planted by the test."""

    def __init__(self) -> None:
        super().__init__()
        self.planted: list[escalation_pb2.JudgementRecord] = []

    def judge(self, handoff_id: str, *, sent: bool, final_intent: str) -> None:
        """The agent's verdict on a handoff's candidate answer: sent it (right) or not (wrong)."""
        self.planted.append(escalation_pb2.JudgementRecord(
            key=f"handoff:{handoff_id}", source=escalation_pb2.JUDGEMENT_SOURCE_AGENT, correct=sent,
            handoff_id=handoff_id, final_intent=final_intent, release_id="r1",
        ))

    async def ListJudgements(
        self, request: escalation_pb2.ListJudgementsRequest, **_: object
    ) -> escalation_pb2.ListJudgementsResponse:
        assert request.tenant_id == TENANT
        return escalation_pb2.ListJudgementsResponse(judgements=self.planted)


@dataclass
class RecordingActions:
    """The actions service for a tenant without a catalog, recording every call made to it."""

    calls: list[str] = field(default_factory=list)

    async def ListTools(self, request: actions_pb2.ListToolsRequest, **_: object) -> actions_pb2.ListToolsResponse:
        self.calls.append("ListTools")
        return actions_pb2.ListToolsResponse()

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        async def call(*_: object, **__: object) -> Any:
            self.calls.append(name)
            raise AssertionError(f"{name} called on a tenant without actions")

        return call


@dataclass
class Rig:
    servicer: ConciergeServicer
    book: ReleaseBook
    shadows: ShadowBook
    triage: FakeTriage
    retrieval: FakeRetrieval
    escalation: JudgingEscalation
    actions: RecordingActions
    llm: FakeLlm
    engine: Engine

    async def say(
        self, text: str, conversation_id: str, intent: str = "", flags: tuple[int, ...] = ()
    ) -> D.ConverseResponse:
        self.triage.intent = triage_pb2.IntentPrediction(label=intent)
        self.triage.flags = list(flags)
        return await self.servicer.Converse(request(text, conversation_id), CONTEXT)

    async def rate(self, conversation_id: str, turn_index: int, rating: int) -> None:
        await self.servicer.RateTurn(D.RateTurnRequest(
            customer=customer_pb2.CustomerRef(tenant_id=TENANT, customer_id="u1"),
            conversation_id=conversation_id, turn_index=turn_index, rating=rating,  # type: ignore[arg-type]
        ), CONTEXT)

    async def candidate(self) -> str:
        stored = await self.book.create(
            TENANT, description="refunds answered, the rest stricter", created_by="admin-test",
            request_id="candidate", overrides=R.ReleaseOverrides(thresholds=CANDIDATE_THRESHOLDS),
        )
        return stored.release.release_id

    def rows(self, model: type[Any]) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(sa.select(model)).mappings())


def personas(tmp_path: Path) -> Path:
    """The tenant's persona file: the default threshold 0.85, refunds 0.95."""
    directory = tmp_path / "personas"
    directory.mkdir(parents=True)
    (directory / f"{TENANT}.json").write_text(json.dumps({
        "version": "shadow-test-1", "confidence_threshold": 0.85, "intent_thresholds": {"refund_request": 0.95},
    }))
    return directory


def make_rig(tmp_path: Path, *, max_in_flight: int = 2, timeout_s: float = 30.0, **settings: object) -> Rig:
    config = ConciergeSettings(
        port=0, retrieval_addr="x", triage_addr="x", escalation_addr="x", llm_base_url="http://llm.test/v1",
        persona_dir=personas(tmp_path), **settings,  # type: ignore[arg-type]
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'concierge.db'}")
    SCHEMA.migrate(engine)
    confidence = stand_in(config, HIGH)
    book = ReleaseBook(
        engine, config, personas=PersonaBook(config.persona_dir, config.confidence_threshold), confidence=confidence
    )
    escalation, actions, llm = JudgingEscalation(), RecordingActions(), FakeLlm(PHRASED)
    shadows = ShadowBook(
        engine, book, HumanLabels(engine, escalation),  # type: ignore[arg-type]
        max_in_flight=max_in_flight, timeout_s=timeout_s,
    )
    triage, retrieval = FakeTriage(), FakeRetrieval()
    servicer = ConciergeServicer(
        config, retrieval, triage, escalation, llm.client(), ConversationStore(engine),  # type: ignore[arg-type]
        confidence=confidence, actions=actions, releases=book, shadows=shadows,  # type: ignore[arg-type]
    )
    return Rig(servicer, book, shadows, triage, retrieval, escalation, actions, llm, engine)


def as_dicts(responses: list[Any]) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(response) for response in responses]


# --- (1) the customer sees the same, nothing is handed over, acted on or recorded -------


async def test_a_shadow_changes_nothing_the_customer_sees_or_any_service_receives(tmp_path: Path) -> None:
    """The same conversation on two rigs, one with the candidate in shadow: every reply, handoff,
    outcome record, triage and retrieval call and LLM call is the same; the shadow's own
    decisions are stored beside the turns, and where it would hand over it makes no handoff."""
    rigs = {name: make_rig(tmp_path / name, phrasing="always") for name in ("plain", "shadowed")}
    seen: dict[str, list[Any]] = {}
    for name, rig in rigs.items():
        candidate = await rig.candidate()
        if name == "shadowed":
            await rig.shadows.start(TENANT, candidate, 1.0, "admin-test")
        replies: list[Any] = []
        for text, conversation_id, intent, flags in [
            ("hello", "c1", "", ()),
            (QUESTION, "c2", "refund_request", ()),  # live hands over; the candidate would answer
            (QUESTION, "c3", "how_to", ()),  # live answers; the candidate would hand over
            ("thanks", "c3", "how_to", ()),
            (QUESTION, "c4", "shipping", ()),  # both answer
            ("I want to talk to a person", "c5", "", (triage_pb2.RISK_FLAG_HUMAN_REQUESTED,)),
            ("Where is my order #W2611340? Can I get a refund on a monthly plan?", "c6", "", ()),
        ]:
            # Each shadow decision runs in the background while the next turn is answered.
            replies.append(await rig.say(text, conversation_id, intent, flags))
        rig.triage.intent = triage_pb2.IntentPrediction(label="how_to")
        replies.extend([event async for event in rig.servicer.StreamConverse(
            D.StreamConverseRequest(request=request(QUESTION, "c7")), CONTEXT
        )])
        await rig.shadows.drain()
        seen[name] = replies

    plain, shadowed = rigs["plain"], rigs["shadowed"]
    assert as_dicts(seen["shadowed"]) == as_dicts(seen["plain"])
    decisions = [(r.decision, r.reason) for r in seen["plain"][:7]]
    assert decisions == [
        (D.DECISION_CLARIFY, D.DECISION_REASON_NEEDS_DETAIL),
        (D.DECISION_ESCALATED, D.DECISION_REASON_LOW_CONFIDENCE),
        (D.DECISION_ANSWERED, D.DECISION_REASON_CONFIDENT),
        (D.DECISION_CLARIFY, D.DECISION_REASON_NEEDS_DETAIL),
        (D.DECISION_ANSWERED, D.DECISION_REASON_CONFIDENT),
        (D.DECISION_ESCALATED, D.DECISION_REASON_HUMAN_REQUESTED),
        (D.DECISION_ANSWERED, D.DECISION_REASON_CONFIDENT),
    ]
    # No handoff, action, outcome record, triage, search or LLM call of its own.
    assert as_dicts(shadowed.escalation.requests) == as_dicts(plain.escalation.requests)
    assert len(shadowed.escalation.requests) == 2
    assert as_dicts(shadowed.escalation.outcomes) == as_dicts(plain.escalation.outcomes)
    assert shadowed.actions.calls == plain.actions.calls == ["ListTools"]
    assert as_dicts(shadowed.triage.requests) == as_dicts(plain.triage.requests)
    assert as_dicts(shadowed.retrieval.requests) == as_dicts(plain.retrieval.requests)
    assert shadowed.llm.bodies == plain.llm.bodies and len(plain.llm.bodies) == 4  # the live answers' phrasing
    # The stored turns are the same; the shadow's decisions sit beside them.
    assert [dict(row) | {"turn_id": 0, "created_at": None} for row in shadowed.rows(TurnRow)] == [
        dict(row) | {"turn_id": 0, "created_at": None} for row in plain.rows(TurnRow)
    ]
    shadow_decisions = {
        (row["conversation_id"], row["turn_index"]): (row["decision"], row["decision_reason"], row["reply"])
        for row in shadowed.rows(ShadowDecisionRow)
    }
    assert shadow_decisions == {
        ("c1", 0): ("clarify", "needs_detail", NEEDS_DETAIL),
        ("c2", 0): ("answered", "confident", UNIT_ANSWER),  # the unit's own words: no LLM phrasing in shadow
        ("c3", 0): ("escalated", "low_confidence", HANDED_OVER),
        ("c3", 1): ("clarify", "needs_detail", ACKNOWLEDGED),
        ("c4", 0): ("answered", "confident", UNIT_ANSWER),
        # c5: the customer asked for a person, which no release changes: not shadowed.
        ("c6", 0): ("escalated", "low_confidence", HANDED_OVER),
        ("c7", 0): ("escalated", "low_confidence", HANDED_OVER),
    }
    assert {row["live_release_id"] for row in shadowed.rows(ShadowDecisionRow)} == {"r1"}
    [shadow] = shadowed.rows(ShadowRow)
    assert (shadow["shadowed_turns"], shadow["skipped_turns"]) == (7, 0)
    assert not plain.rows(ShadowDecisionRow)


# --- (2) bounded extra load ---------------------------------------------------------------

SLOW_S = 0.5
TURNS = 30


async def test_a_slow_candidate_leaves_the_live_p50_where_it_was_and_counts_what_it_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every shadow decision takes half a second (a slowed-down candidate): with two at a time at
    most, the live turns' median latency stays within a small bound of the median without a
    shadow, and the sampled turns that found the budget full are counted, not queued."""
    rig = make_rig(tmp_path, max_in_flight=2)
    decide = rig.servicer._decide_in_shadow
    running = peak = 0

    async def slowed(live: Turn, release_id: str) -> D.ConverseResponse:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(SLOW_S)
            return await decide(live, release_id)
        finally:
            running -= 1

    monkeypatch.setattr(rig.servicer, "_decide_in_shadow", slowed)
    candidate = await rig.candidate()

    async def latencies(prefix: str) -> list[float]:
        taken = []
        for i in range(TURNS):
            started = time.perf_counter()
            response = await rig.say(QUESTION, f"{prefix}-{i}", "how_to")
            taken.append(time.perf_counter() - started)
            assert response.decision == D.DECISION_ANSWERED
        return taken

    await latencies("warm-up")
    off = await latencies("off")
    await rig.shadows.start(TENANT, candidate, 1.0, "admin-test")
    on = await latencies("on")
    await rig.shadows.drain()

    p50_off, p50_on = statistics.median(off), statistics.median(on)
    assert p50_on <= p50_off * 1.25 + 0.002, (p50_off, p50_on)
    [row] = rig.rows(ShadowRow)
    # Every sampled turn is either decided in shadow or counted as skipped; the budget held.
    assert row["shadowed_turns"] + row["skipped_turns"] == TURNS
    assert row["skipped_turns"] > 0 and row["shadowed_turns"] >= 2
    assert peak <= 2
    assert len(rig.rows(ShadowDecisionRow)) == row["shadowed_turns"]
    assert all(r["duration_ms"] >= SLOW_S * 1000 for r in rig.rows(ShadowDecisionRow))


def offered(turn_index: int) -> OfferedTurn:
    return OfferedTurn(TENANT, "c1", turn_index, "r1", "how_to")


async def test_a_failing_or_hanging_shadow_decision_is_dropped_and_frees_its_place(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, max_in_flight=1, timeout_s=0.2)
    await rig.shadows.start(TENANT, await rig.candidate(), 0.3, "admin-test")
    shadow = await rig.shadows.active(TENANT)
    assert shadow is not None and shadow.sample_rate == 0.3

    async def hangs() -> D.ConverseResponse:
        await asyncio.sleep(30)
        raise AssertionError("not reached: abandoned after timeout_s")

    async def fails() -> D.ConverseResponse:
        raise RuntimeError("the candidate is broken")

    # At a sample rate of 0.3: the first drawn turn takes the one place, the other drawn ones are skipped.
    started = time.monotonic()
    drawn = [rig.shadows.submit(shadow, offered(i), hangs) for i in range(1000)]
    await rig.shadows.drain()
    assert time.monotonic() - started < 5
    assert drawn.count(True) == 1
    # Nothing raised; the place is free again, and a broken decision is dropped the same way.
    everyone = ActiveShadow(shadow.shadow_id, shadow.release_id, 1.0)
    assert rig.shadows.submit(everyone, offered(1000), fails)
    await rig.shadows.drain()
    [row] = rig.rows(ShadowRow)
    assert row["shadowed_turns"] == 0 and not rig.rows(ShadowDecisionRow)
    # Binomial(1000, 0.3) is 300 +- 14.5: the draw is the sample rate.
    assert 240 <= row["skipped_turns"] + 1 <= 360


# --- (3) the report, against planted human verdicts ----------------------------------------


async def test_the_report_compares_both_releases_with_what_humans_did(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    shadow, _ = await rig.shadows.start(TENANT, await rig.candidate(), 1.0, "admin-test")
    said = {}
    for conversation_id, intent in [
        ("refund-1", "refund_request"), ("refund-2", "refund_request"), ("refund-3", "refund_request"),
        ("how-1", "how_to"), ("how-2", "how_to"), ("how-3", "how_to"), ("how-4", "how_to"),
        ("ship-1", "shipping"),
    ]:
        said[conversation_id] = await rig.say(QUESTION, conversation_id, intent)
        await rig.shadows.drain()  # one at a time: none skipped
    # The agents' verdicts on the handed-over refunds' candidate answers, with the intent they set ...
    rig.escalation.judge(said["refund-1"].handoff_id, sent=True, final_intent="refund_request")
    rig.escalation.judge(said["refund-2"].handoff_id, sent=False, final_intent="billing_issue")
    # ... and the customers' ratings of the answers they got.
    for conversation_id, rating in [
        ("how-1", D.TURN_RATING_HELPFUL), ("how-2", D.TURN_RATING_NOT_HELPFUL), ("how-3", D.TURN_RATING_HELPFUL),
        ("ship-1", D.TURN_RATING_HELPFUL),
    ]:
        await rig.rate(conversation_id, 0, rating)

    report = await rig.shadows.report(TENANT, "", 0)

    assert report.shadow.shadow_id == shadow.shadow_id and report.shadow.shadowed_turns == 8
    assert report.method == METHOD
    # By hand. Live answers how-1..4 and ship-1; the candidate refund-1..3 and ship-1. Judged:
    # refund-1 right, refund-2 wrong (agents), how-1 right, how-2 wrong, how-3 right, ship-1 right.
    # Agreement: live with refund-2 (held back a wrong one), how-1, how-3, ship-1; the candidate
    # with refund-1, how-2 (held back a wrong one), ship-1. Agents' intents: refund-1 (agreed), refund-2.
    live = R.ArmFigures(
        release_id="r1", turns=8, answered=5, answered_rate=5 / 8, human_judged=6, agreed=4, agreement=4 / 6,
        answered_judged=4, answered_correct=3, judged_accuracy=3 / 4, intent_labelled=2, intent_agreed=1,
    )
    candidate = R.ArmFigures(
        release_id="r2", turns=8, answered=4, answered_rate=4 / 8, human_judged=6, agreed=3, agreement=3 / 6,
        answered_judged=3, answered_correct=2, judged_accuracy=2 / 3, intent_labelled=2, intent_agreed=1,
    )
    assert report.live == live and report.candidate == candidate
    assert [(t.topic, t.live.turns) for t in report.topics] == [("how_to", 4), ("refund_request", 3), ("shipping", 1)]
    how_to, refunds, shipping = report.topics
    assert (how_to.live.agreed, how_to.live.human_judged, how_to.candidate.agreed) == (2, 3, 1)
    assert (how_to.live.judged_accuracy, how_to.candidate.answered_judged) == (2 / 3, 0)
    assert (refunds.live.answered, refunds.live.agreed, refunds.candidate.answered_correct) == (0, 1, 1)
    assert (refunds.candidate.judged_accuracy, refunds.live.intent_labelled) == (1 / 2, 2)
    assert shipping.live.agreement == shipping.candidate.agreement == 1.0

    # The turns decided differently, newest first, with what the humans said.
    assert [
        (d.conversation_id, d.live_decision, d.candidate_decision, d.human_verdict) for d in report.disagreements
    ] == [
        ("how-4", "answered", "escalated", ""),
        ("how-3", "answered", "escalated", "customer: helpful"),
        ("how-2", "answered", "escalated", "customer: not helpful"),
        ("how-1", "answered", "escalated", "customer: helpful"),
        ("refund-3", "escalated", "answered", ""),
        ("refund-2", "escalated", "answered", "agent did not send the AI's answer; agent's intent: billing_issue"),
        ("refund-1", "escalated", "answered", "agent sent the AI's answer; agent's intent: refund_request"),
    ]
    refund = report.disagreements[-1]
    assert (refund.topic, refund.turn_index, refund.customer_text) == ("refund_request", 0, QUESTION)
    assert (refund.live_reason, refund.candidate_reason) == ("low_confidence", "confident")
    assert refund.live_confidence == refund.candidate_confidence == pytest.approx(0.8808, abs=1e-4)
    assert refund.candidate_reply == UNIT_ANSWER
    assert report.disagreements[0].candidate_reply == HANDED_OVER
    newest = await rig.shadows.report(TENANT, shadow.shadow_id, 2)
    assert [d.conversation_id for d in newest.disagreements] == ["how-4", "how-3"]


# --- (4) one shadow per tenant, started and stopped as events ------------------------------


async def test_start_and_stop_one_shadow_per_tenant_as_events(engine: Engine, tmp_path: Path) -> None:
    SCHEMA.migrate(engine)
    config = ConciergeSettings(
        port=0, retrieval_addr="x", triage_addr="x", escalation_addr="x", llm_base_url="http://llm.test/v1",
        persona_dir=personas(tmp_path),
    )
    confidence = stand_in(config, HIGH)

    def book() -> ReleaseBook:
        return ReleaseBook(
            engine, config, personas=PersonaBook(config.persona_dir, config.confidence_threshold),
            confidence=confidence,
        )

    releases = book()
    labels = HumanLabels(engine, None)
    shadows = ShadowBook(engine, releases, labels)
    # Another replica, re-reading the active shadow every 50 ms.
    replica = ShadowBook(engine, book(), labels, active_refresh_s=0.05)
    assert await replica.active(TENANT) is None
    with pytest.raises(NotFound) as never:
        await shadows.report(TENANT, "", 0)
    assert never.value.reason == "NO_SHADOW"
    for request_id in ("one", "two"):
        await releases.create(TENANT, description="a candidate", created_by="admin-test", request_id=request_id)

    first, started = await shadows.start(TENANT, "r2", 0.0, "admin-ops")

    assert (first.release_id, first.live_release_id, first.sample_rate, first.active) == ("r2", "r1", 1.0, True)
    assert (first.started_by, first.shadowed_turns, first.skipped_turns) == ("admin-ops", 0, 0)
    assert first.HasField("started_at") and not first.HasField("stopped_at")
    assert (started.kind, started.release_id, started.actor) == (R.RELEASE_EVENT_KIND_SHADOW_STARTED, "r2", "admin-ops")
    assert "100%" in started.detail and "r1" in started.detail
    # This replica follows at once, the other within its refresh.
    assert await shadows.active(TENANT) == ActiveShadow(first.shadow_id, "r2", 1.0)
    await asyncio.sleep(0.06)
    assert await replica.active(TENANT) == ActiveShadow(first.shadow_id, "r2", 1.0)

    for live in ("r1", "live"):
        with pytest.raises(FailedPrecondition) as refused:
            await shadows.start(TENANT, live, 1.0, "admin-ops")
        assert refused.value.reason == "RELEASE_IS_LIVE"
    with pytest.raises(NotFound) as unknown:
        await shadows.start(TENANT, "r9", 1.0, "admin-ops")
    assert unknown.value.reason == "RELEASE_NOT_FOUND"

    # Starting another stops the running one, in the same transaction.
    second, _ = await shadows.start(TENANT, "r3", 0.5, "admin-two")
    shadow_rows = {row.shadow_id: row for row in _shadow_rows(engine)}
    assert [shadow_rows[first.shadow_id].active, shadow_rows[second.shadow_id].active] == [False, True]
    stopped = await shadows.stop(TENANT, "admin-two")
    assert (stopped.shadow_id, stopped.active, stopped.HasField("stopped_at")) == (second.shadow_id, False, True)
    with pytest.raises(NotFound) as none:
        await shadows.stop(TENANT, "admin-two")
    assert none.value.reason == "NO_SHADOW"
    assert await shadows.active(TENANT) is None
    await asyncio.sleep(0.06)
    assert await replica.active(TENANT) is None

    events, _ = releases.store.events_page(TENANT, 10, None)
    shadow_events = [
        (R.ReleaseEventKind.Name(e.kind).removeprefix("RELEASE_EVENT_KIND_"), e.release_id, e.actor, e.detail)
        for e in events if "SHADOW" in R.ReleaseEventKind.Name(e.kind)
    ]
    assert [event[:3] for event in shadow_events] == [
        ("SHADOW_STOPPED", "r3", "admin-two"),
        ("SHADOW_STARTED", "r3", "admin-two"),
        ("SHADOW_STOPPED", "r2", "admin-two"),
        ("SHADOW_STARTED", "r2", "admin-ops"),
    ]
    assert shadow_events[2][3].startswith("replaced by a shadow of r3")
    # The report of the latest shadow, or of a named one of this tenant only.
    assert (await shadows.report(TENANT, "", 0)).shadow.shadow_id == second.shadow_id
    assert (await shadows.report(TENANT, first.shadow_id, 0)).shadow.release_id == "r2"
    with pytest.raises(NotFound) as elsewhere:
        await shadows.report("another-tenant", first.shadow_id, 0)
    assert elsewhere.value.reason == "SHADOW_NOT_FOUND"


def _shadow_rows(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(ShadowRow)))
