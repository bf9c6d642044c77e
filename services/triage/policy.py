"""The triage policy: priority weights, risk thresholds and routing rules.

It lives in a JSON file (policy.default.json unless TRIAGE_POLICY_FILE names
another) so a support lead can tune it without a code change; it is validated
when the service starts, so a typo fails the boot instead of a request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.triage.risk_flags import FLAG_BY_NAME


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RiskThresholds(_Strict):
    # Contacts in the last 7 days (this one excluded) from which a customer counts as repeating.
    repeated_contact_min_contacts_7d: Annotated[int, Field(ge=1)] = 3
    # Annual contract value, minor units, from which an account counts as high value.
    high_value_min_contract_minor: Annotated[int, Field(ge=0)] = 5_000_000
    # Anger escalates when sentiment fell at least this much over the conversation ...
    escalating_anger_max_trajectory: Annotated[float, Field(ge=-2.0, le=0.0)] = -0.5
    # ... and the newest message is more negative than this.
    escalating_anger_compound_below: Annotated[float, Field(ge=-1.0, le=0.0)] = -0.3
    # A newest message at least this negative is anger by itself, whatever the conversation's course.
    anger_compound_at_most: Annotated[float, Field(ge=-1.0, le=0.0)] = -0.6


class PriorityWeights(_Strict):
    base: float = 10.0
    # Points per raised risk flag, by flag name (see services.triage.risk_flags.FLAG_BY_NAME).
    risk_points: dict[str, float] = Field(default_factory=dict)
    # A negative newest message adds up to this many points, scaled by how negative it is.
    negative_sentiment_max_points: Annotated[float, Field(ge=0.0)] = 20.0
    # A positive newest message changes the score by this (usually a small deduction).
    positive_sentiment_points: float = -5.0
    # Points by plan name (lower case); plans not listed add nothing.
    plan_points: dict[str, float] = Field(default_factory=dict)
    open_ticket_points: Annotated[float, Field(ge=0.0)] = 3.0
    open_ticket_max_points: Annotated[float, Field(ge=0.0)] = 9.0
    # Accounts younger than this are onboarding: a bad first experience costs the most.
    new_account_max_tenure_days: Annotated[int, Field(ge=0)] = 30
    new_account_points: float = 5.0

    @field_validator("risk_points")
    @classmethod
    def _known_flags(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(FLAG_BY_NAME))
        if unknown:
            raise ValueError(f"unknown risk flags {unknown}; known: {sorted(FLAG_BY_NAME)}")
        return value

    @field_validator("plan_points")
    @classmethod
    def _lower_plans(cls, value: dict[str, float]) -> dict[str, float]:
        return {plan.strip().lower(): points for plan, points in value.items()}


class RouteRule(_Strict):
    """Fires when every named risk flag is raised."""

    when_all: Annotated[list[str], Field(min_length=1)]
    # Stable reason code reported in Route.reason_codes.
    reason: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]

    @field_validator("when_all")
    @classmethod
    def _known_flags(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(FLAG_BY_NAME))
        if unknown:
            raise ValueError(f"unknown risk flags {unknown}; known: {sorted(FLAG_BY_NAME)}")
        return value


class RoutingRules(_Strict):
    # Checked first: any rule that fires flags the contact to a manager.
    manager_flagged: list[RouteRule] = Field(default_factory=list)
    # Checked next: any rule that fires sends the contact to a specialist queue.
    specialist: list[RouteRule] = Field(default_factory=list)
    manager_queue: Annotated[str, Field(min_length=1)] = "manager"
    # Specialist queue when no intent maps the contact to a more specific one.
    default_queue: Annotated[str, Field(min_length=1)] = "general"
    # Calibrated intent confidence from which routing acts on the intent (AI-resolved,
    # an intent queue); below it, or out of scope, an agent looks (AI-assisted).
    intent_confidence_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.85
    # Intent label (the tenant's taxonomy) -> specialist queue, for confident intents.
    intent_queues: dict[str, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)


class TriagePolicy(_Strict):
    version: Annotated[str, Field(min_length=1)]
    description: str = ""
    risk: RiskThresholds = RiskThresholds()
    priority: PriorityWeights = PriorityWeights()
    routing: RoutingRules = RoutingRules()


def load_policy(path: Path) -> TriagePolicy:
    """Read and validate a policy file; raises on a missing file or a bad value."""
    return TriagePolicy.model_validate(json.loads(path.read_text(encoding="utf-8")))
