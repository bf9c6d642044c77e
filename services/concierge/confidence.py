"""Answer confidence from real signals.

Version "heuristic-v0": a monotone combination of how relevant the best
passage is (cosine similarity of the query and the passage), how clearly it
beats the runner-up, and how well the answer is supported by the passages.
It is NOT yet fitted on labelled data, so 0.85 does not yet mean "right 85% of
the time"; the calibration fit replaces this function behind the same
signature and version field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aftercare.type.v1 import answer_pb2

CALIBRATION_VERSION = "heuristic-v0"


@dataclass(frozen=True)
class Signals:
    top_similarity: float
    similarity_margin: float
    answer_support: float
    # Share of the question's content words that the answer itself contains.
    question_overlap: float
    mean_token_logprob: float | None = None

    def as_proto(self) -> list[answer_pb2.ConfidenceSignal]:
        values = {
            "retrieval_top_similarity": self.top_similarity,
            "retrieval_similarity_margin": self.similarity_margin,
            "answer_support": self.answer_support,
            "question_overlap": self.question_overlap,
        }
        if self.mean_token_logprob is not None:
            values["llm_mean_token_logprob"] = self.mean_token_logprob
        return [answer_pb2.ConfidenceSignal(name=k, value=round(v, 4)) for k, v in values.items()]


def score(signals: Signals) -> float:
    # Relevance: all-MiniLM cosine ~0.45 is a loose match, ~0.7 a near-paraphrase.
    relevance = 1.0 / (1.0 + math.exp(-12.0 * (signals.top_similarity - 0.55)))
    margin_bonus = min(max(signals.similarity_margin, 0.0), 0.2) / 2
    fluency = 1.0 if signals.mean_token_logprob is None else math.exp(min(signals.mean_token_logprob, 0.0))
    # A verified quote can still be the wrong sentence of the right passage:
    # an answer that shares nothing with the question is not trusted.
    on_topic = min(1.0, 0.4 + signals.question_overlap)
    value = min(1.0, relevance + margin_bonus) * signals.answer_support * on_topic * (0.5 + 0.5 * fluency)
    return round(max(0.0, min(1.0, value)), 4)
