"""Detectors and cause analysis on a hand-built tenant, and DetectRisks with the
knowledge base up, down, and re-run."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from aftercare.outreach.v1 import outreach_pb2
from aftercare.retrieval.v1 import retrieval_pb2
from servicekit.database import make_engine
from servicekit.errors import InvalidArgument
from services.outreach.detection import Detector
from services.outreach.detector_config import DetectorConfig
from services.outreach.findings import ACTIVITY_DROP, CHURN_TREND, ERROR_SPIKE, RELEASE_CLUSTER
from services.outreach.knowledge import Passage, suggested_fix
from services.outreach.servicer import OutreachServicer
from services.outreach.settings import DEFAULT_DETECTORS_FILE
from services.outreach.store import OutreachStore
from tests.services.outreach.conftest import FakeLlm, account, settings_for, ts

END = dt.date(2026, 11, 24)
AS_OF = dt.datetime(2026, 11, 24, 6, 0, tzinfo=dt.UTC)
BATCH = "POST /v2/events/batch"
DASH = "GET /v2/dashboards"
EXPORTS = "GET /v2/exports"
FIX_TEXT = (
    "# JavaScript SDK returns 429 E-1042\n"
    "POST /v2/events/batch now accepts at most 500 events per request. "
    "To fix it, upgrade to @northwind/beacon-js 3.8.1, or add batchSize: 500 to your Beacon.init options."
)


@dataclass
class Tenant:
    """Builds 8 weeks of daily usage, one event per account, day, endpoint and outcome."""

    rng: random.Random = field(default_factory=lambda: random.Random(5))
    events: list[outreach_pb2.UsageEvent] = field(default_factory=list)

    def day(self, offset: int) -> dt.datetime:
        # offset 1 = yesterday (the last complete day)
        return dt.datetime.combine(END - dt.timedelta(days=offset), dt.time(12), dt.UTC)

    def usage(self, account_id: str, endpoint: str, per_day, *, version: str = "js-3.8.1",  # type: ignore[no-untyped-def]
              errors=lambda offset: (0, 0, ""), feature: str = "") -> None:
        for offset in range(56, 0, -1):
            total = round(per_day(offset) * self.rng.uniform(0.95, 1.05))
            failed, status, code = errors(offset)
            failed = round(failed)
            feature_name = feature or endpoint.split("/")[-1]
            if total - failed > 0:
                self.events.append(self._event(account_id, offset, endpoint, feature_name, 200, "", total - failed,
                                               version, "ok"))
            if failed > 0:
                self.events.append(self._event(account_id, offset, endpoint, feature_name, status, code, failed,
                                               version, "err"))

    def _event(self, account_id: str, offset: int, endpoint: str, feature: str, status: int, code: str,
               count: int, version: str, kind: str) -> outreach_pb2.UsageEvent:
        event = outreach_pb2.UsageEvent(
            event_id=f"{account_id}-{offset}-{endpoint}-{kind}", tenant_id="demo", account_id=account_id,
            feature=feature, endpoint=endpoint, status_code=status, error_code=code, count=count,
            client_version=version,
        )
        event.occurred_at.CopyFrom(ts(self.day(offset)))
        return event


def build() -> tuple[Tenant, list[str]]:
    t = Tenant()
    names = []

    def steady(name: str, version: str = "js-3.8.1") -> None:
        names.append(name)
        t.usage(name, BATCH, lambda o: 150, version=version, errors=lambda o: (1, 500, "E-1500"))
        t.usage(name, DASH, lambda o: 100, version=version, feature="dashboards")

    for i in range(4):
        steady(f"steady-{i}")
    # Dashboards usage collapses in the last week: a 36% drop overall.
    names.append("dropper")
    t.usage("dropper", BATCH, lambda o: 150)
    t.usage("dropper", DASH, lambda o: 10 if o <= 7 else 100, feature="dashboards")
    # The week before last was a billing-cycle peak: down week over week, normal against the baseline.
    names.append("seasonal")
    t.usage("seasonal", BATCH, lambda o: 300 if 8 <= o <= 14 else 150)
    t.usage("seasonal", DASH, lambda o: 100, feature="dashboards")
    # Too small to matter, even though it halved.
    names.append("tiny")
    t.usage("tiny", BATCH, lambda o: 3 if o <= 7 else 8)
    # Exports started failing with E-3001 two days ago.
    names.append("spiky")
    t.usage("spiky", BATCH, lambda o: 150)
    t.usage("spiky", EXPORTS, lambda o: 80, feature="exports",
            errors=lambda o: (40, 403, "E-3001") if o <= 2 else (0, 0, ""))
    # A release breaks the batch endpoint for js-3.7.2 from 3 days ago: one incident, four accounts.
    for i in range(4):
        name = f"old-sdk-{i}"
        names.append(name)
        t.usage(name, BATCH, lambda o: 200, version="js-3.7.2",
                errors=lambda o: (80, 429, "E-1042") if o <= 3 else (0, 0, ""))
        t.usage(name, DASH, lambda o: 100, version="js-3.7.2", feature="dashboards")
    # Sustained decline, 15% a week for 5 weeks.
    names.append("decliner")
    t.usage("decliner", BATCH, lambda o: 300 * 0.85 ** max(0.0, (35 - o) / 7))
    return t, names


@pytest.fixture
def store(tmp_path: Path) -> Iterator[OutreachStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'outreach.db'}")
    made = OutreachStore(engine)
    made.migrate()
    tenant, names = build()
    made.upsert_accounts([account(n) for n in names], AS_OF)
    made.record_usage(tenant.events, AS_OF, late_after=dt.timedelta(days=1000))
    yield made
    engine.dispose()


def run(store: OutreachStore, config: DetectorConfig | None = None):  # type: ignore[no-untyped-def]
    config = config or DetectorConfig.load(DEFAULT_DETECTORS_FILE)
    # Small tenant: the churn detector's default churned level, guards scaled to it.
    return Detector(store.engine, config).run("demo", AS_OF)


def test_each_detector_finds_its_planted_problem_and_nothing_else(store: OutreachStore) -> None:
    found = {(f.kind, tuple(f.account_ids)) for f in run(store)}
    assert found == {
        (ACTIVITY_DROP, ("dropper",)),
        (ERROR_SPIKE, ("spiky",)),
        (RELEASE_CLUSTER, ("old-sdk-0", "old-sdk-1", "old-sdk-2", "old-sdk-3")),
        (CHURN_TREND, ("decliner",)),
    }


def test_cause_analysis_names_feature_code_and_version(store: OutreachStore) -> None:
    by_kind = {f.kind: f for f in run(store)}
    drop = by_kind[ACTIVITY_DROP]
    assert (drop.feature, drop.endpoint) == ("dashboards", DASH)
    assert "fell 3" in drop.evidence[0].statement  # ~36% week over week
    assert drop.evidence[1].metric == "feature.dashboards.weekly_successful_events"
    spike = by_kind[ERROR_SPIKE]
    assert (spike.endpoint, spike.error_code) == (EXPORTS, "E-3001")
    assert spike.evidence[0].after == pytest.approx(80 / 240, abs=0.03)  # 2 of the 3 recent days failing half
    cluster = by_kind[RELEASE_CLUSTER]
    assert (cluster.endpoint, cluster.error_code, cluster.release) == (BATCH, "E-1042", "js-3.7.2")
    assert cluster.details["onset"] == str(END - dt.timedelta(days=3))
    assert any("js-3.8.1" in e.statement for e in cluster.evidence)  # the unaffected versions are named


def test_thresholds_come_from_the_config(store: OutreachStore) -> None:
    default = DetectorConfig.load(DEFAULT_DETECTORS_FILE)
    strict = default.model_copy(update={
        "activity_drop": default.activity_drop.model_copy(update={"drop_ratio": 0.5}),
        "release_cluster": default.release_cluster.model_copy(update={"min_accounts": 5}),
    })
    kinds = [(f.kind, f.account_ids) for f in run(store, strict)]
    assert all(kind != ACTIVITY_DROP for kind, _ in kinds)
    # Without a cluster, each old-SDK account is its own error spike.
    assert sorted(a[0] for kind, a in kinds if kind == ERROR_SPIKE) == [
        "old-sdk-0", "old-sdk-1", "old-sdk-2", "old-sdk-3", "spiky"
    ]


def test_a_bad_config_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"activity_drop": {"drop_ratio": 1.5}}')
    with pytest.raises(ValueError, match="drop_ratio"):
        DetectorConfig.load(path)


def test_suggested_fix_picks_the_action_sentence() -> None:
    passage = Passage("t", "t#0", "Ticket", "", FIX_TEXT, 1.0, "4.3")
    fix = suggested_fix([passage], ["E-1042", BATCH])
    assert fix.startswith("To fix it, upgrade to @northwind/beacon-js 3.8.1")
    assert suggested_fix([Passage("x", "x#0", "X", "", "Beacon is great.", 1.0, "")], ["E-1"]) == ""


@dataclass
class FakeRetrieval:
    down: bool = False
    queries: list[str] = field(default_factory=list)

    async def Search(self, request: retrieval_pb2.SearchRequest) -> retrieval_pb2.SearchResponse:
        self.queries.append(request.query)
        if self.down:
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata())
        return retrieval_pb2.SearchResponse(hits=[
            retrieval_pb2.SearchHit(doc_id="ticket-e1042", chunk_id="ticket-e1042#0", title="E-1042 after 4.3",
                                    text=FIX_TEXT, score=0.8, similarity=0.7, version="4.3",
                                    url="https://docs.beacon.example/t"),
            retrieval_pb2.SearchHit(doc_id="noise", chunk_id="noise#0", title="Noise", text="Unrelated.",
                                    score=0.1, similarity=0.1),
        ])


def servicer(store: OutreachStore, tmp_path: Path, retrieval: FakeRetrieval, llm: FakeLlm | None = None,
             **settings: object) -> OutreachServicer:
    return OutreachServicer(
        store, settings_for(tmp_path, **settings),
        detector=Detector(store.engine, DetectorConfig.load(DEFAULT_DETECTORS_FILE)),
        retrieval=retrieval,  # type: ignore[arg-type]
        llm=(llm or FakeLlm(down=True)).client(),
    )


async def detect(rig: OutreachServicer) -> outreach_pb2.DetectRisksResponse:
    return await rig.DetectRisks(outreach_pb2.DetectRisksRequest(tenant_id="demo", as_of=ts(AS_OF)), None)  # type: ignore[arg-type]


async def test_detect_risks_stores_findings_with_passages_and_fix(store: OutreachStore, tmp_path: Path) -> None:
    retrieval = FakeRetrieval()
    response = await detect(servicer(store, tmp_path, retrieval))

    assert len(response.findings) == 4
    assert [f.severity for f in response.findings] == sorted((f.severity for f in response.findings), reverse=True)
    cluster = next(f for f in response.findings if f.kind == outreach_pb2.RISK_KIND_RELEASE_CLUSTER)
    assert [s.doc_id for s in cluster.sources] == ["ticket-e1042"]  # the irrelevant hit is dropped
    assert "upgrade to @northwind/beacon-js 3.8.1" in cluster.suggested_fix
    assert not cluster.knowledge_unavailable
    assert "E-1042" in retrieval.queries[0] or any("E-1042" in q for q in retrieval.queries)
    stored = store.get_finding("demo", cluster.finding_id)
    assert stored is not None and stored.evidence[0]["statement"].startswith(f"Calls to {BATCH} started failing")
    # How many accounts fail is for the reviewer; the evidence goes into each customer's message.
    assert cluster.cause.endswith("(4 accounts)") and "4 accounts" not in stored.evidence[0]["statement"]
    assert store.get_finding("other-tenant", cluster.finding_id) is None


async def test_when_retrieval_is_down_findings_keep_their_evidence(store: OutreachStore, tmp_path: Path) -> None:
    retrieval = FakeRetrieval(down=True)
    response = await detect(servicer(store, tmp_path, retrieval))

    assert len(response.findings) == 4
    assert all(f.knowledge_unavailable and not f.sources and f.evidence for f in response.findings)
    # One failed call is enough: the run stops asking.
    assert len(retrieval.queries) == 1


async def test_re_running_detection_updates_the_same_findings(store: OutreachStore, tmp_path: Path) -> None:
    rig = servicer(store, tmp_path, FakeRetrieval())
    first = await detect(rig)
    second = await detect(rig)
    assert sorted(f.finding_id for f in first.findings) == sorted(f.finding_id for f in second.findings)


async def test_detect_risks_checks_its_request(store: OutreachStore, tmp_path: Path) -> None:
    rig = servicer(store, tmp_path, FakeRetrieval())
    with pytest.raises(InvalidArgument) as caught:
        await rig.DetectRisks(outreach_pb2.DetectRisksRequest(  # type: ignore[arg-type]
            as_of=ts(dt.datetime.now(dt.UTC) + dt.timedelta(days=2))), None)
    assert caught.value.violations == [("tenant_id", "required"), ("as_of", "must not be in the future")]


def test_the_detectors_read_postgresql_alike(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        made = OutreachStore(engine)
        made.migrate()
        tenant, names = build()
        made.upsert_accounts([account(n) for n in names], AS_OF)
        made.record_usage(tenant.events, AS_OF, late_after=dt.timedelta(days=1000))
        found = {(f.kind, tuple(f.account_ids)) for f in run(made)}
    finally:
        engine.dispose()
    assert found == {
        (ACTIVITY_DROP, ("dropper",)),
        (ERROR_SPIKE, ("spiky",)),
        (RELEASE_CLUSTER, ("old-sdk-0", "old-sdk-1", "old-sdk-2", "old-sdk-3")),
        (CHURN_TREND, ("decliner",)),
    }
