"""Intent models: trained from a tenant's labelled examples, calibrated, with
out-of-scope detection. One function trains (`train_intent_model`, used by the
Retrain RPC, the offline CLI and the benchmark); `IntentModel.predict` serves.

The model (measured on Banking77, see bench/triage_accuracy.py):

- features: sentence embeddings from a set of shared encoders (the
  TRIAGE_INTENT_ENCODERS setting, services/triage/encoder.py; default
  all-MiniLM-L6-v2 and all-mpnet-base-v2, each L2-normalised, side by side)
  and TF-IDF word 1-2-grams + character 2-5-grams (per tenant vocabulary);
- members ensembled by a weighted sum of log-probabilities, then
  temperature-scaled: a multinomial logistic regression per encoder and one on
  the TF-IDF features, and a nearest-neighbour vote per encoder (softmax over
  labels of the cosine similarity to each label's nearest training example,
  `knn_tau`). Weights per number of encoders are in DEFAULT_WEIGHTS: with
  both encoders, LR(MiniLM) 0.15 + LR(mpnet) 0.35 + LR(TF-IDF) 0.2 + vote on
  mpnet 0.3 (tuned on a split of Banking77's training file: against MiniLM
  alone, coverage at 98% accuracy rose from 0.866 to 0.886 there). With
  MiniLM alone: LR 0.48, TF-IDF 0.32, vote 0.2. Banking77 test, both
  encoders: accuracy 0.953, ECE 0.014 (measured with 15 bins, before
  servicekit.calibration's 10), 89.8% of messages at confidence >= 0.85
  with 98.1% of them right (MiniLM alone: 0.948, ECE 0.019 with 15 or 10
  bins, 87.3% at 98.1%), for p50 latency 137 ms instead of 25 ms on 1 CPU
  thread. A model records the encoder set it was trained with and the
  width of each encoder's block; a service running another set refuses it (EncoderMismatch);
- confidence: a score s = logit(p_top) + beta * min(z, 0), where z is the
  typicality of the message for the predicted label (on the encoder
  `typicality_encoder`, MiniLM by default): its similarity to that
  label's nearest training example, standardised by how close that label's
  own training examples are to each other (leave-one-out mean and standard
  deviation per label; a tight label makes a loose match suspicious). Only
  atypical messages lose confidence (the cap keeps the in-scope ranking by
  probability, which is what coverage at a threshold needs). s is
  mapped to P(label is right) by a logistic (Platt) fit on the held-out split.
  beta is fitted by simulating unknown intents: groups of labels are left out
  of training in turn, and a logistic regression on (logit, z) learns to tell
  right held-out predictions from wrong ones and from messages of left-out
  labels (always wrong). A message unlike anything in the taxonomy is far
  from every training example, so its confidence drops;
- out_of_scope: s below the `oos_quantile` quantile of held-out in-scope
  scores (it looks less like the taxonomy than 95% of real messages do);
- alternatives: the next labels by ensemble probability, sharing the
  probability mass left over by the top label (1 - confidence).

Validation: a stratified held-out split (`holdout_fraction` of every label, at
least one example) is never trained on before the metrics are taken. The
validation ECE is cross-fitted (calibrator fitted on one half of the held-out
split, measured on the other, both ways), so it is not flattered by the fit.
After validation the classifiers are refitted on every example (`refit_all`)
with the validated calibration.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, softmax
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from servicekit.calibration import expected_calibration_error

# 2: nearest-neighbour member and typicality (format 1 models still load: no vote, raw similarity).
# 3: several encoders side by side, per-encoder members and weights (formats 1 and 2 still load).
FORMAT = 3
MAX_LABEL_CHARS = 128
MAX_TEXT_CHARS = 8000

Encode = Callable[[list[str]], np.ndarray]

# TF-IDF views: (analyzer, ngram_range, min_df).
_TFIDF_VIEWS: tuple[tuple[str, tuple[int, int], int], ...] = (
    ("word", (1, 2), 2),
    ("char_wb", (2, 5), 2),
)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters; the defaults are the ones measured on Banking77."""

    min_examples_per_label: int = 5
    holdout_fraction: float = 0.15
    embedding_c: float = 10.0
    tfidf_c: float = 30.0
    # Ensemble weights per encoder of the set, in its order: the logistic regression on that
    # encoder's embedding, and the nearest-neighbour vote on it; the TF-IDF model gets what is
    # left of 1. Empty: the measured defaults for that many encoders (DEFAULT_WEIGHTS).
    embedding_weights: tuple[float, ...] = ()
    knn_weights: tuple[float, ...] = ()
    # Softmax temperature of the nearest-neighbour vote.
    knn_tau: float = 0.05
    # The encoder (index in the set) whose similarities give typicality.
    typicality_encoder: int = 0
    # Label groups left out in turn to fit beta (0 or 1: use default_beta).
    oos_groups: int = 4
    # Weight of the simulated unknown messages against the held-out ones when fitting beta.
    oos_weight: float = 1.0
    # Typicality above this earns nothing: an atypical message loses confidence, a very typical
    # one gains none beyond what the classifiers say (keeps the in-scope ranking by probability).
    typicality_cap: float = 0.0
    default_beta: float = 2.0
    oos_quantile: float = 0.05
    # Fewer held-out mistakes than this: no temperature/Platt fit (see train_intent_model).
    min_calibration_errors: int = 10
    refit_all: bool = True
    max_alternatives: int = 3
    seed: int = 0
    max_iter: int = 2000


