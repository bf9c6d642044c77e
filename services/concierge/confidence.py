"""Answer confidence from real signals, combined by a calibrated model.

The signals: how relevant the cited passage is (cosine similarity and the
hybrid retrieval score), how clearly it beats the runner-up, whether it is
the top hit, how much of the answer the passage supports, how much of the
question the answer and the passage cover, triage's intent confidence, and
the mean token log-probability when the LLM returns them.

`Calibrator` is a logistic model over those signals, fitted on labelled
questions by `python -m services.concierge.calibrate` and stored as a
version-stamped JSON file (`calibration.json` next to this module by
default), so that a score of 0.85 means "right about 85% of the time" on data
like the fit's. Without a fitted file the uncalibrated `heuristic-v0` rule
serves, and its version says so in every response.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from aftercare.type.v1 import answer_pb2
from services.concierge import prompts

log = structlog.get_logger(__name__)

HEURISTIC_VERSION = "heuristic-v0"
DEFAULT_PATH = Path(__file__).resolve().parent / "calibration.json"


@dataclass(frozen=True)
class Signals:
    top_similarity: float
    similarity_margin: float
    answer_support: float
    # Share of the question's content words that the answer itself contains.
    question_overlap: float
    mean_token_logprob: float | None = None
    # Hybrid retrieval score of the cited passage and its lead over the next hit.
    retrieval_score: float = 0.0
    score_margin: float = 0.0
    # 1 when the cited passage is the best retrieval hit.
    cited_is_top: float = 0.0
    # Share of the question's content words found in the cited passage (title included).
    passage_overlap: float = 0.0
    # Triage's calibrated intent confidence (0 when the tenant has no intent model).
    intent_confidence: float = 0.0
    # 1 when the model's own output backs the reply: in extractive mode its verified quote
    # is one of the reply's sentences, in generative mode its answer cites support.
    model_verified: float = 1.0

    def features(self) -> dict[str, float]:
        values = {k: float(v) for k, v in asdict(self).items() if v is not None}
        return values

    def as_proto(self) -> list[answer_pb2.ConfidenceSignal]:
        return [answer_pb2.ConfidenceSignal(name=k, value=round(v, 4)) for k, v in self.features().items()]


def heuristic(signals: Signals) -> float:
    # Relevance: all-MiniLM cosine ~0.45 is a loose match, ~0.7 a near-paraphrase.
    relevance = 1.0 / (1.0 + math.exp(-12.0 * (signals.top_similarity - 0.55)))
    margin_bonus = min(max(signals.similarity_margin, 0.0), 0.2) / 2
    fluency = 1.0 if signals.mean_token_logprob is None else math.exp(min(signals.mean_token_logprob, 0.0))
    # A verified quote can still be the wrong sentence of the right passage:
    # an answer that shares nothing with the question is not trusted.
    on_topic = min(1.0, 0.4 + signals.question_overlap)
    value = min(1.0, relevance + margin_bonus) * signals.answer_support * on_topic * (0.5 + 0.5 * fluency)
    value *= 0.6 + 0.4 * signals.model_verified
    return round(max(0.0, min(1.0, value)), 4)


class CalibrationError(ValueError):
    """A calibration file that cannot serve."""


@dataclass(frozen=True)
class Calibrator:
    """Logistic regression on standardised signals: p = sigmoid(b + sum w_i (x_i - mean_i) / scale_i)."""

    version: str
    features: tuple[str, ...]
    weights: tuple[float, ...]
    intercept: float
    means: tuple[float, ...]
    scales: tuple[float, ...]

    def score(self, signals: Signals) -> float:
        values = signals.features()
        z = self.intercept
        for name, weight, mean, scale in zip(self.features, self.weights, self.means, self.scales, strict=True):
            # A signal the fit used but this request lacks (e.g. no logprobs) sits at its mean: no evidence.
            z += weight * ((values.get(name, mean) - mean) / scale)
        return round(1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z)))), 4)

    def to_json(self, extra: dict[str, object] | None = None) -> str:
        body: dict[str, object] = {
            "version": self.version,
            "model": "logistic",
            "features": list(self.features),
            "weights": list(self.weights),
            "intercept": self.intercept,
            "means": list(self.means),
            "scales": list(self.scales),
            **(extra or {}),
        }
        return json.dumps(body, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Calibrator:
        try:
            raw = json.loads(text)
            calibrator = cls(
                version=str(raw["version"]),
                features=tuple(str(f) for f in raw["features"]),
                weights=tuple(float(w) for w in raw["weights"]),
                intercept=float(raw["intercept"]),
                means=tuple(float(m) for m in raw["means"]),
                scales=tuple(float(s) for s in raw["scales"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CalibrationError(f"invalid calibration file: {error}") from error
        known = set(Signals.__dataclass_fields__)
        lengths = {len(calibrator.features), len(calibrator.weights), len(calibrator.means), len(calibrator.scales)}
        if len(lengths) != 1 or not set(calibrator.features) <= known or any(s <= 0 for s in calibrator.scales):
            raise CalibrationError("invalid calibration file: features, weights, means and scales disagree")
        return calibrator


class Confidence:
    """The serving confidence model: a fitted Calibrator, or the heuristic when none is fitted."""

    def __init__(self, calibrator: Calibrator | None):
        self.calibrator = calibrator

    @classmethod
    def load(cls, path: Path | None, answer_mode: str | None = None) -> Confidence:
        """The fit in `path`; the heuristic when there is none, or when it was fitted on
        another answer mode or that mode's prompt has changed since (a fit does not
        transfer: the signals change with them)."""
        if path is None or not path.exists():
            return cls(None)
        text = path.read_text()
        fitted_on = json.loads(text).get("fitted_on") or {}
        if answer_mode:
            serving = {"answer_mode": answer_mode, "prompt_version": prompts.version_for(answer_mode)}
            for key, value in serving.items():
                if fitted_on.get(key) and fitted_on[key] != value:
                    log.warning("calibration_mismatch", field=key, fitted_on=fitted_on[key], serving=value)
                    return cls(None)
        return cls(Calibrator.from_json(text))

    @property
    def version(self) -> str:
        return self.calibrator.version if self.calibrator else HEURISTIC_VERSION

    def score(self, signals: Signals) -> float:
        return self.calibrator.score(signals) if self.calibrator else heuristic(signals)
