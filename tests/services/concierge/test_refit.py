"""The confidence refit (services/concierge/refit.py, fitting.py), on SQLite and PostgreSQL:
from a tenant's judged turns (customers' ratings and agents' verdicts, planted so that
whether an answer is right depends on one signal only), a fit whose out-of-fold scores are
calibrated and whose thresholds reach the target accuracy out of fold, made a CANDIDATE
release (the live one unchanged), once per request id; refused below the minimum."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from aftercare.concierge.v1 import concierge_pb2, releases_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import answer_pb2, conversation_pb2, customer_pb2
from servicekit.errors import FailedPrecondition
from services.concierge.confidence import Calibrator, Confidence
from services.concierge.fitting import FEATURES
from services.concierge.human_labels import HumanLabels
from services.concierge.matching import Signals
from services.concierge.migrations import SCHEMA
from services.concierge.persona import PersonaBook
from services.concierge.refit import (
    ANSWER_NOTHING,
    Example,
    Refitter,
    lowest_threshold,
    refit_examples,
)
from services.concierge.releases import ReleaseBook
from services.concierge.servicer import configuration
from services.concierge.settings import ConciergeSettings
from services.concierge.store import ConversationStore
from tests.services.concierge.test_human_labels import FakeEscalation

TENANT = "acme"
ADMIN = "admin-key-ops"
PERSONA = {
    "version": "acme-1", "name": "Acme Helper", "product": "Acme", "tone": "brief",
    "confidence_threshold": 0.8, "intent_thresholds": {"billing_issue": 0.9},
}


@pytest.fixture
def settings(tmp_path: Path) -> ConciergeSettings:
    personas = tmp_path / "personas"
    personas.mkdir()
    (personas / f"{TENANT}.json").write_text(json.dumps(PERSONA))
    return ConciergeSettings(
        port=0, retrieval_addr="x", triage_addr="x", escalation_addr="x", llm_base_url="http://llm.test/v1",
        persona_dir=personas,
    )


def overconfident(settings: ConciergeSettings) -> Calibrator:
    """The live fit: 0.95 for every answer, whatever its signals (badly calibrated on purpose)."""
    return Calibrator(
        version="logistic-live", configuration_id=configuration(settings).id, features=FEATURES,
        weights=(0.0,) * len(FEATURES), intercept=math.log(0.95 / 0.05), means=(0.0,) * len(FEATURES),
        scales=(1.0,) * len(FEATURES),
    )


@pytest.fixture
def book(engine: Engine, settings: ConciergeSettings) -> Iterator[ReleaseBook]:
    SCHEMA.migrate(engine)
    yield ReleaseBook(
        engine, settings, personas=PersonaBook(settings.persona_dir, settings.confidence_threshold),
        confidence=Confidence(configuration(settings), overconfident(settings)),
    )


def planted_signals(rng: random.Random) -> tuple[dict[str, float], bool]:
    """Random signals; right with probability sigmoid(8 (question_similarity - 0.5)), nothing else counts."""
    values = {name: round(rng.random(), 4) for name in Signals.__dataclass_fields__}
    right = rng.random() < 1.0 / (1.0 + math.exp(-8.0 * (values["question_similarity"] - 0.5)))
    return values, right


def plant(
    engine: Engine, count: int, *, seed: int = 7, topics: tuple[str, ...] = ("refunds", "shipping", ""),
    agents_every: int = 0,
) -> FakeEscalation:
    """`count` judged turns: rated answers, and every `agents_every`-th an escalated turn an agent
    judged; returns the escalation double holding the agents' verdicts."""
    store = ConversationStore(engine)
    rng = random.Random(seed)
    verdicts: list[escalation_pb2.JudgementRecord] = []
    for index in range(count):
        values, right = planted_signals(rng)
        escalated = bool(agents_every) and index % agents_every == 0
        handoff = f"h-{index}" if escalated else ""
        outcome = concierge_pb2.ConverseResponse(
            decision=concierge_pb2.DECISION_ESCALATED if escalated else concierge_pb2.DECISION_ANSWERED,
            handoff_id=handoff, reply="An answer.",
            confidence=answer_pb2.Confidence(
                score=0.95, signals=[answer_pb2.ConfidenceSignal(name=n, value=v) for n, v in values.items()]
            ),
            lineage=answer_pb2.Lineage(release_id="r1"),
        )
        customer = customer_pb2.CustomerRef(tenant_id=TENANT, customer_id="cust-1")
        conversation = f"conv-{index}"
        stored = store.append(
            customer=customer, conversation_id=conversation, channel=conversation_pb2.CHANNEL_CHAT,
            client_message_id="", customer_text="A question.", standalone_query="A question.", outcome=outcome,
            intent=topics[index % len(topics)],
        )
        if escalated:
            verdicts.append(escalation_pb2.JudgementRecord(
                key=f"handoff:{handoff}", source=escalation_pb2.JUDGEMENT_SOURCE_AGENT, correct=right,
                handoff_id=handoff,
            ))
        else:
            rating = concierge_pb2.TURN_RATING_HELPFUL if right else concierge_pb2.TURN_RATING_NOT_HELPFUL
            store.rate(customer, conversation, stored.turn_index, rating)
    return FakeEscalation([verdicts])


