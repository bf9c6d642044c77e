"""Serving by release: each turn is served by one release of the tenant's (its persona and
thresholds, its confidence fit, its LLM model), the live one unless the request names a
candidate (evaluation), and every stored turn, handoff and proposed action names it.

The releases are the real ReleaseBook on the concierge's database (a tenant's first turn
makes its working copy r1, live); the backends are the doubles of test_concierge.py, the
escalation double of test_forwarding.py on a real gRPC server where a human has the
conversation, and the real actions service for the account assistant."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import sqlalchemy as sa

from aftercare.actions.v1 import actions_pb2_grpc
from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc, releases_pb2
from aftercare.escalation.v1 import escalation_pb2_grpc
from aftercare.triage.v1 import triage_pb2
from servicekit.clients import connect
from servicekit.database import make_engine
from servicekit.errors import NotFound, details_from_rpc_error
from servicekit.server import serving
from services.actions.app import servicers as actions_servicers
from services.actions.catalog import DEFAULT_CATALOG_DIR
from services.concierge import prompts
from services.concierge.app import servicers
from services.concierge.confidence import Calibrator, Configuration, fit_path
from services.concierge.matching import Signals
from services.concierge.models import ReleaseRow, TurnRow
from services.concierge.releases import ReleaseBook
from services.concierge.servicer import ConciergeServicer
from services.concierge.settings import ConciergeSettings
from services.concierge.store import ConversationStore
from tests.demoshop.live import LiveShop, needs_tau_retail
from tests.services.actions.conftest import settings_for
from tests.services.concierge.test_account_flow import ISABELLA, PENDING_ORDER, ScriptedPlanner, Shop
from tests.services.concierge.test_concierge import (
    OPEN,
    PHRASED,
    QUESTION,
    FakeEscalation,
    FakeLlm,
    FakeRetrieval,
    FakeTriage,
    _refuse,
    converse,
    history,
    make,
    request,
    stand_in,
)
from tests.services.concierge.test_forwarding import EscalationDouble

D = concierge_pb2
# Logits of stand-in fits: score 0.5 (below the default threshold 0.85) and 0.88 (above it).
HALF, HIGH = 0.0, 2.0


@dataclass
class Released:
    servicer: ConciergeServicer
    book: ReleaseBook
    llm: FakeLlm
    triage: FakeTriage
    escalation: FakeEscalation
    engine: sa.engine.Engine
    settings: ConciergeSettings
    candidates: int = 0

    async def say(self, text: str, release_id: str = "", **fields: object) -> D.ConverseResponse:
        return await self.servicer.Converse(request(text, release_id=release_id, **fields), None)  # type: ignore[arg-type]

    async def candidate(self, **overrides: object) -> str:
        """A CANDIDATE made from the working copy with `overrides` (thresholds, llm_model)."""
        self.candidates += 1
        stored = await self.book.create(
            "demo", description="a candidate under test", created_by="admin-test",
            request_id=f"candidate-{self.candidates}",
            overrides=releases_pb2.ReleaseOverrides(**overrides),  # type: ignore[arg-type]
        )
        return stored.release.release_id

    def stored_release_ids(self) -> list[str]:
        """The release column of the stored turns, in order."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(TurnRow.release_id).order_by(TurnRow.turn_id))
            return [str(row[0]) for row in rows]


def released(
    tmp_path: Path, logit: float = OPEN, *, llm: FakeLlm | None = None, **settings: object
) -> Released:
    """A servicer serving by release (the real ReleaseBook) on the doubles; its working copy's
    fit scores sigmoid(`logit`) whatever the match."""
    config = ConciergeSettings(
        port=0, retrieval_addr="x", triage_addr="x", escalation_addr="x", llm_base_url="http://llm.test/v1",
        **settings,  # type: ignore[arg-type]
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'concierge.db'}")
    store = ConversationStore(engine)
    store.migrate()
    confidence = stand_in(config, logit)
    book = ReleaseBook(engine, config, confidence=confidence)
    llm = llm or FakeLlm(fail=_refuse)
    triage, escalation = FakeTriage(), FakeEscalation()
    servicer = ConciergeServicer(
        config, FakeRetrieval(), triage, escalation, llm.client(), store,  # type: ignore[arg-type]
        confidence=confidence, releases=book,
    )
    return Released(servicer, book, llm, triage, escalation, engine, config)


