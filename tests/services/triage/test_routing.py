"""Routing by intent and confidence (services.triage.routing) with the default policy."""

from __future__ import annotations

from pathlib import Path

import pytest

import services.triage
from aftercare.triage.v1 import triage_pb2
from services.triage.policy import load_policy
from services.triage.routing import route

RULES = load_policy(Path(services.triage.__file__).with_name("policy.default.json")).routing
CHURN, LEGAL, HUMAN = triage_pb2.RISK_FLAG_CHURN, triage_pb2.RISK_FLAG_LEGAL, triage_pb2.RISK_FLAG_HUMAN_REQUESTED
ASSISTED, SPECIALIST = triage_pb2.TIER_AI_ASSISTED, triage_pb2.TIER_SPECIALIST


def intent(label: str, confidence: float, out_of_scope: bool = False) -> triage_pb2.IntentPrediction:
    return triage_pb2.IntentPrediction(
        label=label, confidence=confidence, out_of_scope=out_of_scope, model_version="v20261124T101500Z-3fa2c1"
    )


@pytest.mark.parametrize(
    ("flags", "prediction", "tier", "queue", "reasons"),
    [
        ([], intent("password_reset", 0.97), triage_pb2.TIER_AI_RESOLVED, "", ["intent_confident", "no_risk"]),
        ([], intent("password_reset", 0.85), triage_pb2.TIER_AI_RESOLVED, "", ["intent_confident", "no_risk"]),
        ([], intent("password_reset", 0.84), triage_pb2.TIER_AI_ASSISTED, "", ["intent_low_confidence"]),
        ([], intent("password_reset", 0.95, True), triage_pb2.TIER_AI_ASSISTED, "", ["intent_out_of_scope"]),
        (
            [CHURN],
            intent("password_reset", 0.95),
            triage_pb2.TIER_AI_ASSISTED,
            "",
            ["risk_churn", "intent_confident"],
        ),
        ([CHURN], intent("password_reset", 0.5), ASSISTED, "", ["intent_low_confidence", "risk_churn"]),
        ([], intent("billing_issue", 0.9), triage_pb2.TIER_SPECIALIST, "billing", ["intent_queue"]),
        ([CHURN], intent("billing_issue", 0.9), triage_pb2.TIER_SPECIALIST, "billing", ["intent_queue", "risk_churn"]),
        # A mapped intent below the threshold is not trusted with a queue.
        ([], intent("billing_issue", 0.6), triage_pb2.TIER_AI_ASSISTED, "", ["intent_low_confidence"]),
        ([HUMAN], intent("billing_issue", 0.9), SPECIALIST, "billing", ["human_requested", "intent_queue"]),
        ([HUMAN], intent("billing_issue", 0.5), triage_pb2.TIER_SPECIALIST, "general", ["human_requested"]),
        ([LEGAL], intent("billing_issue", 0.99), triage_pb2.TIER_MANAGER_FLAGGED, "manager", ["risk_legal"]),
        ([], triage_pb2.IntentPrediction(), triage_pb2.TIER_SPECIALIST, "general", ["no_intent_model"]),
    ],
)
def test_routes(
    flags: list[int], prediction: triage_pb2.IntentPrediction, tier: int, queue: str, reasons: list[str]
) -> None:
    decision = route(flags, prediction, RULES)
    assert (decision.tier, decision.queue, list(decision.reason_codes)) == (tier, queue, reasons)


@pytest.mark.parametrize("flags", [[], [CHURN], [LEGAL], [HUMAN], [CHURN, HUMAN], [CHURN, LEGAL, HUMAN]])
@pytest.mark.parametrize(
    "prediction",
    [
        triage_pb2.IntentPrediction(),
        intent("password_reset", 0.97),
        intent("password_reset", 0.3),
        intent("", 0.0, True),
        intent("billing_issue", 0.9),
    ],
)
def test_every_route_names_a_tier(flags: list[int], prediction: triage_pb2.IntentPrediction) -> None:
    # Escalation takes a set tier to mean "the caller triaged", even with no intent found.
    assert route(flags, prediction, RULES).tier != triage_pb2.TIER_UNSPECIFIED
