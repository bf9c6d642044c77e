"""Bodies of the releases router (gateway/routes/releases.py): a tenant's releases (one immutable,
versioned snapshot of everything that decides what a customer gets), their golden-conversation
suite runs, promotion behind the suite, rollback, the events that record them, and the release
loop that proves a candidate on live traffic: shadow (its decisions beside the live ones, against
what humans did), canary (a share of conversations, rolled back automatically when worse) and the
confidence refitted from the tenant's own judged answers. Replies mirror the proto messages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, model_validator

from aftercare.concierge.v1 import releases_pb2
from gateway.schemas.common import IsoDateTime, RequestBody, enum_name, time_field, to_timestamp

# Release ids as the concierge makes them ("r1", "r2"...); "live" names the live one where a path allows it.
RELEASE_ID_PATTERN = r"^r[0-9]{1,18}$"
RELEASE_REF_PATTERN = r"^(live|r[0-9]{1,18})$"
MAX_REASON_CHARS = 500
# Intent labels as triage's retrains allow them (gateway/schemas/models.py); "" is the default threshold.
MAX_INTENT_CHARS = 128
MAX_SCENARIOS = 10_000

ReleaseStateName = Literal["unspecified", "candidate", "live", "retired"]
ReleaseEventKindName = Literal[
    "unspecified", "created", "promoted", "promoted_with_override", "rolled_back", "suite_recorded",
    "shadow_started", "shadow_stopped", "canary_started", "canary_stopped", "canary_rolled_back", "refitted",
]
CanaryStateName = Literal["unspecified", "running", "stopped", "rolled_back", "promoted"]
Threshold = Annotated[float, Field(ge=0.0, le=1.0)]


# --- what a release fixes ---------------------------------------------------


class ReleaseComponents(BaseModel):
    llm_model: str = Field(description="LLM model id the concierge asks the LLM server for.")
    prompt_version: str = Field(description="Version of the concierge's prompt templates.")
    confidence_fit_version: str = Field(description="The confidence fit's calibration version.")
    thresholds: dict[str, float] = Field(
        description='Confidence threshold to answer, per intent; key "" is the default.'
    )
    triage_model_version: str = Field(description="Triage's intent model version when the release was made.")
    routing_policy_version: str = Field(description="Digest of the routing policy (tiers and handoff queues).")
    persona_version: str = Field(description="Digest of the persona (voice, greeting, thresholds, guardrails).")
    action_catalog_version: str = Field(description="The action catalog's version; empty for a tenant without one.")

    @classmethod
    def from_proto(cls, components: releases_pb2.ReleaseComponents) -> ReleaseComponents:
        return cls(
            llm_model=components.llm_model,
            prompt_version=components.prompt_version,
            confidence_fit_version=components.confidence_fit_version,
            thresholds=dict(sorted(components.thresholds.items())),
            triage_model_version=components.triage_model_version,
            routing_policy_version=components.routing_policy_version,
            persona_version=components.persona_version,
            action_catalog_version=components.action_catalog_version,
        )


# --- suite runs ---------------------------------------------------------------


class ScenarioResult(BaseModel):
    name: str
    passed: bool
    failures: list[str] = Field(description="The failed assertions, in words.")


class SuiteRun(BaseModel):
    """One run of the tenant's golden conversations against a release."""

    run_id: str
    release_id: str
    suite_digest: str = Field(description="Digest of the suite file run (which scenarios, as written).")
    total: int
    passed: int
    partial: bool = Field(description="Only part of the suite ran (a fast subset): it cannot clear a promotion.")
    results: list[ScenarioResult] = Field(description="Every scenario's result, failures first.")
    started_at: datetime | None
    finished_at: datetime | None
    run_by: str

    @classmethod
    def from_proto(cls, run: releases_pb2.SuiteRun) -> SuiteRun:
        return cls(
            run_id=run.run_id,
            release_id=run.release_id,
            suite_digest=run.suite_digest,
            total=run.total,
            passed=run.passed,
            partial=run.partial,
            results=[ScenarioResult(name=r.name, passed=r.passed, failures=list(r.failures)) for r in run.results],
            started_at=time_field(run, "started_at"),
            finished_at=time_field(run, "finished_at"),
            run_by=run.run_by,
        )

    @property
    def clears_promotion(self) -> bool:
        """What the concierge's promotion gate asks of a release's latest run."""
        return not self.partial and self.total > 0 and self.passed == self.total


