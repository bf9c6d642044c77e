"""The logistic fit of the answer confidence (confidence.Calibrator), one function for
both makers of a fit: tools/calibrate_concierge.py, from labelled questions run through
the whole pipeline, and refit.py, from a tenant's own judged answers. Both get the same
features, the same choice of regularisation and the same out-of-fold scores, so their
figures compare.

scikit-learn is imported when a fit is made, not when the concierge starts.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from servicekit.database import utcnow
from services.concierge.confidence import Calibrator

# The signals the fit weighs (every signal is still reported with each answer). Chosen on
# the demo set's train half by 5-fold log-loss, five seeds: these six 0.5445 (AUROC 0.79)
# against 0.565 (0.77) for the other signals all together; word overlap, unit type and
# uncovered words added noise with opposite signs between folds.
FEATURES = (
    "question_similarity",
    "near_identical_question",
    "unit_score_margin",
    "passage_similarity",
    "passage_agrees",
    "reply_is_whole_unit",
)
FOLDS = 5
# The L2 strengths (inverse) the cross-validation chooses from: small data wants a strong
# prior, which keeps the scores from claiming more certainty than the signals carry.
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


@dataclass(frozen=True)
class LogisticFit:
    calibrator: Calibrator
    # The inverse L2 strength used (chosen by cross-validation unless given).
    c: float
    # Each example's score by a fit that never saw it (FOLDS stratified folds).
    out_of_fold: tuple[float, ...]


def fit_logistic(
    signals: Sequence[Mapping[str, float]],
    correct: Sequence[bool],
    *,
    configuration_id: str,
    version_prefix: str,
    c: float | None = None,
) -> LogisticFit:
    """Logistic regression of `correct` on the standardised FEATURES of `signals` (each
    mapping holds them all). Without `c`, the L2 strength is chosen from C_GRID by FOLDS-fold
    cross-validated log-loss. The fit's version is "<version_prefix>-<UTC date>-<digest of its
    weights>". ValueError unless both outcomes occur."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    if len(signals) != len(correct):
        raise ValueError(f"{len(signals)} examples but {len(correct)} outcomes")
    if len(set(correct)) < 2:
        raise ValueError("a fit needs examples of both outcomes")
    features = list(FEATURES)
    x = np.array([[example[name] for name in features] for example in signals], dtype=float)
    y = np.array([1 if right else 0 for right in correct])
    means = x.mean(axis=0)
    scales = x.std(axis=0)
    scales[scales < 1e-9] = 1.0  # a constant signal (e.g. no intent model) carries no weight
    standardised = (x - means) / scales
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=0)
    if c is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # scikit-learn's announced API changes
            search = LogisticRegressionCV(
                Cs=list(C_GRID), cv=folds, scoring="neg_log_loss", max_iter=1000
            ).fit(standardised, y)
        c = float(search.C_[0])
    model = LogisticRegression(C=c, max_iter=1000).fit(standardised, y)
    held_out = cross_val_predict(
        LogisticRegression(C=c, max_iter=1000), standardised, y, cv=folds, method="predict_proba"
    )[:, 1]
    weights = [round(float(w), 6) for w in model.coef_[0]]
    digest = hashlib.sha256(json.dumps([features, weights]).encode()).hexdigest()[:8]
    calibrator = Calibrator(
        version=f"{version_prefix}-{utcnow():%Y%m%d}-{digest}",
        configuration_id=configuration_id,
        features=tuple(features),
        weights=tuple(weights),
        intercept=round(float(model.intercept_[0]), 6),
        means=tuple(round(float(m), 6) for m in means),
        scales=tuple(round(float(s), 6) for s in scales),
    )
    return LogisticFit(calibrator, c, tuple(float(score) for score in held_out))
