"""The intent model's hyperparameters (TrainConfig; the defaults are the ones
measured on Banking77) and its ensemble weights (Weights: given in TrainConfig,
or DEFAULT_WEIGHTS for the number of encoders). Training is told them; a model
records its Weights.
"""

from __future__ import annotations

from dataclasses import dataclass


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