# Measured on Banking77 (bench/triage_accuracy.py; tuned on a split of the training file):
# number of encoders -> (embedding_weights, knn_weights, typicality_encoder).
DEFAULT_WEIGHTS: dict[int, tuple[tuple[float, ...], tuple[float, ...], int]] = {
    # all-MiniLM-L6-v2: LR 0.48, TF-IDF 0.32, vote 0.2.
    1: ((0.48,), (0.2,), 0),
    # all-MiniLM-L6-v2 + all-mpnet-base-v2, in that order (TRIAGE_INTENT_ENCODERS=minilm,mpnet):
    # LR 0.15 + 0.35, TF-IDF 0.2, vote on mpnet 0.3, typicality on MiniLM.
    2: ((0.15, 0.35), (0.0, 0.3), 0),
}


@dataclass(frozen=True)
class Weights:
    """The ensemble: per-encoder LR and vote weights, TF-IDF's, and the typicality encoder."""

    embedding: tuple[float, ...]
    knn: tuple[float, ...]
    tfidf: float
    typicality: int = 0

    @classmethod
    def of(cls, cfg: TrainConfig, encoders: int) -> Weights:
        if cfg.embedding_weights or cfg.knn_weights:
            embedding, knn, typicality = cfg.embedding_weights, cfg.knn_weights, cfg.typicality_encoder
        elif encoders in DEFAULT_WEIGHTS:
            embedding, knn, typicality = DEFAULT_WEIGHTS[encoders]
        else:  # spread evenly
            embedding, knn, typicality = (0.5 / encoders,) * encoders, (0.2 / encoders,) * encoders, 0
        if len(embedding) != encoders or len(knn) != encoders:
            raise ValueError(f"{encoders} encoders need {encoders} embedding and knn weights")
        if not 0 <= typicality < encoders:
            raise ValueError(f"typicality encoder {typicality} is not one of the {encoders}")
        tfidf = 1.0 - sum(embedding) - sum(knn)
        if min(*embedding, *knn, tfidf) < 0:
            raise ValueError("ensemble weights must be >= 0 and sum to at most 1")
        return cls(tuple(embedding), tuple(knn), tfidf, typicality)

    def needs_bank(self, block: int) -> bool:
        """Whether similarities on this encoder's vectors are read (vote or typicality)."""
        return self.knn[block] > 0 or block == self.typicality


def _slices(dimensions: Sequence[int]) -> list[slice]:
    edges = np.cumsum([0, *dimensions])
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]


@dataclass
class Metrics:
    examples: int = 0
    accuracy: float = 0.0
    ece: float = 0.0
    macro_f1: float = 0.0
    coverage_at_085: float = 0.0
    accuracy_at_085: float = 0.0


class EncoderMismatch(RuntimeError):
    """A saved model was trained with another encoder set than the one loaded now."""

    def __init__(self, version: str, trained_with: str, running: str) -> None:
        super().__init__(
            f"intent model {version} was trained with encoders {trained_with!r}; this service runs {running!r} "
            "(TRIAGE_INTENT_ENCODERS): retrain, or run it with the encoders it was trained with"
        )
        self.version = version
        self.trained_with = trained_with
        self.running = running


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    alternatives: list[tuple[str, float]]
    out_of_scope: bool


# --- metrics ------------------------------------------------------------------