def reasons(outcomes: list[D.ConverseResponse]) -> list[str]:
    return [D.DecisionReason.Name(o.reason).removeprefix("DECISION_REASON_").lower() for o in outcomes]


# --- lineage ---------------------------------------------------------------------------


async def test_every_stored_turn_names_the_live_release(tmp_path: Path) -> None:
    rig = released(tmp_path)
    double = EscalationDouble()
    server = grpc.aio.server()
    escalation_pb2_grpc.add_EscalationServiceServicer_to_server(double, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            rig.servicer._escalation = escalation_pb2_grpc.EscalationServiceStub(channel)
            outcomes = [await rig.say("hello"), await rig.say(QUESTION), await rig.say("thanks")]
            rig.triage.flags = [triage_pb2.RISK_FLAG_HUMAN_REQUESTED]
            outcomes.append(await rig.say("I want to talk to a person"))
            rig.triage.flags = []
            outcomes.append(await rig.say("It is about my last invoice"))  # the agent's now
            double.down = True
            outcomes.append(await rig.say("Are you still there?"))  # held for the agent
            stored = await history(rig)  # type: ignore[arg-type]
            # The handoff closed while the message was held: redelivery makes a new one, which
            # names the release that served the held turn.
            double.down = False
            double.resolve("c1")
            await rig.servicer.redeliver_held_messages(interval_s=0)
    finally:
        rig.servicer.stop_redelivery()  # the held message's redelivery ends with the test
        await server.stop(None)

    assert reasons(outcomes) == [
        "needs_detail", "confident", "needs_detail", "human_requested", "with_agent", "with_agent",
    ]
    assert [o.lineage.release_id for o in outcomes] == ["r1"] * 6
    assert [t.outcome.lineage.release_id for t in stored.turns] == ["r1"] * 6
    assert rig.stored_release_ids() == ["r1"] * 6
    # The handoff names the release that handed over; the confidence is the release's fit's.
    # By idempotency key: the background redelivery may have offered the held one as well.
    made = {h.idempotency_key: (h.release_id, h.ai_attempt.explanation) for h in double.created}
    assert sorted(made.values()) == [("r1", "held_while_escalation_unavailable"), ("r1", "human_requested")]
    assert outcomes[1].confidence.calibration_version == "stand-in-v1"
    # The tenant's first turn made its working copy r1, live, as by "system".
    live = await rig.book.serving("demo")
    assert live.release_id == "r1" and live.persona.confidence_threshold == 0.85


async def test_a_servicer_without_releases_names_none(tmp_path: Path) -> None:
    rig = make(FakeLlm(fail=_refuse), f"sqlite:///{tmp_path / 'concierge.db'}")
    response = await converse(rig, request())
    assert response.decision == D.DECISION_ANSWERED and response.lineage.release_id == ""
    with pytest.raises(NotFound) as unknown:
        await converse(rig, request(release_id="r2"))
    assert unknown.value.reason == "RELEASE_NOT_FOUND"


# --- a candidate named by the request -------------------------------------------------


async def test_a_candidate_with_threshold_zero_answers_what_live_escalates(tmp_path: Path) -> None:
    rig = released(tmp_path, HALF)
    live = await rig.say(QUESTION)
    lenient = await rig.candidate(thresholds={"": 0.0})
    evaluated = await rig.say(QUESTION, release_id=lenient)
    again = await rig.say(QUESTION)

    assert lenient == "r2"
    assert (live.decision, live.reason) == (D.DECISION_ESCALATED, D.DECISION_REASON_LOW_CONFIDENCE)
    assert live.confidence.threshold == 0.85 and live.lineage.release_id == "r1"
    assert (evaluated.decision, evaluated.reason) == (D.DECISION_ANSWERED, D.DECISION_REASON_CONFIDENT)
    assert evaluated.confidence.score == 0.5 and evaluated.confidence.threshold == 0.0
    assert evaluated.lineage.release_id == "r2"
    # The live release serves the conversation's next turn again, and the conversation goes on.
    assert again.decision == D.DECISION_ESCALATED and again.lineage.release_id == "r1"
    stored = await history(rig)  # type: ignore[arg-type]
    assert [(t.outcome.turn_index, t.outcome.lineage.release_id) for t in stored.turns] == [
        (0, "r1"), (1, "r2"), (2, "r1"),
    ]
    assert rig.stored_release_ids() == ["r1", "r2", "r1"]
    assert [h.release_id for h in rig.escalation.requests] == ["r1", "r1"]


async def test_a_stricter_candidate_escalates_what_live_answers_and_its_handoff_says_so(tmp_path: Path) -> None:
    rig = released(tmp_path, HIGH)
    live = await rig.say(QUESTION, conversation_id="c1")
    strict = await rig.candidate(thresholds={"": 0.95})
    evaluated = await rig.say(QUESTION, release_id=strict, conversation_id="c2")

    assert live.decision == D.DECISION_ANSWERED and live.confidence.score == pytest.approx(0.8808)
    assert (evaluated.decision, evaluated.reason) == (D.DECISION_ESCALATED, D.DECISION_REASON_LOW_CONFIDENCE)
    assert evaluated.confidence.threshold == 0.95 and evaluated.lineage.release_id == strict
    [handoff] = rig.escalation.requests
    assert handoff.release_id == strict and handoff.ai_attempt.confidence.threshold == 0.95


async def test_the_live_alias_and_an_unknown_release(tmp_path: Path) -> None:
    rig = released(tmp_path)
    assert (await rig.say(QUESTION, release_id="live")).lineage.release_id == "r1"
    with pytest.raises(NotFound) as unknown:
        await rig.say("Another question about refunds", release_id="r9")
    assert unknown.value.reason == "RELEASE_NOT_FOUND"
    assert rig.stored_release_ids() == ["r1"]  # the refused message is not stored


async def test_a_release_with_another_model_asks_the_llm_for_it_with_its_own_fit(tmp_path: Path) -> None:
    """The LLM phrases every answer here, so the model is part of the fit's configuration: the
    candidate's model has its own fit (in the fits directory), which the candidate serves with."""
    fits = tmp_path / "fits"
    candidate_configuration = Configuration.serving("unit", "always", "candidate-model", prompts.PHRASE_VERSION)
    feature = next(iter(Signals.__dataclass_fields__))
    candidate_fit = Calibrator("candidate-fit-v1", candidate_configuration.id, (feature,), (0.0,), OPEN, (0.0,), (1.0,))
    fit_path(fits, candidate_configuration.id).parent.mkdir(parents=True)
    fit_path(fits, candidate_configuration.id).write_text(candidate_fit.to_json())
    rig = released(tmp_path, llm=FakeLlm(PHRASED), phrasing="always", fits_dir=fits)
    live = await rig.say(QUESTION, conversation_id="c1")
    other = await rig.candidate(llm_model="candidate-model")
    evaluated = await rig.say(QUESTION, release_id=other, conversation_id="c2")

    assert [body["model"] for body in rig.llm.bodies] == [rig.settings.llm_model, "candidate-model"]
    assert live.reply == evaluated.reply == PHRASED
    assert live.confidence.calibration_version == "stand-in-v1"
    assert evaluated.confidence.calibration_version == "candidate-fit-v1"
    assert "model=candidate-model" in evaluated.confidence.configuration_id
    assert (live.lineage.release_id, evaluated.lineage.release_id) == ("r1", other)


async def test_a_release_fitted_for_an_older_answer_path_keeps_the_gate_closed(tmp_path: Path) -> None:
    """After an upgrade that changes how replies are made, a release made before it still
    holds its fit, fitted on replies no longer sent: it serves uncalibrated (every answer to a
    human, and the response says so) until a release with a current fit is promoted."""
    rig = released(tmp_path, HIGH)
    assert (await rig.say(QUESTION, conversation_id="c1")).decision == D.DECISION_ANSWERED
    with rig.engine.begin() as connection:
        (fit,) = connection.execute(sa.select(ReleaseRow.fit).where(ReleaseRow.release_id == "r1")).scalars()
        connection.execute(
            sa.update(ReleaseRow).where(ReleaseRow.release_id == "r1")
            .values(fit={**fit, "configuration_id": "unit-v0|phrasing=off"})
        )
    upgraded = released(tmp_path, HIGH)
    response = await upgraded.say(QUESTION, conversation_id="c2")
    assert (response.decision, response.reason) == (D.DECISION_ESCALATED, D.DECISION_REASON_LOW_CONFIDENCE)
    assert not response.confidence.calibrated and response.confidence.score == 0.0
    assert response.lineage.release_id == "r1"
    # A release made now takes the current fit, and answers once promoted.
    current = await upgraded.candidate()
    assert (await upgraded.say(QUESTION, release_id=current, conversation_id="c3")).decision == D.DECISION_ANSWERED


# --- the deployed process --------------------------------------------------------------


async def test_the_process_serves_by_release_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    """app.servicers on a real server with every backend down: the honest handoff names r1,
    and an unknown release is NOT_FOUND with its reason in the details."""
    nowhere = "127.0.0.1:9"
    settings = ConciergeSettings(
        port=0, data_dir=tmp_path, database_url="", retrieval_addr=nowhere, triage_addr=nowhere,
        escalation_addr=nowhere, llm_base_url=f"http://{nowhere}/v1", llm_timeout_s=1.0,
    )
    async with (
        serving(settings, servicers) as server,
        connect(f"127.0.0.1:{server.port}", "aftercare.concierge.v1.ConciergeService") as channel,
    ):
        stub = concierge_pb2_grpc.ConciergeServiceStub(channel)
        response = await stub.Converse(request(QUESTION))
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.Converse(request(QUESTION, conversation_id="c2", release_id="r7"))
    assert response.decision == D.DECISION_ESCALATED and response.lineage.release_id == "r1"
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert details_from_rpc_error(unknown.value).reason == "RELEASE_NOT_FOUND"


# --- the account assistant: its outcomes and the action it proposes ---------------------


@pytest.fixture(scope="module", name="live_shop")
def live_shop_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveShop]:
    with LiveShop(tmp_path_factory.mktemp("demoshop")) as running:
        yield running


