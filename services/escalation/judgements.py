"""Answer judgements: one verdict per key on an AI answer (correct or not, at the AI's
confidence), the points of the reliability diagram. An agent's reply writes the
handoff's judgement in its own transaction (keyed by handoff: a later reply replaces
the verdict); RecordJudgement writes a customer's under the caller's key."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aftercare.escalation.v1 import escalation_pb2
from services.escalation.models import AnswerJudgementRow

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
