"""The console pages, clicked through in headless Chromium."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.outreach.v1 import outreach_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import answer_pb2, conversation_pb2, customer_pb2
from gateway.keys import Role
from tests.browser.conftest import LiveGateway


def _ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def enter_key(page: Any, live: LiveGateway, path: str, role: Role) -> None:
    """Open a console page and paste a key into its form, as a person would."""
    page.goto(f"{live.url}/console/{path}")
    page.get_by_label("API key").fill(live.mesh.key(role))
    page.get_by_role("button", name="Use key").click()
    page.wait_for_selector("header.top .who >> text=tenant demo")


def test_chat_streams_an_answer_with_a_citation_and_a_tier0_tip(
    page: Any, live: LiveGateway, artifacts: Path
) -> None:
    live.mesh.concierge.stream_converse.outcome = [
        concierge_pb2.StreamConverseResponse(delta="To rotate a key, "),
        concierge_pb2.StreamConverseResponse(delta="open Settings > API and press Rotate."),
        concierge_pb2.StreamConverseResponse(outcome=concierge_pb2.ConverseResponse(
            reply="To rotate a key, open Settings > API and press Rotate.",
            citations=[answer_pb2.Citation(doc_id="kb-rotate", chunk_id="kb-rotate#0", title="Rotate an API key",
                                           url="https://docs.example.com/rotate", score=0.9)],
            confidence=answer_pb2.Confidence(score=0.93, threshold=0.85, calibrated=True, configuration_id="cfg-1"),
            decision=concierge_pb2.DECISION_ANSWERED,
            decision_reason="confident",
        )),
    ]
    live.mesh.triage.suggest_for_context.outcome = triage_pb2.SuggestForContextResponse(
        suggestion=triage_pb2.Suggestion(doc_id="kb-429", title="Getting 429s?", snippet="Batch events: 500 per call.",
                                         url="/kb/429", relevance=0.8, kind=triage_pb2.SUGGESTION_KIND_TIP)
    )
    enter_key(page, live, "chat.html?dwell=0.2", Role.CHANNEL)

    page.get_by_label("Message").fill("How do I rotate an API key?")
    page.get_by_label("Message").press("Enter")
    answer = page.locator(".msg.assistant.done")
    answer.wait_for()

    assert "open Settings > API and press Rotate." in answer.inner_text()
    citation = answer.locator("ol.citations a")
    assert citation.inner_text() == "Rotate an API key"
    assert citation.get_attribute("href") == "https://docs.example.com/rotate"
    assert "confidence 93% (calibrated)" in answer.inner_text()
    assert answer.locator(".typing").count() == 0, "typing ends with the outcome"
    (sent,) = live.mesh.concierge.stream_converse.requests
    assert sent.request.text == "How do I rotate an API key?"
    assert sent.request.customer.tenant_id == "demo"
    assert live.mesh.concierge.converse.requests == [], "the widget streams"

    tip = page.get_by_role("complementary", name="Suggestion")
    tip.wait_for()
    assert "Getting 429s?" in tip.inner_text()
    (browsing,) = live.mesh.triage.suggest_for_context.requests
    assert browsing.context.page == "/settings/api" and list(browsing.context.recent_errors)
    page.screenshot(path=str(artifacts / "chat.png"), full_page=True)
    page.get_by_label("Dismiss tip").click()
    page.wait_for_function("() => !document.querySelector('.tier0')")
    page.wait_for_function("() => true")
    _wait_until(lambda: live.mesh.triage.dismiss_suggestion.requests)
    assert live.mesh.triage.dismiss_suggestion.requests[0].doc_id == "kb-429"


def test_rating_an_answered_reply_sends_one_rate_turn(page: Any, live: LiveGateway, artifacts: Path) -> None:
    live.mesh.concierge.stream_converse.outcome = [
        concierge_pb2.StreamConverseResponse(
            outcome=concierge_pb2.ConverseResponse(
                reply="Open Settings > API and press Rotate.",
                confidence=answer_pb2.Confidence(score=0.91, threshold=0.85),
                decision=concierge_pb2.DECISION_ANSWERED,
                decision_reason="confident",
                turn_index=3,
            )
        ),
    ]
    live.mesh.concierge.rate_turn.outcome = concierge_pb2.RateTurnResponse(changed=True)
    enter_key(page, live, "chat.html?dwell=600", Role.CHANNEL)
    page.get_by_label("Message").fill("How do I rotate an API key?")
    page.get_by_label("Message").press("Enter")
    page.locator(".msg.assistant.done").wait_for()

    page.get_by_role("button", name="Not helpful", exact=True).click()
    page.locator(".rate >> text=Thanks").wait_for()
    assert page.get_by_role("button", name="Helpful", exact=True).count() == 0, "a reply is rated once"
    (rated,) = live.mesh.concierge.rate_turn.requests
    (sent,) = live.mesh.concierge.stream_converse.requests
    assert rated.rating == concierge_pb2.TURN_RATING_NOT_HELPFUL and rated.turn_index == 3
    assert (rated.conversation_id, rated.customer.customer_id, rated.customer.tenant_id) == (
        sent.request.conversation_id,
        sent.request.customer.customer_id,
        "demo",
    )
    page.screenshot(path=str(artifacts / "chat-rated.png"), full_page=True)


def test_chat_shows_sentences_as_they_come_and_a_retraction(page: Any, live: LiveGateway, artifacts: Path) -> None:
    handoff = "I can't confirm that myself, so a colleague will reply here."
    live.mesh.concierge.stream_converse.outcome = [
        concierge_pb2.StreamConverseResponse(delta="Your refund is on its way."),
        1.5,  # the next check takes a while: the first sentence is shown, still typing
        concierge_pb2.StreamConverseResponse(retraction=concierge_pb2.Retraction(
            reason=concierge_pb2.DECISION_REASON_UNSAFE_PROMISE, replacement=handoff)),
        concierge_pb2.StreamConverseResponse(outcome=concierge_pb2.ConverseResponse(
            reply=handoff,
            confidence=answer_pb2.Confidence(score=0.4, threshold=0.85),
            decision=concierge_pb2.DECISION_ESCALATED, decision_reason="unsafe_promise",
            reason=concierge_pb2.DECISION_REASON_UNSAFE_PROMISE, handoff_id="ho-5",
        )),
    ]
    enter_key(page, live, "chat.html?dwell=600", Role.CHANNEL)
    page.get_by_label("Message").fill("Where is my refund?")
    page.get_by_label("Message").press("Enter")

    streaming = page.locator(".msg.assistant.streaming")
    streaming.locator(".text >> text=Your refund is on its way.").wait_for()
    assert streaming.locator(".typing").is_visible(), "typing until the outcome"

    answer = page.locator(".msg.assistant.done")
    answer.wait_for()
    assert answer.locator(".text").inner_text() == handoff
    assert "Your refund is on its way." not in answer.inner_text(), "the withdrawn text is gone"
    note = answer.locator(".retraction-note")
    assert note.inner_text().startswith("The earlier text was withdrawn:")
    assert note.get_attribute("data-reason") == "unsafe_promise"
    assert "confidence 40% (uncalibrated)" in answer.inner_text()
    assert answer.locator(".typing").count() == 0
    prompt = page.locator(".handoff-prompt")
    prompt.wait_for()
    assert "ho-5" in prompt.inner_text() and "did not pass its checks" in prompt.inner_text()
    page.screenshot(path=str(artifacts / "chat-retracted.png"), full_page=True)


def _wait_until(condition: Any, timeout_s: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _handoff(state: int, **extra: Any) -> escalation_pb2.Handoff:
    return escalation_pb2.Handoff(
        handoff_id="ho-77",
        customer=customer_pb2.CustomerRef(tenant_id="demo", customer_id="web-1"),
        conversation=conversation_pb2.Conversation(
            conversation_id="chat-1", channel=conversation_pb2.CHANNEL_CHAT,
            messages=[conversation_pb2.Message(role=conversation_pb2.ROLE_CUSTOMER, text="I was charged twice!")],
        ),
        reason=escalation_pb2.HANDOFF_REASON_LOW_CONFIDENCE, queue="billing", priority=72, state=state, version=1,
        created_at=_ts(datetime(2026, 11, 24, 9, 0, tzinfo=UTC)),
        context=escalation_pb2.ContextPackage(
            summary="Customer was charged twice for November.", detail="Two identical charges on the 1st.",
            intent="duplicate_charge", intent_confidence=0.81, sentiment_score=-0.5, sentiment_label="negative",
            customer_summary="Team plan, 400 days, 1 open ticket.",
            ai_attempt=escalation_pb2.AiAttempt(candidate_answer="Refunds take 5 days.",
                                                confidence=answer_pb2.Confidence(score=0.42),
                                                explanation="below the 0.85 threshold"),
            suggested_resolutions=[escalation_pb2.SuggestedResolution(
                text="Refund the duplicate charge.",
                sources=[answer_pb2.Citation(doc_id="kb-refunds", title="Refund policy", url="https://docs.example.com/refunds")],
            )],
            draft_reply="Hi, I have refunded the duplicate charge.", draft_method="llm",
        ),
        **extra,
    )


def test_a_handoff_from_the_chat_is_answered_in_the_agent_console(
    browser: Any, page: Any, live: LiveGateway, artifacts: Path
) -> None:
    live.mesh.concierge.stream_converse.outcome = [
        concierge_pb2.StreamConverseResponse(outcome=concierge_pb2.ConverseResponse(
            reply="I'm not confident enough in an answer to this, so I've passed your question to our "
            "support team. Someone will reply here as soon as they can. You won't need to repeat yourself.",
            confidence=answer_pb2.Confidence(score=0.42, threshold=0.85),
            decision=concierge_pb2.DECISION_ESCALATED, decision_reason="low_confidence", handoff_id="ho-77",
        )),
    ]
    enter_key(page, live, "chat.html?dwell=600", Role.CHANNEL)
    page.get_by_label("Message").fill("I was charged twice!")
    page.get_by_label("Message").press("Enter")
    prompt = page.locator(".handoff-prompt")
    prompt.wait_for()
    assert "ho-77" in prompt.inner_text() and "not confident enough" in prompt.inner_text()
    assert page.locator(".rate").count() == 0, "only an answer is rated"
    page.screenshot(path=str(artifacts / "chat-handoff.png"), full_page=True)

    # The agent, in a browser of their own.
    live.mesh.escalation.list_handoffs.outcome = escalation_pb2.ListHandoffsResponse(
        handoffs=[_handoff(escalation_pb2.HANDOFF_STATE_WAITING)]
    )
    live.mesh.escalation.get_handoff.outcome = escalation_pb2.GetHandoffResponse(
        handoff=_handoff(escalation_pb2.HANDOFF_STATE_WAITING)
    )
    live.mesh.escalation.submit_agent_reply.outcome = escalation_pb2.SubmitAgentReplyResponse(
        draft_use=escalation_pb2.DRAFT_USE_EDITED, edit_ratio=0.18,
        handoff=_handoff(escalation_pb2.HANDOFF_STATE_ASSIGNED, assigned_agent_id="agent-demo"),
    )
    live.mesh.escalation.resolve_handoff.outcome = escalation_pb2.ResolveHandoffResponse(
        handoff=_handoff(escalation_pb2.HANDOFF_STATE_RESOLVED, resolution="Refunded the duplicate.",
                         assigned_agent_id="agent-demo")
    )
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    agent = context.new_page()
    try:
        enter_key(agent, live, "agent.html", Role.AGENT)
        agent.locator("#queue li[data-id='ho-77']").click()
        draft = agent.get_by_label("Reply to the customer")
        draft.wait_for()
        assert draft.input_value() == "Hi, I have refunded the duplicate charge."
        assert "Refund the duplicate charge." in agent.locator("#resolutions").inner_text()
        assert "Team plan" in agent.locator("#handoff").inner_text()
        draft.fill("Hi Sam, I have refunded the duplicate charge; it shows in 3-5 days.")
        agent.get_by_label("Corrected intent").fill("transaction_charged_twice")
        agent.get_by_role("button", name="Send reply").click()
        agent.locator("#action-status >> text=Draft edited").wait_for()
        (reply,) = live.mesh.escalation.submit_agent_reply.requests
        assert (reply.handoff_id, reply.tenant_id, reply.agent_id) == ("ho-77", "demo", "agent-demo")
        assert reply.final_text.startswith("Hi Sam")
        assert reply.expected_version == 1
        assert (reply.intent_correction.original_label, reply.intent_correction.corrected_label) == (
            "duplicate_charge", "transaction_charged_twice"
        )

        agent.get_by_label("Resolution").fill("Refunded the duplicate.")
        agent.get_by_role("button", name="Resolve").click()
        agent.locator("#handoff .badge >> text=resolved").wait_for()
        (resolved,) = live.mesh.escalation.resolve_handoff.requests
        assert (resolved.handoff_id, resolved.resolution) == ("ho-77", "Refunded the duplicate.")
        agent.screenshot(path=str(artifacts / "agent-console.png"), full_page=True)
    finally:
        context.close()


def test_the_insights_page_draws_the_charts(page: Any, live: LiveGateway, artifacts: Path) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    def series(topic: str, confidence: list[float], flagged: bool) -> escalation_pb2.TopicSeries:
        return escalation_pb2.TopicSeries(
            topic=topic, confidence_drop_flagged=flagged,
            confidence_drop_detail="mean confidence 0.55 yesterday, 0.90 the 7 days before" if flagged else "",
            points=[escalation_pb2.TopicPoint(day=_ts(today - timedelta(days=len(confidence) - i)), contacts=10 + i,
                                              mean_confidence=c, automation_rate=max(0.0, c - 0.1))
                    for i, c in enumerate(confidence)],
        )

    bins = [escalation_pb2.ReliabilityBin(lower=i / 10, upper=(i + 1) / 10) for i in range(10)]
    judged = ((5, 4, 0.56, 0.5), (7, 11, 0.74, 0.64), (8, 25, 0.86, 0.8), (9, 60, 0.94, 0.9))
    for i, count, confidence, accuracy in judged:
        bins[i].MergeFrom(escalation_pb2.ReliabilityBin(count=count, mean_confidence=confidence, accuracy=accuracy))
    live.mesh.escalation.get_topic_insights.outcome = escalation_pb2.GetTopicInsightsResponse(
        topics=[
            series("billing", [0.9, 0.91, 0.89, 0.92, 0.9, 0.91, 0.9, 0.88, 0.6, 0.55], True),
            series("api_keys", [0.8, 0.82, 0.85, 0.86, 0.88, 0.87, 0.9, 0.91, 0.9, 0.92], False),
        ],
        reliability=escalation_pb2.Reliability(bins=bins, judged=100, judged_by_agents=35, judged_by_customers=65,
                                               ece=0.052),
    )
    live.mesh.escalation.list_knowledge_gaps.outcome = escalation_pb2.ListKnowledgeGapsResponse(gaps=[
        escalation_pb2.KnowledgeGap(gap_id="g1", suggested_title="SSO with Okta", question_count=12,
                                    examples=["does okta work?"], last_seen=_ts(today)),
    ])
    enter_key(page, live, "insights.html", Role.AGENT)

    page.locator("#topics svg.chart path.confidence").nth(1).wait_for()
    assert page.locator("#topics svg.chart").count() == 2
    assert page.locator("#topics svg.chart path.automation").count() == 2
    # One dot per non-empty bin, at (mean confidence, accuracy), labelled with its count.
    assert page.locator("#reliability circle.dot").count() == 4
    assert page.locator("#reliability text.count").all_text_contents() == ["4", "11", "25", "60"]
    assert page.locator("#reliability line.diagonal title").text_content() == "perfectly calibrated"
    caption = page.locator("#reliability-caption").inner_text()
    assert "100 judged answers" in caption and "35 by agents" in caption and "65 rated by customers" in caption
    assert "5.2" in caption
    assert "proxy" not in page.locator("#reliability-card").inner_text().lower()
    assert "billing" in page.locator("#flagged").inner_text()
    assert "SSO with Okta" in page.locator("#gaps").inner_text()
    (sent,) = live.mesh.escalation.get_topic_insights.requests
    assert sent.start_time.seconds < sent.end_time.seconds
    page.screenshot(path=str(artifacts / "insights.png"), full_page=True)


def test_the_reliability_diagram_says_so_when_nothing_was_judged(page: Any, live: LiveGateway) -> None:
    live.mesh.escalation.get_topic_insights.outcome = escalation_pb2.GetTopicInsightsResponse(
        reliability=escalation_pb2.Reliability(
            bins=[escalation_pb2.ReliabilityBin(lower=i / 10, upper=(i + 1) / 10) for i in range(10)]
        )
    )
    enter_key(page, live, "insights.html", Role.AGENT)
    empty = page.locator("#reliability-empty")
    empty.wait_for()
    assert empty.inner_text().startswith("No judged answers yet")
    assert page.locator("#reliability").count() == 0


def test_outreach_review_shows_evidence_and_approves_an_edit(page: Any, live: LiveGateway, artifacts: Path) -> None:
    live.mesh.outreach.detect_risks.outcome = outreach_pb2.DetectRisksResponse(findings=[outreach_pb2.RiskFinding(
        finding_id="f1", account_ids=["acct-9"], kind=outreach_pb2.RISK_KIND_ERROR_SPIKE, severity=0.8,
        cause="429 on POST /v2/events/batch since Tuesday for js-3.7",
        evidence=[outreach_pb2.Evidence(statement="429 rate rose from 0.1% to 38%", metric="error_rate",
                                        before=0.001, after=0.38)],
    )])
    live.mesh.outreach.list_drafts.outcome = outreach_pb2.ListDraftsResponse(drafts=[outreach_pb2.OutreachDraft(
        draft_id="d1", account_id="acct-9", finding_id="f1", subject="Your event uploads are being throttled",
        body="Hi Ana, since Tuesday ...", state=outreach_pb2.DRAFT_STATE_PENDING_REVIEW, generator="template",
    )])
    live.mesh.outreach.review_draft.outcome = outreach_pb2.ReviewDraftResponse(draft=outreach_pb2.OutreachDraft(
        draft_id="d1", account_id="acct-9", finding_id="f1", subject="Your event uploads are being throttled",
        body="Hi Ana, here is the fix.", state=outreach_pb2.DRAFT_STATE_APPROVED, reviewer_id="agent-demo",
    ))
    enter_key(page, live, "outreach.html", Role.AGENT)

    draft = page.locator(".draft[data-id='d1']")
    draft.locator("table.evidence >> text=429 rate rose").wait_for()
    draft.locator("textarea").fill("Hi Ana, here is the fix.")
    draft.get_by_role("button", name="Approve").click()
    page.locator(".draft[data-id='d1'] .badge >> text=approved").wait_for()
    (review,) = live.mesh.outreach.review_draft.requests
    assert (review.action, review.edited_body, review.reviewer_id) == (
        outreach_pb2.REVIEW_ACTION_EDIT, "Hi Ana, here is the fix.", "agent-demo"
    )
    page.screenshot(path=str(artifacts / "outreach.png"), full_page=True)


def test_a_channel_key_sees_the_agent_console_refused(page: Any, live: LiveGateway) -> None:
    enter_key(page, live, "agent.html", Role.CHANNEL)
    page.locator("p.error >> text=needs a agent key").or_(page.locator("p.error >> text=Forbidden")).first.wait_for()
    assert live.mesh.escalation.list_handoffs.requests == []
