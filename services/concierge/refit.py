"""The confidence refitted from a tenant's own judged answers (RefitConfidence), made a
CANDIDATE release: it never serves untested, it goes through the suite, shadow and canary
like any other release.

The examples are every stored turn of the tenant that a human judged (HumanLabels: a
customer's rating of an answered turn, an agent's verdict on an escalated turn's candidate)
and that carries its confidence signals, whichever release served it: the signals describe
how the question matched the knowledge base, the same whatever release served the turn,
and the new fit is made for the live release's configuration (its fit's configuration id).

The fit is fitting.py's logistic regression, validated out of fold: every answer is scored
by a fit that never saw it, and the figures (ECE, the share of answers at or above the
threshold and their accuracy) are those scores' beside the live fit's on the same answers.
A topic (triage's intent) with at least MIN_TOPIC_EXAMPLES judged answers of both outcomes
gets its own threshold: the lowest out-of-fold score at or above which its answers reach the
target accuracy (ANSWER_NOTHING, sending it to people, when none does). The default threshold is
chosen the same way on the answers it governs, those of every other topic. A topic the live
persona holds to a threshold of its own and the refit cannot judge keeps it, raised to the
new default if below (the old value was set on the old fit's scale: it can only make the
topic stricter). The refit's figures are taken with exactly the thresholds the candidate
serves with.

The candidate is the live release's snapshot with the new fit and thresholds; its fit
snapshot keeps the validation (as a fit file keeps its report), so a retried request
(same request_id) returns the same release and the same figures.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from google.protobuf import json_format

from aftercare.concierge.v1 import releases_pb2
from servicekit.calibration import expected_calibration_error
from servicekit.errors import FailedPrecondition
from services.concierge.confidence import Calibrator
from services.concierge.fitting import FEATURES, FOLDS, fit_logistic
from services.concierge.human_labels import HumanLabels, TurnLabel
from services.concierge.matching import Signals
from services.concierge.persona import Persona, from_snapshot
from services.concierge.release_store import Snapshot, StoredRelease, release_not_found
from services.concierge.releases import ReleaseBook, apply_threshold_overrides, content_digest

log = structlog.get_logger(__name__)

MIN_EXAMPLES = 40
MIN_EACH_OUTCOME = 5
MIN_TOPIC_EXAMPLES = 30
# The highest threshold there is, for a topic whose answers reach the target at no score: its
# questions go to people (only a served score of 1.0, rounded, would pass).
ANSWER_NOTHING = 1.0
VERSION_PREFIX = "tenant-refit"
# The served score is rounded so (Calibrator.score); thresholds and out-of-fold scores are too.
SCORE_DECIMALS = 4


@dataclass(frozen=True)
class Example:
    """One judged answer: its signals, whether it was right, and its topic (triage's intent)."""

    signals: dict[str, float]
    correct: bool
    topic: str


@dataclass(frozen=True)
class Refit:
    """A validated refit: the fit, the thresholds it brings (key "" the default) and its figures."""

    calibrator: Calibrator
    thresholds: dict[str, float]
    validation: releases_pb2.FitValidation


def examples_of(labels: Sequence[TurnLabel], live_fit: Calibrator) -> list[Example]:
    """The judged turns carrying every signal the refit and the live fit weigh."""
    needed = set(FEATURES) | set(live_fit.features)
    return [
        Example(label.signals, label.correct, label.intent)
        for label in labels
        if label.correct is not None and needed <= label.signals.keys()
    ]


def lowest_threshold(scores: Sequence[float], correct: Sequence[bool], target: float) -> float | None:
    """The lowest score at or above which the answers are right at least `target` of the time;
    None when no score gives that."""
    ranked = sorted(zip(scores, correct, strict=True), key=lambda pair: pair[0], reverse=True)
    chosen: float | None = None
    right = seen = 0
    for position, (score, is_right) in enumerate(ranked):
        right += is_right
        seen += 1
        # Only where the next score is lower: equal scores fall on the same side of a threshold.
        last_of_score = position + 1 == len(ranked) or ranked[position + 1][0] < score
        if last_of_score and right >= target * seen:
            chosen = score
    return chosen


def _at_or_above(
    scores: Sequence[float], correct: Sequence[bool], thresholds: Sequence[float]
) -> tuple[float, float]:
    """The share of answers at or above their threshold, and their accuracy (0 when none)."""
    passed = [right for score, right, threshold in zip(scores, correct, thresholds, strict=True) if score >= threshold]
    coverage = len(passed) / len(scores) if scores else 0.0
    accuracy = sum(passed) / len(passed) if passed else 0.0
    return round(coverage, 4), round(accuracy, 4)


def _live_score(live_fit: Calibrator, signals: dict[str, float]) -> float:
    # Signals the live fit does not weigh are filled with 0: they do not enter its score.
    return live_fit.score(Signals(**{name: signals.get(name, 0.0) for name in Signals.__dataclass_fields__}))


def refit_examples(
    examples: Sequence[Example],
    live_fit: Calibrator,
    live_persona: dict[str, Any],
    target_accuracy: float,
    *,
    min_topic_examples: int = MIN_TOPIC_EXAMPLES,
) -> Refit:
    """Fit, choose the thresholds for `target_accuracy` and validate, out of fold, beside the
    live fit at the live persona's thresholds (module doc). FailedPrecondition
    (TARGET_ACCURACY_UNREACHABLE) when no default threshold reaches the target."""
    correct = [example.correct for example in examples]
    topics = [example.topic for example in examples]
    fitted = fit_logistic(
        [example.signals for example in examples], correct,
        configuration_id=live_fit.configuration_id, version_prefix=VERSION_PREFIX,
    )
    scores = [round(score, SCORE_DECIMALS) for score in fitted.out_of_fold]
    thresholds: dict[str, float] = {}
    for topic in sorted({topic for topic in topics if topic}):
        members = [i for i, t in enumerate(topics) if t == topic]
        if len(members) >= min_topic_examples and len({correct[i] for i in members}) == 2:
            chosen = lowest_threshold([scores[i] for i in members], [correct[i] for i in members], target_accuracy)
            thresholds[topic] = ANSWER_NOTHING if chosen is None else chosen
    # The default is chosen on the answers it will govern: those of topics without their own.
    governed = [i for i, topic in enumerate(topics) if topic not in thresholds] or list(range(len(examples)))
    default = lowest_threshold([scores[i] for i in governed], [correct[i] for i in governed], target_accuracy)
    if default is None:
        raise FailedPrecondition(
            f"no confidence threshold makes the tenant's judged answers right {target_accuracy:.0%} of the time "
            f"({sum(correct)} of {len(correct)} are right); ask for a lower target accuracy",
            reason="TARGET_ACCURACY_UNREACHABLE",
        )
    live = from_snapshot(live_persona)
    # A topic the tenant made stricter and the refit could not judge stays at least as strict as the default.
    kept = {
        intent: max(threshold, default)
        for intent, threshold in live.intent_thresholds.items()
        if intent not in thresholds
    }
    thresholds = {"": default, **kept, **thresholds}
    candidate = from_snapshot(apply_threshold_overrides(live_persona, thresholds))
    live_scores = [_live_score(live_fit, example.signals) for example in examples]
    live_coverage, live_accuracy = _at_or_above(live_scores, correct, [live.threshold_for(t) for t in topics])
    refit_coverage, refit_accuracy = _at_or_above(scores, correct, [candidate.threshold_for(t) for t in topics])
    validation = releases_pb2.FitValidation(
        examples=len(examples),
        correct=sum(correct),
        folds=FOLDS,
        live_ece=round(expected_calibration_error(live_scores, correct), 4),
        refit_ece=round(expected_calibration_error(scores, correct), 4),
        threshold=default,
        live_coverage=live_coverage,
        refit_coverage=refit_coverage,
        live_accuracy=live_accuracy,
        refit_accuracy=refit_accuracy,
        topics=[
            _topic_fit(topic, threshold, scores, correct, topics)
            for topic, threshold in thresholds.items()
            if topic and topic not in kept
        ],
    )
    return Refit(fitted.calibrator, thresholds, validation)


def _topic_fit(
    topic: str, threshold: float, scores: Sequence[float], correct: Sequence[bool], topics: Sequence[str]
) -> releases_pb2.TopicFit:
    members = [i for i, t in enumerate(topics) if t == topic]
    coverage, accuracy = _at_or_above(
        [scores[i] for i in members], [correct[i] for i in members], [threshold] * len(members)
    )
    return releases_pb2.TopicFit(
        topic=topic, examples=len(members), threshold=threshold, coverage=coverage, accuracy=accuracy
    )


def candidate_snapshot(live: StoredRelease, refit: Refit, target_accuracy: float) -> Snapshot:
    """The live release's snapshot with the refit's fit (its validation kept beside it) and thresholds."""
    persona_json = apply_threshold_overrides(live.persona, refit.thresholds)
    persona: Persona = from_snapshot(persona_json)
    components = releases_pb2.ReleaseComponents()
    components.CopyFrom(live.release.components)
    components.confidence_fit_version = refit.calibrator.version
    components.thresholds.clear()
    components.thresholds.update({"": persona.confidence_threshold, **persona.intent_thresholds})
    components.persona_version = f"{persona.version}+{content_digest(persona_json)[:16]}"
    fitted_on = {
        "judgements_of": live.release.tenant_id,
        "refitted_from": live.release.release_id,
        "target_accuracy": target_accuracy,
    }
    report = json_format.MessageToDict(refit.validation, preserving_proto_field_name=True)
    fit: dict[str, Any] = json.loads(refit.calibrator.to_json({"fitted_on": fitted_on, "fit": report}))
    return Snapshot(components, persona_json, fit)


def stored_validation(stored: StoredRelease) -> releases_pb2.FitValidation:
    """The validation a refit's release keeps in its fit snapshot."""
    validation = releases_pb2.FitValidation()
    json_format.ParseDict((stored.fit or {}).get("fit") or {}, validation, ignore_unknown_fields=True)
    return validation


def describe(validation: releases_pb2.FitValidation, live_release_id: str, target_accuracy: float) -> str:
    """The validation in words (the REFITTED event's detail)."""
    topics = ", ".join(
        f"{topic.topic} {topic.threshold:.4f} ({topic.examples} answers, {topic.coverage:.0%} at "
        f"{topic.accuracy:.1%})"
        for topic in validation.topics
    )
    return (
        f"refitted from {live_release_id} on {validation.examples} judged answers ({validation.correct} right), "
        f"{validation.folds}-fold out of fold: ECE {validation.live_ece:.3f} (live fit) -> "
        f"{validation.refit_ece:.3f}; threshold {validation.threshold:.4f} for {target_accuracy:.0%} accuracy: "
        f"{validation.refit_coverage:.0%} of the answers at {validation.refit_accuracy:.1%} right (live fit at "
        f"its thresholds: {validation.live_coverage:.0%} at {validation.live_accuracy:.1%}); "
        f"topics: {topics or 'none with enough judged answers'}"
    )


class Refitter:
    """RefitConfidence (module doc)."""

    def __init__(
        self,
        releases: ReleaseBook,
        labels: HumanLabels,
        *,
        min_examples: int = MIN_EXAMPLES,
        min_each_outcome: int = MIN_EACH_OUTCOME,
        min_topic_examples: int = MIN_TOPIC_EXAMPLES,
    ):
        self._releases = releases
        self._labels = labels
        self._min_examples = min_examples
        self._min_each_outcome = min_each_outcome
        self._min_topic_examples = min_topic_examples

    async def refit(
        self, tenant_id: str, actor: str, request_id: str, target_accuracy: float
    ) -> releases_pb2.RefitConfidenceResponse:
        store = self._releases.store
        # A retry returns what the first call made, even when the judgements changed since.
        made = await asyncio.to_thread(store.find_by_request, tenant_id, request_id)
        if made is not None:
            return releases_pb2.RefitConfidenceResponse(release=made.release, validation=stored_validation(made))
        live_release_id = await self._releases.live_release_id(tenant_id, fresh=True)
        live = await asyncio.to_thread(store.load, tenant_id, live_release_id)
        if live is None:
            raise release_not_found(live_release_id)
        if live.fit is None:
            raise FailedPrecondition(
                f"the live release {live_release_id!r} has no confidence fit (it runs uncalibrated): there is "
                "no configuration to refit for; fit one with `python -m tools.calibrate_concierge` first",
                reason="LIVE_RELEASE_UNCALIBRATED",
            )
        live_fit = Calibrator.from_snapshot(live.fit)
        examples = examples_of(await self._labels.labels(tenant_id), live_fit)
        right = sum(example.correct for example in examples)
        if len(examples) < self._min_examples or min(right, len(examples) - right) < self._min_each_outcome:
            raise FailedPrecondition(
                f"a refit needs at least {self._min_examples} judged answers with their signals, at least "
                f"{self._min_each_outcome} right and {self._min_each_outcome} wrong; the tenant has "
                f"{len(examples)} ({right} right)",
                reason="NOT_ENOUGH_JUDGEMENTS",
            )
        # The fit and its cross-validation are CPU work: off the event loop.
        refit = await asyncio.to_thread(
            refit_examples, examples, live_fit, live.persona, target_accuracy,
            min_topic_examples=self._min_topic_examples,
        )
        snapshot = candidate_snapshot(live, refit, target_accuracy)
        detail = describe(refit.validation, live_release_id, target_accuracy)
        stored, created = await asyncio.to_thread(
            store.create, tenant_id, snapshot,
            description=(
                f"Confidence refitted from the tenant's {len(examples)} judged answers for "
                f"{target_accuracy:.0%} accuracy (from {live_release_id})"
            ),
            created_by=actor, request_id=request_id,
        )
        if created:
            await asyncio.to_thread(self._record_refitted, tenant_id, stored.release.release_id, actor, detail)
            log.info(
                "release_refitted", tenant_id=tenant_id, release_id=stored.release.release_id,
                examples=len(examples), refit_ece=refit.validation.refit_ece, threshold=refit.validation.threshold,
            )
        return releases_pb2.RefitConfidenceResponse(release=stored.release, validation=stored_validation(stored))

    def _record_refitted(self, tenant_id: str, release_id: str, actor: str, detail: str) -> None:
        store = self._releases.store
        with store.tenant_transaction(tenant_id) as session:
            store.add_event(session, tenant_id, "REFITTED", release_id, "", actor, detail)