async def events(book: ReleaseBook) -> list[releases_pb2.ReleaseEvent]:
    page, _ = book.store.events_page(TENANT, 100, None)
    return page


# --- the refit through the release book -----------------------------------------------


async def test_a_refit_learns_the_tenants_judgements_and_becomes_a_candidate(
    engine: Engine, book: ReleaseBook, settings: ConciergeSettings
) -> None:
    escalation = plant(engine, 480, agents_every=4)
    live_before = await book.live_release_id(TENANT, fresh=True)
    live_stored = book.store.load(TENANT, live_before)
    assert live_stored is not None
    refitter = Refitter(book, HumanLabels(engine, escalation))  # type: ignore[arg-type]

    response = await refitter.refit(TENANT, ADMIN, "refit-1", 0.9)

    release, validation = response.release, response.validation
    assert release.state == releases_pb2.RELEASE_STATE_CANDIDATE and release.release_id != live_before
    assert release.created_by == ADMIN
    # Every judged turn counts: the customers' ratings and the agents' verdicts.
    assert validation.examples == 480 and validation.folds == 5
    assert 0 < validation.correct < 480
    # Calibrated out of fold, where the live fit (0.95 for everything) is not.
    assert validation.refit_ece < 0.08 < validation.live_ece
    # The default threshold reaches the target out of fold, on a fair share of the answers.
    assert validation.refit_accuracy >= 0.9 and validation.refit_coverage > 0.2
    assert 0.5 < validation.threshold < 1.0
    assert validation.live_coverage == 1.0 and validation.live_accuracy < 0.6
    # Two topics have enough judged answers of both outcomes; the unnamed one is no topic.
    topics = {topic.topic: topic for topic in validation.topics}
    assert set(topics) == {"refunds", "shipping"}
    for topic in topics.values():
        assert topic.examples == 160
        assert topic.accuracy >= 0.9 or topic.threshold == ANSWER_NOTHING

    # The candidate: the live release's snapshot with the new fit and thresholds.
    stored = book.store.load(TENANT, release.release_id)
    assert stored is not None and stored.fit is not None
    fit = Calibrator.from_snapshot(stored.fit)
    assert fit.version.startswith("tenant-refit-") and fit.configuration_id == configuration(settings).id
    weights = dict(zip(fit.features, fit.weights, strict=True))
    assert weights["question_similarity"] > 1.0
    assert all(abs(weight) < 0.5 for name, weight in weights.items() if name != "question_similarity")
    components = release.components
    assert components.confidence_fit_version == fit.version
    assert dict(components.thresholds) == {
        "": validation.threshold, "billing_issue": 0.9,
        "refunds": topics["refunds"].threshold, "shipping": topics["shipping"].threshold,
    }
    assert stored.persona["confidence_threshold"] == validation.threshold
    assert components.persona_version != live_stored.release.components.persona_version
    for unchanged in ("llm_model", "prompt_version", "triage_model_version", "routing_policy_version"):
        assert getattr(components, unchanged) == getattr(live_stored.release.components, unchanged)

    # The live release is as it was; the candidate's making is recorded.
    assert await book.live_release_id(TENANT, fresh=True) == live_before
    live_after = book.store.load(TENANT, live_before)
    assert live_after is not None and live_after.release == live_stored.release and live_after.fit == live_stored.fit
    newest = await events(book)
    assert [e.kind for e in newest[:2]] == [releases_pb2.RELEASE_EVENT_KIND_REFITTED,
                                            releases_pb2.RELEASE_EVENT_KIND_CREATED]
    refitted = newest[0]
    assert refitted.release_id == release.release_id and refitted.actor == ADMIN
    assert f"refitted from {live_before} on 480 judged answers" in refitted.detail
    assert "refunds" in refitted.detail and "90%" in refitted.detail


