"""The release registry (services/concierge/releases.py, release_store.py,
release_servicer.py) on SQLite and PostgreSQL: releases made from the working copy,
idempotent; listed, fetched ("live"), compared; promotion behind a complete, passing
suite run or an admin's recorded override; rollback to the release live before or to a
named one; every change an event; a tenant's first release made on its first turn; a
second replica following the live pointer within about a second."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aftercare.actions.v1 import actions_pb2
from aftercare.concierge.v1 import releases_pb2, releases_pb2_grpc
from aftercare.triage.v1 import triage_pb2
from servicekit.database import utcnow
from servicekit.errors import ApiError, FailedPrecondition, InvalidArgument, NotFound, details_from_rpc_error
from servicekit.server import serving
from services.concierge import prompts
from services.concierge.app import servicers
from services.concierge.confidence import DEFAULT_FITS_DIR, Calibrator, Confidence, Configuration
from services.concierge.migrations import SCHEMA
from services.concierge.models import ReleaseRow
from services.concierge.persona import PersonaBook
from services.concierge.release_servicer import ReleaseServicer
from services.concierge.releases import ReleaseBook
from services.concierge.settings import ConciergeSettings

# The servicer's methods are called directly; none of them reads its context.
CONTEXT: Any = None
TENANT = "acme"
ADMIN = "admin-key-ops"
SUITE = "sha256:suite-v1"


class FakeTriage:
    """Triage's GetIntentModel: a version, or down."""

    def __init__(self, version: str = "intent-7", down: bool = False):
        self.version = version
        self.down = down

    async def GetIntentModel(
        self, request: triage_pb2.GetIntentModelRequest, **call: float
    ) -> triage_pb2.GetIntentModelResponse:
        assert 0 < call["timeout"] <= 2.0  # making a release never waits long for a version
        if self.down:
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata())
        return triage_pb2.GetIntentModelResponse(serving_version=self.version, current_version=self.version)


class FakeActions:
    async def ListTools(
        self, request: actions_pb2.ListToolsRequest, **call: float
    ) -> actions_pb2.ListToolsResponse:
        assert 0 < call["timeout"] <= 2.0
        return actions_pb2.ListToolsResponse(catalog_version="shop-1+abc123")


@pytest.fixture
def personas_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "personas"
    directory.mkdir()
    (directory / f"{TENANT}.json").write_text(json.dumps({
        "version": "acme-1", "name": "Acme Helper", "product": "Acme", "tone": "brief",
        "confidence_threshold": 0.8, "intent_thresholds": {"billing_issue": 0.9},
    }))
    return directory


@pytest.fixture
def settings(personas_dir: Path) -> ConciergeSettings:
    return ConciergeSettings(  # type: ignore[call-arg]
        port=0, retrieval_addr="x", triage_addr="x", escalation_addr="x", llm_base_url="http://llm.test/v1",
        persona_dir=personas_dir,
    )


@pytest.fixture
def migrated(engine: Engine) -> Iterator[Engine]:
    SCHEMA.migrate(engine)
    yield engine


def make_book(engine: Engine, settings: ConciergeSettings, triage: FakeTriage | None = None,
              **options: float) -> ReleaseBook:
    return ReleaseBook(
        engine, settings, personas=PersonaBook(settings.persona_dir, settings.confidence_threshold),
        triage=triage or FakeTriage(), actions=FakeActions(), **options,
    )


def create_request(request_id: str = "req-1", **overrides: object) -> releases_pb2.CreateReleaseRequest:
    return releases_pb2.CreateReleaseRequest(
        tenant_id=TENANT, description="Stricter billing threshold", created_by=ADMIN, request_id=request_id,
        overrides=releases_pb2.ReleaseOverrides(**overrides),
    )


def suite_run(release_id: str, passed: int, total: int, *, partial: bool = False) -> releases_pb2.RecordSuiteRunRequest:
    results = [
        releases_pb2.ScenarioResult(
            name=f"scenario-{i}", passed=i < passed,
            failures=[] if i < passed else [f"turn 1: decision answered, expected clarify ({i})"],
        )
        for i in range(total)
    ]
    return releases_pb2.RecordSuiteRunRequest(tenant_id=TENANT, run=releases_pb2.SuiteRun(
        release_id=release_id, suite_digest=SUITE, total=total, passed=passed, results=results, partial=partial,
        run_by=ADMIN,
    ))