def macro_f1(truth: Sequence[str], predicted: Sequence[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(list(truth), list(predicted), average="macro", zero_division=0))


# --- validation of examples -----------------------------------------------------


def example_violations(
    texts: Sequence[str], labels: Sequence[str], *, min_per_label: int, field_name: str = "examples"
) -> list[tuple[str, str]]:
    """Every problem with a set of labelled examples, naming the row (`examples[12].label`)."""
    problems: list[tuple[str, str]] = []
    for index, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if not text.strip():
            problems.append((f"{field_name}[{index}].text", "required"))
        elif len(text) > MAX_TEXT_CHARS:
            problems.append((f"{field_name}[{index}].text", f"at most {MAX_TEXT_CHARS} characters"))
        if not label.strip():
            problems.append((f"{field_name}[{index}].label", "required"))
        elif label != label.strip() or len(label) > MAX_LABEL_CHARS:
            problems.append(
                (f"{field_name}[{index}].label", f"no surrounding spaces, at most {MAX_LABEL_CHARS} characters")
            )
    if problems:
        return problems
    counts = Counter(labels)
    if len(counts) < 2:
        return [(field_name, f"needs examples of at least 2 labels, got {len(counts)}")]
    first_row: dict[str, int] = {}
    for index, label in enumerate(labels):
        first_row.setdefault(label, index)
    for label, count in sorted(counts.items(), key=lambda item: first_row[item[0]]):
        if count < min_per_label:
            problems.append(
                (
                    f"{field_name}[{first_row[label]}].label",
                    f"label {label!r} has {count} examples; every label needs at least {min_per_label}",
                )
            )
    return problems


# --- features -------------------------------------------------------------------


def _token_pattern(analyzer: str) -> dict[str, str]:
    # Words of one character count too ("a", "2"); character views take no pattern.
    return {"token_pattern": r"(?u)\b\w+\b"} if analyzer == "word" else {}


@dataclass
class TfidfView:
    analyzer: str
    ngram_range: tuple[int, int]
    vocabulary: list[str]
    idf: np.ndarray

    @classmethod
    def fit(cls, texts: Sequence[str], analyzer: str, ngram_range: tuple[int, int], min_df: int) -> TfidfView:
        # min_df counts documents: with very few examples, keep every term.
        effective_min_df = min_df if len(texts) >= 50 else 1
        vectorizer = TfidfVectorizer(
            analyzer=analyzer,
            ngram_range=ngram_range,
            min_df=effective_min_df,
            sublinear_tf=True,
            lowercase=True,
            **_token_pattern(analyzer),
        )
        try:
            vectorizer.fit(texts)
        except ValueError:  # no term at all (texts of punctuation only)
            return cls(analyzer, ngram_range, [], np.zeros(0, dtype=np.float32))
        return cls(
            analyzer,
            ngram_range,
            [str(term) for term in vectorizer.get_feature_names_out()],
            vectorizer.idf_.astype(np.float32),
        )

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        if not self.vocabulary:
            return sparse.csr_matrix((len(texts), 0), dtype=np.float32)
        counts = CountVectorizer(
            analyzer=self.analyzer,
            ngram_range=self.ngram_range,
            vocabulary={term: index for index, term in enumerate(self.vocabulary)},
            lowercase=True,
            dtype=np.float32,
            **_token_pattern(self.analyzer),
        ).transform(texts)
        counts.data = 1.0 + np.log(counts.data)
        weighted = counts.multiply(self.idf[None, :]).tocsr()
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sparse.csr_matrix(sparse.diags(1.0 / norms) @ weighted, dtype=np.float32)


def _tfidf_features(views: Sequence[TfidfView], texts: Sequence[str]) -> sparse.csr_matrix:
    blocks = [view.transform(texts) for view in views]
    return sparse.hstack(blocks, format="csr", dtype=np.float32) / math.sqrt(len(blocks))


@dataclass
class _Linear:
    """A fitted multinomial linear model over `labels` (a subset of the model's labels)."""

    coef: np.ndarray
    intercept: np.ndarray

    def log_proba(self, features: np.ndarray | sparse.csr_matrix) -> np.ndarray:
        logits = np.asarray(features @ self.coef.T) + self.intercept[None, :]
        return log_softmax(logits, axis=1)


def _fit_linear(features: np.ndarray | sparse.csr_matrix, y: np.ndarray, n_labels: int, c: float, cfg: TrainConfig):
    """Multinomial logistic regression; coefficients laid out for all n_labels (absent ones never win)."""
    present = np.unique(y)
    dim = features.shape[1]
    coef = np.zeros((n_labels, dim), dtype=np.float32)
    intercept = np.full(n_labels, -1e4, dtype=np.float32)
    if dim == 0:
        intercept[present] = 0.0
        return _Linear(coef, intercept)
    model = LogisticRegression(C=c, max_iter=cfg.max_iter)
    model.fit(features, y)
    fitted = model.coef_.astype(np.float32)
    if len(present) == 2:  # sklearn keeps one row for two classes
        fitted = np.vstack([-fitted[0] / 2, fitted[0] / 2])
        bias = np.array([-model.intercept_[0] / 2, model.intercept_[0] / 2], dtype=np.float32)
    else:
        bias = model.intercept_.astype(np.float32)
    coef[model.classes_] = fitted
    intercept[model.classes_] = bias
    return _Linear(coef, intercept)


def _fit_temperature(log_probs: np.ndarray, y: np.ndarray) -> float:
    rows = np.arange(len(y))

    def nll(t: float) -> float:
        return float(-log_softmax(log_probs / t, axis=1)[rows, y].mean())

    return float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)


