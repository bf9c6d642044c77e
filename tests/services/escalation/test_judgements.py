"""Judgements of the AI's answers, the reliability diagram's raw material: agents
judge the candidate answer by what they send (SubmitAgentReply), customers'
verdicts come through RecordJudgement."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import customer_pb2
from servicekit import judging
from servicekit.database import database_url, make_engine
from services.escalation import judgements
from services.escalation.feedback_store import FeedbackStore
from services.escalation.judgements import CUSTOMER_JUDGEMENT
from services.escalation.models import AgentReplyRow, AnswerJudgementRow
from services.escalation.store import HandoffStore, NewHandoff, ReplyRecord
from tests.services.escalation.conftest import Stub, expect_error, handoff_request

TENANT = "demo"
AGENT = escalation_pb2.JudgementSource.Name(escalation_pb2.JUDGEMENT_SOURCE_AGENT)
CUSTOMER = escalation_pb2.JudgementSource.Name(escalation_pb2.JUDGEMENT_SOURCE_CUSTOMER)


def _judgements(data_dir: Path) -> list[AnswerJudgementRow]:
    engine = make_engine(database_url("", data_dir, "escalation"))
    try:
        with Session(engine) as session:
            return list(session.scalars(sa.select(AnswerJudgementRow).order_by(AnswerJudgementRow.idempotency_key)))
    finally:
        engine.dispose()


async def _handoff(
    stub: Stub, key: str, candidate: str = "Refunds take 5 days.", **kwargs: Any
) -> escalation_pb2.Handoff:
    request = handoff_request(key=key, **kwargs)
    request.ai_attempt.candidate_answer = candidate
    return (await stub.CreateHandoff(request)).handoff


async def _reply(stub: Stub, handoff: escalation_pb2.Handoff, text: str, **kwargs: Any) -> None:
    await stub.SubmitAgentReply(
        escalation_pb2.SubmitAgentReplyRequest(
            tenant_id=handoff.customer.tenant_id,
            handoff_id=handoff.handoff_id,
            agent_id="ana",
            final_text=text,
            **kwargs,
        )
    )


def _rating(key: str = "turn-1", correct: bool = True, confidence: float = 0.8, **kwargs: Any) -> Any:
    return escalation_pb2.RecordJudgementRequest(
        idempotency_key=key,
        customer=customer_pb2.CustomerRef(tenant_id=kwargs.pop("tenant", TENANT), customer_id="cust-7"),
        source=kwargs.pop("source", escalation_pb2.JUDGEMENT_SOURCE_CUSTOMER),
        intent=kwargs.pop("intent", "refunds"),
        confidence=confidence,
        correct=correct,
        **kwargs,
    )


# --- the judge ---------------------------------------------------------------------


def test_the_judge_is_the_benchmarks_sixty_percent_of_content_words() -> None:
    candidate = "Reset the password on the login page settings."  # reset password login page settings
    assert judging.agrees(candidate, "Reset password: login, settings.")  # 3 of 5
    assert not judging.agrees(candidate, "Reset your password please.")  # 2 of 5
    assert judging.agrees("Refunds take 5 days.", "Hi! Refunds take 5 days to reach your card.")
    assert not judging.agrees("Refunds take 5 days.", "Sorry, I cannot help with that.")
    assert not judging.agrees("the and of", "the and of")  # nothing to judge is not right


# --- agents judge through their replies -----------------------------------------------


async def test_a_reply_judges_the_candidate_right_and_a_later_reply_replaces_the_verdict(
    stub: Stub, tmp_path: Path
) -> None:
    handoff = await _handoff(stub, "h-right", intent="refunds", confidence=0.42)

    await _reply(stub, handoff, "Hi! Refunds take 5 days to reach your card.")

    (judgement,) = _judgements(tmp_path)
    assert judgement.idempotency_key == f"handoff:{handoff.handoff_id}"
    assert judgement.source == AGENT and judgement.tenant_id == TENANT
    assert judgement.correct is True
    assert judgement.confidence == pytest.approx(0.42)
    assert judgement.intent == "refunds"
    assert judgement.answered_at == handoff.created_at.ToDatetime(dt.UTC)

    await _reply(stub, handoff, "Sorry, I cannot help with that; a colleague will write to you.")

    (replaced,) = _judgements(tmp_path)
    assert replaced.judgement_id == judgement.judgement_id
    assert replaced.correct is False


async def test_a_reply_that_says_something_else_judges_the_candidate_wrong(stub: Stub, tmp_path: Path) -> None:
    handoff = await _handoff(stub, "h-wrong", intent="refunds", confidence=0.9)
    # The agent also fixes the intent: the judgement counts under the corrected topic.
    await _reply(
        stub,
        handoff,
        "I have escalated your billing issue to our team.",
        intent_correction=escalation_pb2.IntentCorrection(corrected_label="billing"),
    )
    (judgement,) = _judgements(tmp_path)
    assert judgement.correct is False and judgement.confidence == pytest.approx(0.9)
    assert judgement.intent == "billing"


async def test_without_a_candidate_or_a_confidence_nothing_is_judged(stub: Stub, tmp_path: Path) -> None:
    asked_for_human = await _handoff(stub, "h-human", candidate="", confidence=0.0)
    await _reply(stub, asked_for_human, "Refunds take 5 days.")
    unscored = handoff_request(key="h-unscored")
    unscored.ai_attempt.ClearField("confidence")
    handoff = (await stub.CreateHandoff(unscored)).handoff
    await _reply(stub, handoff, "Refunds take 5 days.")

    assert _judgements(tmp_path) == []


async def test_a_refused_reply_writes_no_judgement(stub: Stub, tmp_path: Path) -> None:
    handoff = await _handoff(stub, "h-stale")
    await expect_error(
        stub.SubmitAgentReply(
            escalation_pb2.SubmitAgentReplyRequest(
                tenant_id=TENANT,
                handoff_id=handoff.handoff_id,
                agent_id="ana",
                final_text="Refunds take 5 days.",
                expected_version=7,
            )
        ),
        grpc.StatusCode.ABORTED,
    )
    assert _judgements(tmp_path) == []


def test_the_reply_and_its_judgement_are_written_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(database_url("", tmp_path, "escalation"))
    try:
        store = HandoffStore(engine)
        store.migrate()
        handoff, _ = store.create(handoff_request(key="atomic"), NewHandoff("general", escalation_pb2.ContextPackage()))

        def failing(*args: object) -> bool:
            raise RuntimeError("the judgement write failed")

        monkeypatch.setattr(judgements, "upsert_judgement", failing)
        with pytest.raises(RuntimeError):
            store.submit_reply(
                TENANT,
                handoff.handoff_id,
                "ana",
                0,
                lambda draft: ReplyRecord(draft, "Refunds take 5 days.", 1.0, escalation_pb2.DRAFT_USE_DISCARDED),
                None,
            )

        after = store.get(TENANT, handoff.handoff_id)
        assert after is not None and after.version == 1 and after.state == escalation_pb2.HANDOFF_STATE_WAITING
        with Session(engine) as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(AgentReplyRow)) == 0
    finally:
        engine.dispose()


# --- customers' verdicts: RecordJudgement ---------------------------------------------


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (
            escalation_pb2.RecordJudgementRequest(confidence=2.0),
            ["idempotency_key", "customer.tenant_id", "source", "confidence"],
        ),
        (_rating(source=escalation_pb2.JUDGEMENT_SOURCE_AGENT), ["source"]),
        (_rating(key="x" * 201, intent="i" * 201), ["idempotency_key", "intent"]),
        (_rating(key="handoff:123"), ["idempotency_key"]),
        (_rating(confidence=math.nan), ["confidence"]),
        (_rating(confidence=math.inf), ["confidence"]),
        (_rating(confidence=-0.01), ["confidence"]),
        (_rating(answered_at=Timestamp(seconds=-(10**12))), ["answered_at"]),
    ],
)
async def test_invalid_judgements_are_refused_with_field_violations(
    stub: Stub, tmp_path: Path, request_: escalation_pb2.RecordJudgementRequest, fields: list[str]
) -> None:
    violations, _ = await expect_error(stub.RecordJudgement(request_), grpc.StatusCode.INVALID_ARGUMENT)
    assert [field for field, _ in violations] == fields
    assert _judgements(tmp_path) == []


async def test_a_repeated_key_is_idempotent_and_a_new_verdict_replaces_the_old(stub: Stub, tmp_path: Path) -> None:
    answered = Timestamp(seconds=1_790_000_000)
    assert (await stub.RecordJudgement(_rating(correct=True, answered_at=answered))).changed
    assert not (await stub.RecordJudgement(_rating(correct=True, answered_at=answered))).changed
    # Retried without a time: the answer's stored time stays.
    assert not (await stub.RecordJudgement(_rating(correct=True))).changed

    assert (await stub.RecordJudgement(_rating(correct=False))).changed
    assert not (await stub.RecordJudgement(_rating(correct=False))).changed
    # Keys are per tenant.
    assert (await stub.RecordJudgement(_rating(correct=True, tenant="acme"))).changed

    demo, acme = (
        [j for j in _judgements(tmp_path) if j.tenant_id == TENANT],
        [j for j in _judgements(tmp_path) if j.tenant_id == "acme"],
    )
    assert len(demo) == 1 and len(acme) == 1
    assert demo[0].correct is False and demo[0].source == CUSTOMER
    assert demo[0].answered_at == answered.ToDatetime(dt.UTC)
    assert demo[0].judged_at >= demo[0].answered_at


async def test_without_answered_at_the_answer_is_dated_now(stub: Stub, tmp_path: Path) -> None:
    before = dt.datetime.now(dt.UTC)
    await stub.RecordJudgement(_rating())
    (judgement,) = _judgements(tmp_path)
    assert before - dt.timedelta(seconds=1) <= judgement.answered_at <= dt.datetime.now(dt.UTC)


@pytest.mark.parametrize("their_verdict", [False, True])
def test_a_first_write_that_loses_the_race_replaces_the_winners_verdict(engine: Engine, their_verdict: bool) -> None:
    HandoffStore(engine).migrate()
    store = FeedbackStore(engine)
    other = make_engine(engine.url.render_as_string(hide_password=False))
    now = dt.datetime.now(dt.UTC)

    raced: list[bool] = []

    def another_call_commits_first(session: Session, *args: object) -> None:
        # Our read found nothing; the other call's insert commits before ours is flushed.
        if raced:
            return
        raced.append(True)
        with other.begin() as connection:
            connection.execute(
                sa.insert(AnswerJudgementRow).values(
                    judgement_id="winner",
                    tenant_id=TENANT,
                    idempotency_key="turn-race",
                    source=CUSTOMER_JUDGEMENT,
                    intent="refunds",
                    confidence=0.8,
                    correct=their_verdict,
                    answered_at=now,
                    judged_at=now,
                )
            )

    event.listen(Session, "before_flush", another_call_commits_first)
    try:
        changed = store.record_judgement(TENANT, "turn-race", CUSTOMER_JUDGEMENT, "refunds", 0.8, True, now)
    finally:
        event.remove(Session, "before_flush", another_call_commits_first)
        other.dispose()

    assert raced

    assert changed is (not their_verdict)
    with Session(engine) as session:
        (row,) = session.scalars(sa.select(AnswerJudgementRow)).all()
    assert row.judgement_id == "winner" and row.correct is True
