"""HumanLabels (services/concierge/human_labels.py): what humans said of each stored turn, on
SQLite and PostgreSQL. Customers' ratings of answered turns come from the concierge's own
table; agents' verdicts on escalated turns' candidates from escalation's ListJudgements (a
real escalation server in one test, a double elsewhere), given to the turn that made the
handoff; when escalation does not answer, the labels carry the ratings only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from structlog.testing import capture_logs

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import answer_pb2, conversation_pb2, customer_pb2
from services.concierge import human_labels
from services.concierge.human_labels import HumanLabels, TurnLabel
from services.concierge.migrations import SCHEMA
from services.concierge.models import TurnRow
from services.concierge.store import ConversationStore
from tests.services.escalation.conftest import handoff_request, running_stub, settings_for

TENANT = "acme"
OTHER = "globex"
ANSWERED = concierge_pb2.DECISION_ANSWERED
ESCALATED = concierge_pb2.DECISION_ESCALATED
CLARIFY = concierge_pb2.DECISION_CLARIFY
HELPFUL = concierge_pb2.TURN_RATING_HELPFUL
NOT_HELPFUL = concierge_pb2.TURN_RATING_NOT_HELPFUL
SIGNALS = {"question_similarity": 0.91, "passage_agrees": 1.0, "near_identical_question": 0.0}


@pytest.fixture
def store(engine: Engine) -> Iterator[ConversationStore]:
    SCHEMA.migrate(engine)
    yield ConversationStore(engine)


def _customer(tenant: str = TENANT) -> customer_pb2.CustomerRef:
    return customer_pb2.CustomerRef(tenant_id=tenant, customer_id="cust-1")


def _turn(
    store: ConversationStore, conversation: str, decision: int, *, release: str = "r1", handoff: str = "",
    intent: str = "refunds", tenant: str = TENANT, text: str = "Where is my refund?", score: float = 0.9,
) -> int:
    """Store one turn; its index."""
    outcome = concierge_pb2.ConverseResponse(
        reply="Refunds take 5 days.", decision=decision, handoff_id=handoff,  # type: ignore[arg-type]
        confidence=answer_pb2.Confidence(
            score=score, threshold=0.85,
            signals=[answer_pb2.ConfidenceSignal(name=name, value=value) for name, value in SIGNALS.items()],
        ),
        lineage=answer_pb2.Lineage(release_id=release),
    )
    stored = store.append(
        customer=_customer(tenant), conversation_id=conversation, channel=conversation_pb2.CHANNEL_CHAT,
        client_message_id="", customer_text=text, standalone_query=text, outcome=outcome, intent=intent,
    )
    return stored.turn_index


def _judgement(handoff_id: str, correct: bool, final_intent: str = "billing") -> escalation_pb2.JudgementRecord:
    return escalation_pb2.JudgementRecord(
        key=f"handoff:{handoff_id}", source=escalation_pb2.JUDGEMENT_SOURCE_AGENT, correct=correct,
        handoff_id=handoff_id, final_intent=final_intent, release_id="r1",
    )


class FakeEscalation:
    """ListJudgements from planted pages (or down); records what it was asked."""

    def __init__(self, pages: list[list[escalation_pb2.JudgementRecord]] | None = None, down: bool = False):
        self.pages = pages or [[]]
        self.down = down
        self.requests: list[tuple[escalation_pb2.ListJudgementsRequest, float]] = []

    async def ListJudgements(
        self, request: escalation_pb2.ListJudgementsRequest, *, timeout: float  # noqa: ASYNC109 - the stub's signature
    ) -> escalation_pb2.ListJudgementsResponse:
        copy = escalation_pb2.ListJudgementsRequest()
        copy.CopyFrom(request)
        self.requests.append((copy, timeout))
        if self.down:
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata())
        index = int(request.page_token or 0)
        more = index + 1 < len(self.pages)
        return escalation_pb2.ListJudgementsResponse(
            judgements=self.pages[index], next_page_token=str(index + 1) if more else ""
        )


def _by_turn(labels: list[TurnLabel]) -> dict[tuple[str, int], TurnLabel]:
    return {(label.conversation_id, label.turn_index): label for label in labels}


async def test_ratings_and_agents_verdicts_label_the_turns_they_judge(engine: Engine, store: ConversationStore) -> None:
    helpful = _turn(store, "c1", ANSWERED, text="How long do refunds take? My card is 4111 ****")
    unhelpful = _turn(store, "c1", ANSWERED, release="r2")
    unrated = _turn(store, "c1", ANSWERED)
    escalated = _turn(store, "c2", ESCALATED, handoff="h-judged", intent="refund_request")
    clarify = _turn(store, "c3", CLARIFY, intent="")
    unjudged = _turn(store, "c4", ESCALATED, handoff="h-unjudged")
    store.rate(_customer(), "c1", helpful, HELPFUL)
    store.rate(_customer(), "c1", unhelpful, NOT_HELPFUL)
    escalation = FakeEscalation([[_judgement("h-judged", correct=False, final_intent="billing")]])

    labels = await HumanLabels(engine, escalation).labels(TENANT)  # type: ignore[arg-type]

    assert [(label.conversation_id, label.turn_index) for label in labels] == [
        ("c1", helpful), ("c1", unhelpful), ("c1", unrated), ("c2", escalated), ("c3", clarify), ("c4", unjudged)
    ]
    turns = _by_turn(labels)
    first = turns["c1", helpful]
    assert (first.correct, first.source, first.decision, first.release_id) == (True, "customer", "answered", "r1")
    assert first.intent == "refunds" and first.human_intent == ""
    assert first.confidence == pytest.approx(0.9)
    # A zero signal is left out of the stored JSON; it reads back as 0.
    assert first.signals == pytest.approx(SIGNALS)
    assert first.customer_text == "How long do refunds take? My card is 4111 ****"
    assert first.created_at.tzinfo is not None
    assert (turns["c1", unhelpful].correct, turns["c1", unhelpful].release_id) == (False, "r2")
    assert (turns["c1", unrated].correct, turns["c1", unrated].source) == (None, "")
    judged = turns["c2", escalated]
    assert (judged.correct, judged.source, judged.decision) == (False, "agent", "escalated")
    assert (judged.intent, judged.human_intent) == ("refund_request", "billing")
    assert turns["c3", clarify].decision == "clarify" and turns["c3", clarify].correct is None
    assert turns["c4", unjudged].correct is None and turns["c4", unjudged].human_intent == ""
    # One page was asked for, within its budget, from a little before the first handed-over turn.
    ((request, timeout),) = escalation.requests
    assert request.tenant_id == TENANT and timeout == human_labels.JUDGEMENT_PAGE_TIMEOUT_S
    assert request.since.ToDatetime(dt.UTC) == judged.created_at - human_labels.HANDOFF_LEAD


async def test_filters_by_time_release_and_turn(engine: Engine, store: ConversationStore,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(5):
        _turn(store, "c1", ANSWERED, release="r1" if index % 2 else "r2")
    _turn(store, "c2", ANSWERED, release="r3")
    _turn(store, "c9", ANSWERED, tenant=OTHER)
    with engine.begin() as connection:
        # Turn i of c1 stored i hours ago.
        for index in range(5):
            connection.execute(
                sa.update(TurnRow)
                .where(TurnRow.conversation_id == "c1", TurnRow.turn_index == index)
                .values(created_at=dt.datetime(2026, 12, 1, 12 - index, tzinfo=dt.UTC))
            )
    labels = HumanLabels(engine, None)

    everything = await labels.labels(TENANT)
    assert {label.conversation_id for label in everything} == {"c1", "c2"} and len(everything) == 6
    # Oldest first.
    assert [label.turn_index for label in everything if label.conversation_id == "c1"] == [4, 3, 2, 1, 0]
    since = await labels.labels(TENANT, since=dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC))
    assert sorted((label.conversation_id, label.turn_index) for label in since) == [("c1", 0), ("c1", 1),
                                                                                   ("c1", 2), ("c2", 0)]
    by_release = await labels.labels(TENANT, release_ids=["r1", "r3"])
    assert sorted((label.conversation_id, label.turn_index) for label in by_release) == [("c1", 1), ("c1", 3),
                                                                                        ("c2", 0)]
    # Asked-for turns are read a few at a time; another tenant's conversation is never among them.
    monkeypatch.setattr(human_labels, "TURNS_PER_QUERY", 2)
    chosen = [("c1", 0), ("c1", 3), ("c2", 0), ("c9", 0), ("c1", 42)]
    picked = await labels.labels(TENANT, turns=chosen)
    assert sorted((label.conversation_id, label.turn_index) for label in picked) == [("c1", 0), ("c1", 3), ("c2", 0)]
    both = await labels.labels(TENANT, turns=chosen, release_ids=["r2"], since=dt.datetime(2026, 12, 1, 11,
                                                                                            tzinfo=dt.UTC))
    assert [(label.conversation_id, label.turn_index) for label in both] == [("c1", 0)]
    assert await labels.labels(TENANT, release_ids=[]) == []
    assert await labels.labels(TENANT, turns=[]) == []
    assert len(await labels.labels(OTHER)) == 1


async def test_without_escalation_the_labels_are_the_customers_ratings(
    engine: Engine, store: ConversationStore
) -> None:
    rated = _turn(store, "c1", ANSWERED)
    escalated = _turn(store, "c2", ESCALATED, handoff="h-1")
    store.rate(_customer(), "c1", rated, NOT_HELPFUL)

    with capture_logs() as logs:
        labels = await HumanLabels(engine, FakeEscalation(down=True)).labels(TENANT)  # type: ignore[arg-type]

    turns = _by_turn(labels)
    assert turns["c1", rated].correct is False and turns["c2", escalated].correct is None
    assert any(entry["event"] == "human_labels_without_agents" and entry["log_level"] == "warning" for entry in logs)


async def test_a_verdict_replaced_on_a_later_page_wins_and_a_failed_page_drops_them_all(
    engine: Engine, store: ConversationStore
) -> None:
    escalated = _turn(store, "c1", ESCALATED, handoff="h-1")
    pages = [[_judgement("h-1", correct=True)], [_judgement("other", correct=True)], [_judgement("h-1", correct=False)]]
    escalation = FakeEscalation(pages)

    (label,) = await HumanLabels(engine, escalation).labels(TENANT)  # type: ignore[arg-type]

    assert label.turn_index == escalated and label.correct is False
    assert [request.page_token for request, _ in escalation.requests] == ["", "1", "2"]

    class DownAfterFirstPage(FakeEscalation):
        async def ListJudgements(
            self, request: Any, *, timeout: float  # noqa: ASYNC109 - the stub's signature
        ) -> escalation_pb2.ListJudgementsResponse:
            self.down = bool(request.page_token)
            return await super().ListJudgements(request, timeout=timeout)

    (half,) = await HumanLabels(engine, DownAfterFirstPage(pages)).labels(TENANT)  # type: ignore[arg-type]
    assert half.correct is None and half.source == ""


async def test_the_handoffs_verdict_is_its_first_escalated_turns(engine: Engine, store: ConversationStore) -> None:
    first = _turn(store, "c1", ESCALATED, handoff="h-1")
    again = _turn(store, "c1", ESCALATED, handoff="h-1")
    forwarded = _turn(store, "c1", concierge_pb2.DECISION_FORWARDED, handoff="h-1")
    escalation = FakeEscalation([[_judgement("h-1", correct=True, final_intent="billing")]])
    labels = HumanLabels(engine, escalation)  # type: ignore[arg-type]

    turns = _by_turn(await labels.labels(TENANT))
    assert turns["c1", first].correct is True
    # Later turns of the handoff did not write its candidate; they still learn the agent's intent.
    assert turns["c1", again].correct is None and turns["c1", forwarded].correct is None
    assert turns["c1", again].human_intent == "billing" == turns["c1", forwarded].human_intent
    # With the first turn left out by a filter, the later one still does not take its verdict.
    (later,) = await labels.labels(TENANT, turns=[("c1", again)])
    assert later.correct is None


async def test_an_agents_reply_through_a_real_escalation_labels_the_turn(tmp_path: Path, engine: Engine,
                                                                        store: ConversationStore) -> None:
    async with running_stub(settings_for(tmp_path / "escalation")) as escalation:
        request = handoff_request(key="k-1", tenant=TENANT, intent="refunds", confidence=0.42)
        request.release_id = "r1"
        handoff = (await escalation.CreateHandoff(request)).handoff
        await escalation.SubmitAgentReply(escalation_pb2.SubmitAgentReplyRequest(
            tenant_id=TENANT, handoff_id=handoff.handoff_id, agent_id="ana",
            final_text="Hi! Refunds take 5 days to reach your card.",
            intent_correction=escalation_pb2.IntentCorrection(corrected_label="refund_status"),
        ))
        turn = _turn(store, request.conversation.conversation_id, ESCALATED, handoff=handoff.handoff_id)
        unjudged = _turn(store, "elsewhere", ESCALATED, handoff="h-none")

        labels = _by_turn(await HumanLabels(engine, escalation).labels(TENANT))

    judged = labels[request.conversation.conversation_id, turn]
    assert (judged.correct, judged.source, judged.human_intent) == (True, "agent", "refund_status")
    assert labels["elsewhere", unjudged].correct is None