def promote(release_id: str, override_reason: str = "") -> releases_pb2.PromoteReleaseRequest:
    return releases_pb2.PromoteReleaseRequest(
        tenant_id=TENANT, release_id=release_id, actor=ADMIN, override_reason=override_reason
    )


async def refused(call: object) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await call  # type: ignore[misc]
    return caught.value


# --- making releases ----------------------------------------------------------------


async def test_create_snapshots_the_working_copy_and_is_idempotent(
    migrated: Engine, settings: ConciergeSettings
) -> None:
    service = ReleaseServicer(make_book(migrated, settings))
    first = (await service.CreateRelease(create_request(thresholds={"billing_issue": 0.95}), CONTEXT)).release
    # The tenant had no release: r1 is its working copy, live, by "system"; the candidate is r2.
    assert (first.release_id, first.number, first.state) == ("r2", 2, releases_pb2.RELEASE_STATE_CANDIDATE)
    assert (first.created_by, first.description) == (ADMIN, "Stricter billing threshold")
    components = first.components
    assert components.thresholds == {"": 0.8, "billing_issue": 0.95}
    assert components.llm_model == settings.llm_model
    assert components.prompt_version == prompts.version_for(settings.answer_mode)
    assert components.triage_model_version == "intent-7"
    assert components.action_catalog_version == "shop-1+abc123"
    assert components.persona_version.startswith("acme-1+")
    fit = Confidence.load(DEFAULT_FITS_DIR, Configuration.serving("unit", "off", "", "")).fit_for(TENANT)
    assert fit is not None and components.confidence_fit_version == fit.version
    assert len(first.digest) == 64

    again = (await service.CreateRelease(create_request(thresholds={"billing_issue": 0.95}), CONTEXT)).release
    assert again == first
    live_request = releases_pb2.GetReleaseRequest(tenant_id=TENANT, release_id="live")
    live = (await service.GetRelease(live_request, CONTEXT)).release
    assert (live.release_id, live.state, live.created_by) == ("r1", releases_pb2.RELEASE_STATE_LIVE, "system")
    assert live.components.thresholds == {"": 0.8, "billing_issue": 0.9}
    assert live.digest != first.digest and live.HasField("promoted_at")
    listed = (await service.ListReleases(releases_pb2.ListReleasesRequest(tenant_id=TENANT), CONTEXT)).releases
    assert [r.release_id for r in listed] == ["r2", "r1"]


async def test_an_unchanged_working_copy_gives_the_same_digest(migrated: Engine, settings: ConciergeSettings) -> None:
    service = ReleaseServicer(make_book(migrated, settings))
    a = (await service.CreateRelease(create_request("a"), CONTEXT)).release
    b = (await service.CreateRelease(create_request("b"), CONTEXT)).release
    assert a.release_id != b.release_id and a.digest == b.digest
    compared = await service.CompareReleases(
        releases_pb2.CompareReleasesRequest(tenant_id=TENANT, base_release_id=a.release_id,
                                            other_release_id=b.release_id), CONTEXT)
    assert list(compared.changes) == []


async def test_triage_down_records_no_triage_version(migrated: Engine, settings: ConciergeSettings) -> None:
    service = ReleaseServicer(make_book(migrated, settings, FakeTriage(down=True)))
    release = (await service.CreateRelease(create_request(), CONTEXT)).release
    assert release.components.triage_model_version == ""


async def test_compare_lists_the_components_that_differ(migrated: Engine, settings: ConciergeSettings) -> None:
    service = ReleaseServicer(make_book(migrated, settings))
    other = (await service.CreateRelease(create_request(
        thresholds={"": 0.9, "refund_request": 0.97}, prompt_version=prompts.GENERATIVE_VERSION, llm_model="qwen-7b",
    ), CONTEXT)).release
    response = await service.CompareReleases(releases_pb2.CompareReleasesRequest(
        tenant_id=TENANT, base_release_id="live", other_release_id=other.release_id), CONTEXT)
    changes = {change.component: (change.base, change.other) for change in response.changes}
    assert changes["llm_model"] == (settings.llm_model, "qwen-7b")
    assert changes["prompt_version"] == (prompts.PHRASE_VERSION, prompts.GENERATIVE_VERSION)
    assert changes["thresholds"] == ("0.8", "0.9")
    assert changes["thresholds.refund_request"] == ("", "0.97")
    assert "thresholds.billing_issue" not in changes
    assert changes["persona_version"][0] != changes["persona_version"][1]
    # The routing policy is the same: the thresholds are not part of it.
    assert "routing_policy_version" not in changes and "triage_model_version" not in changes
    assert response.base.release_id == "r1" and response.other.release_id == other.release_id


