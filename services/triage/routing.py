"""Tier routing by the policy's rules and the intent, checked in a fixed order:

1. manager_flagged rules (default: legal; churn on a high-value account)
   -> TIER_MANAGER_FLAGGED in the manager queue;
2. specialist rules (default: the customer asked for a human) -> TIER_SPECIALIST,
   in the intent's queue when a confident intent maps to one, else the default queue;
3. no intent model for the tenant -> TIER_SPECIALIST in the default queue
   ("no_intent_model": nothing says what the contact is about, so a person looks);
4. a confident intent (calibrated confidence >= intent_confidence_threshold, not
   out of scope) that intent_queues maps -> TIER_SPECIALIST in that queue ("intent_queue");
5. the intent is out of scope ("intent_out_of_scope") or below the threshold
   ("intent_low_confidence") -> TIER_AI_ASSISTED, with one "risk_<flag>" per flag;
6. a confident intent and no risk flag -> TIER_AI_RESOLVED ("intent_confident", "no_risk");
7. otherwise (confident, but risk flags) -> TIER_AI_ASSISTED with one "risk_<flag>"
   code per flag and "intent_confident".

Reason codes are stable strings; callers and dashboards match on them.
"""

from __future__ import annotations

from collections.abc import Sequence

from aftercare.triage.v1 import triage_pb2
from services.triage.policy import RouteRule, RoutingRules
from services.triage.risk_flags import FLAG_BY_NAME, NAME_BY_FLAG

NO_INTENT_MODEL = "no_intent_model"
NO_RISK = "no_risk"
INTENT_CONFIDENT = "intent_confident"
INTENT_LOW_CONFIDENCE = "intent_low_confidence"
INTENT_OUT_OF_SCOPE = "intent_out_of_scope"
INTENT_QUEUE = "intent_queue"


def _fired(rules: Sequence[RouteRule], flags: set[triage_pb2.RiskFlag]) -> list[str]:
    return [rule.reason for rule in rules if all(FLAG_BY_NAME[name] in flags for name in rule.when_all)]


def is_confident(intent: triage_pb2.IntentPrediction, rules: RoutingRules) -> bool:
    return bool(intent.label) and not intent.out_of_scope and intent.confidence >= rules.intent_confidence_threshold


def route(
    flags: Sequence[triage_pb2.RiskFlag], intent: triage_pb2.IntentPrediction, rules: RoutingRules
) -> triage_pb2.Route:
    raised = set(flags)
    notes = [NO_INTENT_MODEL] if not intent.model_version else []
    confident = is_confident(intent, rules)
    intent_queue = rules.intent_queues.get(intent.label, "") if confident else ""
    risks = [f"risk_{NAME_BY_FLAG[flag]}" for flag in flags]

    manager = _fired(rules.manager_flagged, raised)
    if manager:
        return triage_pb2.Route(
            tier=triage_pb2.TIER_MANAGER_FLAGGED, queue=rules.manager_queue, reason_codes=[*manager, *notes]
        )
    specialist = _fired(rules.specialist, raised)
    if specialist:
        queue_note = [INTENT_QUEUE] if intent_queue else []
        return triage_pb2.Route(
            tier=triage_pb2.TIER_SPECIALIST,
            queue=intent_queue or rules.default_queue,
            reason_codes=[*specialist, *queue_note, *notes],
        )
    if not intent.label:
        return triage_pb2.Route(tier=triage_pb2.TIER_SPECIALIST, queue=rules.default_queue, reason_codes=notes)
    if intent_queue:
        return triage_pb2.Route(
            tier=triage_pb2.TIER_SPECIALIST, queue=intent_queue, reason_codes=[INTENT_QUEUE, *risks]
        )
    if not confident:
        why = INTENT_OUT_OF_SCOPE if intent.out_of_scope else INTENT_LOW_CONFIDENCE
        return triage_pb2.Route(tier=triage_pb2.TIER_AI_ASSISTED, reason_codes=[why, *risks])
    if not raised:
        return triage_pb2.Route(tier=triage_pb2.TIER_AI_RESOLVED, reason_codes=[INTENT_CONFIDENT, NO_RISK])
    return triage_pb2.Route(tier=triage_pb2.TIER_AI_ASSISTED, reason_codes=[*risks, INTENT_CONFIDENT])
