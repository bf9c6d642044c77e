"""The agent's side: the handoff queue, one handoff with its context package
and its conversation's thread, the reply (delivered to the customer and
recorded as feedback on the AI draft), resolution, the tenant's handoff
settings, and triage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from aftercare.escalation.v1 import escalation_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import verdict_pb2
from gateway.auth import AdminKey, AgentKey
from gateway.deps import BackendsDep, HandoffId, TenantId
from gateway.problems import problem_responses
from gateway.schemas.common import proto_enum
from gateway.schemas.handoffs import (
    AgentReplyReply,
    AgentReplyRequest,
    AssignRequest,
    HandoffDetailReply,
    HandoffListReply,
    HandoffReply,
    HandoffSettingsReply,
    HandoffSettingsRequest,
    HandoffStateName,
    ResolveRequest,
    TierName,
    TriageReply,
    TriageRequest,
)

router = APIRouter(tags=["handoffs"])


@router.get(
    "/v1/tenants/{tenant_id}/handoffs",
    response_model=HandoffListReply,
    summary="The handoff queue, by priority then age.",
    responses=problem_responses(400, 401, 403, 429, 503, 504),
)
async def list_handoffs(
    tenant_id: TenantId,
    key: AgentKey,
    backends: BackendsDep,
    queue: Annotated[str, Query(max_length=128, description="One queue; all when empty.")] = "",
    state: Annotated[HandoffStateName | None, Query(description="Waiting and assigned when omitted.")] = None,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
    page_token: Annotated[str, Query(max_length=512)] = "",
    tier: Annotated[TierName | None, Query(description="Every tier when omitted.")] = None,
) -> HandoffListReply:
    request = escalation_pb2.ListHandoffsRequest(
        tenant_id=key.tenant_id,
        queue=queue,
        state=proto_enum(escalation_pb2.HandoffState, state) if state else None,
        routing_tier=proto_enum(verdict_pb2.Tier, tier) if tier else None,
        # The same for an escalation that does not read routing_tier yet.
        tier=proto_enum(triage_pb2.Tier, tier) if tier else None,
        page_size=page_size,
        page_token=page_token,
    )
    response = await backends.escalation.stub.ListHandoffs(request)
    return HandoffListReply.from_proto(response)


@router.get(
    "/v1/tenants/{tenant_id}/handoffs/{handoff_id}",
    response_model=HandoffDetailReply,
    summary="One handoff with its context package, its history and its conversation's thread.",
    responses=problem_responses(400, 401, 403, 404, 429, 503, 504),
)
async def get_handoff(
    tenant_id: TenantId, handoff_id: HandoffId, key: AgentKey, backends: BackendsDep
) -> HandoffDetailReply:
    request = escalation_pb2.GetHandoffRequest(tenant_id=key.tenant_id, handoff_id=handoff_id)
    response = await backends.escalation.stub.GetHandoff(request)
    return HandoffDetailReply.from_get_response(response)


@router.post(
    "/v1/tenants/{tenant_id}/handoffs/{handoff_id}/assign",
    response_model=HandoffReply,
    summary="Take a waiting handoff: the key's holder becomes its agent.",
    responses=problem_responses(400, 401, 403, 404, 409, 413, 429, 503, 504),
)
async def assign_handoff(
    tenant_id: TenantId,
    handoff_id: HandoffId,
    body: AssignRequest,
    key: AgentKey,
    backends: BackendsDep,
) -> HandoffReply:
    request = escalation_pb2.AssignHandoffRequest(
        tenant_id=key.tenant_id, handoff_id=handoff_id, agent_id=key.name, expected_version=body.expected_version
    )
    response = await backends.escalation.stub.AssignHandoff(request)
    return HandoffReply.from_proto(response.handoff)


@router.post(
    "/v1/tenants/{tenant_id}/handoffs/{handoff_id}/replies",
    response_model=AgentReplyReply,
    summary="Send the agent's reply: stored once (client_message_id) and delivered to the customer on the "
    "conversation's channel; compared with the AI draft for the feedback loop.",
    responses=problem_responses(400, 401, 403, 404, 409, 413, 429, 503, 504),
)
async def reply_to_handoff(
    tenant_id: TenantId,
    handoff_id: HandoffId,
    body: AgentReplyRequest,
    key: AgentKey,
    backends: BackendsDep,
) -> AgentReplyReply:
    # The agent is who holds the key, never a claim in the body.
    request = body.to_proto(key.tenant_id, handoff_id, agent_id=key.name)
    response = await backends.escalation.stub.SubmitAgentReply(request)
    return AgentReplyReply.from_proto(response)


@router.post(
    "/v1/tenants/{tenant_id}/handoffs/{handoff_id}/resolve",
    response_model=HandoffReply,
    summary="Close a handoff with its resolution.",
    responses=problem_responses(400, 401, 403, 404, 409, 413, 429, 503, 504),
)
async def resolve_handoff(
    tenant_id: TenantId,
    handoff_id: HandoffId,
    body: ResolveRequest,
    key: AgentKey,
    backends: BackendsDep,
) -> HandoffReply:
    request = escalation_pb2.ResolveHandoffRequest(
        tenant_id=key.tenant_id,
        handoff_id=handoff_id,
        agent_id=key.name,
        resolution=body.resolution,
        expected_version=body.expected_version,
    )
    response = await backends.escalation.stub.ResolveHandoff(request)
    return HandoffReply.from_proto(response.handoff)


@router.get(
    "/v1/tenants/{tenant_id}/handoff-settings",
    response_model=HandoffSettingsReply,
    summary="The tenant's handoff settings (defaults when never set).",
    responses=problem_responses(400, 401, 403, 429, 503, 504),
)
async def get_handoff_settings(tenant_id: TenantId, key: AdminKey, backends: BackendsDep) -> HandoffSettingsReply:
    response = await backends.escalation.stub.GetHandoffSettings(
        escalation_pb2.GetHandoffSettingsRequest(tenant_id=key.tenant_id)
    )
    return HandoffSettingsReply.from_proto(response.settings)


@router.put(
    "/v1/tenants/{tenant_id}/handoff-settings",
    response_model=HandoffSettingsReply,
    summary="Set the tenant's handoff settings: how long a resolved handoff reopens when the customer writes.",
    responses=problem_responses(400, 401, 403, 413, 429, 503, 504),
)
async def update_handoff_settings(
    tenant_id: TenantId, body: HandoffSettingsRequest, key: AdminKey, backends: BackendsDep
) -> HandoffSettingsReply:
    response = await backends.escalation.stub.UpdateHandoffSettings(
        escalation_pb2.UpdateHandoffSettingsRequest(tenant_id=key.tenant_id, settings=body.to_proto())
    )
    return HandoffSettingsReply.from_proto(response.settings)


@router.post(
    "/v1/tenants/{tenant_id}/triage",
    response_model=TriageReply,
    tags=["triage"],
    summary="Intent, sentiment, risk flags, priority and route of one message.",
    responses=problem_responses(400, 401, 403, 413, 429, 503, 504),
)
async def triage(tenant_id: TenantId, body: TriageRequest, key: AgentKey, backends: BackendsDep) -> TriageReply:
    response = await backends.triage.stub.TriageContact(body.to_proto(key.tenant_id))
    return TriageReply.from_proto(response)