class ScenarioResultIn(RequestBody):
    name: str = Field(min_length=1, max_length=200, examples=["refund-policy-answered"])
    passed: StrictBool
    failures: list[Annotated[str, Field(max_length=1000)]] = Field(
        default_factory=list, max_length=100, examples=[["turn 2: decision answered, expected clarify"]]
    )


class RecordSuiteRunRequest(RequestBody):
    """A finished run of the tenant's golden conversations against the release in the path
    (what bench/scenarios.py --record sends); the key's holder is recorded as who ran it."""

    suite_digest: str = Field(min_length=1, max_length=128, description="Digest of the suite file run.")
    total: StrictInt = Field(ge=0, le=MAX_SCENARIOS, description="Scenarios run.")
    passed: StrictInt = Field(ge=0, le=MAX_SCENARIOS, description="Scenarios that passed every assertion.")
    results: list[ScenarioResultIn] = Field(default_factory=list, max_length=MAX_SCENARIOS)
    partial: StrictBool = Field(default=False, description="True for a subset of the suite (it clears nothing).")
    started_at: IsoDateTime
    finished_at: IsoDateTime

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.passed > self.total:
            raise ValueError("passed cannot exceed total")
        if len(self.results) > self.total:
            raise ValueError("more results than scenarios run (total)")
        if self.finished_at < self.started_at:
            raise ValueError("finished_at is before started_at")
        return self

    def to_proto(self, tenant_id: str, release_id: str, run_by: str) -> releases_pb2.RecordSuiteRunRequest:
        run = releases_pb2.SuiteRun(
            release_id=release_id,
            suite_digest=self.suite_digest,
            total=self.total,
            passed=self.passed,
            results=[
                releases_pb2.ScenarioResult(name=r.name, passed=r.passed, failures=r.failures) for r in self.results
            ],
            run_by=run_by,
            partial=self.partial,
            started_at=to_timestamp(self.started_at),
            finished_at=to_timestamp(self.finished_at),
        )
        return releases_pb2.RecordSuiteRunRequest(tenant_id=tenant_id, run=run)


class SuiteRunReply(BaseModel):
    run: SuiteRun


# --- releases -------------------------------------------------------------------


class Release(BaseModel):
    """One immutable snapshot; exactly one per tenant is live."""

    release_id: str = Field(examples=["r3"])
    number: int
    tenant_id: str
    state: ReleaseStateName
    components: ReleaseComponents
    description: str = Field(description="What changed and why.")
    created_by: str = Field(description="The admin key's holder who created it, or 'system' for the first.")
    created_at: datetime | None
    promoted_at: datetime | None = Field(description="When it last became live; null if never.")
    digest: str = Field(description="Digest of the components and the persona and fit contents it carries.")
    latest_suite_run: SuiteRun | None = Field(description="The latest golden-conversation run against it.")
    suite_passed: bool = Field(
        description="Its latest suite run is complete (not partial) and every scenario passed: it may be promoted "
        "without an override."
    )

    @classmethod
    def from_proto(cls, release: releases_pb2.Release) -> Release:
        run = SuiteRun.from_proto(release.latest_suite_run) if release.HasField("latest_suite_run") else None
        return cls(
            release_id=release.release_id,
            number=release.number,
            tenant_id=release.tenant_id,
            state=enum_name(releases_pb2.ReleaseState, release.state),
            components=ReleaseComponents.from_proto(release.components),
            description=release.description,
            created_by=release.created_by,
            created_at=time_field(release, "created_at"),
            promoted_at=time_field(release, "promoted_at"),
            digest=release.digest,
            latest_suite_run=run,
            suite_passed=run is not None and run.clears_promotion,
        )