async def test_a_retried_request_returns_the_same_candidate_and_figures(engine: Engine, book: ReleaseBook) -> None:
    plant(engine, 120)
    refitter = Refitter(book, HumanLabels(engine, None))

    first = await refitter.refit(TENANT, ADMIN, "refit-1", 0.85)
    plant(engine, 60, seed=99)  # more judgements meanwhile: a retry still returns what the first made
    again = await refitter.refit(TENANT, ADMIN, "refit-1", 0.85)
    other = await refitter.refit(TENANT, ADMIN, "refit-2", 0.85)

    assert again.release == first.release and again.validation == first.validation
    assert first.validation.examples == 120 and other.validation.examples == 180
    assert other.release.release_id != first.release.release_id
    kinds = [e.kind for e in await events(book)]
    assert kinds.count(releases_pb2.RELEASE_EVENT_KIND_REFITTED) == 2


@pytest.mark.parametrize(("count", "seed", "why"), [(39, 7, "39 (")])
async def test_too_few_judged_answers_are_refused(
    engine: Engine, book: ReleaseBook, count: int, seed: int, why: str
) -> None:
    plant(engine, count, seed=seed)
    refitter = Refitter(book, HumanLabels(engine, None))
    with pytest.raises(FailedPrecondition) as refused:
        await refitter.refit(TENANT, ADMIN, "refit-1", 0.9)
    assert refused.value.reason == "NOT_ENOUGH_JUDGEMENTS" and why in refused.value.message
    # Nothing was made.
    assert [r.release_id for r in book.store.list_page(TENANT, 10, None)[0]] == ["r1"]


async def test_judgements_of_one_outcome_only_are_refused(engine: Engine, book: ReleaseBook) -> None:
    plant(engine, 60)
    store = ConversationStore(engine)
    customer = customer_pb2.CustomerRef(tenant_id=TENANT, customer_id="cust-1")
    # Every answer rated helpful: 60 judged answers, none wrong.
    for index in range(60):
        store.rate(customer, f"conv-{index}", 0, concierge_pb2.TURN_RATING_HELPFUL)
    with pytest.raises(FailedPrecondition) as refused:
        await Refitter(book, HumanLabels(engine, None)).refit(TENANT, ADMIN, "refit-1", 0.9)
    assert refused.value.reason == "NOT_ENOUGH_JUDGEMENTS" and "60 (60 right)" in refused.value.message


async def test_a_live_release_without_a_fit_is_not_refitted(engine: Engine, settings: ConciergeSettings) -> None:
    SCHEMA.migrate(engine)
    book = ReleaseBook(
        engine, settings, personas=PersonaBook(settings.persona_dir, settings.confidence_threshold),
        confidence=Confidence(configuration(settings), None),
    )
    plant(engine, 60)
    with pytest.raises(FailedPrecondition) as refused:
        await Refitter(book, HumanLabels(engine, None)).refit(TENANT, ADMIN, "refit-1", 0.9)
    assert refused.value.reason == "LIVE_RELEASE_UNCALIBRATED"


