"""A tenant's releases (the concierge's ReleaseService): list, read ("live" names the live one),
create a candidate from the working copy, compare two, record a golden-conversation suite run,
promote behind the suite (an admin may override a failed or missing run with a reason), roll back,
and the events that record it all. Admin keys only; who acts is the key's holder, never the body.
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
    CompareReply,
    CreateReleaseRequest,
    PromoteRequest,
    RecordSuiteRunRequest,
    Release,
    ReleaseChangeReply,
    ReleaseEventListReply,
    ReleaseListReply,
    RollbackRequest,
    SuiteRun,
    SuiteRunReply,
)

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