async def test_editing_the_persona_changes_the_working_copy_not_the_live_release(
    migrated: Engine, settings: ConciergeSettings, personas_dir: Path
) -> None:
    book = make_book(migrated, settings)
    before = await book.serving(TENANT)
    path = personas_dir / f"{TENANT}.json"
    raw = json.loads(path.read_text())
    raw.update(name="Renamed", routing={"blocked_tiers": [], "blocked_reason_codes": []})
    path.write_text(json.dumps(raw))
    os.utime(path, (time.time() + 5, time.time() + 5))
    book_later = make_book(migrated, settings)
    assert (await book_later.serving(TENANT)).persona.name == "Acme Helper"
    candidate = await book_later.create(TENANT, description="rename", created_by=ADMIN, request_id="rename")
    assert (await book_later.serving(TENANT, candidate.release.release_id)).persona.name == "Renamed"
    changes = {c.component for c in (await ReleaseServicer(book_later).CompareReleases(
        releases_pb2.CompareReleasesRequest(tenant_id=TENANT, base_release_id="live",
                                            other_release_id=candidate.release.release_id), CONTEXT)).changes}
    assert {"persona_version", "routing_policy_version"} <= changes
    assert before.persona.name == "Acme Helper"


# --- serving -----------------------------------------------------------------------


async def test_first_serving_makes_r1_from_the_working_copy_live(migrated: Engine, settings: ConciergeSettings) -> None:
    book = make_book(migrated, settings)
    release = await book.serving(TENANT)
    assert (release.tenant_id, release.release_id) == (TENANT, "r1")
    assert release.persona.name == "Acme Helper" and release.persona.threshold_for("billing_issue") == 0.9
    assert release.llm_model == settings.llm_model
    working_fit = Confidence.load(DEFAULT_FITS_DIR, Configuration.serving("unit", "off", "", "")).fit_for(TENANT)
    assert release.calibrator == working_fit and release.calibration_version == working_fit.version  # type: ignore[union-attr]
    assert await book.serving(TENANT, "r1") is release  # built once
    events = (await ReleaseServicer(book).ListReleaseEvents(
        releases_pb2.ListReleaseEventsRequest(tenant_id=TENANT), CONTEXT)).events
    assert [(e.kind, e.release_id, e.actor) for e in events] == [
        (releases_pb2.RELEASE_EVENT_KIND_PROMOTED, "r1", "system"),
        (releases_pb2.RELEASE_EVENT_KIND_CREATED, "r1", "system"),
    ]
    with pytest.raises(NotFound) as missing:
        await book.serving(TENANT, "r9")
    assert missing.value.reason == "RELEASE_NOT_FOUND"


async def test_replicas_racing_for_the_first_release_make_one(migrated: Engine, settings: ConciergeSettings) -> None:
    books = [make_book(migrated, settings) for _ in range(3)]
    served = await asyncio.gather(*(book.serving("fresh-tenant") for book in books for _ in range(3)))
    assert {release.release_id for release in served} == {"r1"}
    with Session(migrated) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ReleaseRow)) == 1


async def test_a_second_replica_follows_a_promotion_within_a_second(
    migrated: Engine, settings: ConciergeSettings
) -> None:
    admin_replica, other_replica = make_book(migrated, settings), make_book(migrated, settings)
    assert (await other_replica.serving(TENANT)).release_id == "r1"
    service = ReleaseServicer(admin_replica)
    candidate = (await service.CreateRelease(create_request(thresholds={"": 0.9}), CONTEXT)).release
    await service.RecordSuiteRun(suite_run(candidate.release_id, 3, 3), CONTEXT)
    await service.PromoteRelease(promote(candidate.release_id), CONTEXT)
    promoted_at = time.monotonic()
    assert (await admin_replica.serving(TENANT)).release_id == candidate.release_id  # at once where it happened
    while (served := await other_replica.serving(TENANT)).release_id != candidate.release_id:
        assert time.monotonic() - promoted_at < 1.5, "the other replica still serves the old release"
        await asyncio.sleep(0.05)
    assert served.persona.confidence_threshold == 0.9


