"""Answer judgements: one verdict per key on an AI answer (correct or not, at the AI's
confidence), the points of the reliability diagram. An agent's reply writes the
handoff's judgement in its own transaction (keyed by handoff: a later reply replaces
the verdict); RecordJudgement writes a customer's under the caller's key.

ListJudgements reads them back oldest judged first, an agent's with what the concierge's
releases learn from: the release that handed over and the intent the agent finally set.
A replaced verdict is judged anew, so it moves to the end of the order: a reader paging
through meets it again there, with its latest word."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aftercare.escalation.v1 import escalation_pb2
from services.escalation.models import AnswerJudgementRow, HandoffRow, IntentCorrectionRow

AGENT_JUDGEMENT = escalation_pb2.JudgementSource.Name(escalation_pb2.JUDGEMENT_SOURCE_AGENT)
CUSTOMER_JUDGEMENT = escalation_pb2.JudgementSource.Name(escalation_pb2.JUDGEMENT_SOURCE_CUSTOMER)
# Agents' judgements are keyed by handoff (a later reply replaces the verdict); RecordJudgement refuses the prefix.
AGENT_JUDGEMENT_KEY_PREFIX = "handoff:"


def upsert_judgement(
    session: Session,
    tenant_id: str,
    key: str,
    source: str,
    intent: str,
    confidence: float,
    correct: bool,
    answered_at: dt.datetime | None,
    now: dt.datetime,
) -> bool:
    """Write the judgement under `key` in the session's transaction, replacing the one there;
    False when that one already said the same. answered_at None keeps the stored time (now
    for a new one). A racing first write of the key fails here with IntegrityError."""
    row = session.scalars(
        sa.select(AnswerJudgementRow)
        .where(AnswerJudgementRow.tenant_id == tenant_id, AnswerJudgementRow.idempotency_key == key)
        .with_for_update()
    ).one_or_none()
    if row is None:
        session.add(
            AnswerJudgementRow(
                judgement_id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                idempotency_key=key,
                source=source,
                intent=intent,
                confidence=confidence,
                correct=correct,
                answered_at=answered_at or now,
                judged_at=now,
            )
        )
        session.flush()
        return True
    values: dict[str, Any] = {"source": source, "intent": intent, "confidence": confidence, "correct": correct}
    if answered_at is not None:
        values["answered_at"] = answered_at
    if all(getattr(row, name) == value for name, value in values.items()):
        return False
    for name, value in values.items():
        setattr(row, name, value)
    row.judged_at = now
    session.flush()
    return True


@dataclass(frozen=True)
class JudgementCursor:
    """Where the previous page ended, in ListJudgements order (keyset: stable under inserts)."""

    judged_at: dt.datetime
    judgement_id: str


def judgements_page(
    session: Session, tenant_id: str, since: dt.datetime | None, after: JudgementCursor | None, limit: int
) -> tuple[list[escalation_pb2.JudgementRecord], JudgementCursor | None]:
    """The tenant's judgements judged at or after `since`, after `after`, oldest judged first
    (at most `limit`); with the cursor of the next page, None on the last."""
    query = sa.select(AnswerJudgementRow).where(AnswerJudgementRow.tenant_id == tenant_id)
    if since is not None:
        query = query.where(AnswerJudgementRow.judged_at >= since)
    if after is not None:
        query = query.where(
            sa.or_(
                AnswerJudgementRow.judged_at > after.judged_at,
                sa.and_(
                    AnswerJudgementRow.judged_at == after.judged_at,
                    AnswerJudgementRow.judgement_id > after.judgement_id,
                ),
            )
        )
    order = (AnswerJudgementRow.judged_at.asc(), AnswerJudgementRow.judgement_id.asc())
    rows = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    handoffs = _judged_handoffs(session, tenant_id, [_handoff_id(row) for row in rows if _handoff_id(row)])
    records = [_record(row, handoffs.get(_handoff_id(row))) for row in rows]
    cursor = JudgementCursor(rows[-1].judged_at, rows[-1].judgement_id) if more else None
    return records, cursor


@dataclass(frozen=True)
class _JudgedHandoff:
    release_id: str
    final_intent: str


def _handoff_id(row: AnswerJudgementRow) -> str:
    """The handoff an agent's judgement is of; "" for a customer's."""
    if row.source != AGENT_JUDGEMENT:
        return ""
    return row.idempotency_key.removeprefix(AGENT_JUDGEMENT_KEY_PREFIX)


def _judged_handoffs(session: Session, tenant_id: str, handoff_ids: Sequence[str]) -> dict[str, _JudgedHandoff]:
    """Per handoff: the release that handed over and the intent the agent finally set (their
    latest correction, else the handoff's own)."""
    if not handoff_ids:
        return {}
    corrected: dict[str, str] = {}
    corrections = session.execute(
        sa.select(IntentCorrectionRow.handoff_id, IntentCorrectionRow.corrected_label)
        .where(IntentCorrectionRow.tenant_id == tenant_id, IntentCorrectionRow.handoff_id.in_(handoff_ids))
        .order_by(IntentCorrectionRow.created_at.asc(), IntentCorrectionRow.correction_id.asc())
    )
    for handoff_id, label in corrections:
        corrected[handoff_id] = label  # the latest wins
    handoffs = session.execute(
        sa.select(HandoffRow.handoff_id, HandoffRow.release_id, HandoffRow.intent).where(
            HandoffRow.tenant_id == tenant_id, HandoffRow.handoff_id.in_(handoff_ids)
        )
    )
    return {
        handoff_id: _JudgedHandoff(release_id, corrected.get(handoff_id, intent))
        for handoff_id, release_id, intent in handoffs
    }


def _record(row: AnswerJudgementRow, handoff: _JudgedHandoff | None) -> escalation_pb2.JudgementRecord:
    record = escalation_pb2.JudgementRecord(
        key=row.idempotency_key,
        # Stored by its value's name, which a message's constructor takes as the value.
        source=row.source,
        correct=row.correct,
        confidence=row.confidence,
        intent=row.intent,
        handoff_id=_handoff_id(row),
        final_intent=handoff.final_intent if handoff else "",
        release_id=handoff.release_id if handoff else "",
    )
    record.answered_at.FromDatetime(row.answered_at)
    record.judged_at.FromDatetime(row.judged_at)
    return record
