"""Sentiment with VADER: a lexicon model, fast on CPU and needing no weights
download, good enough for polarity of short customer messages."""

from __future__ import annotations

from collections.abc import Sequence

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from aftercare.triage.v1 import triage_pb2

# VADER's own recommended cut-offs on the compound score.
POSITIVE_AT = 0.05
NEGATIVE_AT = -0.05


def label_for(compound: float) -> int:
    if compound >= POSITIVE_AT:
        return triage_pb2.SENTIMENT_LABEL_POSITIVE
    if compound <= NEGATIVE_AT:
        return triage_pb2.SENTIMENT_LABEL_NEGATIVE
    return triage_pb2.SENTIMENT_LABEL_NEUTRAL


class SentimentScorer:
    """Built once at start-up: loading the lexicon takes ~100 ms."""

    def __init__(self) -> None:
        self._analyzer = SentimentIntensityAnalyzer()

    def compound(self, text: str) -> float:
        return float(self._analyzer.polarity_scores(text)["compound"])

    def score(self, customer_texts: Sequence[str]) -> triage_pb2.Sentiment:
        """Sentiment of the newest customer message and its change since the first one.

        `customer_texts` are the customer's messages, oldest first (at least one).
        """
        newest = self.compound(customer_texts[-1])
        first = self.compound(customer_texts[0]) if len(customer_texts) > 1 else newest
        return triage_pb2.Sentiment(
            label=label_for(newest), score=round(newest, 4), trajectory=round(newest - first, 4)
        )