# --- promotion and rollback --------------------------------------------------------------


async def test_promotion_needs_a_complete_passing_suite_run(migrated: Engine, settings: ConciergeSettings) -> None:
    service = ReleaseServicer(make_book(migrated, settings))
    candidate = (await service.CreateRelease(create_request(), CONTEXT)).release.release_id

    for run in (None, suite_run(candidate, 2, 3), suite_run(candidate, 5, 5, partial=True)):
        if run is not None:
            await service.RecordSuiteRun(run, CONTEXT)
        error = await refused(service.PromoteRelease(promote(candidate), CONTEXT))
        assert isinstance(error, FailedPrecondition) and error.reason == "SUITE_NOT_PASSED"

    stored = (await service.RecordSuiteRun(suite_run(candidate, 4, 4), CONTEXT)).run
    assert stored.run_id.startswith("run-") and stored.run_by == ADMIN and not stored.partial
    # A later failing run blocks again: the latest run counts.
    await service.RecordSuiteRun(suite_run(candidate, 3, 4), CONTEXT)
    assert (await refused(service.PromoteRelease(promote(candidate), CONTEXT))).reason == "SUITE_NOT_PASSED"
    await service.RecordSuiteRun(suite_run(candidate, 4, 4), CONTEXT)

    promoted = await service.PromoteRelease(promote(candidate), CONTEXT)
    assert promoted.release.state == releases_pb2.RELEASE_STATE_LIVE
    assert promoted.release.latest_suite_run.passed == 4
    assert promoted.event.kind == releases_pb2.RELEASE_EVENT_KIND_PROMOTED
    assert (promoted.event.previous_release_id, promoted.event.actor) == ("r1", ADMIN)
    old = (await service.GetRelease(releases_pb2.GetReleaseRequest(tenant_id=TENANT, release_id="r1"), CONTEXT)).release
    assert old.state == releases_pb2.RELEASE_STATE_RETIRED
    again = await refused(service.PromoteRelease(promote(candidate), CONTEXT))
    assert again.reason == "RELEASE_ALREADY_LIVE"


async def test_an_override_promotes_and_is_recorded(migrated: Engine, settings: ConciergeSettings) -> None:
    service = ReleaseServicer(make_book(migrated, settings))
    candidate = (await service.CreateRelease(create_request(), CONTEXT)).release.release_id
    await service.RecordSuiteRun(suite_run(candidate, 1, 2), CONTEXT)
    promoted = await service.PromoteRelease(promote(candidate, "hotfix: the suite's flaky scenario is known"), CONTEXT)
    assert promoted.event.kind == releases_pb2.RELEASE_EVENT_KIND_PROMOTED_WITH_OVERRIDE
    assert "hotfix: the suite's flaky scenario is known" in promoted.event.detail
    assert "passed 1 of 2" in promoted.event.detail


async def test_rollback_goes_back_to_the_release_live_before_or_to_a_named_one(
    migrated: Engine, settings: ConciergeSettings
) -> None:
    book = make_book(migrated, settings)
    service = ReleaseServicer(book)
    ids = []
    for n in range(2):
        candidate = (await service.CreateRelease(create_request(f"req-{n}"), CONTEXT)).release.release_id
        await service.RecordSuiteRun(suite_run(candidate, 1, 1), CONTEXT)
        await service.PromoteRelease(promote(candidate), CONTEXT)
        ids.append(candidate)
    assert ids == ["r2", "r3"]

    def rollback(to: str = "") -> releases_pb2.RollbackReleaseRequest:
        return releases_pb2.RollbackReleaseRequest(tenant_id=TENANT, to_release_id=to, actor="system",
                                                   reason="canary worse than live")

    back = await service.RollbackRelease(rollback(), CONTEXT)
    assert (back.release.release_id, back.release.state) == ("r2", releases_pb2.RELEASE_STATE_LIVE)
    assert (back.event.kind, back.event.previous_release_id, back.event.detail) == (
        releases_pb2.RELEASE_EVENT_KIND_ROLLED_BACK, "r3", "canary worse than live")
    assert (await book.serving(TENANT)).release_id == "r2"
    # Once more walks further back (to what r2 replaced), not forth to the release rolled back from.
    assert (await service.RollbackRelease(rollback(), CONTEXT)).release.release_id == "r1"
    assert (await refused(service.RollbackRelease(rollback(), CONTEXT))).reason == "NO_EARLIER_RELEASE"
    named = await service.RollbackRelease(rollback("r3"), CONTEXT)
    assert (named.release.release_id, named.event.previous_release_id) == ("r3", "r1")

    candidate = (await service.CreateRelease(create_request("never-live"), CONTEXT)).release.release_id
    assert (await refused(service.RollbackRelease(rollback(candidate), CONTEXT))).reason == "RELEASE_NOT_RETIRED"
    assert (await refused(service.RollbackRelease(rollback("r3"), CONTEXT))).reason == "RELEASE_NOT_RETIRED"
    assert (await refused(service.RollbackRelease(rollback("r99"), CONTEXT))).reason == "RELEASE_NOT_FOUND"

    states = {r.release_id: r.state for r in (await service.ListReleases(
        releases_pb2.ListReleasesRequest(tenant_id=TENANT), CONTEXT)).releases}
    assert [rid for rid, state in states.items() if state == releases_pb2.RELEASE_STATE_LIVE] == ["r3"]


