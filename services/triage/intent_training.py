"""Training an intent model from a tenant's labelled examples
(`train_intent_model`, used by the Retrain RPC, the offline CLI and the
benchmark): the examples are checked (`example_violations`), the members are
fitted, the ensemble is calibrated (temperature, beta, Platt) and validated.
What the model is and how it predicts: services/triage/intent_model.py.

Validation: a stratified held-out split (`holdout_fraction` of every label, at
least one example) is never trained on before the metrics are taken. The
validation ECE is cross-fitted (calibrator fitted on one half of the held-out
split, measured on the other, both ways), so it is not flattered by the fit.
After validation the classifiers are refitted on every example (`refit_all`)
with the validated calibration.

Progress and cancel: `progress(percent, step)` hears where training stands
(encoding in batches of `ENCODE_BATCH` examples, then fitting, the simulated
out-of-scope groups, validating, refitting); `cancelled()` is asked between
batches and steps, and when it says so training raises `TrainingCancelled`
(a long-running operation's cancel, servicekit/operation_runner.py).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, softmax
from sklearn.linear_model import LogisticRegression

from servicekit.calibration import expected_calibration_error
from servicekit.operations import OperationCancelled
from services.triage.intent_config import TrainConfig, Weights
from services.triage.intent_model import (
    Banks,
    IntentModel,
    Linear,
    Metrics,
    TfidfView,
    encoder_slices,
    logit,
    mix_log_probs,
    tfidf_features,
    typical_z,
)

MAX_LABEL_CHARS = 128
MAX_TEXT_CHARS = 8000

Encode = Callable[[list[str]], np.ndarray]
Progress = Callable[[int, str], None]

# Examples encoded per call: progress and cancel checks between calls (a call of 64 takes seconds even
# on a busy CPU), and serving requests get the encoders in between (they share one lock).
ENCODE_BATCH = 64
# Percent reached when each phase ends, as the default encoders (minilm,mpnet) share the time on
# Banking77 (bench/retrain_operation.py): encoding ~80%, fitting ~4%, out-of-scope simulation ~11%,
# refitting ~4%. With MiniLM alone encoding is nearer 20%: the bar then moves faster early on.
_ENCODED, _FITTED, _SIMULATED, _VALIDATED = 80, 84, 95, 96


class TrainingCancelled(OperationCancelled):
    """Training stopped at a checkpoint because `cancelled()` said so; nothing was produced."""


class _Checkpoints:
    """Progress reports and cancel checks, both optional."""

    def __init__(self, progress: Progress | None, cancelled: Callable[[], bool] | None) -> None:
        self._progress = progress
        self._cancelled = cancelled

    def __call__(self, percent: int, step: str) -> None:
        if self._cancelled is not None and self._cancelled():
            raise TrainingCancelled(f"cancelled before {step}")
        if self._progress is not None:
            self._progress(percent, step)


def _encode_in_batches(encode: Encode, texts: list[str], at: _Checkpoints) -> np.ndarray:
    """Every text's vectors, in the texts' order; encoded shortest first, so that each batch pads
    little (as the encoder itself sorts the texts of one call)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    parts = []
    for start in range(0, len(texts), ENCODE_BATCH):
        at(start * _ENCODED // len(texts), f"encoding {start}/{len(texts)} examples")
        parts.append(encode([texts[i] for i in order[start : start + ENCODE_BATCH]]))
    vectors = np.vstack(parts)
    placed = np.empty_like(vectors)
    placed[order] = vectors
    return placed


# TF-IDF views: (analyzer, ngram_range, min_df).
_TFIDF_VIEWS: tuple[tuple[str, tuple[int, int], int], ...] = (
    ("word", (1, 2), 2),
    ("char_wb", (2, 5), 2),
)


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


# --- training -------------------------------------------------------------------


def _fit_linear(
    features: np.ndarray | sparse.csr_matrix, y: np.ndarray, n_labels: int, c: float, cfg: TrainConfig
) -> Linear:
    """Multinomial logistic regression; coefficients laid out for all n_labels (absent ones never win)."""
    present = np.unique(y)
    dim = features.shape[1]
    coef = np.zeros((n_labels, dim), dtype=np.float32)
    intercept = np.full(n_labels, -1e4, dtype=np.float32)
    if dim == 0:
        intercept[present] = 0.0
        return Linear(coef, intercept)
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
    return Linear(coef, intercept)


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

    def banks(self, vectors: np.ndarray, labels: np.ndarray, n_labels: int) -> Banks:
        return Banks(vectors, labels, n_labels, self.slices, self.weights)


@dataclass
class _Members:
    embeddings: list[Linear | None]
    views: list[TfidfView]
    tfidf: Linear


def _fit_members(
    embeddings: np.ndarray, texts: list[str], y: np.ndarray, n_labels: int, cfg: TrainConfig, layout: _Layout
) -> _Members:
    views = [TfidfView.fit(texts, analyzer, ngrams, min_df) for analyzer, ngrams, min_df in _TFIDF_VIEWS]
    return _Members(
        embeddings=[
            _fit_linear(embeddings[:, part], y, n_labels, cfg.embedding_c, cfg) if w > 0 else None
            for part, w in zip(layout.slices, layout.weights.embedding, strict=True)
        ],
        views=views,
        tfidf=_fit_linear(tfidf_features(views, texts), y, n_labels, cfg.tfidf_c, cfg),
    )


def _member_log_probs(
    members: _Members,
    embeddings: np.ndarray,
    texts: list[str],
    best: dict[int, np.ndarray],
    cfg: TrainConfig,
    layout: _Layout,
) -> np.ndarray:
    return mix_log_probs(
        [
            None if m is None else m.log_proba(embeddings[:, part])
            for m, part in zip(members.embeddings, layout.slices, strict=True)
        ],
        members.tfidf.log_proba(tfidf_features(members.views, texts)),
        best,
        layout.weights,
        cfg.knn_tau,
    )


def _score_features(
    log_probs: np.ndarray, temperature: float, best: dict[int, np.ndarray], banks: Banks, cfg: TrainConfig
) -> np.ndarray:
    """(logit of the top probability, capped typicality z) per row."""
    probs = softmax(log_probs / temperature, axis=1)
    predicted = probs.argmax(axis=1)
    mean, std = banks.typicality()
    own = best[banks.weights.typicality]
    return np.column_stack([logit(probs.max(axis=1)), typical_z(own, predicted, mean, std, cfg.typicality_cap)])


def _fit_beta(
    emb: np.ndarray,
    texts: list[str],
    y: np.ndarray,
    held: np.ndarray,
    n_labels: int,
    temperature: float,
    held_features: np.ndarray,
    held_correct: np.ndarray,
    cfg: TrainConfig,
    layout: _Layout,
    log: Callable[[str], None],
    at: _Checkpoints | None = None,
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
        if at is not None:
            at(_FITTED + g * (_SIMULATED - _FITTED) // groups, f"simulating unknown intents {g + 1}/{groups}")
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
            whole: np.ndarray = expit(a * score + b)
            return whole
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
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> IntentModel:
    """Train, validate on a stratified held-out split, calibrate; raises ValueError on bad examples
    and TrainingCancelled when `cancelled()` turns true.

    `encode` gives each text's vectors from every encoder of the set side by side, `dimensions`
    says how wide each encoder's block is (empty: one encoder)."""
    at = _Checkpoints(progress, cancelled)
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

    emb = _encode_in_batches(encode, texts, at)
    embed_s = time.perf_counter() - started
    dimensions = tuple(int(d) for d in dimensions) or (int(emb.shape[1]),)
    if sum(dimensions) != emb.shape[1]:
        raise ValueError(f"encoders give {emb.shape[1]} dimensions, not {sum(dimensions)}")
    layout = _Layout(encoder_slices(dimensions), Weights.of(cfg, len(dimensions)))
    log(f"embedded {len(texts)} examples in {embed_s:.1f}s")
    held = stratified_holdout(y, cfg.holdout_fraction, cfg.seed)
    tr, ho = np.flatnonzero(~held), np.flatnonzero(held)
    tr_texts, ho_texts = [texts[i] for i in tr], [texts[i] for i in ho]

    at(_ENCODED, f"fitting on {len(tr)} examples")
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
        else _fit_beta(emb, texts, y, held, n_labels, temperature, features, correct, cfg, layout, log, at)
    )
    at(_SIMULATED, f"validating on {len(ho)} held-out examples")
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
        at(_VALIDATED, f"refitting on all {len(texts)} examples")
        members = _fit_members(emb, texts, y, n_labels, cfg, layout)
        bank_rows = np.arange(len(texts))
        banks = layout.banks(emb, y, n_labels)
    typical_mean, typical_std = banks.typicality()
    at(99, "trained")
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
