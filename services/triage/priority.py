"""Priority 0-100 as a sum of named contributions, so a lead can see (and tune
in the policy file) why one contact waits less than another.

score = clamp(round(sum of reason points), 0, 100); every contribution that
is not zero is returned as a PriorityReason, largest (by size) first.

| code                 | points                                                         |
|----------------------|----------------------------------------------------------------|
| base                 | priority.base                                                  |
| risk:<flag>          | priority.risk_points[flag], once per raised flag               |
| sentiment:negative   | negative_sentiment_max_points x -score (negative label)        |
| sentiment:positive   | positive_sentiment_points (positive label), not when the        |
|                      | escalating_anger flag is raised ("please help!!!" is not happy) |
| plan:<plan>          | plan_points[plan] (plan lower-cased)                           |
| open_tickets         | open_ticket_points per open ticket, at most open_ticket_max    |
| tenure:new           | new_account_points when 0 < tenure_days <= new_account_max_... |
"""

from __future__ import annotations

from collections.abc import Sequence

from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import customer_pb2
from services.triage.policy import PriorityWeights
from services.triage.risk_flags import NAME_BY_FLAG


def score_priority(
    flags: Sequence[triage_pb2.RiskFlag],
    sentiment: triage_pb2.Sentiment,
    account: customer_pb2.AccountSignals,
    weights: PriorityWeights,
) -> triage_pb2.Priority:
    contributions: list[tuple[str, float]] = [("base", weights.base)]
    for flag in flags:
        name = NAME_BY_FLAG[flag]
        contributions.append((f"risk:{name}", weights.risk_points.get(name, 0.0)))
    if sentiment.label == triage_pb2.SENTIMENT_LABEL_NEGATIVE:
        contributions.append(("sentiment:negative", weights.negative_sentiment_max_points * -sentiment.score))
    elif sentiment.label == triage_pb2.SENTIMENT_LABEL_POSITIVE and triage_pb2.RISK_FLAG_ESCALATING_ANGER not in flags:
        contributions.append(("sentiment:positive", weights.positive_sentiment_points))
    plan = account.plan.strip().lower()
    if plan:
        contributions.append((f"plan:{plan}", weights.plan_points.get(plan, 0.0)))
    if account.open_tickets > 0:
        contributions.append(
            ("open_tickets", min(account.open_tickets * weights.open_ticket_points, weights.open_ticket_max_points))
        )
    # Tenure 0 is also proto3's "unset", so it says nothing about the account's age.
    if 0 < account.tenure_days <= weights.new_account_max_tenure_days:
        contributions.append(("tenure:new", weights.new_account_points))

    reasons = [
        triage_pb2.PriorityReason(code=code, points=round(points, 2))
        for code, points in contributions
        if round(points, 2) != 0.0
    ]
    reasons.sort(key=lambda reason: (-abs(reason.points), reason.code))
    total = sum(reason.points for reason in reasons)
    return triage_pb2.Priority(score=max(0, min(100, round(total))), reasons=reasons)
