"""Releases over HTTP: the routes translate to the concierge's ReleaseService (the admin key's
holder is who acts, never the body), its refusals become problems, and a conversation turn can
name a release only with an admin key; replies, handoffs and actions name the release that served."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from aftercare.actions.v1 import actions_pb2
from aftercare.concierge.v1 import concierge_pb2, releases_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import answer_pb2
from gateway.keys import Role
from servicekit.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.gateway.conftest import OTHER_TENANT, TENANT, Mesh, bearer, one, open_gateway

BASE = f"/v1/tenants/{TENANT}"
ADMIN_NAME = f"admin-{TENANT}"  # the name conftest gives the admin key
STARTED = "2026-12-01T10:00:00Z"
FINISHED = "2026-12-01T10:04:00Z"


def _ts(iso: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(iso.replace("Z", "+00:00")))
    return stamp


def _run(release_id: str, passed: int, total: int, partial: bool = False) -> releases_pb2.SuiteRun:
    results = [releases_pb2.ScenarioResult(name=f"s{i}", passed=i < passed,
                                           failures=[] if i < passed else [f"turn 1: s{i} failed"])
               for i in range(total)]
    return releases_pb2.SuiteRun(run_id="run-1", release_id=release_id, suite_digest="sha256:abc", total=total,
                                 passed=passed, results=results, started_at=_ts(STARTED), finished_at=_ts(FINISHED),
                                 run_by=ADMIN_NAME, partial=partial)


def _release(number: int, state: int, run: releases_pb2.SuiteRun | None = None, **components: Any
             ) -> releases_pb2.Release:
    release = releases_pb2.Release(
        tenant_id=TENANT, release_id=f"r{number}", number=number, state=state, description=f"release {number}",
        created_by="system" if number == 1 else ADMIN_NAME, created_at=_ts(STARTED), digest=f"sha256:{number}",
        components=releases_pb2.ReleaseComponents(
            llm_model="gemma-3-270m", prompt_version="phrase-v3", confidence_fit_version="fit-7",
            thresholds={"": 0.85, "billing": 0.9}, persona_version="p-1", routing_policy_version="rp-1",
            **components),
    )
    if run is not None:
        release.latest_suite_run.CopyFrom(run)
    return release


def _event(sequence: int, kind: int, release_id: str, previous: str = "", detail: str = ""
           ) -> releases_pb2.ReleaseEvent:
    return releases_pb2.ReleaseEvent(sequence=sequence, tenant_id=TENANT, kind=kind, release_id=release_id,
                                     previous_release_id=previous, actor=ADMIN_NAME, detail=detail,
                                     occurred_at=_ts(FINISHED))


# --- reading -------------------------------------------------------------------------------


async def test_the_list_shows_states_components_and_whether_the_suite_passed(
    mesh: Mesh, gateway: httpx.AsyncClient
) -> None:
    mesh.releases.list_releases.outcome = releases_pb2.ListReleasesResponse(
        releases=[
            _release(3, releases_pb2.RELEASE_STATE_CANDIDATE, _run("r3", 59, 60)),
            _release(2, releases_pb2.RELEASE_STATE_LIVE, _run("r2", 60, 60)),
            _release(1, releases_pb2.RELEASE_STATE_RETIRED, _run("r1", 8, 8, partial=True)),
        ],
        next_page_token="tok-2",
    )
    response = await gateway.get(f"{BASE}/releases", params={"page_size": 3, "page_token": "tok-1"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert [(r["release_id"], r["state"], r["suite_passed"]) for r in body["releases"]] == [
        ("r3", "candidate", False), ("r2", "live", True), ("r1", "retired", False),  # a partial run clears nothing
    ]
    assert body["next_page_token"] == "tok-2"
    candidate = body["releases"][0]
    assert candidate["components"]["thresholds"] == {"": 0.85, "billing": 0.9}
    assert candidate["components"]["action_catalog_version"] == ""
    run = candidate["latest_suite_run"]
    assert (run["passed"], run["total"], run["partial"], run["run_by"]) == (59, 60, False, ADMIN_NAME)
    assert run["results"][-1] == {"name": "s59", "passed": False, "failures": ["turn 1: s59 failed"]}
    assert run["started_at"].startswith("2026-12-01T10:00:00")
    sent = one(mesh.releases.list_releases.requests)
    assert (sent.tenant_id, sent.page_size, sent.page_token) == (TENANT, 3, "tok-1")


async def test_a_release_without_a_run_has_none(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.releases.get_release.outcome = releases_pb2.GetReleaseResponse(
        release=_release(1, releases_pb2.RELEASE_STATE_LIVE)
    )
    response = await gateway.get(f"{BASE}/releases/live")

    assert response.status_code == 200, response.text
    assert response.json()["latest_suite_run"] is None and response.json()["suite_passed"] is False
    assert response.json()["promoted_at"] is None
    assert one(mesh.releases.get_release.requests).release_id == "live"


@pytest.mark.parametrize("release_id", ["r", "latest", "r-1", "R3", "r3x"])
async def test_a_malformed_release_id_is_refused_before_the_concierge(
    mesh: Mesh, gateway: httpx.AsyncClient, release_id: str
) -> None:
    response = await gateway.get(f"{BASE}/releases/{release_id}")

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert mesh.releases.get_release.requests == []


async def test_an_unknown_release_is_a_404_problem(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.releases.get_release.outcome = NotFound("no release r9 for tenant demo", reason="RELEASE_NOT_FOUND")
    response = await gateway.get(f"{BASE}/releases/r9")

    assert response.status_code == 404
    assert response.json()["reason"] == "RELEASE_NOT_FOUND"


async def test_compare_names_both_releases_and_what_differs(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.releases.compare_releases.outcome = releases_pb2.CompareReleasesResponse(
        base=_release(2, releases_pb2.RELEASE_STATE_LIVE),
        other=_release(3, releases_pb2.RELEASE_STATE_CANDIDATE, _run("r3", 60, 60)),
        changes=[releases_pb2.ComponentChange(component="thresholds.billing", base="0.9", other="0.95")],
    )
    # The path's ":compare" must not be read as a release id by GET .../releases/{release_id}.
    response = await gateway.get(f"{BASE}/releases/live:compare", params={"with": "r3"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["base"]["release_id"], body["other"]["release_id"]) == ("r2", "r3")
    assert body["other"]["suite_passed"] is True
    assert body["changes"] == [{"component": "thresholds.billing", "base": "0.9", "other": "0.95"}]
    sent = one(mesh.releases.compare_releases.requests)
    assert (sent.tenant_id, sent.base_release_id, sent.other_release_id) == (TENANT, "live", "r3")
    assert mesh.releases.get_release.requests == []

    missing = await gateway.get(f"{BASE}/releases/r2:compare")
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "query.with"


async def test_events_read_newest_first_with_who_and_why(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.releases.list_release_events.outcome = releases_pb2.ListReleaseEventsResponse(events=[
        _event(4, releases_pb2.RELEASE_EVENT_KIND_ROLLED_BACK, "r2", "r3", "answers got worse"),
        _event(3, releases_pb2.RELEASE_EVENT_KIND_PROMOTED_WITH_OVERRIDE, "r3", "r2", "hotfix, suite flaky"),
        _event(2, releases_pb2.RELEASE_EVENT_KIND_SUITE_RECORDED, "r3", detail="59/60"),
        _event(1, releases_pb2.RELEASE_EVENT_KIND_CREATED, "r3"),
    ])
    response = await gateway.get(f"{BASE}/release-events", params={"page_size": 4})

    assert response.status_code == 200, response.text
    events = response.json()["events"]
    assert [(e["kind"], e["release_id"], e["previous_release_id"]) for e in events] == [
        ("rolled_back", "r2", "r3"), ("promoted_with_override", "r3", "r2"), ("suite_recorded", "r3", None),
        ("created", "r3", None),
    ]
    assert events[1]["detail"] == "hotfix, suite flaky" and events[1]["actor"] == ADMIN_NAME
    assert response.json()["next_page_token"] is None
    assert one(mesh.releases.list_release_events.requests).page_size == 4


# --- changing ---------------------------------------------------------------------------------


async def test_create_sends_the_overrides_and_the_keys_holder(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.releases.create_release.outcome = releases_pb2.CreateReleaseResponse(
        release=_release(3, releases_pb2.RELEASE_STATE_CANDIDATE)
    )
    response = await gateway.post(f"{BASE}/releases", json={
        "description": "Stricter billing", "request_id": "req-1",
        "overrides": {"thresholds": {"billing": 0.95, "": 0.8}, "prompt_version": "phrase-v3"},
    })

    assert response.status_code == 200, response.text
    assert response.json()["release_id"] == "r3" and response.json()["state"] == "candidate"
    sent = one(mesh.releases.create_release.requests)
    assert (sent.tenant_id, sent.created_by, sent.request_id, sent.description) == (
        TENANT, ADMIN_NAME, "req-1", "Stricter billing")
    assert dict(sent.overrides.thresholds) == pytest.approx({"billing": 0.95, "": 0.8})
    assert (sent.overrides.prompt_version, sent.overrides.llm_model) == ("phrase-v3", "")


@pytest.mark.parametrize(
    "body",
    [
        {"description": "x", "request_id": "req-1", "created_by": "someone-else"},  # who creates is the key's holder
        {"description": "", "request_id": "req-1"},
        {"description": "x"},
        {"description": "x", "request_id": "req-1", "overrides": {"thresholds": {"billing": 1.5}}},
        {"description": "x", "request_id": "req-1", "overrides": {"thresholds": {"billing": -0.1}}},
        {"description": "x", "request_id": "req-1", "overrides": {"temperature": 0.2}},
        {"description": "x" * 501, "request_id": "req-1"},
    ],
    ids=["created_by", "empty-description", "no-request-id", "threshold-above-1", "threshold-below-0",
         "unknown-override", "description-too-long"],
)
async def test_a_bad_creation_is_refused_before_the_concierge(
    mesh: Mesh, gateway: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await gateway.post(f"{BASE}/releases", json=body)

    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "INVALID_ARGUMENT"
    assert mesh.releases.create_release.requests == []


async def test_the_concierge_refusing_an_unknown_prompt_version_is_a_400(
    mesh: Mesh, gateway: httpx.AsyncClient
) -> None:
    mesh.releases.create_release.outcome = InvalidArgument(
        [("overrides.prompt_version", "unknown prompt version 'v99'")], reason="UNKNOWN_PROMPT_VERSION"
    )
    response = await gateway.post(f"{BASE}/releases", json={
        "description": "x", "request_id": "req-1", "overrides": {"prompt_version": "v99"}})

    assert response.status_code == 400
    assert response.json()["reason"] == "UNKNOWN_PROMPT_VERSION"
    assert response.json()["errors"] == [
        {"field": "overrides.prompt_version", "description": "unknown prompt version 'v99'"}]


async def test_a_suite_run_is_recorded_as_run_by_the_keys_holder(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.releases.record_suite_run.outcome = releases_pb2.RecordSuiteRunResponse(run=_run("r3", 1, 2))
    response = await gateway.post(f"{BASE}/releases/r3/suite-runs", json={
        "suite_digest": "sha256:abc", "total": 2, "passed": 1, "partial": False,
        "results": [{"name": "s1", "passed": False, "failures": ["turn 1: s1 failed"]},
                    {"name": "s0", "passed": True}],
        "started_at": STARTED, "finished_at": FINISHED,
    })

    assert response.status_code == 200, response.text
    assert response.json()["run"]["run_id"] == "run-1"
    sent = one(mesh.releases.record_suite_run.requests)
    assert (sent.tenant_id, sent.run.release_id, sent.run.run_by, sent.run.total, sent.run.passed) == (
        TENANT, "r3", ADMIN_NAME, 2, 1)
    assert [(r.name, r.passed, list(r.failures)) for r in sent.run.results] == [
        ("s1", False, ["turn 1: s1 failed"]), ("s0", True, [])]
    assert sent.run.started_at.ToDatetime(tzinfo=UTC) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert sent.run.HasField("finished_at") and not sent.run.partial


@pytest.mark.parametrize(
    "change",
    [{"passed": 3}, {"total": "2"}, {"partial": "yes"}, {"finished_at": "2026-12-01T09:00:00Z"},
     {"started_at": 1764583200}, {"suite_digest": ""}, {"run_by": "someone-else"},
     {"results": [{"name": "a", "passed": True}] * 3}],
    ids=["passed-over-total", "string-number", "string-flag", "finished-before-start", "unix-time", "no-digest",
         "run_by", "more-results-than-total"],
)
async def test_a_bad_suite_run_is_refused(mesh: Mesh, gateway: httpx.AsyncClient, change: dict[str, Any]) -> None:
    body = {"suite_digest": "sha256:abc", "total": 2, "passed": 2, "started_at": STARTED, "finished_at": FINISHED}
    response = await gateway.post(f"{BASE}/releases/r3/suite-runs", json=body | change)

    assert response.status_code == 400, response.text
    assert mesh.releases.record_suite_run.requests == []


async def test_a_large_suite_run_fits_under_the_upload_limit(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    # 1000 scenarios with a failure each: well over the 64 KiB of an ordinary body.
    results = [{"name": f"scenario-{i:04d}", "passed": False, "failures": ["turn 1: " + "x" * 100]}
               for i in range(1000)]
    response = await gateway.post(f"{BASE}/releases/r3/suite-runs", json={
        "suite_digest": "sha256:abc", "total": 1000, "passed": 0, "results": results,
        "started_at": STARTED, "finished_at": FINISHED,
    })

    assert response.status_code == 200, response.text
    assert len(one(mesh.releases.record_suite_run.requests).run.results) == 1000


async def test_promotion_refused_by_the_suite_gate_is_a_409_problem(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.releases.promote_release.outcome = FailedPrecondition(
        "release r3's latest suite run did not pass (59/60)", reason="SUITE_NOT_PASSED"
    )
    response = await gateway.post(f"{BASE}/releases/r3:promote", json={})

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["reason"] == "SUITE_NOT_PASSED" and "59/60" in response.json()["detail"]
    sent = one(mesh.releases.promote_release.requests)
    assert (sent.tenant_id, sent.release_id, sent.actor, sent.override_reason) == (TENANT, "r3", ADMIN_NAME, "")


async def test_promotion_with_an_override_sends_the_reason(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.releases.promote_release.outcome = releases_pb2.PromoteReleaseResponse(
        release=_release(3, releases_pb2.RELEASE_STATE_LIVE, _run("r3", 59, 60)),
        event=_event(5, releases_pb2.RELEASE_EVENT_KIND_PROMOTED_WITH_OVERRIDE, "r3", "r2", "flaky scenario"),
    )
    response = await gateway.post(f"{BASE}/releases/r3:promote", json={"override_reason": "flaky scenario"})

    assert response.status_code == 200, response.text
    assert response.json()["release"]["state"] == "live"
    assert response.json()["event"]["kind"] == "promoted_with_override"
    assert one(mesh.releases.promote_release.requests).override_reason == "flaky scenario"
    # "live" is a name to read, not a release to promote.
    refused = await gateway.post(f"{BASE}/releases/live:promote", json={})
    assert refused.status_code == 400


async def test_rollback_goes_to_the_previous_or_a_named_release(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.releases.rollback_release.outcome = releases_pb2.RollbackReleaseResponse(
        release=_release(2, releases_pb2.RELEASE_STATE_LIVE),
        event=_event(6, releases_pb2.RELEASE_EVENT_KIND_ROLLED_BACK, "r2", "r3", "billing answers wrong"),
    )
    previous = await gateway.post(f"{BASE}/releases:rollback", json={"reason": "billing answers wrong"})
    named = await gateway.post(f"{BASE}/releases:rollback", json={"reason": "back to r1", "to_release_id": "r1"})

    assert previous.status_code == 200 and named.status_code == 200, (previous.text, named.text)
    assert previous.json()["event"]["previous_release_id"] == "r3"
    first, second = mesh.releases.rollback_release.requests
    assert (first.to_release_id, first.actor, first.reason) == ("", ADMIN_NAME, "billing answers wrong")
    assert second.to_release_id == "r1"
    for body in ({}, {"reason": ""}, {"reason": "x", "to_release_id": "live"}, {"reason": "x", "actor": "bob"}):
        assert (await gateway.post(f"{BASE}/releases:rollback", json=body)).status_code == 400, body
    assert len(mesh.releases.rollback_release.requests) == 2

    mesh.releases.rollback_release.outcome = FailedPrecondition("no earlier release", reason="NOTHING_TO_ROLL_BACK")
    nothing = await gateway.post(f"{BASE}/releases:rollback", json={"reason": "x"})
    assert nothing.status_code == 409 and nothing.json()["reason"] == "NOTHING_TO_ROLL_BACK"


# --- who may -----------------------------------------------------------------------------------

ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/releases", None),
    ("GET", "/releases/live", None),
    ("GET", "/releases/r2:compare?with=live", None),
    ("POST", "/releases", {"description": "x", "request_id": "req-1"}),
    ("POST", "/releases/r2/suite-runs", {"suite_digest": "d", "total": 0, "passed": 0, "started_at": STARTED,
                                         "finished_at": FINISHED}),
    ("POST", "/releases/r2:promote", {}),
    ("POST", "/releases:rollback", {"reason": "x"}),
    ("GET", "/release-events", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize("role", [Role.CHANNEL, Role.AGENT])
async def test_only_admins_reach_releases(
    mesh: Mesh, gateway: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None, role: Role
) -> None:
    response = await gateway.request(method, BASE + path, json=body, headers=bearer(mesh.key(role)))

    assert response.status_code == 403, response.text
    assert response.json()["reason"] == "ROLE_FORBIDDEN"
    assert all(not script.requests for script in mesh.releases.scripts.values())


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_another_tenants_releases_are_forbidden(
    mesh: Mesh, gateway: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = await gateway.request(method, f"/v1/tenants/{OTHER_TENANT}{path}", json=body)

    assert response.status_code == 403, response.text
    assert response.json()["reason"] == "TENANT_FORBIDDEN"
    assert all(not script.requests for script in mesh.releases.scripts.values())


# --- serving with a release, and lineage ---------------------------------------------------------

MESSAGE = {"text": "How do refunds work?", "customer": {"customer_id": "cust-42"}}


def _answer(release_id: str) -> concierge_pb2.ConverseResponse:
    return concierge_pb2.ConverseResponse(
        reply="Refunds take 5 days.", decision=concierge_pb2.DECISION_ANSWERED,
        confidence=answer_pb2.Confidence(score=0.9, threshold=0.85, calibrated=True),
        lineage=answer_pb2.Lineage(release_id=release_id, trace_id="0" * 32),
    )


async def test_an_admin_evaluates_a_candidate_with_the_release_header(
    mesh: Mesh, gateway: httpx.AsyncClient
) -> None:
    mesh.concierge.converse.outcome = _answer("r3")
    response = await gateway.post("/v1/conversations/conv-1/messages", json=MESSAGE,
                                  headers={"X-Aftercare-Release": "r3"})

    assert response.status_code == 200, response.text
    assert response.json()["release_id"] == "r3"
    assert one(mesh.concierge.converse.requests).release_id == "r3"


async def test_without_the_header_the_live_release_serves(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.concierge.converse.outcome = _answer("r2")
    response = await gateway.post("/v1/conversations/conv-1/messages", json=MESSAGE,
                                  headers=bearer(mesh.key(Role.CHANNEL)))

    assert response.status_code == 200, response.text
    assert response.json()["release_id"] == "r2"
    assert one(mesh.concierge.converse.requests).release_id == ""

    mesh.concierge.converse.outcome = concierge_pb2.ConverseResponse(reply="old", lineage=answer_pb2.Lineage())
    before = await gateway.post("/v1/conversations/conv-1/messages", json=MESSAGE)
    assert before.json()["release_id"] is None, "a turn from before releases names none"


@pytest.mark.parametrize("suffix", ["", "/stream"])
@pytest.mark.parametrize("role", [Role.CHANNEL, Role.AGENT])
async def test_only_an_admin_may_name_a_release(
    mesh: Mesh, gateway: httpx.AsyncClient, suffix: str, role: Role
) -> None:
    response = await gateway.post(f"/v1/conversations/conv-1/messages{suffix}", json=MESSAGE,
                                  headers=bearer(mesh.key(role)) | {"X-Aftercare-Release": "r3"})

    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["reason"] == "ROLE_FORBIDDEN" and "X-Aftercare-Release" in response.json()["detail"]
    assert mesh.concierge.converse.requests == [] and mesh.concierge.stream_converse.requests == []


@pytest.mark.parametrize("value", ["live", "3", "r3; drop", "r" + "9" * 19])
async def test_a_malformed_release_header_is_a_400(mesh: Mesh, gateway: httpx.AsyncClient, value: str) -> None:
    response = await gateway.post("/v1/conversations/conv-1/messages", json=MESSAGE,
                                  headers={"X-Aftercare-Release": value})

    assert response.status_code == 400, response.text
    assert mesh.concierge.converse.requests == []


async def test_the_stream_carries_the_release_both_ways(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.concierge.stream_converse.outcome = [
        concierge_pb2.StreamConverseResponse(delta="Refunds take 5 days."),
        concierge_pb2.StreamConverseResponse(outcome=_answer("r3")),
    ]
    response = await gateway.post("/v1/conversations/conv-1/messages/stream", json=MESSAGE,
                                  headers={"X-Aftercare-Release": "r3"})

    assert response.status_code == 200, response.text
    assert '"release_id":"r3"' in response.text
    assert one(mesh.concierge.stream_converse.requests).request.release_id == "r3"


async def test_a_stored_conversation_names_each_turns_release(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.concierge.get_conversation.outcome = concierge_pb2.GetConversationResponse(turns=[
        concierge_pb2.ConversationTurn(customer_text="a", outcome=_answer("r2")),
        concierge_pb2.ConversationTurn(customer_text="b", outcome=_answer("r3")),
    ])
    response = await gateway.get("/v1/conversations/conv-1", params={"customer_id": "cust-42"})

    assert response.status_code == 200, response.text
    assert [t["outcome"]["release_id"] for t in response.json()["turns"]] == ["r2", "r3"]


async def test_a_handoff_and_an_action_name_their_release(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.get_handoff.outcome = escalation_pb2.GetHandoffResponse(
        handoff=escalation_pb2.Handoff(handoff_id="ho-7", release_id="r3")
    )
    mesh.fakes["actions"].get_action.outcome = actions_pb2.GetActionResponse(
        action=actions_pb2.Action(action_id="act-1", release_id="r3")
    )
    handoff = await gateway.get(f"{BASE}/handoffs/ho-7")
    action = await gateway.get(f"{BASE}/actions/act-1")

    assert handoff.status_code == 200 and action.status_code == 200, (handoff.text, action.text)
    assert handoff.json()["release_id"] == "r3"
    assert action.json()["release_id"] == "r3"

    mesh.escalation.get_handoff.outcome = escalation_pb2.GetHandoffResponse(
        handoff=escalation_pb2.Handoff(handoff_id="ho-8")
    )
    assert (await gateway.get(f"{BASE}/handoffs/ho-8")).json()["release_id"] is None


async def test_a_browser_on_another_allowed_origin_may_send_the_release_header(mesh: Mesh) -> None:
    settings = mesh.settings(cors_origins=["https://qa.example.com"])
    async with open_gateway(settings) as client:
        preflight = await client.options("/v1/conversations/conv-1/messages", headers={
            "Origin": "https://qa.example.com", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-aftercare-release",
        })

    assert preflight.status_code == 200, preflight.text
    assert "x-aftercare-release" in preflight.headers["access-control-allow-headers"].lower()