async def test_events_record_every_change_newest_first_in_pages(
    migrated: Engine, settings: ConciergeSettings
) -> None:
    service = ReleaseServicer(make_book(migrated, settings))
    candidate = (await service.CreateRelease(create_request(), CONTEXT)).release.release_id
    await service.RecordSuiteRun(suite_run(candidate, 2, 2), CONTEXT)
    await service.PromoteRelease(promote(candidate), CONTEXT)
    await service.RollbackRelease(releases_pb2.RollbackReleaseRequest(
        tenant_id=TENANT, actor=ADMIN, reason="customers complain"), CONTEXT)
    kinds, token = [], ""
    while True:
        page = await service.ListReleaseEvents(releases_pb2.ListReleaseEventsRequest(
            tenant_id=TENANT, page_size=2, page_token=token), CONTEXT)
        assert len(page.events) <= 2
        kinds += [(releases_pb2.ReleaseEventKind.Name(e.kind), e.release_id) for e in page.events]
        token = page.next_page_token
        if not token:
            break
    assert kinds == [
        ("RELEASE_EVENT_KIND_ROLLED_BACK", "r1"),
        ("RELEASE_EVENT_KIND_PROMOTED", "r2"),
        ("RELEASE_EVENT_KIND_SUITE_RECORDED", "r2"),
        ("RELEASE_EVENT_KIND_CREATED", "r2"),
        ("RELEASE_EVENT_KIND_PROMOTED", "r1"),
        ("RELEASE_EVENT_KIND_CREATED", "r1"),
    ]
    # A token is tied to its tenant's listing.
    first = await service.ListReleaseEvents(releases_pb2.ListReleaseEventsRequest(
        tenant_id=TENANT, page_size=1), CONTEXT)
    other = await refused(service.ListReleaseEvents(releases_pb2.ListReleaseEventsRequest(
        tenant_id="other", page_token=first.next_page_token), CONTEXT))
    assert isinstance(other, InvalidArgument) and other.violations[0][0] == "page_token"


async def test_release_pages(migrated: Engine, settings: ConciergeSettings) -> None:
    service = ReleaseServicer(make_book(migrated, settings))
    for n in range(4):
        await service.CreateRelease(create_request(f"req-{n}"), CONTEXT)
    seen, token = [], ""
    while True:
        page = await service.ListReleases(releases_pb2.ListReleasesRequest(
            tenant_id=TENANT, page_size=2, page_token=token), CONTEXT)
        seen += [r.release_id for r in page.releases]
        if not (token := page.next_page_token):
            break
    assert seen == ["r5", "r4", "r3", "r2", "r1"]


def test_the_database_holds_one_live_release_per_tenant(migrated: Engine) -> None:
    row = {"components": {}, "persona": {}, "digest": "0" * 64, "description": "d", "created_by": "x",
           "created_at": utcnow()}
    with Session(migrated) as session, session.begin():
        session.add(ReleaseRow(tenant_id=TENANT, number=1, release_id="r1", state="LIVE", **row))
        session.add(ReleaseRow(tenant_id="other", number=1, release_id="r1", state="LIVE", **row))
        session.add(ReleaseRow(tenant_id=TENANT, number=2, release_id="r2", state="RETIRED", **row))
    with pytest.raises(IntegrityError), Session(migrated) as session, session.begin():
        session.add(ReleaseRow(tenant_id=TENANT, number=3, release_id="r3", state="LIVE", **row))


