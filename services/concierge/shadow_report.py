"""The shadow report: how the live release and the release in shadow decided the same turns,
each against what humans did with those turns (human_labels.py), per topic and overall, with
the turns they decided differently.

A turn's human verdict is on the AI's answer for that turn: the customer's rating of an answered
turn, or, for a turn handed over with a candidate answer, the agent's verdict on it (whether
they sent it). It applies to both releases: retrieval and matching do not depend on the release,
so both match the same answer unit; only the gate (fit and thresholds) differs. A release agrees
with the humans when it answers an answer judged right, or does not answer one judged wrong.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from aftercare.concierge.v1 import releases_pb2
from services.concierge.human_labels import HumanLabels, TurnLabel
from services.concierge.models import ShadowDecisionRow, TurnRow

# Disagreements listed when the request asks for none in particular, and at most.
DEFAULT_DISAGREEMENTS = 20
MAX_DISAGREEMENTS = 100
ANSWERED = "answered"

METHOD = (
    "Both releases are compared on the same turns with the same human verdicts: a customer's rating of "
    "an answered turn, or the agent's verdict on the AI's candidate answer of a handed-over turn (whether "
    "they sent it). Retrieval and matching do not depend on the release, so both releases match the same "
    "answer unit and a verdict on it applies to either; a release agrees when it answers an answer judged "
    "right or does not answer one judged wrong. The shadow decides with the live turn's triage verdict "
    "(so both have the same intent) and search results, and its reply is the unit's own words (no LLM "
    "phrasing in shadow)."
)


@dataclass(frozen=True)
class Decided:
    """One release's decision on a turn."""

    release_id: str
    # Decision value name without its prefix, lower case ("answered"), and the reason code.
    decision: str
    reason: str
    confidence: float

    @property
    def answered(self) -> bool:
        return self.decision == ANSWERED


@dataclass(frozen=True)
class ShadowedTurn:
    """A turn decided live and in shadow."""

    conversation_id: str
    turn_index: int
    # Triage's intent ("" when none), the same for both releases.
    topic: str
    # Masked.
    customer_text: str
    created_at: dt.datetime
    live: Decided
    candidate: Decided
    # What the shadow would have said.
    candidate_reply: str


@dataclass
class _Tally:
    """One release's figures on a set of turns, as ArmFigures counts them."""

    turns: int = 0
    answered: int = 0
    human_judged: int = 0
    agreed: int = 0
    answered_judged: int = 0
    answered_correct: int = 0
    intent_labelled: int = 0
    intent_agreed: int = 0

    def add(self, decided: Decided, intent: str, label: TurnLabel | None) -> None:
        self.turns += 1
        self.answered += decided.answered
        correct = label.correct if label is not None else None
        if correct is not None:
            self.human_judged += 1
            self.agreed += decided.answered == correct
            if decided.answered:
                self.answered_judged += 1
                self.answered_correct += correct
        if label is not None and label.human_intent:
            self.intent_labelled += 1
            self.intent_agreed += intent == label.human_intent

    def figures(self, release_id: str) -> releases_pb2.ArmFigures:
        return releases_pb2.ArmFigures(
            release_id=release_id, turns=self.turns, answered=self.answered,
            answered_rate=_share(self.answered, self.turns), human_judged=self.human_judged, agreed=self.agreed,
            agreement=_share(self.agreed, self.human_judged), answered_judged=self.answered_judged,
            answered_correct=self.answered_correct,
            judged_accuracy=_share(self.answered_correct, self.answered_judged),
            intent_labelled=self.intent_labelled, intent_agreed=self.intent_agreed,
        )


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def verdict_in_words(label: TurnLabel | None) -> str:
    """What the humans said about a turn ("customer: not helpful"); "" when nothing yet."""
    if label is None:
        return ""
    said = []
    if label.correct is not None:
        if label.source == "agent":
            said.append("agent sent the AI's answer" if label.correct else "agent did not send the AI's answer")
        else:
            said.append("customer: helpful" if label.correct else "customer: not helpful")
    if label.human_intent:
        said.append(f"agent's intent: {label.human_intent}")
    return "; ".join(said)