class ModelRecordingPlanner(ScriptedPlanner):
    """The scripted planner, keeping the model each call asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.models: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.models.append(str(json.loads(request.content)["model"]))
        return super().handler(request)


@needs_tau_retail
async def test_the_account_assistant_and_its_action_name_the_release(
    tmp_path: Path, live_shop: LiveShop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMOSHOP_TOKEN", live_shop.token)
    monkeypatch.setenv("SHOP_BACKOFFICE_URL", live_shop.url)
    config = ConciergeSettings(
        port=0, retrieval_addr="x", triage_addr="x", escalation_addr="x", actions_addr="x",
        llm_base_url="http://llm.test/v1",
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'concierge.db'}")
    store = ConversationStore(engine)
    store.migrate()
    confidence = stand_in(config, OPEN)
    planner = ModelRecordingPlanner()
    async with (
        serving(settings_for(tmp_path / "actions", DEFAULT_CATALOG_DIR), actions_servicers) as running,
        httpx.AsyncClient(base_url=live_shop.url, headers=live_shop.headers, timeout=30.0) as office,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        (await office.post("/admin/reset")).raise_for_status()
        actions = actions_pb2_grpc.ActionsServiceStub(channel)
        book = ReleaseBook(engine, config, confidence=confidence)
        escalation = FakeEscalation()
        servicer = ConciergeServicer(
            config, FakeRetrieval(), FakeTriage(), escalation, planner.client(), store,  # type: ignore[arg-type]
            confidence=confidence, actions=actions, releases=book,
        )
        shop = Shop(servicer, planner, escalation, office, actions)
        other = (await book.create(
            "shop", description="another planner model", created_by="admin-test", request_id="model",
            overrides=releases_pb2.ReleaseOverrides(llm_model="planner-candidate"),
        )).release.release_id
        identified = await shop.say(f"I'm {ISABELLA}")
        proposed = await shop.say(f"Please cancel order {PENDING_ORDER}, I ordered it by mistake")
        on_candidate = await shop.say(f"Please cancel order {PENDING_ORDER}, I ordered it by mistake",
                                      release_id=other, client_message_id="again")
        [first, second] = await shop.actions_of_conversation()

    assert (identified.reason, proposed.reason) == (D.DECISION_REASON_NEEDS_DETAIL, D.DECISION_REASON_ACTION_PROPOSED)
    assert [o.lineage.release_id for o in (identified, proposed, on_candidate)] == ["r1", "r1", other]
    assert on_candidate.reason == D.DECISION_REASON_ACTION_PROPOSED
    # Each proposed action names the release that proposed it; the planner ran on that release's model.
    by_id = {first.action_id: first.release_id, second.action_id: second.release_id}
    assert by_id == {proposed.pending_action.action_id: "r1", on_candidate.pending_action.action_id: other}
    assert planner.models == [config.llm_model, "planner-candidate"]