# --- validation ------------------------------------------------------------------------


async def test_requests_are_validated_field_by_field(migrated: Engine, settings: ConciergeSettings) -> None:
    service = ReleaseServicer(make_book(migrated, settings))
    bad_create = releases_pb2.CreateReleaseRequest(
        tenant_id="no spaces", description="", created_by="", request_id="",
        overrides=releases_pb2.ReleaseOverrides(thresholds={"billing": 1.5}),
    )
    error = await refused(service.CreateRelease(bad_create, CONTEXT))
    assert isinstance(error, InvalidArgument)
    assert {field for field, _ in error.violations} == {
        "tenant_id", "description", "created_by", "request_id", "overrides.thresholds['billing']"}

    unknown_prompt = await refused(service.CreateRelease(create_request(prompt_version="my-prompt"), CONTEXT))
    assert isinstance(unknown_prompt, InvalidArgument)
    assert unknown_prompt.violations[0][0] == "overrides.prompt_version"

    bad_get = await refused(service.GetRelease(releases_pb2.GetReleaseRequest(tenant_id=TENANT, release_id="3"),
                                               CONTEXT))
    assert isinstance(bad_get, InvalidArgument) and bad_get.violations[0][0] == "release_id"
    missing = await refused(service.GetRelease(releases_pb2.GetReleaseRequest(tenant_id=TENANT, release_id="r42"),
                                               CONTEXT))
    assert isinstance(missing, NotFound) and missing.reason == "RELEASE_NOT_FOUND"

    run = suite_run("r1", 2, 2)
    run.run.passed = 2
    del run.run.results[1]
    inconsistent = await refused(service.RecordSuiteRun(run, CONTEXT))
    assert isinstance(inconsistent, InvalidArgument)
    assert {field for field, _ in inconsistent.violations} == {"run.results", "run.passed"}
    no_release = await refused(service.RecordSuiteRun(suite_run("r77", 1, 1), CONTEXT))
    assert no_release.reason == "RELEASE_NOT_FOUND"

    no_reason = await refused(service.RollbackRelease(releases_pb2.RollbackReleaseRequest(
        tenant_id=TENANT, actor=ADMIN), CONTEXT))
    assert isinstance(no_reason, InvalidArgument) and no_reason.violations == [("reason", "required")]
    no_actor = await refused(service.PromoteRelease(releases_pb2.PromoteReleaseRequest(
        tenant_id=TENANT, release_id="r1"), CONTEXT))
    assert isinstance(no_actor, InvalidArgument) and no_actor.violations[0][0] == "actor"
    negative = await refused(service.ListReleases(releases_pb2.ListReleasesRequest(
        tenant_id=TENANT, page_size=-1), CONTEXT))
    assert isinstance(negative, InvalidArgument)


# --- the concierge process ------------------------------------------------------------------


async def test_the_concierge_process_serves_release_service(tmp_path: Path) -> None:
    """app.servicers mounts ReleaseService beside ConciergeService; errors carry their reasons."""
    settings = ConciergeSettings(  # type: ignore[call-arg]
        port=0, data_dir=tmp_path, database_url="", retrieval_addr="127.0.0.1:9", triage_addr="127.0.0.1:9",
        escalation_addr="127.0.0.1:9", llm_base_url="http://127.0.0.1:9/v1",
    )
    async with serving(settings, servicers) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = releases_pb2_grpc.ReleaseServiceStub(channel)
            created = await stub.CreateRelease(releases_pb2.CreateReleaseRequest(
                tenant_id="demo", description="first candidate", created_by=ADMIN, request_id="c1"))
            # Triage is down: the release says so by an empty version, and is still made.
            assert created.release.release_id == "r2" and created.release.components.triage_model_version == ""
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.PromoteRelease(releases_pb2.PromoteReleaseRequest(
                    tenant_id="demo", release_id="r2", actor=ADMIN))
            details = details_from_rpc_error(caught.value)
            assert (details.code, details.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SUITE_NOT_PASSED")


def test_a_fit_snapshot_reads_back_as_the_same_calibrator() -> None:
    fit = Confidence.load(DEFAULT_FITS_DIR, Configuration.serving("unit", "off", "", "")).calibrator
    assert fit is not None and Calibrator.from_snapshot(fit.snapshot()) == fit
