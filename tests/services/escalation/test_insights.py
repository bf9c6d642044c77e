"""Per-topic insights over time (with the sudden-drop flag), the reliability
diagram of the AI's confidence, and knowledge gaps clustered by meaning."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import customer_pb2
from servicekit.database import utcnow
from services.escalation import insights
from services.escalation.insights_store import ContactRecord, GapQuestion, JudgementRecord, ReplyStat
from services.escalation.judgements import AGENT_JUDGEMENT, CUSTOMER_JUDGEMENT
from tests.services.escalation.conftest import Stub, expect_error, handoff_request

START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def _contacts(day: int, intent: str, confidence: float, count: int, kind: str = "answered") -> list[ContactRecord]:
    at = START + dt.timedelta(days=day, hours=10)
    return [ContactRecord(at, intent, confidence, kind) for _ in range(count)]


def _series(
    contacts: list[ContactRecord], replies: list[ReplyStat] | None = None
) -> dict[str, escalation_pb2.TopicSeries]:
    result = insights.topic_series(
        contacts,
        replies or [],
        START,
        START + dt.timedelta(days=10),
        drop_threshold=0.15,
        baseline_days=7,
        min_contacts=5,
    )
    return {series.topic: series for series in result}


def test_a_sudden_confidence_drop_on_one_topic_is_flagged() -> None:
    contacts = []
    for day in range(9):
        contacts += _contacts(day, "api_keys", 0.92, 6) + _contacts(day, "billing", 0.88, 6)
    contacts += _contacts(9, "api_keys", 0.55, 6) + _contacts(9, "billing", 0.86, 6)

    series = _series(contacts)

    assert series["api_keys"].confidence_drop_flagged
    assert "0.55 on 2026-11-10" in series["api_keys"].confidence_drop_detail
    assert "0.92 over the 7 days before" in series["api_keys"].confidence_drop_detail
    assert not series["billing"].confidence_drop_flagged
    assert len(series["api_keys"].points) == 10
    assert series["api_keys"].points[0].day.ToDatetime(dt.UTC) == START


def test_a_drop_on_too_few_contacts_is_not_flagged() -> None:
    contacts = []
    for day in range(9):
        contacts += _contacts(day, "api_keys", 0.92, 6)
    contacts += _contacts(9, "api_keys", 0.2, 2)
    assert not _series(contacts)["api_keys"].confidence_drop_flagged


def test_rates_per_day() -> None:
    contacts = (
        _contacts(0, "refunds", 0.9, 3, "answered")
        + _contacts(0, "refunds", 0.4, 1, "escalated")
        + [ContactRecord(START + dt.timedelta(hours=12), "refunds", None, "escalated")]  # asked for a human
        + _contacts(0, "", 0.5, 1, "clarified")
    )
    replies = [
        ReplyStat(START + dt.timedelta(hours=13), "refunds", use)
        for use in ("DRAFT_USE_ACCEPTED", "DRAFT_USE_EDITED", "DRAFT_USE_REWRITTEN", "DRAFT_USE_DISCARDED")
    ]
    series = _series(contacts, replies)
    day = series["refunds"].points[0]
    assert day.contacts == 5
    assert day.automation_rate == 0.6 and day.escalation_rate == 0.4
    # The contact without an AI attempt does not drag the mean confidence down.
    assert day.mean_confidence == pytest.approx((0.9 * 3 + 0.4) / 4, abs=1e-4)
    assert day.edit_rate == 0.5
    assert series["unclassified"].points[0].automation_rate == 0.0


async def test_topic_insights_combine_handoffs_outcomes_and_replies(stub: Stub) -> None:
    handoff = (await stub.CreateHandoff(handoff_request(key="h", intent="refunds", confidence=0.4))).handoff
    await stub.SubmitAgentReply(
        escalation_pb2.SubmitAgentReplyRequest(
            tenant_id="demo", handoff_id=handoff.handoff_id, agent_id="a", final_text="Something else entirely, sorry."
        )
    )
    for i in range(3):
        outcome = escalation_pb2.RecordOutcomeRequest(
            idempotency_key=f"turn-{i}",
            customer=customer_pb2.CustomerRef(tenant_id="demo", customer_id="c"),
            decision=escalation_pb2.OUTCOME_DECISION_ANSWERED,
            intent="refunds",
            confidence=0.9,
            question="How long do refunds take?",
        )
        assert (await stub.RecordOutcome(outcome)).recorded
    assert not (await stub.RecordOutcome(outcome)).recorded  # same key: counted once
    # The customer asked for a human: no AI attempt, so no confidence to average in.
    human = handoff_request(key="human", intent="refunds", confidence=0.0)
    human.ai_attempt.candidate_answer = ""
    await stub.CreateHandoff(human)

    response = await stub.GetTopicInsights(escalation_pb2.GetTopicInsightsRequest(tenant_id="demo"))

    (topic,) = response.topics
    assert topic.topic == "refunds"
    today = topic.points[-1]
    assert today.contacts == 5
    assert today.automation_rate == 0.6 and today.escalation_rate == 0.4
    assert today.mean_confidence == pytest.approx((0.4 + 0.9 * 3) / 4, abs=1e-4)
    assert today.edit_rate == 0.0  # the reply discarded the draft: neither edited nor rewritten
    assert len(topic.points) in (30, 31)
    other = await stub.GetTopicInsights(escalation_pb2.GetTopicInsightsRequest(tenant_id="acme"))
    assert not other.topics


def _judged(confidence: float, correct: bool, source: str = AGENT_JUDGEMENT) -> JudgementRecord:
    return JudgementRecord(START, source, confidence, correct)


def test_reliability_bins_by_the_reported_edges_with_one_in_the_last_bin() -> None:
    # Just below 0.9 (0.8999999999999999): int(confidence * 10) would put it in the 0.9 bin.
    confidences = [0.0, 0.05, 0.1, 0.3, 0.7, math.nextafter(0.9, 0.0), 0.9, 0.9999, 1.0]
    diagram = insights.reliability([_judged(c, True) for c in confidences])

    assert [(b.lower, b.upper) for b in diagram.bins] == [(i / 10, (i + 1) / 10) for i in range(10)]
    assert [b.count for b in diagram.bins] == [2, 1, 0, 1, 0, 0, 0, 1, 1, 3]
    assert diagram.judged == len(confidences)
    assert diagram.bins[9].mean_confidence == pytest.approx((0.9 + 0.9999 + 1.0) / 3, abs=1e-4)
    empty = diagram.bins[2]
    assert empty.mean_confidence == 0.0 and empty.accuracy == 0.0


def test_reliability_accuracy_and_ece() -> None:
    judgements = [
        _judged(0.05, True),  # bin 0: accuracy 1 at confidence 0.05 -> 0.95 off
        _judged(0.1, False, CUSTOMER_JUDGEMENT),  # bin 1: accuracy 0 at 0.1 -> 0.1 off
        _judged(0.95, True),
        _judged(1.0, False, CUSTOMER_JUDGEMENT),
        _judged(1.0, True),  # bin 9: accuracy 2/3 at 0.9833 -> 3 x 0.3167 = 0.95 off
    ]
    diagram = insights.reliability(judgements)

    assert diagram.judged == 5 and diagram.judged_by_agents == 3 and diagram.judged_by_customers == 2
    assert diagram.bins[0].accuracy == 1.0 and diagram.bins[1].accuracy == 0.0
    assert diagram.bins[9].accuracy == pytest.approx(2 / 3, abs=1e-4)
    assert diagram.bins[9].mean_confidence == pytest.approx(2.95 / 3, abs=1e-4)
    assert diagram.ece == pytest.approx((0.95 + 0.1 + 0.95) / 5, abs=1e-4)


def test_a_calibrated_confidence_has_no_calibration_error() -> None:
    judgements = [_judged(0.8, i < 8) for i in range(10)] + [_judged(0.3, i < 3) for i in range(10)]
    diagram = insights.reliability(judgements)
    assert diagram.bins[8].accuracy == 0.8 and diagram.bins[3].accuracy == 0.3
    assert diagram.ece == pytest.approx(0.0, abs=1e-9)
    nothing = insights.reliability([])
    assert len(nothing.bins) == 10 and nothing.judged == 0 and nothing.ece == 0.0


async def test_topic_insights_give_the_reliability_of_agents_and_customers_judgements(stub: Stub) -> None:
    right = (await stub.CreateHandoff(handoff_request(key="right", intent="refunds", confidence=0.42))).handoff
    wrong = (await stub.CreateHandoff(handoff_request(key="wrong", intent="refunds", confidence=0.85))).handoff
    for handoff, text in ((right, "Refunds take 5 days to reach your card."), (wrong, "I escalated it to billing.")):
        await stub.SubmitAgentReply(
            escalation_pb2.SubmitAgentReplyRequest(
                tenant_id="demo", handoff_id=handoff.handoff_id, agent_id="a", final_text=text
            )
        )

    async def rating(key: str, tenant: str, confidence: float, correct: bool, days_ago: float = 0) -> None:
        request = escalation_pb2.RecordJudgementRequest(
            idempotency_key=key,
            customer=customer_pb2.CustomerRef(tenant_id=tenant, customer_id="c"),
            source=escalation_pb2.JUDGEMENT_SOURCE_CUSTOMER,
            confidence=confidence,
            correct=correct,
        )
        request.answered_at.FromDatetime(utcnow() - dt.timedelta(days=days_ago))
        assert (await stub.RecordJudgement(request)).changed

    await rating("turn-1", "demo", 1.0, True)
    # Before the 30-day period, though within the days the drop check reads before it.
    await rating("turn-old", "demo", 0.5, False, days_ago=33)
    # Another tenant's judgements never count.
    await rating("turn-1", "acme", 0.15, False)
    await rating("turn-2", "acme", 0.95, False)

    diagram = (await stub.GetTopicInsights(escalation_pb2.GetTopicInsightsRequest(tenant_id="demo"))).reliability

    assert diagram.judged == 3 and diagram.judged_by_agents == 2 and diagram.judged_by_customers == 1
    assert [b.count for b in diagram.bins] == [0, 0, 0, 0, 1, 0, 0, 0, 1, 1]
    assert diagram.bins[4].accuracy == 1.0 and diagram.bins[4].mean_confidence == pytest.approx(0.42)
    assert diagram.bins[8].accuracy == 0.0 and diagram.bins[8].mean_confidence == pytest.approx(0.85)
    assert diagram.bins[9].accuracy == 1.0
    assert diagram.ece == pytest.approx((0.58 + 0.85 + 0.0) / 3, abs=1e-4)
    acme = (await stub.GetTopicInsights(escalation_pb2.GetTopicInsightsRequest(tenant_id="acme"))).reliability
    assert acme.judged == 2 and acme.judged_by_agents == 0
    assert [b.count for b in acme.bins] == [0, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    # The period is [start_time, end_time): the old judgement counts only in a period that holds it.
    now = utcnow()
    old_period = escalation_pb2.GetTopicInsightsRequest(tenant_id="demo")
    old_period.start_time.FromDatetime(now - dt.timedelta(days=34))
    old_period.end_time.FromDatetime(now - dt.timedelta(days=32))
    old = (await stub.GetTopicInsights(old_period)).reliability
    assert old.judged == 1 and old.bins[5].count == 1 and old.bins[5].accuracy == 0.0


async def test_bad_insight_and_outcome_requests_are_refused(stub: Stub) -> None:
    now = Timestamp(seconds=int(utcnow().timestamp()))
    violations, _ = await expect_error(
        stub.GetTopicInsights(escalation_pb2.GetTopicInsightsRequest(tenant_id="demo", start_time=now, end_time=now)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [field for field, _ in violations] == ["start_time"]
    violations, _ = await expect_error(
        stub.RecordOutcome(escalation_pb2.RecordOutcomeRequest(confidence=2.0)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert [field for field, _ in violations] == ["idempotency_key", "customer.tenant_id", "decision", "confidence"]
    violations, _ = await expect_error(
        stub.ListKnowledgeGaps(escalation_pb2.ListKnowledgeGapsRequest(tenant_id="demo", limit=-1)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [field for field, _ in violations] == ["limit"]


async def test_knowledge_gaps_are_the_questions_the_knowledge_base_could_not_answer(stub: Stub) -> None:
    export = ["how do I export invoices to csv", "how do I export invoices to csv?", "export invoices to csv how"]
    theme = ["is there a dark mode theme", "dark mode theme please"]
    for i, text in enumerate(export):
        await stub.CreateHandoff(
            handoff_request(key=f"e{i}", texts=(text,), reason=escalation_pb2.HANDOFF_REASON_NO_KNOWLEDGE)
        )
    # Answered (a candidate the AI had) and judged wrong by the agent who took over.
    wrong = (await stub.CreateHandoff(handoff_request(key="t0", texts=(theme[0],), confidence=0.3))).handoff
    await stub.SubmitAgentReply(
        escalation_pb2.SubmitAgentReplyRequest(
            tenant_id="demo",
            handoff_id=wrong.handoff_id,
            agent_id="ana",
            final_text="Dark mode is under Settings, Appearance, Theme.",
        )
    )
    await stub.CreateHandoff(
        handoff_request(key="t1", texts=(theme[1],), reason=escalation_pb2.HANDOFF_REASON_NO_KNOWLEDGE)
    )
    # Not gaps: a low-confidence escalation nobody judged wrong, a low-confidence answer,
    # a "yes please" the AI asked to clarify, and a customer who wanted a human.
    await stub.CreateHandoff(handoff_request(key="low", texts=("where is my parcel",), confidence=0.3))
    for key, decision, question in (
        ("o", escalation_pb2.OUTCOME_DECISION_ANSWERED, "how do I rotate an api key"),
        ("yes", escalation_pb2.OUTCOME_DECISION_CLARIFIED, "yes please"),
    ):
        await stub.RecordOutcome(
            escalation_pb2.RecordOutcomeRequest(
                idempotency_key=key,
                customer=customer_pb2.CustomerRef(tenant_id="demo", customer_id="c"),
                decision=decision,
                confidence=0.4,
                question=question,
            )
        )
    await stub.CreateHandoff(
        handoff_request(
            key="h",
            texts=("let me talk to a person",),
            confidence=0.95,
            reason=escalation_pb2.HANDOFF_REASON_CUSTOMER_REQUEST,
        )
    )

    gaps = (await stub.ListKnowledgeGaps(escalation_pb2.ListKnowledgeGapsRequest(tenant_id="demo"))).gaps

    assert [gap.question_count for gap in gaps] == [3, 2]
    assert gaps[0].suggested_title == "How to export invoices to csv"
    assert set(gaps[0].examples) <= set(export) and len(gaps[0].examples) == 2  # near-duplicates shown once
    assert set(gaps[1].examples) == set(theme)
    assert all(gap.last_seen.seconds > 0 and gap.gap_id for gap in gaps)
    top = await stub.ListKnowledgeGaps(escalation_pb2.ListKnowledgeGapsRequest(tenant_id="demo", limit=1))
    assert [gap.gap_id for gap in top.gaps] == [gaps[0].gap_id]


def test_recent_gaps_outrank_older_bigger_ones() -> None:
    now = START + dt.timedelta(days=30)
    old = [GapQuestion("cancel subscription refund", now - dt.timedelta(days=28)) for _ in range(4)]
    new = [GapQuestion("webhook signature invalid", now - dt.timedelta(hours=2)) for _ in range(2)]
    from tests.services.escalation.conftest import fake_embed

    gaps = insights.knowledge_gaps([*old, *new], fake_embed, 10, 0.45, now)
    assert [gap.question_count for gap in gaps] == [2, 4]


@pytest.mark.parametrize(
    ("question", "title"),
    [
        ("Hi, how can I rotate my API key?", "How to rotate your API key"),
        ("Why is my invoice missing VAT", "Why is your invoice missing VAT"),
        ("I can't log in with SSO since yesterday", "Troubleshooting: can't log in with SSO since yesterday"),
        ("webhooks 500 errors", "Questions about webhook, error"),
    ],
)
def test_suggested_titles(question: str, title: str) -> None:
    assert insights.suggest_title(question, ["webhook", "error"]) == title


def test_minilm_clusters_paraphrases_by_meaning(tmp_path: Path) -> None:
    from servicekit.embeddings import SentenceEncoder

    encoder = SentenceEncoder(torch_threads=1)
    now = utcnow()
    texts = [
        "How do I export my invoices as a CSV file?",
        "Can I download all invoices to a spreadsheet?",
        "export billing history to csv",
        "Is there a dark mode?",
        "How can I switch the app to a dark theme?",
    ]
    gaps = insights.knowledge_gaps([GapQuestion(t, now) for t in texts], encoder.encode, 10, 0.45, now)
    groups = sorted(sorted(gap.examples) for gap in gaps)
    assert [len(gap.examples) for gap in gaps] == [3, 2]
    assert sorted(texts[3:]) in groups


async def test_customers_satisfaction_ratings_reach_their_topic(stub: Stub) -> None:
    for key, rating in (("rated-1", 5), ("rated-2", 2)):
        handoff = (await stub.CreateHandoff(handoff_request(key=key, intent="refunds"))).handoff
        await stub.ResolveHandoff(
            escalation_pb2.ResolveHandoffRequest(
                tenant_id="demo", handoff_id=handoff.handoff_id, agent_id="a", resolution="Refunded."
            )
        )
        await stub.RateHandoff(
            escalation_pb2.RateHandoffRequest(
                customer=customer_pb2.CustomerRef(tenant_id="demo", customer_id="cust-7"),
                handoff_id=handoff.handoff_id,
                rating=rating,
            )
        )

    response = await stub.GetTopicInsights(escalation_pb2.GetTopicInsightsRequest(tenant_id="demo"))

    (topic,) = response.topics
    today = topic.points[-1]
    assert today.csat_ratings == 2
    assert today.mean_csat == pytest.approx(3.5)
