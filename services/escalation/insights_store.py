"""What insights read from the relational store: contacts (handoffs and the outcomes
the concierge reported), agents' replies, CSAT ratings and answer judgements over a
period, and the questions the knowledge base could not answer. Read-only; sync
SQLAlchemy (InsightsEngine runs in a worker thread)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from aftercare.escalation.v1 import escalation_pb2
from services.escalation.judgements import AGENT_JUDGEMENT_KEY_PREFIX
from services.escalation.models import AgentReplyRow, AnswerJudgementRow, ContactOutcomeRow, HandoffRow


@dataclass(frozen=True)
class ContactRecord:
    """One contact for insights: a handoff (escalated) or a RecordOutcome (handled by the AI)."""

    at: dt.datetime
    intent: str
    confidence: float | None
    # "escalated" (a handoff), or the RecordOutcome decision: "answered", "clarified".
    kind: str


@dataclass(frozen=True)
class ReplyStat:
    at: dt.datetime
    intent: str
    draft_use: str


@dataclass(frozen=True)
class CsatStat:
    """A customer's satisfaction rating (1 to 5) of a resolved handoff, when it was given."""

    at: dt.datetime
    intent: str
    rating: int


@dataclass(frozen=True)
class GapQuestion:
    text: str
    at: dt.datetime


@dataclass(frozen=True)
class JudgementRecord:
    """One judged AI answer: a point of the reliability diagram."""

    answered_at: dt.datetime
    source: str
    confidence: float
    correct: bool


@dataclass
class InsightData:
    contacts: list[ContactRecord] = field(default_factory=list)
    replies: list[ReplyStat] = field(default_factory=list)
    ratings: list[CsatStat] = field(default_factory=list)
    judgements: list[JudgementRecord] = field(default_factory=list)


class InsightsStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def insight_data(
        self, tenant_id: str, start: dt.datetime, end: dt.datetime, judged_from: dt.datetime | None = None
    ) -> InsightData:
        """Contacts and replies in [start, end); judgements answered in [judged_from or start, end)."""
        data = InsightData()
        with Session(self._engine) as session:
            for created_at, intent, ai_confidence in session.execute(
                sa.select(HandoffRow.created_at, HandoffRow.intent, HandoffRow.ai_confidence).where(
                    HandoffRow.tenant_id == tenant_id, HandoffRow.created_at >= start, HandoffRow.created_at < end
                )
            ):
                data.contacts.append(ContactRecord(created_at, intent, ai_confidence, "escalated"))
            for occurred_at, intent, confidence, decision in session.execute(
                sa.select(
                    ContactOutcomeRow.occurred_at,
                    ContactOutcomeRow.intent,
                    ContactOutcomeRow.confidence,
                    ContactOutcomeRow.decision,
                ).where(
                    ContactOutcomeRow.tenant_id == tenant_id,
                    ContactOutcomeRow.occurred_at >= start,
                    ContactOutcomeRow.occurred_at < end,
                )
            ):
                kind = "answered" if decision == "OUTCOME_DECISION_ANSWERED" else "clarified"
                data.contacts.append(ContactRecord(occurred_at, intent, confidence, kind))
            for created_at, intent, draft_use in session.execute(
                sa.select(AgentReplyRow.created_at, HandoffRow.intent, AgentReplyRow.draft_use)
                .join(HandoffRow, HandoffRow.handoff_id == AgentReplyRow.handoff_id)
                .where(
                    AgentReplyRow.tenant_id == tenant_id,
                    AgentReplyRow.created_at >= start,
                    AgentReplyRow.created_at < end,
                )
            ):
                data.replies.append(ReplyStat(created_at, intent, draft_use))
            for rated_at, intent, rating in session.execute(
                sa.select(HandoffRow.rated_at, HandoffRow.intent, HandoffRow.csat_rating).where(
                    HandoffRow.tenant_id == tenant_id,
                    HandoffRow.csat_rating > 0,
                    HandoffRow.rated_at >= start,
                    HandoffRow.rated_at < end,
                )
            ):
                if rated_at is not None:  # always: the WHERE on rated_at leaves out NULLs
                    data.ratings.append(CsatStat(rated_at, intent, rating))
            for answered_at, source, confidence, correct in session.execute(
                sa.select(
                    AnswerJudgementRow.answered_at,
                    AnswerJudgementRow.source,
                    AnswerJudgementRow.confidence,
                    AnswerJudgementRow.correct,
                ).where(
                    AnswerJudgementRow.tenant_id == tenant_id,
                    AnswerJudgementRow.answered_at >= (judged_from or start),
                    AnswerJudgementRow.answered_at < end,
                )
            ):
                data.judgements.append(JudgementRecord(answered_at, source, confidence, bool(correct)))
        return data

    def gap_questions(self, tenant_id: str, since: dt.datetime, limit: int) -> list[GapQuestion]:
        """Questions the knowledge base could not answer, newest first: escalated because it had
        nothing on them (NO_KNOWLEDGE), or answered by the AI and judged wrong by the agent who
        took over. A low confidence alone is no gap (the customer may have asked for a person,
        or said "yes please" to an offer)."""
        no_knowledge = escalation_pb2.HandoffReason.Name(escalation_pb2.HANDOFF_REASON_NO_KNOWLEDGE)
        judged_wrong = (
            sa.select(AnswerJudgementRow.judgement_id)
            .where(
                AnswerJudgementRow.tenant_id == HandoffRow.tenant_id,
                AnswerJudgementRow.idempotency_key == sa.literal(AGENT_JUDGEMENT_KEY_PREFIX) + HandoffRow.handoff_id,
                AnswerJudgementRow.correct.is_(False),
            )
            .exists()
        )
        with Session(self._engine) as session:
            handoffs = session.execute(
                sa.select(HandoffRow.question, HandoffRow.created_at)
                .where(
                    HandoffRow.tenant_id == tenant_id,
                    HandoffRow.created_at >= since,
                    HandoffRow.question != "",
                    sa.or_(HandoffRow.reason == no_knowledge, judged_wrong),
                )
                .order_by(HandoffRow.created_at.desc())
                .limit(limit)
            ).all()
        return [GapQuestion(text, at) for text, at in handoffs]