def compare(
    shadow: releases_pb2.Shadow,
    turns: Iterable[ShadowedTurn],
    labels: Iterable[TurnLabel],
    max_disagreements: int,
) -> releases_pb2.GetShadowReportResponse:
    """The report from the shadowed turns and the human labels of those turns."""
    turns = list(turns)
    by_turn = {(label.conversation_id, label.turn_index): label for label in labels}
    live, candidate = _Tally(), _Tally()
    topics: dict[str, tuple[_Tally, _Tally]] = {}
    for turn in turns:
        label = by_turn.get((turn.conversation_id, turn.turn_index))
        topic_live, topic_candidate = topics.setdefault(turn.topic, (_Tally(), _Tally()))
        for tally in (live, topic_live):
            tally.add(turn.live, turn.topic, label)
        for tally in (candidate, topic_candidate):
            tally.add(turn.candidate, turn.topic, label)
    # The live release may have changed while the shadow ran: each turn's own counts.
    live_ids = ",".join(sorted({turn.live.release_id for turn in turns})) or shadow.live_release_id
    differ = sorted(
        (turn for turn in turns if turn.live.decision != turn.candidate.decision),
        key=lambda turn: (turn.created_at, turn.conversation_id, turn.turn_index), reverse=True,
    )
    limit = min(max_disagreements or DEFAULT_DISAGREEMENTS, MAX_DISAGREEMENTS)
    return releases_pb2.GetShadowReportResponse(
        shadow=shadow,
        live=live.figures(live_ids),
        candidate=candidate.figures(shadow.release_id),
        topics=[
            releases_pb2.TopicComparison(
                topic=topic, live=topic_live.figures(live_ids), candidate=topic_candidate.figures(shadow.release_id)
            )
            for topic, (topic_live, topic_candidate) in sorted(topics.items(), key=lambda kv: (-kv[1][0].turns, kv[0]))
        ],
        disagreements=[
            releases_pb2.ShadowDisagreement(
                conversation_id=turn.conversation_id, turn_index=turn.turn_index, topic=turn.topic,
                customer_text=turn.customer_text,
                live_decision=turn.live.decision, live_reason=turn.live.reason, live_confidence=turn.live.confidence,
                candidate_decision=turn.candidate.decision, candidate_reason=turn.candidate.reason,
                candidate_confidence=turn.candidate.confidence,
                human_verdict=verdict_in_words(by_turn.get((turn.conversation_id, turn.turn_index))),
                candidate_reply=turn.candidate_reply,
            )
            for turn in differ[:limit]
        ],
        method=METHOD,
    )


async def shadow_report(
    engine: Engine, labels: HumanLabels, shadow: releases_pb2.Shadow, max_disagreements: int
) -> releases_pb2.GetShadowReportResponse:
    """The report of `shadow`: its decisions, the live turns they shadowed, and those turns' labels."""
    turns = await asyncio.to_thread(shadowed_turns, engine, shadow.tenant_id, shadow.shadow_id)
    judged = await labels.labels(shadow.tenant_id, turns=[(turn.conversation_id, turn.turn_index) for turn in turns])
    return compare(shadow, turns, judged, max_disagreements)


def shadowed_turns(engine: Engine, tenant_id: str, shadow_id: str) -> list[ShadowedTurn]:
    """The shadow's decisions with the stored live turns they shadowed (a turn whose conversation
    was deleted since is left out)."""
    same_turn = sa.and_(
        TurnRow.tenant_id == ShadowDecisionRow.tenant_id,
        TurnRow.conversation_id == ShadowDecisionRow.conversation_id,
        TurnRow.turn_index == ShadowDecisionRow.turn_index,
    )
    query = (
        sa.select(ShadowDecisionRow, TurnRow)
        .join(TurnRow, same_turn)
        .where(ShadowDecisionRow.tenant_id == tenant_id, ShadowDecisionRow.shadow_id == shadow_id)
    )
    with Session(engine) as session:
        return [
            ShadowedTurn(
                conversation_id=turn.conversation_id, turn_index=turn.turn_index, topic=shadowed.intent,
                customer_text=turn.customer_text, created_at=turn.created_at,
                live=Decided(
                    # Stored by its Decision value name ("DECISION_ANSWERED").
                    shadowed.live_release_id, turn.decision.removeprefix("DECISION_").lower(),
                    turn.decision_reason, turn.confidence,
                ),
                candidate=Decided(
                    shadowed.release_id, shadowed.decision, shadowed.decision_reason, shadowed.confidence
                ),
                candidate_reply=shadowed.reply,
            )
            for shadowed, turn in session.execute(query)
        ]
