"""Answers chosen from the knowledge base's own structure.

Retrieval makes answer units at ingestion (an FAQ entry, a resolved ticket's
final answer, a how-to section) and finds them by the question each answers.
Here the customer's question is matched to the best unit, the reply is made
from that unit's own text (the company's words) before any LLM call, and the
signals of the match are gathered for the calibrated confidence: how close
the customer's question is to the unit's question, by meaning and by words,
how clearly it beats the runner-up, what kind of unit it is, and whether the
passage search agrees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from aftercare.retrieval.v1 import retrieval_pb2
from servicekit.text import sentences
from services.concierge.excerpts import answer_excerpt
from services.concierge.grounding import content_words

# A unit's answer shorter than this is sent whole; a longer one (a manual's section)
# is cut to the block that answers the question (excerpts.py).
WHOLE_UNIT_MAX_CHARS = 900
WHOLE_UNIT_MAX_SENTENCES = 8
NEAR_IDENTICAL = 0.9

_FAQ = retrieval_pb2.DOCUMENT_TYPE_FAQ
_TICKET = retrieval_pb2.DOCUMENT_TYPE_RESOLVED_TICKET


@dataclass(frozen=True)
class Signals:
    """What the match confidence is computed from (all known before generation)."""

    # Cosine similarity of the question to the best unit's question, and its lead over the next unit's.
    question_similarity: float
    question_margin: float
    # Hybrid retrieval score of the best unit (meaning and keywords), and its lead in the
    # ranking that also counts the passage search's agreement.
    unit_score: float
    unit_score_margin: float
    # Share of the question's content words in the unit's question, and in question and answer.
    question_overlap: float
    answer_overlap: float
    # Kind of unit: an FAQ entry, a resolved ticket's answer, else a section.
    unit_is_faq: float
    unit_is_ticket: float
    # 1 when the best passage search hit lies in the unit's own section.
    passage_agrees: float
    # Cosine similarity of the best passage to the question.
    passage_similarity: float
    # 1 when the reply is the unit's whole answer, 0 when it is an excerpt of it.
    reply_is_whole_unit: float
    # Share of the question's content words that nothing retrieved contains (no unit, no
    # passage): what the question asks about ("Zapier", "heatmaps") is likely nowhere in
    # the knowledge base.
    uncovered_share: float
    # How close an FAQ's or ticket's own question is to being asked word for word: 0 up to
    # a similarity of NEAR_IDENTICAL, rising to 1 at identical (a logistic fit cannot
    # bend its similarity term: on the demo train half every such match was right while
    # similarity below it says little).
    near_identical_question: float = 0.0

    def features(self) -> dict[str, float]:
        return {name: float(value) for name, value in asdict(self).items()}


@dataclass(frozen=True)
class Match:
    """The best answer unit for a question, the reply made from it, and the match's signals."""

    unit: retrieval_pb2.SearchHit
    reply: str
    signals: Signals
    # The other units, best first by the same ranking.
    runners_up: list[retrieval_pb2.SearchHit]


def compose_reply(question: str, answer: str) -> tuple[str, bool]:
    """The reply made from a unit's answer, and whether it is the whole answer. A short
    answer is sent whole, as the company wrote it; from a long one, the paragraph, list
    item, procedure or table that answers the question."""
    text = answer.strip()
    if len(text) <= WHOLE_UNIT_MAX_CHARS and len(sentences(text)) <= WHOLE_UNIT_MAX_SENTENCES:
        return text, True
    return answer_excerpt(question, text), False


def _words_of(hits: Sequence[retrieval_pb2.SearchHit]) -> set[str]:
    words: set[str] = set()
    for hit in hits:
        words |= content_words(f"{hit.title} {' '.join(hit.heading_path)} {hit.unit_question} {hit.text}")
    return words


def _same_section(passage: retrieval_pb2.SearchHit, unit: retrieval_pb2.SearchHit) -> bool:
    if passage.doc_id != unit.doc_id:
        return False
    # A unit spans a `##` section: a passage under it shares its headings up to there.
    depth = len(unit.heading_path)
    return list(passage.heading_path[:depth]) == list(unit.heading_path)


# How much a unit gains when the passage search finds its section: first, or among the next.
TOP_PASSAGE_BONUS = 0.15
NEAR_PASSAGE_BONUS = 0.07


def _rank_score(unit: retrieval_pb2.SearchHit, passages: Sequence[retrieval_pb2.SearchHit]) -> float:
    """A unit's retrieval score, raised when the passage search (which reads every
    passage's own text) lands in the unit's section: the two searches agree."""
    if passages and _same_section(passages[0], unit):
        return unit.score + TOP_PASSAGE_BONUS
    if any(_same_section(passage, unit) for passage in passages[1:3]):
        return unit.score + NEAR_PASSAGE_BONUS
    return unit.score


def best_match(
    question: str, units: Sequence[retrieval_pb2.SearchHit], passages: Sequence[retrieval_pb2.SearchHit]
) -> Match | None:
    """The best unit among `units` with its reply and signals; None when there is no
    unit or the reply would be empty."""
    if not units:
        return None
    ranked = sorted(units, key=lambda u: _rank_score(u, passages), reverse=True)
    unit = ranked[0]
    reply, whole = compose_reply(question, unit.text)
    if not reply:
        return None
    asked = content_words(question)
    runner_up = _rank_score(ranked[1], passages) if len(ranked) > 1 else 0.0

    def share(words: set[str]) -> float:
        """The share of the question's content words among `words`."""
        return len(asked & words) / len(asked) if asked else 0.0

    top_passage = passages[0] if passages else None
    signals = Signals(
        question_similarity=unit.question_similarity,
        question_margin=unit.question_similarity - max(
            (u.question_similarity for u in units if u.chunk_id != unit.chunk_id), default=0.0
        ),
        unit_score=unit.score,
        unit_score_margin=_rank_score(unit, passages) - runner_up,
        question_overlap=share(content_words(unit.unit_question)),
        answer_overlap=share(content_words(f"{unit.unit_question} {unit.text}")),
        unit_is_faq=1.0 if unit.doc_type == _FAQ else 0.0,
        unit_is_ticket=1.0 if unit.doc_type == _TICKET else 0.0,
        passage_agrees=1.0 if top_passage is not None and _same_section(top_passage, unit) else 0.0,
        passage_similarity=top_passage.similarity if top_passage is not None else 0.0,
        reply_is_whole_unit=1.0 if whole else 0.0,
        uncovered_share=share(asked - _words_of([*units, *passages])),
        near_identical_question=(
            max(0.0, unit.question_similarity - NEAR_IDENTICAL) / (1.0 - NEAR_IDENTICAL)
            if unit.doc_type in (_FAQ, _TICKET) else 0.0
        ),
    )
    return Match(unit=unit, reply=reply, signals=signals, runners_up=ranked[1:])