class ReleaseListReply(BaseModel):
    releases: list[Release] = Field(description="Newest first.")
    next_page_token: str | None

    @classmethod
    def from_proto(cls, response: releases_pb2.ListReleasesResponse) -> ReleaseListReply:
        return cls(
            releases=[Release.from_proto(r) for r in response.releases],
            next_page_token=response.next_page_token or None,
        )


class ReleaseOverrides(RequestBody):
    """Changes to the tenant's working copy for this candidate; what is left out is taken as it is."""

    thresholds: dict[Annotated[str, Field(max_length=MAX_INTENT_CHARS)], Threshold] = Field(
        default_factory=dict,
        max_length=500,
        description='Confidence thresholds per intent replacing the persona\'s, each in [0, 1]; key "" the default.',
        examples=[{"": 0.8, "billing": 0.9}],
    )
    llm_model: str = Field(default="", max_length=200, description="LLM model id; empty keeps the concierge's.")
    prompt_version: str = Field(
        default="", max_length=64, description="Prompt version; empty keeps the concierge's. Unknown ones are refused."
    )

    def to_proto(self) -> releases_pb2.ReleaseOverrides:
        return releases_pb2.ReleaseOverrides(
            thresholds=self.thresholds, llm_model=self.llm_model, prompt_version=self.prompt_version
        )


class CreateReleaseRequest(RequestBody):
    description: str = Field(
        min_length=1, max_length=MAX_REASON_CHARS, description="What changed and why.",
        examples=["Stricter billing threshold after the March refund policy change"],
    )
    overrides: ReleaseOverrides = Field(default_factory=ReleaseOverrides)
    request_id: str = Field(
        min_length=1, max_length=128, description="Your id of this creation: a retry with it gets the same release."
    )

    def to_proto(self, tenant_id: str, created_by: str) -> releases_pb2.CreateReleaseRequest:
        return releases_pb2.CreateReleaseRequest(
            tenant_id=tenant_id,
            description=self.description,
            created_by=created_by,
            request_id=self.request_id,
            overrides=self.overrides.to_proto(),
        )


class ComponentChange(BaseModel):
    component: str = Field(description="As the components name it; 'thresholds.billing' for one intent's threshold.")
    base: str = Field(description="Its value in the base release.")
    other: str = Field(description="Its value in the other release.")


class CompareReply(BaseModel):
    base: Release
    other: Release
    changes: list[ComponentChange] = Field(description="The components they differ in; empty when none.")

    @classmethod
    def from_proto(cls, response: releases_pb2.CompareReleasesResponse) -> CompareReply:
        return cls(
            base=Release.from_proto(response.base),
            other=Release.from_proto(response.other),
            changes=[ComponentChange(component=c.component, base=c.base, other=c.other) for c in response.changes],
        )


# --- promotion, rollback, events -----------------------------------------------


class PromoteRequest(RequestBody):
    override_reason: str = Field(
        default="",
        max_length=MAX_REASON_CHARS,
        description="Promote although the release's suite has not passed (a failed, partial or missing run): why. "
        "Recorded with the promotion. Empty: no override, and such a release is refused (409 SUITE_NOT_PASSED).",
    )


class RollbackRequest(RequestBody):
    to_release_id: str | None = Field(
        default=None,
        pattern=RELEASE_ID_PATTERN,
        description="The earlier release to serve again; omitted: the one live before the current one.",
    )
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS, description="Why, recorded with the rollback.")


class ReleaseEvent(BaseModel):
    sequence: int = Field(description="Position in the tenant's history (increasing).")
    kind: ReleaseEventKindName
    release_id: str
    previous_release_id: str | None = Field(description="The release live before (promotions and rollbacks).")
    actor: str = Field(description="Who: an admin key's holder, or 'system'.")
    detail: str = Field(description="Why, in words: an override's or rollback's reason, a suite run's score.")
    occurred_at: datetime | None

    @classmethod
    def from_proto(cls, event: releases_pb2.ReleaseEvent) -> ReleaseEvent:
        return cls(
            sequence=event.sequence,
            kind=enum_name(releases_pb2.ReleaseEventKind, event.kind),
            release_id=event.release_id,
            previous_release_id=event.previous_release_id or None,
            actor=event.actor,
            detail=event.detail,
            occurred_at=time_field(event, "occurred_at"),
        )


