"""Tier routing by the policy's rules, checked in a fixed order:

1. manager_flagged rules (default: legal; churn on a high-value account)
   -> TIER_MANAGER_FLAGGED in the manager queue;
2. specialist rules (default: the customer asked for a human), or no intent
   model to say what the contact is about -> TIER_SPECIALIST in the default queue;
3. no risk flag -> TIER_AI_RESOLVED ("no_risk");
4. otherwise -> TIER_AI_ASSISTED with one "risk_<flag>" code per flag.

Reason codes are stable strings; callers and dashboards match on them.
"""

from __future__ import annotations

from collections.abc import Sequence

from aftercare.triage.v1 import triage_pb2
from services.triage.policy import RouteRule, RoutingRules
from services.triage.risk import FLAG_BY_NAME, NAME_BY_FLAG

NO_INTENT_MODEL = "no_intent_model"
NO_RISK = "no_risk"


def _fired(rules: Sequence[RouteRule], flags: set[int]) -> list[str]:
    return [rule.reason for rule in rules if all(FLAG_BY_NAME[name] in flags for name in rule.when_all)]


def route(flags: Sequence[int], intent: triage_pb2.IntentPrediction, rules: RoutingRules) -> triage_pb2.Route:
    raised = set(flags)
    # Until a later issue trains intent models, every route says so.
    notes = [NO_INTENT_MODEL] if not intent.model_version else []

    manager = _fired(rules.manager_flagged, raised)
    if manager:
        return triage_pb2.Route(
            tier=triage_pb2.TIER_MANAGER_FLAGGED, queue=rules.manager_queue, reason_codes=[*manager, *notes]
        )
    specialist = _fired(rules.specialist, raised)
    if specialist or not intent.label:
        return triage_pb2.Route(
            tier=triage_pb2.TIER_SPECIALIST, queue=rules.default_queue, reason_codes=[*specialist, *notes]
        )
    if not raised:
        return triage_pb2.Route(tier=triage_pb2.TIER_AI_RESOLVED, reason_codes=[NO_RISK, *notes])
    risks = [f"risk_{NAME_BY_FLAG[flag]}" for flag in flags]
    return triage_pb2.Route(tier=triage_pb2.TIER_AI_ASSISTED, reason_codes=[*risks, *notes])
