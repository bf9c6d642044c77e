"""What humans did with the concierge's turns: one way of reading it, for the shadow
report, the canary monitor and the confidence refit.

A turn's verdict (`correct`) is a human's word on the AI's answer for that turn:
- an answered turn: the customer's rating, from the concierge's own table (HELPFUL right,
  NOT_HELPFUL wrong);
- an escalated turn with a candidate answer: the agent's judgement, from escalation
  (ListJudgements, key "handoff:<id>"): whether what the agent sent says what the AI's
  candidate said (servicekit/judging.py). A handoff holds the candidate of the turn that made
  it, so its judgement is that turn's: the conversation's first escalated turn naming it.
Anything else has none (None). `human_intent` is the intent the agent finally set on the
turn's handoff, as escalation reports it with the handoff's judgement.

Escalation is read page by page, at most JUDGEMENT_PAGE_TIMEOUT_S a page, from a little
before the earliest handed-over turn read (a handoff is made during its turn, before the
turn is stored). When it does not answer, the labels carry customers' ratings only and a
warning is logged: a report or an evaluation goes on with what it has, never with half of
the agents' verdicts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from services.concierge.models import TurnRatingRow, TurnRow

log = structlog.get_logger(__name__)

JUDGEMENT_PAGE_TIMEOUT_S = 2.0
JUDGEMENTS_PAGE_SIZE = 1000
# How long before its turn is stored a handoff can have been made (the concierge's own deadline is 60 s).
HANDOFF_LEAD = dt.timedelta(minutes=2)
# (conversation, turn) pairs per query when particular turns are asked for.
TURNS_PER_QUERY = 500

CUSTOMER = "customer"
AGENT = "agent"
_ANSWERED = concierge_pb2.Decision.Name(concierge_pb2.DECISION_ANSWERED)
_ESCALATED = concierge_pb2.Decision.Name(concierge_pb2.DECISION_ESCALATED)
_RATINGS = {
    concierge_pb2.TurnRating.Name(concierge_pb2.TURN_RATING_HELPFUL): True,
    concierge_pb2.TurnRating.Name(concierge_pb2.TURN_RATING_NOT_HELPFUL): False,
}


@dataclass(frozen=True)
class TurnLabel:
    """One stored turn and what humans said about it."""

    conversation_id: str
    turn_index: int
    # The release that served the turn live.
    release_id: str
    # "answered", "escalated", "clarify", ...: the stored Decision without its prefix, lower case.
    decision: str
    # The turn's intent as triage gave it ("" if none).
    intent: str
    # The live confidence score.
    confidence: float
    # The confidence signals of the turn, by name; {} if it had none.
    signals: dict[str, float]
    # The human verdict on the AI's answer (module doc); None when nobody judged it.
    correct: bool | None
    # Who gave the verdict: "customer", "agent", or "" for none.
    source: str
    # The intent the agent finally set on the turn's handoff ("" if none).
    human_intent: str
    # What the customer wrote, masked.
    customer_text: str
    created_at: dt.datetime


@dataclass(frozen=True)
class _Turn:
    row: TurnRow
    rating: str | None
    # Whether this turn made its handoff (the first escalated turn naming it).
    made_handoff: bool


class HumanLabels:
    def __init__(
        self,
        engine: Engine,
        escalation: escalation_pb2_grpc.EscalationServiceStub | None,
        *,
        page_timeout_s: float = JUDGEMENT_PAGE_TIMEOUT_S,
    ):
        self._engine = engine
        self._escalation = escalation
        self._page_timeout_s = page_timeout_s

    async def labels(
        self,
        tenant_id: str,
        *,
        since: dt.datetime | None = None,
        release_ids: Collection[str] | None = None,
        turns: Collection[tuple[str, int]] | None = None,
    ) -> list[TurnLabel]:
        """The tenant's stored turns, oldest first, with their human labels: those stored at or
        after `since`, served by one of `release_ids`, among `turns` ((conversation, turn index)),
        each filter when given."""
        stored = await asyncio.to_thread(self._turns, tenant_id, since, release_ids, turns)
        handed_over = [turn.row.created_at for turn in stored if turn.row.handoff_id]
        judgements = (
            await self._agent_judgements(tenant_id, min(handed_over) - HANDOFF_LEAD) if handed_over else {}
        )
        return [_label(turn, judgements.get(turn.row.handoff_id)) for turn in stored]

    # --- the concierge's turns and ratings -------------------------------------------

    def _turns(
        self,
        tenant_id: str,
        since: dt.datetime | None,
        release_ids: Collection[str] | None,
        turns: Collection[tuple[str, int]] | None,
    ) -> list[_Turn]:
        if (release_ids is not None and not release_ids) or (turns is not None and not turns):
            return []
        query = (
            sa.select(TurnRow, TurnRatingRow.rating)
            .outerjoin(
                TurnRatingRow,
                sa.and_(
                    TurnRatingRow.tenant_id == TurnRow.tenant_id,
                    TurnRatingRow.conversation_id == TurnRow.conversation_id,
                    TurnRatingRow.turn_index == TurnRow.turn_index,
                ),
            )
            .where(TurnRow.tenant_id == tenant_id)
        )
        if since is not None:
            query = query.where(TurnRow.created_at >= since)
        if release_ids is not None:
            query = query.where(TurnRow.release_id.in_(sorted(release_ids)))
        with Session(self._engine) as session:
            if turns is None:
                found = list(session.execute(query).all())
            else:
                found = []
                for chunk in _chunks(sorted(set(turns)), TURNS_PER_QUERY):
                    position = sa.tuple_(TurnRow.conversation_id, TurnRow.turn_index)
                    found.extend(session.execute(query.where(position.in_(chunk))).all())
            found.sort(key=lambda pair: (pair[0].created_at, pair[0].turn_id))
            makers = _handoff_makers(session, tenant_id, [row for row, _ in found])
        return [
            _Turn(row, rating, (row.conversation_id, row.turn_index) in makers.get(row.handoff_id, set()))
            for row, rating in found
        ]

    # --- escalation's agents ---------------------------------------------------------

    async def _agent_judgements(
        self, tenant_id: str, since: dt.datetime
    ) -> dict[str, escalation_pb2.JudgementRecord]:
        """Agents' judgements judged at or after `since`, by handoff id (a replaced verdict comes
        again later in the order: the latest wins); {} when escalation does not answer."""
        if self._escalation is None:
            return {}
        request = escalation_pb2.ListJudgementsRequest(tenant_id=tenant_id, page_size=JUDGEMENTS_PAGE_SIZE)
        request.since.FromDatetime(since)
        judgements: dict[str, escalation_pb2.JudgementRecord] = {}
        while True:
            try:
                page: escalation_pb2.ListJudgementsResponse = await self._escalation.ListJudgements(
                    request, timeout=self._page_timeout_s
                )
            except grpc.aio.AioRpcError as error:
                log.warning("human_labels_without_agents", tenant_id=tenant_id, code=error.code().name)
                return {}
            for record in page.judgements:
                if record.source == escalation_pb2.JUDGEMENT_SOURCE_AGENT and record.handoff_id:
                    judgements[record.handoff_id] = record
            if not page.next_page_token:
                return judgements
            request.page_token = page.next_page_token


def _chunks(items: Sequence[tuple[str, int]], size: int) -> Iterable[Sequence[tuple[str, int]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _handoff_makers(session: Session, tenant_id: str, rows: Sequence[TurnRow]) -> dict[str, set[tuple[str, int]]]:
    """Per handoff named by an escalated turn of `rows`: the turn that made it, the first
    escalated turn of its conversation naming it (read across all the tenant's turns, so a
    filter that leaves that turn out does not hand its judgement to a later one)."""
    named = {(row.conversation_id, row.handoff_id) for row in rows if row.handoff_id and row.decision == _ESCALATED}
    if not named:
        return {}
    first = session.execute(
        sa.select(TurnRow.conversation_id, TurnRow.handoff_id, sa.func.min(TurnRow.turn_index))
        .where(
            TurnRow.tenant_id == tenant_id,
            TurnRow.conversation_id.in_(sorted({conversation for conversation, _ in named})),
            TurnRow.handoff_id.in_(sorted({handoff for _, handoff in named})),
            TurnRow.decision == _ESCALATED,
        )
        .group_by(TurnRow.conversation_id, TurnRow.handoff_id)
    )
    makers: dict[str, set[tuple[str, int]]] = {}
    for conversation_id, handoff_id, turn_index in first:
        makers.setdefault(handoff_id, set()).add((conversation_id, turn_index))
    return makers


def _signals(outcome: dict[str, Any]) -> dict[str, float]:
    """The stored outcome's confidence signals (its JSON mapping leaves a zero value out)."""
    confidence = outcome.get("confidence") or {}
    return {str(signal["name"]): float(signal.get("value", 0.0)) for signal in confidence.get("signals") or []}


def _label(turn: _Turn, judgement: escalation_pb2.JudgementRecord | None) -> TurnLabel:
    row = turn.row
    correct: bool | None = None
    source = ""
    if row.decision == _ANSWERED and turn.rating in _RATINGS:
        correct, source = _RATINGS[turn.rating], CUSTOMER
    elif row.decision == _ESCALATED and turn.made_handoff and judgement is not None:
        correct, source = judgement.correct, AGENT
    return TurnLabel(
        conversation_id=row.conversation_id,
        turn_index=row.turn_index,
        release_id=row.release_id,
        decision=row.decision.removeprefix("DECISION_").lower(),
        intent=row.intent,
        confidence=row.confidence,
        signals=_signals(row.outcome),
        correct=correct,
        source=source,
        human_intent=judgement.final_intent if judgement is not None else "",
        customer_text=row.customer_text,
        created_at=row.created_at,
    )