class ReleaseChangeReply(BaseModel):
    """A promotion's or rollback's outcome: the release now live, and the event recorded."""

    release: Release
    event: ReleaseEvent

    @classmethod
    def from_proto(
        cls, response: releases_pb2.PromoteReleaseResponse | releases_pb2.RollbackReleaseResponse
    ) -> ReleaseChangeReply:
        return cls(release=Release.from_proto(response.release), event=ReleaseEvent.from_proto(response.event))


class ReleaseEventListReply(BaseModel):
    events: list[ReleaseEvent] = Field(description="Newest first.")
    next_page_token: str | None

    @classmethod
    def from_proto(cls, response: releases_pb2.ListReleaseEventsResponse) -> ReleaseEventListReply:
        return cls(
            events=[ReleaseEvent.from_proto(e) for e in response.events],
            next_page_token=response.next_page_token or None,
        )


# --- shadow ------------------------------------------------------------------------------------


class Shadow(BaseModel):
    """A release deciding a share of the tenant's live turns beside the live release, after the live
    reply is stored: it never answers a customer, hands over or acts."""

    tenant_id: str
    shadow_id: str
    release_id: str = Field(description="The release deciding in shadow.")
    live_release_id: str = Field(
        description="The live release when the shadow started (each decision is compared with its own turn's)."
    )
    sample_rate: float = Field(description="Share of live turns also decided in shadow, in (0, 1].")
    active: bool = Field(description="Still running.")
    started_by: str = Field(description="The admin key's holder who started it.")
    started_at: datetime | None
    stopped_at: datetime | None = Field(description="When it stopped; null while active.")
    shadowed_turns: int = Field(description="Turns decided in shadow so far.")
    skipped_turns: int = Field(
        description="Sampled turns skipped because a replica already ran as many shadow decisions as it allows."
    )

    @classmethod
    def from_proto(cls, shadow: releases_pb2.Shadow) -> Shadow:
        return cls(
            tenant_id=shadow.tenant_id,
            shadow_id=shadow.shadow_id,
            release_id=shadow.release_id,
            live_release_id=shadow.live_release_id,
            sample_rate=shadow.sample_rate,
            active=shadow.active,
            started_by=shadow.started_by,
            started_at=time_field(shadow, "started_at"),
            stopped_at=time_field(shadow, "stopped_at"),
            shadowed_turns=shadow.shadowed_turns,
            skipped_turns=shadow.skipped_turns,
        )


class StartShadowRequest(RequestBody):
    sample_rate: StrictFloat = Field(
        default=1.0, gt=0.0, le=1.0, description="Share of live turns also decided in shadow, in (0, 1].",
        examples=[0.25],
    )


class StopShadowRequest(RequestBody):
    """Nothing to say: who stops it is the key's holder."""


class ShadowStartReply(BaseModel):
    """The shadow, active, and the event recorded (a shadow already running was stopped)."""

    shadow: Shadow
    event: ReleaseEvent

    @classmethod
    def from_proto(cls, response: releases_pb2.StartShadowResponse) -> ShadowStartReply:
        return cls(shadow=Shadow.from_proto(response.shadow), event=ReleaseEvent.from_proto(response.event))


class ArmFigures(BaseModel):
    """One release's decisions on the shadowed turns, against what humans did."""

    release_id: str
    turns: int = Field(description="Turns it decided.")
    answered: int = Field(description="Of those, answered.")
    answered_rate: float = Field(description="answered / turns (0 when no turns).")
    human_judged: int = Field(
        description="Turns with a human verdict on the AI's answer (an agent's or the customer's)."
    )
    agreed: int = Field(
        description="Of those, where its decision agreed with the humans: it answered and the answer was judged "
        "right, or it did not answer and the answer was judged wrong."
    )
    agreement: float = Field(description="agreed / human_judged (0 when none judged).")
    answered_judged: int = Field(description="Turns it would answer that humans judged.")
    answered_correct: int = Field(description="Of those, judged right.")
    judged_accuracy: float = Field(description="answered_correct / answered_judged: judged accuracy at its threshold.")
    intent_labelled: int = Field(description="Turns whose handoff has the agent's final intent.")
    intent_agreed: int = Field(description="Of those, where its intent was the agent's.")

    @classmethod
    def from_proto(cls, arm: releases_pb2.ArmFigures) -> ArmFigures:
        return cls(
            release_id=arm.release_id,
            turns=arm.turns,
            answered=arm.answered,
            answered_rate=arm.answered_rate,
            human_judged=arm.human_judged,
            agreed=arm.agreed,
            agreement=arm.agreement,
            answered_judged=arm.answered_judged,
            answered_correct=arm.answered_correct,
            judged_accuracy=arm.judged_accuracy,
            intent_labelled=arm.intent_labelled,
            intent_agreed=arm.intent_agreed,
        )


