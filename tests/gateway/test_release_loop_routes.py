"""The release loop over HTTP: shadow, canary and the confidence refit translate to the concierge's
ReleaseService (the admin key's holder is who acts, never the body), every figure of its replies
reaches the client under the proto's names, bodies are checked before any call (400 problem+json,
never FastAPI's 422), and the concierge's refusals become problems (NOT_FOUND 404,
FAILED_PRECONDITION 409). Only admins of the path's tenant reach any of it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from aftercare.concierge.v1 import releases_pb2
from gateway.keys import Role
from servicekit.errors import FailedPrecondition, NotFound
from tests.gateway.conftest import OTHER_TENANT, TENANT, Mesh, bearer, one

BASE = f"/v1/tenants/{TENANT}"
ADMIN_NAME = f"admin-{TENANT}"  # the name conftest gives the admin key
STARTED = "2026-12-06T09:00:00+00:00"
ENDED = "2026-12-06T11:30:00+00:00"


def _ts(iso: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(iso))
    return stamp


def _problem(response: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert (problem["status"], problem["reason"]) == (status, reason), problem
    return problem


def _event(
    kind: releases_pb2.ReleaseEventKind, release_id: str, detail: str = "", actor: str = ADMIN_NAME
) -> releases_pb2.ReleaseEvent:
    return releases_pb2.ReleaseEvent(sequence=9, tenant_id=TENANT, kind=kind, release_id=release_id, actor=actor,
                                     detail=detail, occurred_at=_ts(STARTED))


def _shadow(active: bool = True) -> releases_pb2.Shadow:
    shadow = releases_pb2.Shadow(tenant_id=TENANT, shadow_id="sh-1", release_id="r3", live_release_id="r2",
                                 sample_rate=0.25, active=active, started_by=ADMIN_NAME, started_at=_ts(STARTED),
                                 shadowed_turns=41, skipped_turns=3)
    if not active:
        shadow.stopped_at.CopyFrom(_ts(ENDED))
    return shadow


def _arm(release_id: str, turns: int, answered: int) -> releases_pb2.ArmFigures:
    return releases_pb2.ArmFigures(release_id=release_id, turns=turns, answered=answered,
                                   answered_rate=answered / turns, human_judged=20, agreed=15, agreement=0.75,
                                   answered_judged=12, answered_correct=9, judged_accuracy=0.75,
                                   intent_labelled=6, intent_agreed=5)


def _canary(state: releases_pb2.CanaryState = releases_pb2.CANARY_STATE_RUNNING) -> releases_pb2.Canary:
    canary = releases_pb2.Canary(
        tenant_id=TENANT, canary_id="can-1", release_id="r3", live_release_id="r2", percent=10, state=state,
        policy=releases_pb2.CanaryPolicy(accuracy_margin=0.05, escalation_margin=0.1, min_judged=20, min_turns=30,
                                         confidence=0.99),
        started_by=ADMIN_NAME, started_at=_ts(STARTED), verdict="not enough judged answers yet: 7 of 20",
        canary=releases_pb2.CanaryArm(release_id="r3", turns=40, escalated=25, escalation_rate=0.625, judged=7,
                                      judged_correct=4, judged_accuracy=4 / 7, rated=5, rated_helpful=3),
        live=releases_pb2.CanaryArm(release_id="r2", turns=380, escalated=118, escalation_rate=118 / 380),
        evaluated_at=_ts(ENDED),
    )
    if state != releases_pb2.CANARY_STATE_RUNNING:
        canary.ended_at.CopyFrom(_ts(ENDED))
        canary.end_reason = "canary worse: escalation 0.62 vs 0.31, lower bound +0.19 > margin 0.10 over 40/380 turns"
    return canary


# --- shadow ----------------------------------------------------------------------------------------


async def test_a_shadow_starts_with_its_sample_rate_and_the_keys_holder(
    mesh: Mesh, gateway: httpx.AsyncClient
) -> None:
    mesh.releases.start_shadow.outcome = releases_pb2.StartShadowResponse(
        shadow=_shadow(), event=_event(releases_pb2.RELEASE_EVENT_KIND_SHADOW_STARTED, "r3", "25% of live turns")
    )
    response = await gateway.post(f"{BASE}/releases/r3:shadow", json={"sample_rate": 0.25})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["shadow"] == {
        "tenant_id": TENANT, "shadow_id": "sh-1", "release_id": "r3", "live_release_id": "r2", "sample_rate": 0.25,
        "active": True, "started_by": ADMIN_NAME, "started_at": "2026-12-06T09:00:00Z", "stopped_at": None,
        "shadowed_turns": 41, "skipped_turns": 3,
    }
    assert (body["event"]["kind"], body["event"]["detail"]) == ("shadow_started", "25% of live turns")
    sent = one(mesh.releases.start_shadow.requests)
    assert (sent.tenant_id, sent.release_id, sent.sample_rate, sent.actor) == (TENANT, "r3", 0.25, ADMIN_NAME)

    # Left out, every live turn is shadowed; a whole number is a number.
    await gateway.post(f"{BASE}/releases/r4:shadow", json={})
    await gateway.post(f"{BASE}/releases/r4:shadow", json={"sample_rate": 1})
    assert [r.sample_rate for r in mesh.releases.start_shadow.requests[1:]] == [1.0, 1.0]


@pytest.mark.parametrize(
    "body",
    [{"sample_rate": 0}, {"sample_rate": 1.5}, {"sample_rate": -0.1}, {"sample_rate": "0.5"}, {"sample_rate": True},
     {"sample_rate": None}, {"actor": "someone-else"}, {"started_by": "someone-else"}],
    ids=["zero", "above-1", "negative", "string", "flag", "null", "actor", "started_by"],
)
async def test_a_bad_shadow_is_refused_before_the_concierge(
    mesh: Mesh, gateway: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await gateway.post(f"{BASE}/releases/r3:shadow", json=body)

    problem = _problem(response, 400, "INVALID_ARGUMENT")
    assert problem["errors"][0]["field"].startswith("body.")
    assert mesh.releases.start_shadow.requests == []


async def test_shadowing_the_live_release_or_an_unknown_one_is_a_problem(
    mesh: Mesh, gateway: httpx.AsyncClient
) -> None:
    mesh.releases.start_shadow.outcome = FailedPrecondition("r2 is the live release", reason="RELEASE_IS_LIVE")
    assert "r2 is the live" in _problem(await gateway.post(f"{BASE}/releases/r2:shadow", json={}), 409,
                                        "RELEASE_IS_LIVE")["detail"]
    mesh.releases.start_shadow.outcome = NotFound("no release r9 for tenant demo", reason="RELEASE_NOT_FOUND")
    _problem(await gateway.post(f"{BASE}/releases/r9:shadow", json={}), 404, "RELEASE_NOT_FOUND")
    # "live" names a release to read, not one to shadow: refused here.
    _problem(await gateway.post(f"{BASE}/releases/live:shadow", json={}), 400, "INVALID_ARGUMENT")
    assert len(mesh.releases.start_shadow.requests) == 2


async def test_stopping_the_shadow_names_who_stopped_it(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.releases.stop_shadow.outcome = releases_pb2.StopShadowResponse(shadow=_shadow(active=False))
    response = await gateway.post(f"{BASE}/shadow:stop", json={})

    assert response.status_code == 200, response.text
    assert (response.json()["active"], response.json()["stopped_at"]) == (False, "2026-12-06T11:30:00Z")
    sent = one(mesh.releases.stop_shadow.requests)
    assert (sent.tenant_id, sent.actor) == (TENANT, ADMIN_NAME)

    _problem(await gateway.post(f"{BASE}/shadow:stop", json={"actor": "bob"}), 400, "INVALID_ARGUMENT")
    mesh.releases.stop_shadow.outcome = NotFound("no shadow runs for tenant demo", reason="NO_SHADOW")
    _problem(await gateway.post(f"{BASE}/shadow:stop", json={}), 404, "NO_SHADOW")
    assert len(mesh.releases.stop_shadow.requests) == 2


async def test_the_shadow_report_carries_every_figure(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    disagreement = releases_pb2.ShadowDisagreement(
        conversation_id="conv-7", turn_index=2, topic="billing", customer_text="Why was I charged twice, [EMAIL]?",
        live_decision="answered", live_reason="confident", live_confidence=0.91, candidate_decision="escalated",
        candidate_reason="low_confidence", candidate_confidence=0.62, human_verdict="customer: not helpful",
        candidate_reply="Duplicate charges are refunded within 5 days.",
    )
    mesh.releases.get_shadow_report.outcome = releases_pb2.GetShadowReportResponse(
        shadow=_shadow(), live=_arm("r2", 40, 30), candidate=_arm("r3", 40, 22),
        topics=[releases_pb2.TopicComparison(topic="billing", live=_arm("r2", 25, 20), candidate=_arm("r3", 25, 12)),
                releases_pb2.TopicComparison(topic="", live=_arm("r2", 15, 10), candidate=_arm("r3", 15, 10))],
        disagreements=[disagreement], method="Agents' verdicts come from escalation's judge.",
    )
    response = await gateway.get(f"{BASE}/shadow-report", params={"shadow_id": "sh-1", "max_disagreements": 5})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["shadow"]["shadow_id"] == "sh-1"
    assert body["live"] == {
        "release_id": "r2", "turns": 40, "answered": 30, "answered_rate": 0.75, "human_judged": 20, "agreed": 15,
        "agreement": 0.75, "answered_judged": 12, "answered_correct": 9, "judged_accuracy": 0.75,
        "intent_labelled": 6, "intent_agreed": 5,
    }
    assert body["candidate"]["answered_rate"] == pytest.approx(0.55)
    assert [(t["topic"], t["live"]["turns"], t["candidate"]["answered"]) for t in body["topics"]] == [
        ("billing", 25, 12), ("", 15, 10)]
    assert body["disagreements"] == [{
        "conversation_id": "conv-7", "turn_index": 2, "topic": "billing",
        "customer_text": "Why was I charged twice, [EMAIL]?", "live_decision": "answered", "live_reason": "confident",
        "live_confidence": pytest.approx(0.91), "candidate_decision": "escalated",
        "candidate_reason": "low_confidence", "candidate_confidence": pytest.approx(0.62),
        "human_verdict": "customer: not helpful", "candidate_reply": "Duplicate charges are refunded within 5 days.",
    }]
    assert body["method"].startswith("Agents' verdicts")
    sent = one(mesh.releases.get_shadow_report.requests)
    assert (sent.tenant_id, sent.shadow_id, sent.max_disagreements) == (TENANT, "sh-1", 5)

    # Without a shadow id: the tenant's latest shadow, 20 disagreements.
    await gateway.get(f"{BASE}/shadow-report")
    latest = mesh.releases.get_shadow_report.requests[-1]
    assert (latest.shadow_id, latest.max_disagreements) == ("", 20)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"max_disagreements": 101}, "query.max_disagreements"), ({"max_disagreements": -1}, "query.max_disagreements"),
     ({"shadow_id": "sh 1"}, "query.shadow_id"), ({"shadow_id": "x" * 129}, "query.shadow_id")],
    ids=["too-many", "negative", "space-in-id", "long-id"],
)
async def test_a_bad_report_query_is_refused(
    mesh: Mesh, gateway: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    problem = _problem(await gateway.get(f"{BASE}/shadow-report", params=params), 400, "INVALID_ARGUMENT")
    assert problem["errors"][0]["field"] == field
    assert mesh.releases.get_shadow_report.requests == []


async def test_a_report_of_no_shadow_is_a_404(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.releases.get_shadow_report.outcome = NotFound("tenant demo never ran a shadow", reason="NO_SHADOW")
    _problem(await gateway.get(f"{BASE}/shadow-report"), 404, "NO_SHADOW")


# --- canary ----------------------------------------------------------------------------------------


async def test_a_canary_starts_with_its_share_policy_and_override(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.releases.start_canary.outcome = releases_pb2.StartCanaryResponse(
        canary=_canary(), event=_event(releases_pb2.RELEASE_EVENT_KIND_CANARY_STARTED, "r3", "10% of conversations")
    )
    response = await gateway.post(f"{BASE}/releases/r3:canary", json={
        "percent": 10, "policy": {"escalation_margin": 0.08, "min_turns": 50, "confidence": 0.95},
        "override_reason": "suite flaky on scenario 12",
    })

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["canary"]["state"], body["canary"]["percent"], body["event"]["kind"]) == (
        "running", 10, "canary_started")
    sent = one(mesh.releases.start_canary.requests)
    assert (sent.tenant_id, sent.release_id, sent.percent, sent.actor, sent.override_reason) == (
        TENANT, "r3", 10, ADMIN_NAME, "suite flaky on scenario 12")
    # What is left out of the policy is sent as the proto's zero: the concierge's default.
    assert (sent.policy.accuracy_margin, sent.policy.escalation_margin, sent.policy.min_judged,
            sent.policy.min_turns, sent.policy.confidence) == (0.0, pytest.approx(0.08), 0, 50, pytest.approx(0.95))

    await gateway.post(f"{BASE}/releases/r4:canary", json={"percent": 50})
    plain = mesh.releases.start_canary.requests[-1]
    assert (plain.percent, plain.override_reason, plain.policy) == (50, "", releases_pb2.CanaryPolicy())


@pytest.mark.parametrize(
    "body",
    [{}, {"percent": 0}, {"percent": 51}, {"percent": 10.5}, {"percent": "10"},
     {"percent": 10, "policy": {"accuracy_margin": 0}}, {"percent": 10, "policy": {"escalation_margin": 1.0}},
     {"percent": 10, "policy": {"min_judged": 0}}, {"percent": 10, "policy": {"confidence": 1.0}},
     {"percent": 10, "policy": {"confidence": 0.5}}, {"percent": 10, "policy": {"min_turns": "30"}},
     {"percent": 10, "policy": {"window": 3}}, {"percent": 10, "override_reason": "x" * 501},
     {"percent": 10, "actor": "someone-else"}],
    ids=["no-percent", "percent-0", "percent-51", "percent-fraction", "percent-string", "margin-0", "margin-1",
         "min-judged-0", "confidence-1", "confidence-half", "min-turns-string", "unknown-policy-field",
         "override-too-long", "actor"],
)
async def test_a_bad_canary_is_refused_before_the_concierge(
    mesh: Mesh, gateway: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    _problem(await gateway.post(f"{BASE}/releases/r3:canary", json=body), 400, "INVALID_ARGUMENT")
    assert mesh.releases.start_canary.requests == []


@pytest.mark.parametrize(
    ("refusal", "status"),
    [(FailedPrecondition("release r3's latest suite run did not pass (59/60)", reason="SUITE_NOT_PASSED"), 409),
     (FailedPrecondition("a canary of r4 is running", reason="CANARY_RUNNING"), 409),
     (FailedPrecondition("r2 is the live release", reason="RELEASE_IS_LIVE"), 409),
     (NotFound("no release r3 for tenant demo", reason="RELEASE_NOT_FOUND"), 404)],
    ids=["suite-not-passed", "canary-running", "live", "unknown-release"],
)
async def test_the_concierge_refusing_a_canary_is_a_problem(
    mesh: Mesh, gateway: httpx.AsyncClient, refusal: Exception, status: int
) -> None:
    mesh.releases.start_canary.outcome = refusal
    response = await gateway.post(f"{BASE}/releases/r3:canary", json={"percent": 10})

    problem = _problem(response, status, refusal.reason)  # type: ignore[attr-defined]
    assert problem["detail"] == refusal.args[0]


async def test_reading_a_rolled_back_canary_shows_both_arms_and_why(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.releases.get_canary.outcome = releases_pb2.GetCanaryResponse(
        canary=_canary(releases_pb2.CANARY_STATE_ROLLED_BACK)
    )
    response = await gateway.get(f"{BASE}/canary")

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["state"], body["ended_at"], body["evaluated_at"]) == (
        "rolled_back", "2026-12-06T11:30:00Z", "2026-12-06T11:30:00Z")
    assert body["end_reason"].startswith("canary worse: escalation 0.62 vs 0.31")
    assert body["policy"] == {"accuracy_margin": 0.05, "escalation_margin": 0.1, "min_judged": 20, "min_turns": 30,
                              "confidence": 0.99}
    assert body["canary"] == {"release_id": "r3", "turns": 40, "escalated": 25, "escalation_rate": 0.625, "judged": 7,
                              "judged_correct": 4, "judged_accuracy": pytest.approx(4 / 7), "rated": 5,
                              "rated_helpful": 3}
    assert (body["live"]["release_id"], body["live"]["turns"], body["live"]["judged"]) == ("r2", 380, 0)
    assert body["verdict"] == "not enough judged answers yet: 7 of 20"
    assert one(mesh.releases.get_canary.requests).tenant_id == TENANT

    mesh.releases.get_canary.outcome = NotFound("tenant demo never ran a canary", reason="NO_CANARY")
    _problem(await gateway.get(f"{BASE}/canary"), 404, "NO_CANARY")


async def test_stopping_the_canary_needs_a_reason_and_names_who(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.releases.stop_canary.outcome = releases_pb2.StopCanaryResponse(
        canary=_canary(releases_pb2.CANARY_STATE_STOPPED)
    )
    response = await gateway.post(f"{BASE}/canary:stop", json={"reason": "seen enough"})

    assert response.status_code == 200, response.text
    assert response.json()["state"] == "stopped"
    sent = one(mesh.releases.stop_canary.requests)
    assert (sent.tenant_id, sent.actor, sent.reason) == (TENANT, ADMIN_NAME, "seen enough")

    for body in ({}, {"reason": ""}, {"reason": "x" * 501}, {"reason": "x", "actor": "bob"}):
        _problem(await gateway.post(f"{BASE}/canary:stop", json=body), 400, "INVALID_ARGUMENT")
    mesh.releases.stop_canary.outcome = NotFound("no canary runs for tenant demo", reason="NO_CANARY")
    _problem(await gateway.post(f"{BASE}/canary:stop", json={"reason": "x"}), 404, "NO_CANARY")
    assert len(mesh.releases.stop_canary.requests) == 2


# --- confidence refit ------------------------------------------------------------------------------


async def test_a_refit_makes_a_candidate_with_its_validation(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    release = releases_pb2.Release(
        tenant_id=TENANT, release_id="r5", number=5, state=releases_pb2.RELEASE_STATE_CANDIDATE,
        description="Confidence refitted from 212 judged answers", created_by=ADMIN_NAME, created_at=_ts(STARTED),
        components=releases_pb2.ReleaseComponents(confidence_fit_version="tenant-refit-2026-12-06-ab12",
                                                  thresholds={"": 0.71, "billing": 0.8}),
    )
    validation = releases_pb2.FitValidation(
        examples=212, correct=160, folds=5, live_ece=0.14, refit_ece=0.04, threshold=0.71, live_coverage=0.52,
        refit_coverage=0.66, live_accuracy=0.86, refit_accuracy=0.9,
        topics=[releases_pb2.TopicFit(topic="billing", examples=64, threshold=0.8, coverage=0.55, accuracy=0.91)],
    )
    mesh.releases.refit_confidence.outcome = releases_pb2.RefitConfidenceResponse(release=release,
                                                                                  validation=validation)
    response = await gateway.post(f"{BASE}/releases:refit", json={"request_id": "refit-1", "target_accuracy": 0.9})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["release"]["release_id"], body["release"]["state"]) == ("r5", "candidate")
    assert body["release"]["components"]["thresholds"] == {"": 0.71, "billing": 0.8}
    assert body["validation"] == {
        "examples": 212, "correct": 160, "folds": 5, "live_ece": pytest.approx(0.14), "refit_ece": pytest.approx(0.04),
        "threshold": pytest.approx(0.71), "live_coverage": pytest.approx(0.52), "refit_coverage": pytest.approx(0.66),
        "live_accuracy": pytest.approx(0.86), "refit_accuracy": pytest.approx(0.9),
        "topics": [{"topic": "billing", "examples": 64, "threshold": pytest.approx(0.8),
                    "coverage": pytest.approx(0.55), "accuracy": pytest.approx(0.91)}],
    }
    sent = one(mesh.releases.refit_confidence.requests)
    assert (sent.tenant_id, sent.actor, sent.request_id, sent.target_accuracy) == (
        TENANT, ADMIN_NAME, "refit-1", pytest.approx(0.9))

    await gateway.post(f"{BASE}/releases:refit", json={"request_id": "refit-2"})
    assert mesh.releases.refit_confidence.requests[-1].target_accuracy == pytest.approx(0.9)


@pytest.mark.parametrize(
    "body",
    [{}, {"request_id": ""}, {"request_id": "x" * 129}, {"request_id": "r", "target_accuracy": 0.5},
     {"request_id": "r", "target_accuracy": 1.0}, {"request_id": "r", "target_accuracy": "0.9"},
     {"request_id": "r", "actor": "someone-else"}],
    ids=["no-request-id", "empty-request-id", "long-request-id", "target-half", "target-1", "target-string", "actor"],
)
async def test_a_bad_refit_is_refused_before_the_concierge(
    mesh: Mesh, gateway: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    _problem(await gateway.post(f"{BASE}/releases:refit", json=body), 400, "INVALID_ARGUMENT")
    assert mesh.releases.refit_confidence.requests == []


async def test_a_refit_without_enough_judgements_is_a_409(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.releases.refit_confidence.outcome = FailedPrecondition(
        "17 judged answers (3 wrong); a refit needs 40 with at least 5 of each outcome",
        reason="NOT_ENOUGH_JUDGEMENTS",
    )
    problem = _problem(await gateway.post(f"{BASE}/releases:refit", json={"request_id": "refit-1"}), 409,
                       "NOT_ENOUGH_JUDGEMENTS")
    assert "17 judged answers" in problem["detail"]


async def test_the_history_names_the_loops_events(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    kinds = [releases_pb2.RELEASE_EVENT_KIND_REFITTED, releases_pb2.RELEASE_EVENT_KIND_CANARY_ROLLED_BACK,
             releases_pb2.RELEASE_EVENT_KIND_CANARY_STOPPED, releases_pb2.RELEASE_EVENT_KIND_CANARY_STARTED,
             releases_pb2.RELEASE_EVENT_KIND_SHADOW_STOPPED, releases_pb2.RELEASE_EVENT_KIND_SHADOW_STARTED]
    mesh.releases.list_release_events.outcome = releases_pb2.ListReleaseEventsResponse(
        events=[_event(kind, "r3", actor="system" if kind == releases_pb2.RELEASE_EVENT_KIND_CANARY_ROLLED_BACK
                       else ADMIN_NAME) for kind in kinds]
    )
    response = await gateway.get(f"{BASE}/release-events")

    assert response.status_code == 200, response.text
    assert [(e["kind"], e["actor"]) for e in response.json()["events"]] == [
        ("refitted", ADMIN_NAME), ("canary_rolled_back", "system"), ("canary_stopped", ADMIN_NAME),
        ("canary_started", ADMIN_NAME), ("shadow_stopped", ADMIN_NAME), ("shadow_started", ADMIN_NAME)]


# --- who may -----------------------------------------------------------------------------------------

ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/releases/r3:shadow", {"sample_rate": 0.5}),
    ("POST", "/shadow:stop", {}),
    ("GET", "/shadow-report", None),
    ("POST", "/releases/r3:canary", {"percent": 10}),
    ("POST", "/canary:stop", {"reason": "x"}),
    ("GET", "/canary", None),
    ("POST", "/releases:refit", {"request_id": "refit-1"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize("role", [Role.CHANNEL, Role.AGENT])
async def test_only_admins_reach_the_release_loop(
    mesh: Mesh, gateway: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None, role: Role
) -> None:
    response = await gateway.request(method, BASE + path, json=body, headers=bearer(mesh.key(role)))

    _problem(response, 403, "ROLE_FORBIDDEN")
    assert all(not script.requests for script in mesh.releases.scripts.values())


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_another_tenants_release_loop_is_forbidden(
    mesh: Mesh, gateway: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = await gateway.request(method, f"/v1/tenants/{OTHER_TENANT}{path}", json=body)

    _problem(response, 403, "TENANT_FORBIDDEN")
    assert all(not script.requests for script in mesh.releases.scripts.values())


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_an_admin_reaches_each_route(
    mesh: Mesh, gateway: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    # The fake answers each RPC's empty message: every reply renders, and the call names the key's tenant.
    response = await gateway.request(method, BASE + path, json=body)

    assert response.status_code == 200, response.text
    (called,) = [script for script in mesh.releases.scripts.values() if script.requests]
    assert one(called.requests).tenant_id == TENANT


async def test_the_schema_documents_each_routes_problems(gateway: httpx.AsyncClient) -> None:
    paths = (await gateway.get("/openapi.json")).json()["paths"]
    for method, path, _ in ROUTES:
        template = "/v1/tenants/{tenant_id}" + path.replace("/r3:", "/{release_id}:")
        responses = paths[template][method.lower()]["responses"]
        assert "422" not in responses, template
        assert {"400", "403", "404"} <= responses.keys(), template
        if template.endswith((":shadow", ":canary", ":refit")):
            assert "409" in responses, template
        assert responses["404"]["content"]["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
