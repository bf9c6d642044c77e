"""A tenant's releases (the concierge's ReleaseService): list, read ("live" names the live one),
create a candidate from the working copy, compare two, record a golden-conversation suite run,
promote behind the suite (an admin may override a failed or missing run with a reason), roll back,
and the events that record it all; then prove a candidate on live traffic: run it in shadow and read
its report against what humans did, serve it as a canary that rolls back by itself when worse, and
refit the confidence from the tenant's judged answers into a new candidate. Admin keys only; who
acts is the key's holder, never the body.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from aftercare.concierge.v1 import releases_pb2
from gateway.auth import AdminKey
from gateway.deps import BackendsDep, TenantId
from gateway.problems import problem_responses
from gateway.schemas.releases import (
    RELEASE_ID_PATTERN,
    RELEASE_REF_PATTERN,
    Canary,
    CanaryStartReply,
    CompareReply,
    CreateReleaseRequest,
    PromoteRequest,
    RecordSuiteRunRequest,
    RefitReply,
    RefitRequest,
    Release,
    ReleaseChangeReply,
    ReleaseEventListReply,
    ReleaseListReply,
    RollbackRequest,
    Shadow,
    ShadowReport,
    ShadowStartReply,
    StartCanaryRequest,
    StartShadowRequest,
    StopCanaryRequest,
    StopShadowRequest,
    SuiteRun,
    SuiteRunReply,
)
from servicekit.ids import ID_PATTERN

router = APIRouter(tags=["releases"])

ReleaseRef = Annotated[
    str, Path(pattern=RELEASE_REF_PATTERN, description='Release id, e.g. "r3", or "live" for the live one.')
]
ReleaseId = Annotated[str, Path(pattern=RELEASE_ID_PATTERN, description='Release id, e.g. "r3".')]
PageToken = Annotated[str, Query(max_length=512)]


@router.get(
    "/v1/tenants/{tenant_id}/releases",
    response_model=ReleaseListReply,
    summary="The tenant's releases, newest first, each with its components and latest suite run.",
    responses=problem_responses(400, 401, 403, 429, 503, 504),
)
async def list_releases(
    tenant_id: TenantId,
    key: AdminKey,
    backends: BackendsDep,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    page_token: PageToken = "",
) -> ReleaseListReply:
    request = releases_pb2.ListReleasesRequest(tenant_id=key.tenant_id, page_size=page_size, page_token=page_token)
    return ReleaseListReply.from_proto(await backends.releases.stub.ListReleases(request))


@router.post(
    "/v1/tenants/{tenant_id}/releases",
    response_model=Release,
    summary="Create a candidate release from the tenant's working copy, with overrides; a retry with the same "
    "request_id gets the same release.",
    description="The candidate does not serve customers until it is promoted. Prove it first: run the tenant's "
    "golden conversations against it (`bench/scenarios.py --release <id> --record`), which records a suite run.",
    responses=problem_responses(400, 401, 403, 409, 413, 429, 503, 504),
)
async def create_release(
    tenant_id: TenantId, body: CreateReleaseRequest, key: AdminKey, backends: BackendsDep
) -> Release:
    response = await backends.releases.stub.CreateRelease(body.to_proto(key.tenant_id, created_by=key.name))
    return Release.from_proto(response.release)


# Before GET .../releases/{release_id}: its path parameter would otherwise take "r3:compare".
@router.get(
    "/v1/tenants/{tenant_id}/releases/{release_id}:compare",
    response_model=CompareReply,
    summary="How a release differs from another: the components that differ, and both releases' latest suite runs.",
    responses=problem_responses(400, 401, 403, 404, 429, 503, 504),
)
async def compare_releases(
    tenant_id: TenantId,
    release_id: ReleaseRef,
    key: AdminKey,
    backends: BackendsDep,
    other: Annotated[
        str, Query(alias="with", pattern=RELEASE_REF_PATTERN, description='The release to compare with, or "live".')
    ],
) -> CompareReply:
    request = releases_pb2.CompareReleasesRequest(
        tenant_id=key.tenant_id, base_release_id=release_id, other_release_id=other
    )
    return CompareReply.from_proto(await backends.releases.stub.CompareReleases(request))


@router.get(
    "/v1/tenants/{tenant_id}/releases/{release_id}",
    response_model=Release,
    summary='One release ("live": the one serving the tenant now).',
    responses=problem_responses(400, 401, 403, 404, 429, 503, 504),
)
async def get_release(tenant_id: TenantId, release_id: ReleaseRef, key: AdminKey, backends: BackendsDep) -> Release:
    request = releases_pb2.GetReleaseRequest(tenant_id=key.tenant_id, release_id=release_id)
    return Release.from_proto((await backends.releases.stub.GetRelease(request)).release)


@router.post(
    "/v1/tenants/{tenant_id}/releases/{release_id}/suite-runs",
    response_model=SuiteRunReply,
    summary="Record a run of the tenant's golden conversations against a release (what promotion checks).",
    description="bench/scenarios.py sends it with `--record`. A partial run (a subset of the suite) is kept "
    "and shown but never clears a promotion.",
    responses=problem_responses(400, 401, 403, 404, 413, 429, 503, 504),
)
async def record_suite_run(
    tenant_id: TenantId, release_id: ReleaseId, body: RecordSuiteRunRequest, key: AdminKey, backends: BackendsDep
) -> SuiteRunReply:
    response = await backends.releases.stub.RecordSuiteRun(body.to_proto(key.tenant_id, release_id, run_by=key.name))
    return SuiteRunReply(run=SuiteRun.from_proto(response.run))


@router.post(
    "/v1/tenants/{tenant_id}/releases/{release_id}:promote",
    response_model=ReleaseChangeReply,
    summary="Make a release live; the live one retires. Refused while its suite has not passed, unless overridden.",
    description="409 `SUITE_NOT_PASSED` when the release's latest suite run failed, was partial or is missing and "
    "no `override_reason` is given; with one, the promotion is recorded as an override with that reason.",
    responses=problem_responses(400, 401, 403, 404, 409, 429, 503, 504),
)
async def promote_release(
    tenant_id: TenantId, release_id: ReleaseId, body: PromoteRequest, key: AdminKey, backends: BackendsDep
) -> ReleaseChangeReply:
    request = releases_pb2.PromoteReleaseRequest(
        tenant_id=key.tenant_id, release_id=release_id, actor=key.name, override_reason=body.override_reason
    )
    return ReleaseChangeReply.from_proto(await backends.releases.stub.PromoteRelease(request))


@router.post(
    "/v1/tenants/{tenant_id}/releases:rollback",
    response_model=ReleaseChangeReply,
    summary="Serve an earlier release again: the one live before the current one, or a named retired one.",
    description="No suite check: the release served before. Recorded with its reason.",
    responses=problem_responses(400, 401, 403, 404, 409, 429, 503, 504),
)
async def rollback_release(
    tenant_id: TenantId, body: RollbackRequest, key: AdminKey, backends: BackendsDep
) -> ReleaseChangeReply:
    request = releases_pb2.RollbackReleaseRequest(
        tenant_id=key.tenant_id, to_release_id=body.to_release_id or "", actor=key.name, reason=body.reason
    )
    return ReleaseChangeReply.from_proto(await backends.releases.stub.RollbackRelease(request))


@router.get(
    "/v1/tenants/{tenant_id}/release-events",
    response_model=ReleaseEventListReply,
    summary="The tenant's release history, newest first: creations, suite runs, promotions (overrides named) "
    "and rollbacks, with who and why.",
    responses=problem_responses(400, 401, 403, 429, 503, 504),
)
async def list_release_events(
    tenant_id: TenantId,
    key: AdminKey,
    backends: BackendsDep,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
    page_token: PageToken = "",
) -> ReleaseEventListReply:
    request = releases_pb2.ListReleaseEventsRequest(
        tenant_id=key.tenant_id, page_size=page_size, page_token=page_token
    )
    return ReleaseEventListReply.from_proto(await backends.releases.stub.ListReleaseEvents(request))


# --- shadow ------------------------------------------------------------------------------------


@router.post(
    "/v1/tenants/{tenant_id}/releases/{release_id}:shadow",
    response_model=ShadowStartReply,
    summary="Run a release in shadow: a share of live turns is also decided by it, its decisions stored beside "
    "the live ones. A shadow already running is stopped.",
    description="The shadow decides after the live reply is stored, off the customer's path, a bounded number "
    "at a time per replica (a sampled turn arriving while that budget is full is skipped and counted). It "
    "never answers a customer, creates a handoff, executes an action or records an outcome. 409 "
    "`RELEASE_IS_LIVE` for the live release.",
    responses=problem_responses(400, 401, 403, 404, 409, 429, 503, 504),
)
async def start_shadow(
    tenant_id: TenantId, release_id: ReleaseId, body: StartShadowRequest, key: AdminKey, backends: BackendsDep
) -> ShadowStartReply:
    request = releases_pb2.StartShadowRequest(
        tenant_id=key.tenant_id, release_id=release_id, sample_rate=body.sample_rate, actor=key.name
    )
    return ShadowStartReply.from_proto(await backends.releases.stub.StartShadow(request))


@router.post(
    "/v1/tenants/{tenant_id}/shadow:stop",
    response_model=Shadow,
    summary="Stop the tenant's shadow; its decisions stay for the report.",
    description="404 `NO_SHADOW` when none runs.",
    responses=problem_responses(400, 401, 403, 404, 429, 503, 504),
)
async def stop_shadow(tenant_id: TenantId, body: StopShadowRequest, key: AdminKey, backends: BackendsDep) -> Shadow:
    request = releases_pb2.StopShadowRequest(tenant_id=key.tenant_id, actor=key.name)
    return Shadow.from_proto((await backends.releases.stub.StopShadow(request)).shadow)


@router.get(
    "/v1/tenants/{tenant_id}/shadow-report",
    response_model=ShadowReport,
    summary="The shadowed release's decisions against the live release's on the same turns, and both against "
    "what humans did: overall, per topic, and the turns they decided differently.",
    description="Humans' verdicts: whether the agent sent the AI's candidate answer (escalation's judge), "
    "customers' ratings of answers, and the intent the agent finally set on the handoff. `method` says how "
    "they were read.",
    responses=problem_responses(400, 401, 403, 404, 429, 503, 504),
)
async def get_shadow_report(
    tenant_id: TenantId,
    key: AdminKey,
    backends: BackendsDep,
    shadow_id: Annotated[
        str, Query(pattern=ID_PATTERN, description="The shadow's id; left out: the tenant's latest shadow.")
    ] = "",
    max_disagreements: Annotated[int, Query(ge=0, le=100, description="Disagreements to list (0: 20).")] = 20,
) -> ShadowReport:
    request = releases_pb2.GetShadowReportRequest(
        tenant_id=key.tenant_id, shadow_id=shadow_id, max_disagreements=max_disagreements
    )
    return ShadowReport.from_proto(await backends.releases.stub.GetShadowReport(request))


# --- canary ------------------------------------------------------------------------------------


@router.post(
    "/v1/tenants/{tenant_id}/releases/{release_id}:canary",
    response_model=CanaryStartReply,
    summary="Serve a release to a share of the tenant's conversations, rolled back automatically when it does "
    "worse than the live release past the policy's bound.",
    description="Each conversation is assigned by a random draw fixed for the canary (sticky; no customer "
    "attribute decides). Its escalation rate and judged accuracy are compared with the live release's as "
    "judgements arrive. Refused like a promotion while the release's suite has not passed (409 "
    "`SUITE_NOT_PASSED`) unless `override_reason` is given; one canary per tenant (409 `CANARY_RUNNING`).",
    responses=problem_responses(400, 401, 403, 404, 409, 429, 503, 504),
)
async def start_canary(
    tenant_id: TenantId, release_id: ReleaseId, body: StartCanaryRequest, key: AdminKey, backends: BackendsDep
) -> CanaryStartReply:
    request = releases_pb2.StartCanaryRequest(
        tenant_id=key.tenant_id,
        release_id=release_id,
        percent=body.percent,
        policy=body.policy.to_proto(),
        actor=key.name,
        override_reason=body.override_reason,
    )
    return CanaryStartReply.from_proto(await backends.releases.stub.StartCanary(request))


@router.post(
    "/v1/tenants/{tenant_id}/canary:stop",
    response_model=Canary,
    summary="End the running canary by hand: every conversation is served by the live release again.",
    description="404 `NO_CANARY` when none runs.",
    responses=problem_responses(400, 401, 403, 404, 429, 503, 504),
)
async def stop_canary(tenant_id: TenantId, body: StopCanaryRequest, key: AdminKey, backends: BackendsDep) -> Canary:
    request = releases_pb2.StopCanaryRequest(tenant_id=key.tenant_id, actor=key.name, reason=body.reason)
    return Canary.from_proto((await backends.releases.stub.StopCanary(request)).canary)


@router.get(
    "/v1/tenants/{tenant_id}/canary",
    response_model=Canary,
    summary="The tenant's running canary, else its latest, with both arms' figures as last evaluated.",
    description="404 `NO_CANARY` when the tenant never ran one.",
    responses=problem_responses(400, 401, 403, 404, 429, 503, 504),
)
async def get_canary(tenant_id: TenantId, key: AdminKey, backends: BackendsDep) -> Canary:
    request = releases_pb2.GetCanaryRequest(tenant_id=key.tenant_id)
    return Canary.from_proto((await backends.releases.stub.GetCanary(request)).canary)


# --- confidence refit --------------------------------------------------------------------------


@router.post(
    "/v1/tenants/{tenant_id}/releases:refit",
    response_model=RefitReply,
    summary="Refit the confidence from the tenant's own judged answers into a new candidate release; a retry "
    "with the same request_id gets the same release.",
    description="Agents' verdicts and customers' ratings train the fit, validated out of fold beside the live "
    "fit on the same answers; topics with enough judged answers get their own threshold for the target "
    "accuracy. The candidate is the live release with the new fit and thresholds: it never serves untested "
    "(suite, shadow and canary as any other). 409 `NOT_ENOUGH_JUDGEMENTS` below the minimum.",
    responses=problem_responses(400, 401, 403, 404, 409, 429, 503, 504),
)
async def refit_confidence(tenant_id: TenantId, body: RefitRequest, key: AdminKey, backends: BackendsDep) -> RefitReply:
    request = releases_pb2.RefitConfidenceRequest(
        tenant_id=key.tenant_id, actor=key.name, request_id=body.request_id, target_accuracy=body.target_accuracy
    )
    return RefitReply.from_proto(await backends.releases.stub.RefitConfidence(request))