class TopicComparison(BaseModel):
    topic: str = Field(description='The turns\' intent; "" when triage gave none.')
    live: ArmFigures
    candidate: ArmFigures


class ShadowDisagreement(BaseModel):
    """One turn the two releases decided differently, with what the humans said."""

    conversation_id: str
    turn_index: int
    topic: str
    customer_text: str = Field(description="The customer's message, personal data masked.")
    live_decision: str = Field(description='"answered", "escalated", "clarify"...')
    live_reason: str = Field(description="Live reason code.")
    live_confidence: float
    candidate_decision: str
    candidate_reason: str
    candidate_confidence: float
    human_verdict: str = Field(
        description='What the humans said, in words ("agent sent the AI\'s answer", "customer: not helpful"); '
        '"" if nothing yet.'
    )
    candidate_reply: str = Field(description="The reply the shadow would have sent (its answer unit's words).")

    @classmethod
    def from_proto(cls, turn: releases_pb2.ShadowDisagreement) -> ShadowDisagreement:
        return cls(
            conversation_id=turn.conversation_id,
            turn_index=turn.turn_index,
            topic=turn.topic,
            customer_text=turn.customer_text,
            live_decision=turn.live_decision,
            live_reason=turn.live_reason,
            live_confidence=turn.live_confidence,
            candidate_decision=turn.candidate_decision,
            candidate_reason=turn.candidate_reason,
            candidate_confidence=turn.candidate_confidence,
            human_verdict=turn.human_verdict,
            candidate_reply=turn.candidate_reply,
        )


class ShadowReport(BaseModel):
    """The live release's and the shadowed release's decisions on the same turns, against humans."""

    shadow: Shadow
    live: ArmFigures = Field(description="The live releases' figures on the shadowed turns.")
    candidate: ArmFigures = Field(description="The shadowed release's.")
    topics: list[TopicComparison] = Field(description="Per topic, most turns first.")
    disagreements: list[ShadowDisagreement] = Field(description="Turns decided differently, newest first.")
    method: str = Field(description="How the human verdicts were read, in words.")

    @classmethod
    def from_proto(cls, response: releases_pb2.GetShadowReportResponse) -> ShadowReport:
        return cls(
            shadow=Shadow.from_proto(response.shadow),
            live=ArmFigures.from_proto(response.live),
            candidate=ArmFigures.from_proto(response.candidate),
            topics=[
                TopicComparison(
                    topic=t.topic, live=ArmFigures.from_proto(t.live), candidate=ArmFigures.from_proto(t.candidate)
                )
                for t in response.topics
            ],
            disagreements=[ShadowDisagreement.from_proto(d) for d in response.disagreements],
            method=response.method,
        )


# --- canary ------------------------------------------------------------------------------------

# Each bound as the concierge defaults it (CanaryPolicy in releases.proto): margins on rates of bad
# outcomes (answers judged wrong, escalations), observations per arm, the one-sided confidence.
Margin = Annotated[StrictFloat, Field(gt=0.0, lt=1.0)]
Observations = Annotated[StrictInt, Field(ge=1, le=1_000_000)]


