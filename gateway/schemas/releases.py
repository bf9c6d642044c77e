"""Bodies of the releases router (gateway/routes/releases.py): a tenant's releases (one immutable,
versioned snapshot of everything that decides what a customer gets), their golden-conversation
suite runs, promotion behind the suite, rollback, and the events that record them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, StrictBool, StrictInt, model_validator

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
    "unspecified", "created", "promoted", "promoted_with_override", "rolled_back", "suite_recorded"
]
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
