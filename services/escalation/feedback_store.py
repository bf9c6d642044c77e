"""The feedback loop's records in the relational store: agents' replies next to the
drafts (exported for preference training), intent corrections (exported for the
triage model), the outcomes the concierge reports for contacts the AI handled, and
the judgements of its answers (customers' written here, all of them listed). Sync SQLAlchemy like the handoff store: the
servicer calls in via asyncio.to_thread; every write is one transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aftercare.escalation.v1 import escalation_pb2
from servicekit.database import utcnow
from services.escalation import judgements
from services.escalation.judgements import JudgementCursor
from services.escalation.models import AgentReplyRow, ContactOutcomeRow, HandoffRow, IntentCorrectionRow

log = structlog.get_logger("services.escalation.feedback_store")


@dataclass(frozen=True)
class FeedbackRecord:
    prompt: str
    draft: str
    final_text: str
    draft_use: str
    edit_ratio: float
    created_at: dt.datetime


class FeedbackStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def feedback(self, tenant_id: str, since: dt.datetime | None, limit: int) -> list[FeedbackRecord]:
        query = (
            sa.select(
                HandoffRow.draft_prompt,
                AgentReplyRow.draft,
                AgentReplyRow.final_text,
                AgentReplyRow.draft_use,
                AgentReplyRow.edit_ratio,
                AgentReplyRow.created_at,
            )
            .join(HandoffRow, HandoffRow.handoff_id == AgentReplyRow.handoff_id)
            .where(AgentReplyRow.tenant_id == tenant_id)
            .order_by(AgentReplyRow.created_at.asc(), AgentReplyRow.reply_id.asc())
            .limit(limit)
        )
        if since is not None:
            query = query.where(AgentReplyRow.created_at >= since)
        with Session(self._engine) as session:
            return [FeedbackRecord(*row) for row in session.execute(query).all()]

    def corrections(self, tenant_id: str, since: dt.datetime | None) -> list[tuple[str, str]]:
        """(text, corrected label) of every intent correction, oldest first."""
        query = (
            sa.select(IntentCorrectionRow.text, IntentCorrectionRow.corrected_label)
            .where(IntentCorrectionRow.tenant_id == tenant_id, IntentCorrectionRow.text != "")
            .order_by(IntentCorrectionRow.created_at.asc(), IntentCorrectionRow.correction_id.asc())
        )
        if since is not None:
            query = query.where(IntentCorrectionRow.created_at >= since)
        with Session(self._engine) as session:
            return [(text, label) for text, label in session.execute(query).all()]

    def record_outcome(
        self,
        tenant_id: str,
        key: str,
        decision: str,
        intent: str,
        confidence: float,
        question: str,
        occurred_at: dt.datetime,
    ) -> bool:
        row = ContactOutcomeRow(
            outcome_id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            idempotency_key=key,
            decision=decision,
            intent=intent,
            confidence=confidence,
            question=question,
            occurred_at=occurred_at,
        )
        try:
            with Session(self._engine) as session, session.begin():
                session.add(row)
        except IntegrityError:
            return False  # the same key again: recorded once
        return True

    def record_judgement(
        self,
        tenant_id: str,
        key: str,
        source: str,
        intent: str,
        confidence: float,
        correct: bool,
        answered_at: dt.datetime | None,
    ) -> bool:
        """Store a verdict under `key`, replacing the one there; False when it said the same."""
        try:
            with Session(self._engine) as session, session.begin():
                return judgements.upsert_judgement(
                    session, tenant_id, key, source, intent, confidence, correct, answered_at, utcnow()
                )
        except IntegrityError:
            # Another call inserted the key first: now there is a row to compare with and replace.
            log.info("judgement_insert_raced", tenant_id=tenant_id)
        with Session(self._engine) as session, session.begin():
            return judgements.upsert_judgement(
                session, tenant_id, key, source, intent, confidence, correct, answered_at, utcnow()
            )

    def judgements_page(
        self, tenant_id: str, since: dt.datetime | None, after: JudgementCursor | None, limit: int
    ) -> tuple[list[escalation_pb2.JudgementRecord], JudgementCursor | None]:
        """One page of the tenant's judgements, oldest judged first (judgements.judgements_page)."""
        with Session(self._engine) as session:
            return judgements.judgements_page(session, tenant_id, since, after, limit)
