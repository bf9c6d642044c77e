"""The release loop on the insights page's releases card, in headless Chromium, through a live gateway on
the fake mesh (the concierge's ReleaseService scripted): shadow a candidate and read its report against
humans (overall, per topic, the disagreements, a customer's text shown as text, never as markup), serve
it as a canary, stop it, see an automatic rollback with its figures, refit the confidence into a new
candidate, and the loop's events in the history."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from aftercare.concierge.v1 import releases_pb2
from gateway.keys import Role
from servicekit.errors import FailedPrecondition, NotFound
from tests.browser.test_console import enter_key
from tests.gateway.live import LiveGateway

TENANT = "demo"
ADMIN_NAME = f"admin-{TENANT}"
# A customer's message that would run script if the page ever parsed it as HTML.
HOSTILE = 'My card <img src=x onerror="window.__owned=1"> was charged twice'


def _ts(iso: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(iso))
    return stamp


def _release(number: int, state: releases_pb2.ReleaseState, passed: bool = True) -> releases_pb2.Release:
    release = releases_pb2.Release(
        tenant_id=TENANT, release_id=f"r{number}", number=number, state=state, description=f"release {number}",
        created_by=ADMIN_NAME, created_at=_ts("2026-12-01T10:00:00+00:00"),
        components=releases_pb2.ReleaseComponents(thresholds={"": 0.85}),
    )
    release.latest_suite_run.CopyFrom(releases_pb2.SuiteRun(
        run_id=f"run-{number}", release_id=f"r{number}", total=60, passed=60 if passed else 59,
        finished_at=_ts("2026-12-01T10:04:00+00:00")))
    return release


def _arm(release_id: str, turns: int, answered: int, judged: int, agreed: int, answered_judged: int,
         correct: int) -> releases_pb2.ArmFigures:
    return releases_pb2.ArmFigures(
        release_id=release_id, turns=turns, answered=answered, answered_rate=answered / turns, human_judged=judged,
        agreed=agreed, agreement=agreed / judged, answered_judged=answered_judged, answered_correct=correct,
        judged_accuracy=correct / answered_judged, intent_labelled=4, intent_agreed=3,
    )


def _shadow(active: bool) -> releases_pb2.Shadow:
    shadow = releases_pb2.Shadow(tenant_id=TENANT, shadow_id="sh-1", release_id="r3", live_release_id="r2",
                                 sample_rate=0.5, active=active, started_by=ADMIN_NAME,
                                 started_at=_ts("2026-12-06T09:00:00+00:00"), shadowed_turns=40, skipped_turns=2)
    if not active:
        shadow.stopped_at.CopyFrom(_ts("2026-12-06T12:00:00+00:00"))
    return shadow


def _report(active: bool = True) -> releases_pb2.GetShadowReportResponse:
    return releases_pb2.GetShadowReportResponse(
        shadow=_shadow(active),
        live=_arm("r2", 40, 30, 20, 14, 16, 12),
        candidate=_arm("r3", 40, 24, 20, 17, 12, 11),
        topics=[releases_pb2.TopicComparison(topic="billing", live=_arm("r2", 25, 20, 12, 8, 10, 7),
                                             candidate=_arm("r3", 25, 14, 12, 11, 7, 7))],
        disagreements=[releases_pb2.ShadowDisagreement(
            conversation_id="conv-7", turn_index=1, topic="billing", customer_text=HOSTILE,
            live_decision="answered", live_reason="confident", live_confidence=0.91,
            candidate_decision="escalated", candidate_reason="low_confidence", candidate_confidence=0.62,
            human_verdict="customer: not helpful", candidate_reply="Duplicate charges are refunded in 5 days.",
        )],
        method="Agents' verdicts come from escalation's judge; customers' ratings judge answered turns.",
    )


def _canary(state: releases_pb2.CanaryState) -> releases_pb2.Canary:
    canary = releases_pb2.Canary(
        tenant_id=TENANT, canary_id="can-1", release_id="r3", live_release_id="r2", percent=10, state=state,
        policy=releases_pb2.CanaryPolicy(accuracy_margin=0.05, escalation_margin=0.1, min_judged=20, min_turns=30,
                                         confidence=0.99),
        started_by=ADMIN_NAME, started_at=_ts("2026-12-06T12:00:00+00:00"),
        canary=releases_pb2.CanaryArm(release_id="r3", turns=40, escalated=25, escalation_rate=0.625, judged=7,
                                      judged_correct=4, judged_accuracy=4 / 7, rated=5, rated_helpful=3),
        live=releases_pb2.CanaryArm(release_id="r2", turns=380, escalated=118, escalation_rate=118 / 380, judged=60,
                                    judged_correct=54, judged_accuracy=0.9, rated=30, rated_helpful=27),
        verdict="not enough judged answers yet: 7 of 20", evaluated_at=_ts("2026-12-06T12:30:00+00:00"),
    )
    if state != releases_pb2.CANARY_STATE_RUNNING:
        canary.ended_at.CopyFrom(_ts("2026-12-06T12:31:00+00:00"))
    if state == releases_pb2.CANARY_STATE_ROLLED_BACK:
        canary.end_reason = "canary worse: escalation 0.62 vs 0.31, lower bound +0.19 > margin 0.10 over 40/380 turns"
        canary.verdict = canary.end_reason
    return canary


def _event(sequence: int, kind: releases_pb2.ReleaseEventKind, actor: str = ADMIN_NAME,
           detail: str = "") -> releases_pb2.ReleaseEvent:
    return releases_pb2.ReleaseEvent(sequence=sequence, tenant_id=TENANT, kind=kind, release_id="r3", actor=actor,
                                     detail=detail, occurred_at=_ts("2026-12-06T12:31:00+00:00"))


def test_an_admin_shadows_canaries_and_refits_from_the_releases_card(
    page: Any, live: LiveGateway, artifacts: Path
) -> None:
    releases = live.mesh.releases
    releases.list_releases.outcome = releases_pb2.ListReleasesResponse(releases=[
        _release(3, releases_pb2.RELEASE_STATE_CANDIDATE),
        _release(2, releases_pb2.RELEASE_STATE_LIVE),
    ])
    releases.get_shadow_report.outcome = NotFound("tenant demo never ran a shadow", reason="NO_SHADOW")
    releases.get_canary.outcome = NotFound("tenant demo never ran a canary", reason="NO_CANARY")
    enter_key(page, live, "insights.html", Role.ADMIN)
    card = page.locator("#releases")
    card.get_by_text("No shadow has run yet").wait_for()
    card.get_by_text("No canary has run yet").wait_for()
    r3 = card.locator('tr[data-release="r3"]')
    assert card.locator('tr[data-release="r2"] .release-actions button').count() == 0, "the live release has none"

    # Shadow r3 on half the live turns.
    releases.start_shadow.outcome = releases_pb2.StartShadowResponse(
        shadow=_shadow(True), event=_event(5, releases_pb2.RELEASE_EVENT_KIND_SHADOW_STARTED))
    releases.get_shadow_report.outcome = _report()
    r3.get_by_role("button", name="Shadow r3…").click()
    form = page.locator("#shadow-form")
    form.get_by_label("Sample rate").fill("0.5")
    form.get_by_role("button", name="Start shadow of r3").click()
    page.locator("#releases-notice", has_text="r3 runs in shadow on 50% of live turns").wait_for()
    sent = releases.start_shadow.requests[-1]
    assert (sent.release_id, sent.sample_rate, sent.actor) == ("r3", 0.5, ADMIN_NAME)

    # Its report: both releases against humans, the better judged figures marked.
    shadow = page.locator("#shadow-panel")
    overall = shadow.locator("#shadow-overall")
    overall.wait_for()
    assert shadow.locator("#shadow-state").inner_text() == "running"
    assert "40 decided" in shadow.locator("#shadow-counts").inner_text()
    agreement = overall.locator('tr[data-metric="Agreement with humans"] td')
    assert [agreement.nth(i).inner_text() for i in range(2)] == ["70% (14/20)", "85% (17/20)"]
    assert "better" in (agreement.nth(1).get_attribute("class") or "")
    accuracy = overall.locator('tr[data-metric="Judged accuracy at its threshold"] td')
    assert [accuracy.nth(i).inner_text() for i in range(2)] == ["75% (12/16)", "92% (11/12)"]
    answered = overall.locator('tr[data-metric="Answered"] td')
    assert [answered.nth(i).inner_text() for i in range(2)] == ["75% (30/40)", "60% (24/40)"]
    billing = shadow.locator('#shadow-topics tr[data-topic="billing"] td')
    assert [billing.nth(i).inner_text() for i in range(8)] == [
        "billing", "25", "80%", "56%", "67%", "92%", "70%", "100%"]
    disagreement = shadow.locator('li.disagreement[data-conversation="conv-7"]')
    assert disagreement.locator(".customer-text").inner_text() == HOSTILE, "the customer's words, as text"
    assert disagreement.locator("img").count() == 0 and page.evaluate("window.__owned") is None
    assert disagreement.locator(".live-decision").inner_text() == "answered (confident), confidence 0.91"
    assert disagreement.locator(".candidate-decision").inner_text() == "escalated (low_confidence), confidence 0.62"
    assert disagreement.locator(".human-verdict").inner_text() == "customer: not helpful"
    assert "refunded in 5 days" in disagreement.locator(".candidate-reply").inner_text()
    assert "escalation's judge" in shadow.locator("#shadow-method").inner_text()
    page.screenshot(path=str(artifacts / "release-loop-shadow.png"), full_page=True)

    # Stop it: the report stays.
    releases.stop_shadow.outcome = releases_pb2.StopShadowResponse(shadow=_shadow(False))
    releases.get_shadow_report.outcome = _report(active=False)
    shadow.get_by_role("button", name="Stop shadow").click()
    page.locator("#releases-notice", has_text="The shadow of r3 is stopped").wait_for()
    shadow.locator("#shadow-state", has_text="stopped").wait_for()
    assert releases.stop_shadow.requests[-1].actor == ADMIN_NAME

    # A canary of r3 on 10% of conversations; the concierge's refusal shows as the problem it is.
    releases.start_canary.outcome = FailedPrecondition("a canary of r4 is running", reason="CANARY_RUNNING")
    r3.get_by_role("button", name="Canary r3…").click()
    canary_form = page.locator("#canary-form")
    canary_form.get_by_label("Percent of conversations").fill("10")
    canary_form.get_by_role("button", name="Start canary of r3").click()
    page.locator("#releases-error", has_text="a canary of r4 is running").wait_for()
    assert "Conflict" in page.locator("#releases-error").inner_text()
    releases.start_canary.outcome = releases_pb2.StartCanaryResponse(
        canary=_canary(releases_pb2.CANARY_STATE_RUNNING),
        event=_event(6, releases_pb2.RELEASE_EVENT_KIND_CANARY_STARTED))
    releases.get_canary.outcome = releases_pb2.GetCanaryResponse(canary=_canary(releases_pb2.CANARY_STATE_RUNNING))
    canary_form.get_by_role("button", name="Start canary of r3").click()
    page.locator("#releases-notice", has_text="r3 serves 10% of conversations as a canary").wait_for()
    sent_canary = releases.start_canary.requests[-1]
    assert (sent_canary.release_id, sent_canary.percent, sent_canary.actor, sent_canary.override_reason) == (
        "r3", 10, ADMIN_NAME, "")

    canary = page.locator("#canary-panel")
    canary.locator("#canary-state", has_text="running").wait_for()
    escalated = canary.locator('#canary-arms tr[data-metric="Escalated"] td')
    assert [escalated.nth(i).inner_text() for i in range(2)] == ["31% (118/380)", "63% (25/40)"]
    assert "7 of 20" in canary.locator("#canary-verdict").inner_text()
    assert "99% confidence" in canary.inner_text() and "5 points" in canary.inner_text()

    # Stopped by hand, with a reason.
    releases.stop_canary.outcome = releases_pb2.StopCanaryResponse(canary=_canary(releases_pb2.CANARY_STATE_STOPPED))
    releases.get_canary.outcome = releases_pb2.GetCanaryResponse(canary=_canary(releases_pb2.CANARY_STATE_STOPPED))
    canary.get_by_label("Canary stop reason").fill("Seen enough for today")
    canary.get_by_role("button", name="Stop canary").click()
    page.locator("#releases-notice", has_text="The canary of r3 is stopped").wait_for()
    canary.locator("#canary-state", has_text="stopped").wait_for()
    assert (releases.stop_canary.requests[-1].reason, releases.stop_canary.requests[-1].actor) == (
        "Seen enough for today", ADMIN_NAME)
    assert not canary.locator("#canary-stop-form").is_visible()

    # An automatic rollback (a later canary), as the page finds it: badge, figures, why, and the history.
    releases.get_canary.outcome = releases_pb2.GetCanaryResponse(canary=_canary(releases_pb2.CANARY_STATE_ROLLED_BACK))
    releases.list_release_events.outcome = releases_pb2.ListReleaseEventsResponse(events=[
        _event(8, releases_pb2.RELEASE_EVENT_KIND_CANARY_ROLLED_BACK, actor="system",
               detail="escalation 0.62 vs 0.31, lower bound +0.19 > margin 0.10"),
        _event(7, releases_pb2.RELEASE_EVENT_KIND_CANARY_STOPPED, detail="Seen enough for today"),
        _event(6, releases_pb2.RELEASE_EVENT_KIND_CANARY_STARTED),
        _event(5, releases_pb2.RELEASE_EVENT_KIND_SHADOW_STARTED),
    ])
    page.reload()
    canary.locator("#canary-state", has_text="rolled back").wait_for()
    assert "bad" in (canary.locator("#canary-state").get_attribute("class") or "")
    assert "lower bound +0.19 > margin 0.10" in canary.locator("#canary-end-reason").inner_text()
    history = page.locator("#release-events tbody tr")
    history.first.get_by_text("canary rolled back").wait_for()
    assert [history.nth(i).get_attribute("data-kind") for i in range(history.count())] == [
        "canary_rolled_back", "canary_stopped", "canary_started", "shadow_started"]
    assert "system" in history.nth(0).inner_text()
    page.screenshot(path=str(artifacts / "release-loop-canary.png"), full_page=True)

    # Refit: too few judgements first, then a candidate with its out-of-fold check.
    releases.refit_confidence.outcome = FailedPrecondition(
        "17 judged answers; a refit needs 40 with at least 5 of each outcome", reason="NOT_ENOUGH_JUDGEMENTS")
    refit = page.locator("#refit-panel")
    refit.get_by_label("Target accuracy").fill("0.92")
    refit.get_by_role("button", name="Refit confidence").click()
    page.locator("#releases-error", has_text="17 judged answers").wait_for()
    releases.refit_confidence.outcome = releases_pb2.RefitConfidenceResponse(
        release=_release(5, releases_pb2.RELEASE_STATE_CANDIDATE, passed=False),
        validation=releases_pb2.FitValidation(
            examples=212, correct=160, folds=5, live_ece=0.141, refit_ece=0.038, threshold=0.71, live_coverage=0.52,
            refit_coverage=0.66, live_accuracy=0.86, refit_accuracy=0.92,
            topics=[releases_pb2.TopicFit(topic="billing", examples=64, threshold=0.8, coverage=0.55, accuracy=0.93),
                    releases_pb2.TopicFit(topic="shipping", examples=31, coverage=0.4, accuracy=0.88)]),
    )
    refit.get_by_role("button", name="Refit confidence").click()
    page.locator("#releases-notice", has_text="Candidate r5 made from 212 judged answers").wait_for()
    ece = refit.locator("#refit-validation tr", has_text="Calibration error").locator("td")
    assert [ece.nth(i).inner_text() for i in range(2)] == ["0.141", "0.038"]
    assert refit.locator('#refit-topics tr[data-topic="billing"]').inner_text().split("\t")[:3] == [
        "billing", "64", "0.80"]
    assert "default" in refit.locator('#refit-topics tr[data-topic="shipping"]').inner_text()
    first, second = releases.refit_confidence.requests
    assert (second.actor, second.target_accuracy) == (ADMIN_NAME, 0.92)
    assert first.request_id == second.request_id, "a retry of the same refit keeps its request id"
    page.screenshot(path=str(artifacts / "release-loop-refit.png"), full_page=True)


def test_a_canary_of_an_unproven_release_asks_for_an_override_without_shadows(
    page: Any, live: LiveGateway
) -> None:
    releases = live.mesh.releases
    releases.list_releases.outcome = releases_pb2.ListReleasesResponse(releases=[
        _release(3, releases_pb2.RELEASE_STATE_CANDIDATE, passed=False),
        _release(2, releases_pb2.RELEASE_STATE_LIVE),
    ])
    # A concierge built without shadows says so in the panel; it is not an error of the card.
    releases.get_shadow_report.outcome = FailedPrecondition("this concierge runs no shadows", reason="NOT_SERVED")
    releases.get_canary.outcome = NotFound("none", reason="NO_CANARY")
    releases.start_canary.outcome = releases_pb2.StartCanaryResponse(
        canary=_canary(releases_pb2.CANARY_STATE_RUNNING),
        event=_event(6, releases_pb2.RELEASE_EVENT_KIND_CANARY_STARTED))
    enter_key(page, live, "insights.html", Role.ADMIN)
    page.locator("#shadow-panel", has_text="Not available: this concierge runs no shadows.").wait_for()
    assert page.locator("#releases-error").inner_text() == ""

    page.locator('tr[data-release="r3"]').get_by_role("button", name="Canary r3…").click()
    form = page.locator("#canary-form")
    assert "has not passed its suite" in form.inner_text()
    form.get_by_label("Canary override reason").fill("Scenario 59 is flaky; 10% for an hour")
    form.get_by_role("button", name="Start canary of r3").click()
    page.locator("#releases-notice", has_text="as a canary").wait_for()
    assert releases.start_canary.requests[-1].override_reason == "Scenario 59 is flaky; 10% for an hour"
