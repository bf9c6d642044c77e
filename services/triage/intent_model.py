"""The intent model a tenant's contacts are classified with: its parts, how it
predicts (`IntentModel.predict`, what the service serves) and its files on disk.
services/triage/intent_training.py trains it (`train_intent_model`, used by the
Retrain RPC, the offline CLI and the benchmark); its hyperparameters and
ensemble weights are in services/triage/intent_config.py.

The model (measured on Banking77, see bench/triage_accuracy.py):

- features: sentence embeddings from a set of shared encoders (the
  TRIAGE_INTENT_ENCODERS setting, services/triage/encoder.py; default
  all-MiniLM-L6-v2 and all-mpnet-base-v2, each L2-normalised, side by side)
  and TF-IDF word 1-2-grams + character 2-5-grams (per tenant vocabulary);
- members ensembled by a weighted sum of log-probabilities, then
  temperature-scaled: a multinomial logistic regression per encoder and one on
  the TF-IDF features, and a nearest-neighbour vote per encoder (softmax over
  labels of the cosine similarity to each label's nearest training example,
  `knn_tau`). Weights per number of encoders are in DEFAULT_WEIGHTS (intent_config.py): with
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
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.special import expit, log_softmax, softmax
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from services.triage.intent_config import Weights

# 2: nearest-neighbour member and typicality (format 1 models still load: no vote, raw similarity).
# 3: several encoders side by side, per-encoder members and weights (formats 1 and 2 still load).
FORMAT = 3


def encoder_slices(dimensions: Sequence[int]) -> list[slice]:
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


def tfidf_features(views: Sequence[TfidfView], texts: Sequence[str]) -> sparse.csr_matrix:
    blocks = [view.transform(texts) for view in views]
    return sparse.hstack(blocks, format="csr", dtype=np.float32) / math.sqrt(len(blocks))


@dataclass
class Linear:
    """A fitted multinomial linear model over `labels` (a subset of the model's labels)."""

    coef: np.ndarray
    intercept: np.ndarray

    def log_proba(self, features: np.ndarray | sparse.csr_matrix) -> np.ndarray:
        logits = np.asarray(features @ self.coef.T) + self.intercept[None, :]
        log_probs: np.ndarray = log_softmax(logits, axis=1)
        return log_probs


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    logits: np.ndarray = np.log(p / (1 - p))
    return logits


@dataclass(frozen=True)
class Bank:
    """Training embeddings sorted by label, for per-label nearest-neighbour similarity."""

    vectors: np.ndarray  # float32, rows sorted by label
    labels: np.ndarray
    starts: np.ndarray  # first row of each present label
    present: np.ndarray  # label index of each run
    n_labels: int

    @classmethod
    def of(cls, vectors: np.ndarray, labels: np.ndarray, n_labels: int) -> Bank:
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
    log_probs: np.ndarray = log_softmax(best / tau, axis=1)
    return log_probs


class Banks:
    """A Bank per encoder whose similarities are read (see Weights.needs_bank)."""

    def __init__(self, vectors: np.ndarray, labels: np.ndarray, n_labels: int, slices: list[slice], weights: Weights):
        self.slices = slices
        self.weights = weights
        self.banks = {
            i: Bank.of(vectors[:, part], labels, n_labels) for i, part in enumerate(slices) if weights.needs_bank(i)
        }

    def best(self, embeddings: np.ndarray) -> dict[int, np.ndarray]:
        return {i: bank.best(np.ascontiguousarray(embeddings[:, self.slices[i]])) for i, bank in self.banks.items()}

    def typicality(self) -> tuple[np.ndarray, np.ndarray]:
        return self.banks[self.weights.typicality].typicality()


def mix_log_probs(
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


def typical_z(
    best: np.ndarray, predicted: np.ndarray, mean: np.ndarray, std: np.ndarray, cap: float = math.inf
) -> np.ndarray:
    own = best[np.arange(len(predicted)), predicted]
    z: np.ndarray = np.minimum((own - mean[predicted]) / std[predicted], cap)
    return z


# --- the model ------------------------------------------------------------------


@dataclass
class IntentModel:
    version: str
    labels: list[str]
    # The encoder set it was trained with ("+"-joined names), and each encoder's dimension.
    encoder: str
    embeddings: list[Linear | None]  # per encoder; None where its weight is 0
    tfidf_views: list[TfidfView]
    tfidf: Linear
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
        self._banks = Banks(
            self.bank.astype(np.float32),
            self.bank_labels.astype(np.int64),
            len(self.labels),
            encoder_slices(self.dimensions),
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
        slices = encoder_slices(self.dimensions)
        mixed = mix_log_probs(
            [
                None if m is None else m.log_proba(embeddings[:, part])
                for m, part in zip(self.embeddings, slices, strict=True)
            ],
            self.tfidf.log_proba(tfidf_features(self.tfidf_views, texts)),
            best,
            self.weights,
            self.knn_tau,
        )
        probs = softmax(mixed / self.temperature, axis=1)
        predicted = probs.argmax(axis=1)
        mean, std = self.typical_mean, self.typical_std
        z = typical_z(best[self.weights.typicality], predicted, mean, std, self.typicality_cap)
        score = logit(probs[np.arange(len(predicted)), predicted]) + self.beta * z
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
        # Numbers only, read back by np.load without pickle (naming the flag also keeps the arrays
        # from being taken for it).
        np.savez_compressed(directory / "arrays.npz", allow_pickle=False, **arrays)
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
                    Linear(arrays[f"embedding_coef_{i}"], arrays[f"embedding_intercept_{i}"])
                    if f"embedding_coef_{i}" in arrays
                    else None
                    for i in range(len(dimensions))
                ]
            else:
                # One encoder: (1 - k) * (w * embedding + (1 - w) * tfidf) + k * vote.
                dimensions = (int(arrays["embedding_coef"].shape[1]),)
                w, k = float(meta["embedding_weight"]), float(meta.get("knn_weight", 0.0))
                weights = Weights(((1 - k) * w,), (k,), (1 - k) * (1 - w), 0)
                embeddings = [Linear(arrays["embedding_coef"], arrays["embedding_intercept"])]
            return cls(
                version=meta["version"],
                labels=meta["labels"],
                encoder=meta["encoder"],
                embeddings=embeddings,
                tfidf_views=views,
                tfidf=Linear(arrays["tfidf_coef"].astype(np.float32), arrays["tfidf_intercept"]),
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
        fields = self.info.get("validation", {})
        if not isinstance(fields, dict):
            raise TypeError(f"intent model {self.version}: info.validation is {type(fields).__name__}, not an object")
        return Metrics(**fields)