def _fit_platt(score: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """P(correct) = sigmoid(a * score + b); degenerate held-out sets get a gentle default."""
    if correct.all() or not correct.any():
        rate = (correct.sum() + 1.0) / (len(correct) + 2.0)
        return 1.0, float(math.log(rate / (1.0 - rate)))
    model = LogisticRegression(C=100.0, max_iter=1000).fit(score[:, None], correct.astype(int))
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class _Bank:
    """Training embeddings sorted by label, for per-label nearest-neighbour similarity."""

    vectors: np.ndarray  # float32, rows sorted by label
    labels: np.ndarray
    starts: np.ndarray  # first row of each present label
    present: np.ndarray  # label index of each run
    n_labels: int

    @classmethod
    def of(cls, vectors: np.ndarray, labels: np.ndarray, n_labels: int) -> _Bank:
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]]) if len(labels) else np.zeros(0)
        starts = starts.astype(np.int64)
        return cls(vectors[order].astype(np.float32), sorted_labels, starts, sorted_labels[starts], n_labels)

    def best(self, embeddings: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        """(rows, n_labels): cosine similarity to each label's nearest bank example (-1 without one).
        With exclude_self, `embeddings` are the bank's own rows in bank order, each skipping itself."""
        out = np.full((len(embeddings), self.n_labels), -1.0, dtype=np.float32)
        if not len(self.starts):
            return out
        for start in range(0, len(embeddings), 1024):
            sims = embeddings[start : start + 1024].astype(np.float32) @ self.vectors.T
            if exclude_self:
                rows = np.arange(sims.shape[0])
                sims[rows, start + rows] = -1.0
            out[start : start + 1024, self.present] = np.maximum.reduceat(sims, self.starts, axis=1)
        return out

    def typicality(self) -> tuple[np.ndarray, np.ndarray]:
        """Per label: mean and standard deviation of its examples' similarity to their nearest
        other example of the same label (labels with fewer than 3 examples get broad defaults)."""
        own = self.best(self.vectors, exclude_self=True)[np.arange(len(self.labels)), self.labels]
        mean = np.full(self.n_labels, 0.5, dtype=np.float32)
        std = np.full(self.n_labels, 0.15, dtype=np.float32)
        for label in self.present:
            values = own[self.labels == label]
            if len(values) >= 3:
                mean[label] = values.mean()
                std[label] = max(float(values.std()), 0.02)
        return mean, std


def _knn_log_proba(best: np.ndarray, tau: float) -> np.ndarray:
    return log_softmax(best / tau, axis=1)


class _Banks:
    """A _Bank per encoder whose similarities are read (see Weights.needs_bank)."""

    def __init__(self, vectors: np.ndarray, labels: np.ndarray, n_labels: int, slices: list[slice], weights: Weights):
        self.slices = slices
        self.weights = weights
        self.banks = {
            i: _Bank.of(vectors[:, part], labels, n_labels) for i, part in enumerate(slices) if weights.needs_bank(i)
        }

    def best(self, embeddings: np.ndarray) -> dict[int, np.ndarray]:
        return {i: bank.best(np.ascontiguousarray(embeddings[:, self.slices[i]])) for i, bank in self.banks.items()}

    def typicality(self) -> tuple[np.ndarray, np.ndarray]:
        return self.banks[self.weights.typicality].typicality()


def _mix(
    emb_lps: Sequence[np.ndarray | None],
    tfidf_lp: np.ndarray,
    best: dict[int, np.ndarray],
    weights: Weights,
    tau: float,
) -> np.ndarray:
    mixed = weights.tfidf * tfidf_lp
    for w, lp in zip(weights.embedding, emb_lps, strict=True):
        if w > 0 and lp is not None:
            mixed = mixed + w * lp
    for block, w in enumerate(weights.knn):
        if w > 0:
            mixed = mixed + w * _knn_log_proba(best[block], tau)
    return mixed


def _typical_z(
    best: np.ndarray, predicted: np.ndarray, mean: np.ndarray, std: np.ndarray, cap: float = math.inf
) -> np.ndarray:
    own = best[np.arange(len(predicted)), predicted]
    return np.minimum((own - mean[predicted]) / std[predicted], cap)


# --- the model ------------------------------------------------------------------


@dataclass
class IntentModel:
    version: str
    labels: list[str]
    # The encoder set it was trained with ("+"-joined names), and each encoder's dimension.
    encoder: str
    embeddings: list[_Linear | None]  # per encoder; None where its weight is 0
    tfidf_views: list[TfidfView]
    tfidf: _Linear
    weights: Weights
    temperature: float
    beta: float
    platt: tuple[float, float]
    oos_cutoff: float
    bank: np.ndarray  # training embeddings (float16, every encoder side by side), for the vote and similarity
    bank_labels: np.ndarray
    # Per label: mean and standard deviation of nearest same-label similarity (typicality).
    typical_mean: np.ndarray
    typical_std: np.ndarray
    dimensions: tuple[int, ...] = ()
    knn_tau: float = 0.05
    typicality_cap: float = math.inf
    # At most this confidence (1 unless the held-out split was too small to calibrate on).
    confidence_cap: float = 1.0
    max_alternatives: int = 3
    info: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.dimensions:
            self.dimensions = (int(self.bank.shape[1]),)
        self._banks = _Banks(
            self.bank.astype(np.float32),
            self.bank_labels.astype(np.int64),
            len(self.labels),
            _slices(self.dimensions),
            self.weights,
        )

    @property
    def dimension(self) -> int:
        return sum(self.dimensions)

    def _scores(self, embeddings: np.ndarray, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities, predicted index, confidence score s) for each text."""
        if embeddings.shape[1] != self.dimension:
            raise ValueError(f"embeddings have {embeddings.shape[1]} dimensions, the model reads {self.dimension}")
        best = self._banks.best(embeddings)
        slices = _slices(self.dimensions)
        mixed = _mix(
            [
                None if m is None else m.log_proba(embeddings[:, part])
                for m, part in zip(self.embeddings, slices, strict=True)
            ],
            self.tfidf.log_proba(_tfidf_features(self.tfidf_views, texts)),
            best,
            self.weights,
            self.knn_tau,
        )
        probs = softmax(mixed / self.temperature, axis=1)
        predicted = probs.argmax(axis=1)
        mean, std = self.typical_mean, self.typical_std
        z = _typical_z(best[self.weights.typicality], predicted, mean, std, self.typicality_cap)
        score = _logit(probs[np.arange(len(predicted)), predicted]) + self.beta * z
        return probs, predicted, score

    def predict(self, embeddings: np.ndarray, texts: Sequence[str]) -> list[Prediction]:
        probs, predicted, score = self._scores(embeddings, texts)
        a, b = self.platt
        confidence = self.confidence_cap * expit(a * score + b)
        out: list[Prediction] = []
        for row, top in enumerate(predicted):
            conf = float(confidence[row])
            rest = 1.0 - float(probs[row, top])
            order = [int(i) for i in np.argsort(-probs[row]) if i != top][: self.max_alternatives]
            share = (1.0 - conf) / rest if rest > 0 else 0.0
            alternatives = [(self.labels[i], float(min(1.0, probs[row, i] * share))) for i in order]
            out.append(
                Prediction(
                    label=self.labels[int(top)],
                    confidence=conf,
                    alternatives=[(label, c) for label, c in alternatives if c > 0.0],
                    out_of_scope=bool(score[row] < self.oos_cutoff),
                )
            )
        return out

    # --- persistence --------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write the model's files into an (empty, new) directory."""
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {
            "tfidf_coef": self.tfidf.coef.astype(np.float16),
            "tfidf_intercept": self.tfidf.intercept,
            "bank": self.bank.astype(np.float16),
            "bank_labels": self.bank_labels.astype(np.int32),
            "typical_mean": self.typical_mean.astype(np.float32),
            "typical_std": self.typical_std.astype(np.float32),
        }
        for index, member in enumerate(self.embeddings):
            if member is not None:
                arrays[f"embedding_coef_{index}"] = member.coef
                arrays[f"embedding_intercept_{index}"] = member.intercept
        for index, view in enumerate(self.tfidf_views):
            arrays[f"idf_{index}"] = view.idf
        np.savez_compressed(directory / "arrays.npz", **arrays)
        meta = {
            "format": FORMAT,
            "version": self.version,
            "labels": self.labels,
            "encoder": self.encoder,
            "dimensions": list(self.dimensions),
            "embedding_weights": list(self.weights.embedding),
            "knn_weights": list(self.weights.knn),
            "tfidf_weight": self.weights.tfidf,
            "typicality_encoder": self.weights.typicality,
            "temperature": self.temperature,
            "beta": self.beta,
            "knn_tau": self.knn_tau,
            # JSON has no infinity: null means uncapped.
            "typicality_cap": None if math.isinf(self.typicality_cap) else self.typicality_cap,
            "platt": list(self.platt),
            "oos_cutoff": self.oos_cutoff,
            "confidence_cap": self.confidence_cap,
            "max_alternatives": self.max_alternatives,
            "tfidf_views": [
                {"analyzer": v.analyzer, "ngram_range": list(v.ngram_range), "vocabulary": v.vocabulary}
                for v in self.tfidf_views
            ],
            "info": self.info,
        }
        (directory / "model.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @staticmethod
    def trained_with(directory: Path) -> str:
        """The encoder set a saved model was trained with (its "+"-joined names), without loading it."""
        return str(json.loads((directory / "model.json").read_text(encoding="utf-8"))["encoder"])

    @classmethod
    def load(cls, directory: Path, *, encoder: str | None = None) -> IntentModel:
        """Load a saved model; with `encoder`, refuse (EncoderMismatch) one trained with another encoder set."""
        meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
        if meta.get("format") not in (1, 2, FORMAT):
            raise ValueError(f"{directory}: unknown model format {meta.get('format')!r}")
        if encoder is not None and meta["encoder"] != encoder:
            raise EncoderMismatch(meta["version"], meta["encoder"], encoder)
        n_labels = len(meta["labels"])
        with np.load(directory / "arrays.npz") as arrays:
            views = [
                TfidfView(v["analyzer"], tuple(v["ngram_range"]), v["vocabulary"], arrays[f"idf_{i}"])
                for i, v in enumerate(meta["tfidf_views"])
            ]
            if meta["format"] >= 3:
                dimensions = tuple(int(d) for d in meta["dimensions"])
                weights = Weights(
                    tuple(float(w) for w in meta["embedding_weights"]),
                    tuple(float(w) for w in meta["knn_weights"]),
                    float(meta["tfidf_weight"]),
                    int(meta["typicality_encoder"]),
                )
                embeddings = [
                    _Linear(arrays[f"embedding_coef_{i}"], arrays[f"embedding_intercept_{i}"])
                    if f"embedding_coef_{i}" in arrays
                    else None
                    for i in range(len(dimensions))
                ]
            else:
                # One encoder: (1 - k) * (w * embedding + (1 - w) * tfidf) + k * vote.
                dimensions = (int(arrays["embedding_coef"].shape[1]),)
                w, k = float(meta["embedding_weight"]), float(meta.get("knn_weight", 0.0))
                weights = Weights(((1 - k) * w,), (k,), (1 - k) * (1 - w), 0)
                embeddings = [_Linear(arrays["embedding_coef"], arrays["embedding_intercept"])]
            return cls(
                version=meta["version"],
                labels=meta["labels"],
                encoder=meta["encoder"],
                embeddings=embeddings,
                tfidf_views=views,
                tfidf=_Linear(arrays["tfidf_coef"].astype(np.float32), arrays["tfidf_intercept"]),
                weights=weights,
                temperature=float(meta["temperature"]),
                beta=float(meta["beta"]),
                platt=(float(meta["platt"][0]), float(meta["platt"][1])),
                oos_cutoff=float(meta["oos_cutoff"]),
                bank=arrays["bank"],
                bank_labels=arrays["bank_labels"],
                # Format 1 scored the raw similarity: mean 0, deviation 1 leaves it as it was.
                typical_mean=arrays["typical_mean"] if "typical_mean" in arrays else np.zeros(n_labels, np.float32),
                typical_std=arrays["typical_std"] if "typical_std" in arrays else np.ones(n_labels, np.float32),
                dimensions=dimensions,
                knn_tau=float(meta.get("knn_tau", 0.05)),
                typicality_cap=math.inf if meta.get("typicality_cap") is None else float(meta["typicality_cap"]),
                confidence_cap=float(meta.get("confidence_cap", 1.0)),
                max_alternatives=int(meta["max_alternatives"]),
                info=meta.get("info", {}),
            )

    @property
    def validation(self) -> Metrics:
        return Metrics(**self.info.get("validation", {}))  # type: ignore[arg-type]


# --- training -------------------------------------------------------------------


def stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out rows: `fraction` of every label (at least one, never all)."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        count = min(len(rows) - 1, max(1, round(fraction * len(rows))))
        held[rng.permutation(rows)[:count]] = True
    return held


@dataclass(frozen=True)
class _Layout:
    """Where each encoder's block lies in an embedding row, and the ensemble weights."""

    slices: list[slice]
    weights: Weights

    def banks(self, vectors: np.ndarray, labels: np.ndarray, n_labels: int) -> _Banks:
        return _Banks(vectors, labels, n_labels, self.slices, self.weights)


@dataclass
class _Members:
    embeddings: list[_Linear | None]
    views: list[TfidfView]
    tfidf: _Linear


def _fit_members(embeddings, texts, y, n_labels, cfg: TrainConfig, layout: _Layout) -> _Members:
    views = [TfidfView.fit(texts, analyzer, ngrams, min_df) for analyzer, ngrams, min_df in _TFIDF_VIEWS]
    return _Members(
        embeddings=[
            _fit_linear(embeddings[:, part], y, n_labels, cfg.embedding_c, cfg) if w > 0 else None
            for part, w in zip(layout.slices, layout.weights.embedding, strict=True)
        ],
        views=views,
        tfidf=_fit_linear(_tfidf_features(views, texts), y, n_labels, cfg.tfidf_c, cfg),
    )


def _member_log_probs(
    members: _Members, embeddings, texts, best: dict[int, np.ndarray], cfg: TrainConfig, layout: _Layout
) -> np.ndarray:
    return _mix(
        [
            None if m is None else m.log_proba(embeddings[:, part])
            for m, part in zip(members.embeddings, layout.slices, strict=True)
        ],
        members.tfidf.log_proba(_tfidf_features(members.views, texts)),
        best,
        layout.weights,
        cfg.knn_tau,
    )


def _score_features(
    log_probs: np.ndarray, temperature: float, best: dict[int, np.ndarray], banks: _Banks, cfg: TrainConfig
) -> np.ndarray:
    """(logit of the top probability, capped typicality z) per row."""
    probs = softmax(log_probs / temperature, axis=1)
    predicted = probs.argmax(axis=1)
    mean, std = banks.typicality()
    own = best[banks.weights.typicality]
    return np.column_stack([_logit(probs.max(axis=1)), _typical_z(own, predicted, mean, std, cfg.typicality_cap)])


def _fit_beta(
    emb,
    texts,
    y,
    held,
    n_labels,
    temperature,
    held_features: np.ndarray,
    held_correct: np.ndarray,
    cfg: TrainConfig,
    layout: _Layout,
    log: Callable[[str], None],
) -> float:
    """Weight of typicality in the confidence score: a logistic regression on (logit, z) separates
    right held-out predictions from wrong ones and from messages of simulated unknown intents."""
    groups = min(cfg.oos_groups, n_labels)
    if groups < 2 or n_labels < 4:
        return cfg.default_beta
    rng = np.random.default_rng(cfg.seed + 1)
    group_of = rng.permutation(n_labels) % groups
    train_rows = np.flatnonzero(~held)
    held_rows = np.flatnonzero(held)
    unknown: list[np.ndarray] = []
    for g in range(groups):
        keep = train_rows[group_of[y[train_rows]] != g]
        members = _fit_members(emb[keep], [texts[i] for i in keep], y[keep], n_labels, cfg, layout)
        banks = layout.banks(emb[keep], y[keep], n_labels)
        best = banks.best(emb[held_rows])
        lp = _member_log_probs(members, emb[held_rows], [texts[i] for i in held_rows], best, cfg, layout)
        features = _score_features(lp, temperature, best, banks, cfg)
        unknown.append(features[group_of[y[held_rows]] == g])
        log(f"oos simulation {g + 1}/{groups}")
    strangers = np.vstack(unknown)
    if not len(strangers) or held_correct.all() or not held_correct.any():
        return cfg.default_beta
    x = np.vstack([held_features, strangers])
    target = np.concatenate([held_correct, np.zeros(len(strangers), dtype=bool)])
    # The unknowns weigh as much in total as the held-out messages (times oos_weight).
    weights = np.concatenate(
        [np.ones(len(held_features)), np.full(len(strangers), cfg.oos_weight * len(held_features) / len(strangers))]
    )
    detector = LogisticRegression(C=1.0, max_iter=2000).fit(x, target.astype(int), sample_weight=weights)
    w_lp, w_z = detector.coef_[0]
    if w_lp <= 0.05 or w_z <= 0:
        return cfg.default_beta
    return float(min(20.0, w_z / w_lp))


def _cross_fitted_confidence(score: np.ndarray, correct: np.ndarray, seed: int) -> np.ndarray:
    """Held-out confidences from a calibrator fitted on the other half (honest ECE)."""
    rng = np.random.default_rng(seed + 2)
    half = rng.permutation(len(score)) % 2 == 0
    out = np.zeros(len(score))
    for part in (half, ~half):
        if part.all() or not part.any():
            a, b = _fit_platt(score, correct)
            return expit(a * score + b)
        a, b = _fit_platt(score[~part], correct[~part])
        out[part] = expit(a * score[part] + b)
    return out


def train_intent_model(
    texts: Sequence[str],
    labels: Sequence[str],
    encode: Encode,
    *,
    version: str,
    encoder_name: str,
    dimensions: Sequence[int] = (),
    config: TrainConfig | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> IntentModel:
    """Train, validate on a stratified held-out split, calibrate; raises ValueError on bad examples.

    `encode` gives each text's vectors from every encoder of the set side by side, `dimensions`
    says how wide each encoder's block is (empty: one encoder)."""
    cfg = config or TrainConfig()
    problems = example_violations(texts, labels, min_per_label=cfg.min_examples_per_label)
    if problems:
        raise ValueError("; ".join(f"{name}: {description}" for name, description in problems))
    started = time.perf_counter()
    texts = list(texts)
    label_names = sorted(set(labels))
    index = {label: i for i, label in enumerate(label_names)}
    y = np.array([index[label] for label in labels], dtype=np.int64)
    n_labels = len(label_names)

    emb = encode(texts)
    embed_s = time.perf_counter() - started
    dimensions = tuple(int(d) for d in dimensions) or (int(emb.shape[1]),)
    if sum(dimensions) != emb.shape[1]:
        raise ValueError(f"encoders give {emb.shape[1]} dimensions, not {sum(dimensions)}")
    layout = _Layout(_slices(dimensions), Weights.of(cfg, len(dimensions)))
    log(f"embedded {len(texts)} examples in {embed_s:.1f}s")
    held = stratified_holdout(y, cfg.holdout_fraction, cfg.seed)
    tr, ho = np.flatnonzero(~held), np.flatnonzero(held)
    tr_texts, ho_texts = [texts[i] for i in tr], [texts[i] for i in ho]

    members = _fit_members(emb[tr], tr_texts, y[tr], n_labels, cfg, layout)
    banks = layout.banks(emb[tr], y[tr], n_labels)
    best = banks.best(emb[ho])
    ho_lp = _member_log_probs(members, emb[ho], ho_texts, best, cfg, layout)
    errors = int((ho_lp.argmax(axis=1) != y[ho]).sum())
    # Calibrating needs mistakes to learn from; a small or error-free held-out split
    # gets the fixed defaults and a confidence that never claims more than it showed.
    small = errors < cfg.min_calibration_errors
    temperature = 1.0 if small else _fit_temperature(ho_lp, y[ho])
    log(f"trained on {len(tr)}, held-out errors {errors}, temperature {temperature:.3f}")

    probs = softmax(ho_lp / temperature, axis=1)
    predicted = probs.argmax(axis=1)
    correct = predicted == y[ho]
    features = _score_features(ho_lp, temperature, best, banks, cfg)
    beta = (
        cfg.default_beta
        if small
        else _fit_beta(emb, texts, y, held, n_labels, temperature, features, correct, cfg, layout, log)
    )
    score = features[:, 0] + beta * features[:, 1]
    oos_cutoff = float(np.quantile(score, cfg.oos_quantile))
    cap = 1.0
    if small:
        # Laplace estimate of accuracy, reached inside the taxonomy: conf = cap * sigmoid(a * (s - cutoff)),
        # half the cap at the OOS cut-off, 99% of it at the median held-out message.
        cap = float((correct.sum() + 1.0) / (len(correct) + 2.0))
        slope = math.log(99.0) / max(float(np.median(score)) - oos_cutoff, 0.5)
        platt = (slope, -slope * oos_cutoff)
        honest = cap * expit(platt[0] * score + platt[1])
    else:
        platt = _fit_platt(score, correct)
        honest = _cross_fitted_confidence(score, correct, cfg.seed)
    covered = honest >= 0.85
    validation = Metrics(
        examples=len(ho),
        accuracy=float(correct.mean()),
        ece=expected_calibration_error(honest, correct),
        macro_f1=macro_f1([label_names[i] for i in y[ho]], [label_names[i] for i in predicted]),
        coverage_at_085=float(covered.mean()),
        accuracy_at_085=float(correct[covered].mean()) if covered.any() else 0.0,
    )
    log(f"validation accuracy {validation.accuracy:.4f} ece {validation.ece:.4f}")

    bank_rows = tr
    if cfg.refit_all:
        members = _fit_members(emb, texts, y, n_labels, cfg, layout)
        bank_rows = np.arange(len(texts))
        banks = layout.banks(emb, y, n_labels)
    typical_mean, typical_std = banks.typicality()
    return IntentModel(
        version=version,
        labels=label_names,
        encoder=encoder_name,
        embeddings=members.embeddings,
        tfidf_views=members.views,
        tfidf=members.tfidf,
        weights=layout.weights,
        temperature=temperature,
        beta=beta,
        platt=platt,
        oos_cutoff=oos_cutoff,
        bank=emb[bank_rows].astype(np.float16),
        bank_labels=y[bank_rows].astype(np.int32),
        typical_mean=typical_mean,
        typical_std=typical_std,
        dimensions=dimensions,
        knn_tau=cfg.knn_tau,
        typicality_cap=cfg.typicality_cap,
        confidence_cap=cap,
        max_alternatives=cfg.max_alternatives,
        info={
            "validation": asdict(validation),
            "examples": len(texts),
            "labels": n_labels,
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "train_seconds": round(time.perf_counter() - started, 2),
            "embed_seconds": round(embed_s, 2),
            "config": asdict(cfg),
        },
    )
