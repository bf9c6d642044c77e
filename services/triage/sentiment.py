"""Sentiment: a small trained classifier, with VADER as its lexicon features.

The model is a multinomial logistic regression over
- the all-MiniLM-L6-v2 sentence embedding (the encoder triage already loads
  for intents), and
- VADER's four scores (neg, neu, pos, compound), a lexicon that knows
  intensifiers, negation and emoticons,

trained by `python -m services.triage.sentiment_train` on a tenant's own
labelled messages (see that module) into a small versioned JSON file, served
with `TRIAGE_SENTIMENT_MODEL=<file>`. The default is VADER alone: the public
labelled sets at hand (airline tweets) are licensed for evaluation only, so no
weights learnt from them ship. bench/triage_sentiment.py trains on their train
split and compares the model with VADER on the held-out rows.

The score in [-1, 1] is P(positive) - P(negative); the label is the most
probable class. The trajectory (newest score minus the first message's) drives
the escalating-anger flag (services/triage/risk.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import softmax
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from aftercare.triage.v1 import triage_pb2

FORMAT = 1
LABELS = ("negative", "neutral", "positive")
LEXICON_ONLY = "vader"

# VADER's own recommended cut-offs on the compound score (lexicon-only mode).
POSITIVE_AT = 0.05
NEGATIVE_AT = -0.05

_LABEL_ENUM: dict[str, triage_pb2.SentimentLabel] = {
    "negative": triage_pb2.SENTIMENT_LABEL_NEGATIVE,
    "neutral": triage_pb2.SENTIMENT_LABEL_NEUTRAL,
    "positive": triage_pb2.SENTIMENT_LABEL_POSITIVE,
}
_HANDLE = re.compile(r"@\w+")
_URL = re.compile(r"https?://\S+")

Encode = Callable[[list[str]], np.ndarray]


def label_for(compound: float) -> triage_pb2.SentimentLabel:
    if compound >= POSITIVE_AT:
        return triage_pb2.SENTIMENT_LABEL_POSITIVE
    if compound <= NEGATIVE_AT:
        return triage_pb2.SENTIMENT_LABEL_NEGATIVE
    return triage_pb2.SENTIMENT_LABEL_NEUTRAL


def normalize(text: str) -> str:
    """Handles and links carry no sentiment; the same text is used to train and to serve."""
    return " ".join(_URL.sub("http", _HANDLE.sub("@user", text)).split())


def split_of(text: str, test_buckets: int = 2) -> str:
    """Deterministic split by content: md5 of the normalised, lower-cased text mod 10 below
    `test_buckets` is "test" (20%), else "train". Duplicates (retweets) land on one side."""
    digest = hashlib.md5(normalize(text).lower().encode("utf-8")).hexdigest()
    return "test" if int(digest, 16) % 10 < test_buckets else "train"


def vader_features(analyzer: SentimentIntensityAnalyzer, texts: Sequence[str]) -> np.ndarray:
    rows = []
    for text in texts:
        scores = analyzer.polarity_scores(text)
        rows.append([scores["neg"], scores["neu"], scores["pos"], scores["compound"]])
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), 4)


@dataclass
class SentimentModel:
    version: str
    labels: list[str]
    encoder: str
    coef: np.ndarray  # (labels, embedding dim + 4)
    intercept: np.ndarray
    info: dict[str, object] = field(default_factory=dict)

    def proba(self, embeddings: np.ndarray, vader: np.ndarray) -> np.ndarray:
        features = np.hstack([embeddings, vader])
        proba: np.ndarray = softmax(features @ self.coef.T + self.intercept[None, :], axis=1)
        return proba

    def to_json(self) -> str:
        # Five significant digits keep the file small and change no prediction measurably.
        return json.dumps(
            {
                "format": FORMAT,
                "version": self.version,
                "labels": self.labels,
                "encoder": self.encoder,
                "features": "embedding + vader[neg, neu, pos, compound]",
                "coef": [[float(f"{v:.5g}") for v in row] for row in self.coef],
                "intercept": [float(f"{v:.5g}") for v in self.intercept],
                "info": self.info,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> SentimentModel:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown sentiment model format {data.get('format')!r}")
        if sorted(data["labels"]) != sorted(LABELS):
            raise ValueError(f"sentiment labels must be {LABELS}, got {data['labels']}")
        coef = np.asarray(data["coef"], dtype=np.float32)
        intercept = np.asarray(data["intercept"], dtype=np.float32)
        if coef.shape[0] != len(data["labels"]) or intercept.shape != (len(data["labels"]),):
            raise ValueError("sentiment model arrays do not match its labels")
        return cls(data["version"], list(data["labels"]), data["encoder"], coef, intercept, data.get("info", {}))

    @classmethod
    def load(cls, path: Path) -> SentimentModel:
        return cls.from_json(path.read_text(encoding="utf-8"))


def train_sentiment_model(
    texts: Sequence[str],
    labels: Sequence[str],
    embeddings: np.ndarray,
    *,
    version: str,
    encoder_name: str,
    c: float = 1.0,
    class_weight: str | None = "balanced",
    info: dict[str, object] | None = None,
) -> SentimentModel:
    """Fit the logistic regression on embeddings of `normalize(text)` plus VADER scores."""
    from sklearn.linear_model import LogisticRegression

    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise ValueError(f"unknown sentiment labels {unknown}; expected {LABELS}")
    vader = vader_features(SentimentIntensityAnalyzer(), [normalize(t) for t in texts])
    model = LogisticRegression(C=c, max_iter=3000, class_weight=class_weight)
    model.fit(np.hstack([embeddings, vader]), list(labels))
    order = [list(model.classes_).index(label) for label in LABELS]
    return SentimentModel(
        version=version,
        labels=list(LABELS),
        encoder=encoder_name,
        coef=model.coef_[order].astype(np.float32),
        intercept=model.intercept_[order].astype(np.float32),
        info=info or {},
    )


class SentimentScorer:
    """Built once at start-up. With a model, texts are embedded by `encode` (shared encoder)."""

    def __init__(self, model: SentimentModel | None = None, encode: Encode | None = None) -> None:
        if model is not None and encode is None:
            raise ValueError("a sentiment model needs the encoder")
        self._analyzer = SentimentIntensityAnalyzer()
        self.model = model
        self._encode = encode

    @classmethod
    def from_setting(cls, value: str, encode: Encode) -> SentimentScorer:
        """`vader` for the lexicon alone, else the path of a model file (fails at boot if unreadable)."""
        if value.strip().lower() == LEXICON_ONLY:
            return cls()
        return cls(SentimentModel.load(Path(value)), encode)

    @property
    def version(self) -> str:
        return self.model.version if self.model else LEXICON_ONLY

    def compound(self, text: str) -> float:
        return float(self._analyzer.polarity_scores(text)["compound"])

    def scores(
        self, texts: Sequence[str], embeddings: np.ndarray | None = None
    ) -> list[tuple[triage_pb2.SentimentLabel, float]]:
        """(label enum, score in [-1, 1]) per text; `embeddings` of normalize(text) when already computed."""
        if self.model is None:
            return [(label_for(c), c) for c in (self.compound(t) for t in texts)]
        normalized = [normalize(t) for t in texts]
        if embeddings is None:
            # __init__ refuses a model without an encoder.
            assert self._encode is not None
            embeddings = self._encode(normalized)
        proba = self.model.proba(embeddings, vader_features(self._analyzer, normalized))
        neg, pos = self.model.labels.index("negative"), self.model.labels.index("positive")
        return [(_LABEL_ENUM[self.model.labels[int(row.argmax())]], float(row[pos] - row[neg])) for row in proba]

    def score(self, customer_texts: Sequence[str], embeddings: np.ndarray | None = None) -> triage_pb2.Sentiment:
        """Sentiment of the newest customer message and its change since the first one.

        `customer_texts` are the customer's messages, oldest first (at least one); only the
        first and the newest are scored. `embeddings`, when given, are those two rows (one
        for a single message) of the normalised texts.
        """
        ends = [customer_texts[0], customer_texts[-1]] if len(customer_texts) > 1 else [customer_texts[-1]]
        scored = self.scores(ends, embeddings)
        label, newest = scored[-1]
        first = scored[0][1]
        return triage_pb2.Sentiment(label=label, score=round(newest, 4), trajectory=round(newest - first, 4))

    def ends(self, customer_texts: Sequence[str]) -> list[str]:
        """The normalised texts `score` embeds (so a caller can embed them once for everything)."""
        ends = [customer_texts[0], customer_texts[-1]] if len(customer_texts) > 1 else [customer_texts[-1]]
        return [normalize(t) for t in ends]
