"""Usage events in; risk findings, outreach drafts and their review out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from aftercare.outreach.v1 import outreach_pb2
from gateway.auth import AdminKey, AgentKey, ChannelKey
from gateway.deps import BackendsDep, DraftId, FindingId, TenantId
from gateway.problems import problem_responses
from gateway.schemas.common import proto_enum, to_timestamp
from gateway.schemas.outreach import (
    DetectRisksReply,
    DetectRisksRequest,
    DraftsReply,
    DraftStateName,
    OutreachDraft,
    ReviewDraftRequest,
    RiskFinding,
    SkippedAccount,
    UpsertAccountsReply,
    UpsertAccountsRequest,
    UsageEventsReply,
    UsageEventsRequest,
)

router = APIRouter(tags=["outreach"])

# What outreach's own importer sends per stream message.
USAGE_EVENTS_PER_MESSAGE = 500


@router.post(
    "/v1/tenants/{tenant_id}/usage-events",
    response_model=UsageEventsReply,
    summary="Product usage events (one stream); repeated event ids are counted once.",
    responses=problem_responses(400, 401, 403, 413, 429, 503, 504),
)
async def record_usage(
    tenant_id: TenantId, body: UsageEventsRequest, key: ChannelKey, backends: BackendsDep
) -> UsageEventsReply:
    events = [event.to_proto(key.tenant_id) for event in body.events]
    # Batched messages (RecordUsageRequest.events): far less per-message overhead than one per event.
    requests = [
        outreach_pb2.RecordUsageRequest(events=events[start : start + USAGE_EVENTS_PER_MESSAGE])
        for start in range(0, len(events), USAGE_EVENTS_PER_MESSAGE)
    ]
    response = await backends.outreach.stub.RecordUsage(iter(requests))
    return UsageEventsReply.from_proto(response)


@router.put(
    "/v1/tenants/{tenant_id}/outreach/accounts",
    response_model=UpsertAccountsReply,
    summary="Register or update customer accounts (contacts, CSM, opt-out); usage of unknown accounts is rejected.",
    responses=problem_responses(400, 401, 403, 413, 429, 503, 504),
)
async def upsert_accounts(
    tenant_id: TenantId, body: UpsertAccountsRequest, key: AdminKey, backends: BackendsDep
) -> UpsertAccountsReply:
    request = outreach_pb2.UpsertAccountsRequest(accounts=[a.to_proto(key.tenant_id) for a in body.accounts])
    response = await backends.outreach.stub.UpsertAccounts(request)
    return UpsertAccountsReply(created=response.created, updated=response.updated)


@router.post(
    "/v1/tenants/{tenant_id}/outreach/detect",
    response_model=DetectRisksReply,
    summary="Run the risk detectors over stored usage; findings with their evidence.",
    responses=problem_responses(400, 401, 403, 413, 429, 503, 504),
)
async def detect_risks(
    tenant_id: TenantId, body: DetectRisksRequest, key: AgentKey, backends: BackendsDep
) -> DetectRisksReply:
    request = outreach_pb2.DetectRisksRequest(tenant_id=key.tenant_id, as_of=to_timestamp(body.as_of))
    response = await backends.outreach.stub.DetectRisks(request)
    return DetectRisksReply(findings=[RiskFinding.from_proto(f) for f in response.findings])


@router.post(
    "/v1/tenants/{tenant_id}/outreach/findings/{finding_id}/drafts",
    response_model=DraftsReply,
    summary="Draft messages for a finding (one per affected account); refused without evidence.",
    responses=problem_responses(400, 401, 403, 404, 409, 429, 503, 504),
)
async def draft_outreach(
    tenant_id: TenantId, finding_id: FindingId, key: AgentKey, backends: BackendsDep
) -> DraftsReply:
    request = outreach_pb2.DraftOutreachRequest(tenant_id=key.tenant_id, finding_id=finding_id)
    response = await backends.outreach.stub.DraftOutreach(request)
    return DraftsReply(
        drafts=[OutreachDraft.from_proto(d) for d in response.drafts],
        skipped=[SkippedAccount(account_id=s.account_id, reason=s.reason) for s in response.skipped],
    )


@router.get(
    "/v1/tenants/{tenant_id}/outreach/drafts",
    response_model=DraftsReply,
    summary="Outreach drafts, newest first.",
    responses=problem_responses(400, 401, 403, 429, 503, 504),
)
async def list_drafts(
    tenant_id: TenantId,
    key: AgentKey,
    backends: BackendsDep,
    state: Annotated[DraftStateName | None, Query(description="Pending review when omitted.")] = None,
) -> DraftsReply:
    request = outreach_pb2.ListDraftsRequest(
        tenant_id=key.tenant_id, state=proto_enum(outreach_pb2.DraftState, state) if state else None
    )
    response = await backends.outreach.stub.ListDrafts(request)
    return DraftsReply(drafts=[OutreachDraft.from_proto(d) for d in response.drafts])


@router.post(
    "/v1/tenants/{tenant_id}/outreach/drafts/{draft_id}/review",
    response_model=OutreachDraft,
    summary="Approve, edit (approve with a new body) or reject a draft.",
    responses=problem_responses(400, 401, 403, 404, 409, 413, 429, 503, 504),
)
async def review_draft(
    tenant_id: TenantId,
    draft_id: DraftId,
    body: ReviewDraftRequest,
    key: AgentKey,
    backends: BackendsDep,
) -> OutreachDraft:
    request = outreach_pb2.ReviewDraftRequest(
        tenant_id=key.tenant_id,
        draft_id=draft_id,
        action=proto_enum(outreach_pb2.ReviewAction, body.action),
        edited_body=body.edited_body or "",
        reviewer_id=key.name,
    )
    response = await backends.outreach.stub.ReviewDraft(request)
    return OutreachDraft.from_proto(response.draft)