class CanaryPolicyIn(RequestBody):
    """When the canary is worse enough to roll back: when, with at least the minimum observations in both
    arms, the lower end of the one-sided Newcombe interval for canary rate minus live rate is above the
    margin. Each field left out takes its default."""

    accuracy_margin: Margin | None = Field(default=None, description="On the share of answers judged wrong (0.05).")
    escalation_margin: Margin | None = Field(default=None, description="On the escalation rate (0.10).")
    min_judged: Observations | None = Field(
        default=None, description="Judged answers needed in each arm before accuracy is compared (20)."
    )
    min_turns: Observations | None = Field(
        default=None, description="Turns needed in each arm before escalation rates are compared (30)."
    )
    confidence: Annotated[StrictFloat, Field(gt=0.5, lt=1.0)] | None = Field(
        default=None, description="One-sided confidence of the interval (0.99: it is checked at every judgement)."
    )

    def to_proto(self) -> releases_pb2.CanaryPolicy:
        # The proto's zero means the default: a field left out is sent as 0.
        return releases_pb2.CanaryPolicy(
            accuracy_margin=self.accuracy_margin or 0.0,
            escalation_margin=self.escalation_margin or 0.0,
            min_judged=self.min_judged or 0,
            min_turns=self.min_turns or 0,
            confidence=self.confidence or 0.0,
        )


class CanaryPolicy(BaseModel):
    """The rollback rule in force, defaults filled in."""

    accuracy_margin: float
    escalation_margin: float
    min_judged: int
    min_turns: int
    confidence: float

    @classmethod
    def from_proto(cls, policy: releases_pb2.CanaryPolicy) -> CanaryPolicy:
        return cls(
            accuracy_margin=policy.accuracy_margin,
            escalation_margin=policy.escalation_margin,
            min_judged=policy.min_judged,
            min_turns=policy.min_turns,
            confidence=policy.confidence,
        )


class CanaryArm(BaseModel):
    """One arm's figures since the canary started."""

    release_id: str
    turns: int = Field(description="Turns it served.")
    escalated: int
    escalation_rate: float = Field(description="escalated / turns (0 when no turns).")
    judged: int = Field(description="Its answers judged by agents or customers.")
    judged_correct: int
    judged_accuracy: float = Field(description="judged_correct / judged (0 when none judged).")
    rated: int = Field(description="Customers' ratings of its answers.")
    rated_helpful: int

    @classmethod
    def from_proto(cls, arm: releases_pb2.CanaryArm) -> CanaryArm:
        return cls(
            release_id=arm.release_id,
            turns=arm.turns,
            escalated=arm.escalated,
            escalation_rate=arm.escalation_rate,
            judged=arm.judged,
            judged_correct=arm.judged_correct,
            judged_accuracy=arm.judged_accuracy,
            rated=arm.rated,
            rated_helpful=arm.rated_helpful,
        )


class Canary(BaseModel):
    """A release served to a share of the tenant's conversations (a random draw, sticky per conversation),
    compared with the live release as judgements arrive."""

    tenant_id: str
    canary_id: str
    release_id: str = Field(description="The canary's release.")
    live_release_id: str = Field(description="The live release it is compared with.")
    percent: int = Field(description="Share of conversations, percent.")
    state: CanaryStateName
    policy: CanaryPolicy
    started_by: str
    started_at: datetime | None
    ended_at: datetime | None = Field(description="Null while running.")
    end_reason: str = Field(description="Why it ended, in words (an automatic rollback's figures).")
    canary: CanaryArm = Field(description="The canary arm at the latest evaluation.")
    live: CanaryArm = Field(description="The live arm at the latest evaluation.")
    verdict: str = Field(description='The latest evaluation, in words ("not enough judged answers yet: 7 of 20").')
    evaluated_at: datetime | None

    @classmethod
    def from_proto(cls, canary: releases_pb2.Canary) -> Canary:
        return cls(
            tenant_id=canary.tenant_id,
            canary_id=canary.canary_id,
            release_id=canary.release_id,
            live_release_id=canary.live_release_id,
            percent=canary.percent,
            state=enum_name(releases_pb2.CanaryState, canary.state),
            policy=CanaryPolicy.from_proto(canary.policy),
            started_by=canary.started_by,
            started_at=time_field(canary, "started_at"),
            ended_at=time_field(canary, "ended_at"),
            end_reason=canary.end_reason,
            canary=CanaryArm.from_proto(canary.canary),
            live=CanaryArm.from_proto(canary.live),
            verdict=canary.verdict,
            evaluated_at=time_field(canary, "evaluated_at"),
        )