# --- the parts --------------------------------------------------------------------------


def test_the_threshold_is_the_lowest_score_whose_answers_reach_the_target() -> None:
    scores = [0.95, 0.9, 0.8, 0.8, 0.7, 0.6]
    correct = [True, True, True, False, True, False]
    # At or above 0.9: 2/2; 0.8: 3/4; 0.7: 4/5; 0.6: 4/6.
    assert lowest_threshold(scores, correct, 0.8) == 0.7
    assert lowest_threshold(scores, correct, 0.75) == 0.7
    assert lowest_threshold(scores, correct, 0.81) == 0.9
    # Equal scores fall together: 0.8 alone would be 3/4, never "3/3".
    assert lowest_threshold(scores, correct, 0.99) == 0.9
    # The lowest, not the first from the top: at 0.9 none is right, at 0.6 three of four are.
    assert lowest_threshold([0.9, 0.8, 0.7, 0.6], [False, True, True, True], 0.7) == 0.6
    assert lowest_threshold([0.9, 0.8], [False, False], 0.6) is None
    assert lowest_threshold([], [], 0.9) is None


def _examples(count: int, topic: str, seed: int, always_wrong: bool = False) -> list[Example]:
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        values, right = planted_signals(rng)
        examples.append(Example(values, right and not always_wrong, topic))
    return examples


def test_a_topic_no_threshold_makes_right_enough_answers_nothing() -> None:
    # "legal": 40 judged answers, 4 right whatever their scores; the rest as planted.
    legal = _examples(40, "legal", seed=3, always_wrong=True)
    legal = [Example(e.signals, i % 10 == 0, e.topic) for i, e in enumerate(legal)]
    examples = _examples(300, "refunds", seed=1) + legal + _examples(20, "rare", seed=2)
    live = Calibrator(
        version="live", configuration_id="unit-v2|phrasing=off", features=FEATURES, weights=(0.0,) * 6,
        intercept=0.0, means=(0.0,) * 6, scales=(1.0,) * 6,
    )
    persona = {**PersonaBook().raw("anyone"), "intent_thresholds": {"rare": 0.97, "lenient": 0.1, "refunds": 0.99}}

    refit = refit_examples(examples, live, persona, 0.9)

    default = refit.validation.threshold
    assert refit.thresholds["legal"] == ANSWER_NOTHING and refit.thresholds[""] == default
    # The tenant's own thresholds the refit cannot judge stay, never below the new default;
    # one it can judge is replaced.
    assert refit.thresholds["rare"] == 0.97 and refit.thresholds["lenient"] == default
    assert refit.thresholds["refunds"] < 0.99
    topics = {topic.topic: topic for topic in refit.validation.topics}
    assert set(topics) == {"refunds", "legal"}
    assert topics["refunds"].accuracy >= 0.9 and topics["refunds"].threshold == refit.thresholds["refunds"]
    assert topics["legal"].coverage == 0.0 and topics["legal"].examples == 40
    assert refit.validation.live_ece == pytest.approx(abs(0.5 - refit.validation.correct / len(examples)), abs=1e-3)


def test_no_default_threshold_reaching_the_target_is_refused() -> None:
    # Signals that say nothing, half the answers right: every out-of-fold score is the same 0.5.
    constant = {name: 0.5 for name in Signals.__dataclass_fields__}
    examples = [Example(constant, i % 2 == 0, "") for i in range(100)]
    live = Calibrator(
        version="live", configuration_id="x", features=FEATURES, weights=(0.0,) * 6, intercept=0.0,
        means=(0.0,) * 6, scales=(1.0,) * 6,
    )
    with pytest.raises(FailedPrecondition) as refused:
        refit_examples(examples, live, PersonaBook().raw("anyone"), 0.9)
    assert refused.value.reason == "TARGET_ACCURACY_UNREACHABLE"
    assert refit_examples(examples, live, PersonaBook().raw("anyone"), 0.5).validation.threshold == 0.5
