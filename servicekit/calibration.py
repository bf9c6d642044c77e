"""Calibration metrics: the reliability diagram and the expected calibration error (ECE),
one definition with one bin count for every figure (the concierge's fit and benchmark,
triage's intent models and benchmark, escalation's judged answers), so that they compare.

Confidences fall into RELIABILITY_BINS equal-width bins [0, 0.1), [0.1, 0.2), ..., [0.9, 1.0]
(1.0 in the last bin, the edges as written: i / RELIABILITY_BINS); each bin has its count,
mean confidence and accuracy (the share correct). ECE is the count-weighted mean of
|accuracy - mean confidence| over the bins.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

# Ten bins of width 0.1: fine enough to see miscalibration, coarse enough to fill from a month of
# judged answers (escalation) or a few hundred labelled questions (the concierge's fit).
RELIABILITY_BINS = 10
EDGES = tuple(i / RELIABILITY_BINS for i in range(RELIABILITY_BINS + 1))


@dataclass(frozen=True)
class ConfidenceBin:
    lower: float
    upper: float
    count: int
    mean_confidence: float  # 0.0 when empty
    accuracy: float  # 0.0 when empty


@dataclass(frozen=True)
class Reliability:
    bins: tuple[ConfidenceBin, ...]
    ece: float  # 0.0 with nothing to measure

    @property
    def filled(self) -> tuple[ConfidenceBin, ...]:
        """The bins with at least one member (what a diagram plots)."""
        return tuple(b for b in self.bins if b.count)


def bin_index(confidence: float) -> int:
    """The bin of one confidence, by the edges as written (not int(confidence * 10), whose
    rounding can cross an edge); below 0 counts in the first bin, 1.0 and above in the last."""
    return bisect.bisect_right(EDGES, confidence, 1, RELIABILITY_BINS) - 1


def reliability(confidence: Iterable[float], correct: Iterable[float | bool]) -> Reliability:
    """The reliability diagram and ECE of paired confidences and outcomes (True/1 = correct)."""
    scores = [float(c) for c in confidence]
    outcomes = [float(c) for c in correct]
    if len(scores) != len(outcomes):
        raise ValueError(f"{len(scores)} confidences but {len(outcomes)} outcomes")
    members: list[list[int]] = [[] for _ in range(RELIABILITY_BINS)]
    for i, score in enumerate(scores):
        members[bin_index(score)].append(i)
    bins = []
    gap = 0.0
    for index, chosen in enumerate(members):
        count = len(chosen)
        mean_confidence = sum(scores[i] for i in chosen) / count if count else 0.0
        accuracy = sum(outcomes[i] for i in chosen) / count if count else 0.0
        gap += count * abs(accuracy - mean_confidence)
        bins.append(ConfidenceBin(EDGES[index], EDGES[index + 1], count, mean_confidence, accuracy))
    return Reliability(tuple(bins), gap / len(scores) if scores else 0.0)


def expected_calibration_error(confidence: Iterable[float], correct: Iterable[float | bool]) -> float:
    """ECE over the RELIABILITY_BINS bins (0.0 with nothing to measure)."""
    return reliability(confidence, correct).ece