class StartCanaryRequest(RequestBody):
    percent: StrictInt = Field(ge=1, le=50, description="Share of the tenant's conversations, percent.", examples=[10])
    policy: CanaryPolicyIn = Field(default_factory=CanaryPolicyIn)
    override_reason: str = Field(
        default="",
        max_length=MAX_REASON_CHARS,
        description="Start although the release's suite has not passed: why (recorded). Empty: no override, and "
        "such a release is refused (409 SUITE_NOT_PASSED).",
    )


class StopCanaryRequest(RequestBody):
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS, description="Why, recorded with the stop.")


class CanaryStartReply(BaseModel):
    """The canary, running, and the event recorded."""

    canary: Canary
    event: ReleaseEvent

    @classmethod
    def from_proto(cls, response: releases_pb2.StartCanaryResponse) -> CanaryStartReply:
        return cls(canary=Canary.from_proto(response.canary), event=ReleaseEvent.from_proto(response.event))


# --- confidence refit --------------------------------------------------------------------------


class RefitRequest(RequestBody):
    request_id: str = Field(
        min_length=1, max_length=128, description="Your id of this refit: a retry with it gets the same release."
    )
    target_accuracy: StrictFloat = Field(
        default=0.9, gt=0.5, lt=1.0, description="Accuracy the thresholds must give, in (0.5, 1).", examples=[0.9]
    )


class TopicFit(BaseModel):
    topic: str
    examples: int = Field(description="Judged answers of the topic.")
    threshold: float = Field(
        description="Threshold chosen: the lowest whose out-of-fold accuracy reaches the target; 0 when unset "
        "(the topic keeps the default)."
    )
    coverage: float = Field(description="Share of the topic's judged answers at or above it, out of fold.")
    accuracy: float = Field(description="Their accuracy, out of fold.")


class FitValidation(BaseModel):
    """The refit's out-of-fold check, beside the live fit's on the same judged answers."""

    examples: int = Field(description="Judged answers used.")
    correct: int = Field(description="Of those, judged right.")
    folds: int = Field(description="Folds: each answer is scored by a fit that never saw it.")
    live_ece: float = Field(description="Expected calibration error of the live fit on these answers.")
    refit_ece: float = Field(description="Of the refit, out of fold.")
    threshold: float = Field(description="The default threshold chosen for the target accuracy.")
    live_coverage: float = Field(description="Share of the answers at or above the live fit's own threshold.")
    refit_coverage: float = Field(description="At the refit's threshold, out of fold.")
    live_accuracy: float = Field(description="Accuracy of the answers at or above the live fit's own threshold.")
    refit_accuracy: float = Field(description="At the refit's threshold, out of fold.")
    topics: list[TopicFit] = Field(description="Per topic with enough judged answers.")

    @classmethod
    def from_proto(cls, validation: releases_pb2.FitValidation) -> FitValidation:
        return cls(
            examples=validation.examples,
            correct=validation.correct,
            folds=validation.folds,
            live_ece=validation.live_ece,
            refit_ece=validation.refit_ece,
            threshold=validation.threshold,
            live_coverage=validation.live_coverage,
            refit_coverage=validation.refit_coverage,
            live_accuracy=validation.live_accuracy,
            refit_accuracy=validation.refit_accuracy,
            topics=[
                TopicFit(topic=t.topic, examples=t.examples, threshold=t.threshold, coverage=t.coverage,
                         accuracy=t.accuracy)
                for t in validation.topics
            ],
        )


class RefitReply(BaseModel):
    """The candidate made from the refit (not live: it goes through suite, shadow and canary), and its check."""

    release: Release
    validation: FitValidation

    @classmethod
    def from_proto(cls, response: releases_pb2.RefitConfidenceResponse) -> RefitReply:
        return cls(
            release=Release.from_proto(response.release), validation=FitValidation.from_proto(response.validation)
        )
