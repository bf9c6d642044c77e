"""The actions the assistant takes for customers, as agents see them: the tenant's actions (by
conversation, customer or state), the approvals waiting for an agent, approve or reject one, and
the audit trail (a page at a time, or exported as JSON Lines). Each handler is one call to the
actions service; the agent who decides is the key's holder, never a claim in the body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import grpc
import structlog
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aftercare.actions.v1 import actions_pb2, actions_pb2_grpc
from gateway.auth import AdminKey, AgentKey
from gateway.deps import BackendsDep, TenantId
from gateway.problems import problem_responses
from gateway.schemas.actions import (
    Action,
    ActionListReply,
    ActionStateName,
    AuditListReply,
    DecisionRequest,
)
from gateway.schemas.common import IsoDateTime, proto_enum, to_timestamp
from servicekit.ids import CUSTOMER_ID_PATTERN, ID_PATTERN

log = structlog.get_logger("gateway.actions")
router = APIRouter(tags=["actions"])

ActionId = Annotated[str, Path(pattern=ID_PATTERN, description="Action id, from a list or a handoff.")]
ConversationFilter = Annotated[
    str, Query(pattern=f"({ID_PATTERN})|^$", description="Only this conversation's; all when empty.")
]
CustomerFilter = Annotated[
    str, Query(pattern=f"({CUSTOMER_ID_PATTERN})|^$", description="Only this customer's; all when empty.")
]
PageToken = Annotated[str, Query(max_length=512)]
JSON_LINES = "application/x-ndjson"


class ActionsNotConfigured(StarletteHTTPException):
    """This gateway was started without an actions service (ACTIONS_ADDR empty)."""

    reason = "ACTIONS_NOT_CONFIGURED"

    def __init__(self) -> None:
        super().__init__(503, "This gateway has no actions service configured.")


async def _actions(backends: BackendsDep) -> actions_pb2_grpc.ActionsServiceStub:
    if backends.actions is None:
        raise ActionsNotConfigured()
    return backends.actions.stub


ActionsStub = Annotated[actions_pb2_grpc.ActionsServiceStub, Depends(_actions)]


@router.get(
    "/v1/tenants/{tenant_id}/actions",
    response_model=ActionListReply,
    summary="The tenant's actions, newest first: by conversation, customer or state.",
    responses=problem_responses(400, 401, 403, 429, 503, 504),
)
async def list_actions(
    tenant_id: TenantId,
    key: AgentKey,
    actions: ActionsStub,
    conversation_id: ConversationFilter = "",
    customer_id: CustomerFilter = "",
    state: Annotated[list[ActionStateName] | None, Query(description="Only these states (repeatable).")] = None,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
    page_token: PageToken = "",
) -> ActionListReply:
    request = actions_pb2.ListActionsRequest(
        tenant_id=key.tenant_id,
        conversation_id=conversation_id,
        customer_id=customer_id,
        states=[proto_enum(actions_pb2.ActionState, name) for name in state or ()],
        page_size=page_size,
        page_token=page_token,
    )
    return ActionListReply.from_proto(await actions.ListActions(request))


# Before /actions/{action_id}, which would take "pending-approvals" for an id.
@router.get(
    "/v1/tenants/{tenant_id}/actions/pending-approvals",
    response_model=ActionListReply,
    summary="Actions the customer said yes to that wait for an agent's approval, newest first.",
    responses=problem_responses(400, 401, 403, 429, 503, 504),
)
async def list_pending_approvals(
    tenant_id: TenantId,
    key: AgentKey,
    actions: ActionsStub,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
    page_token: PageToken = "",
) -> ActionListReply:
    request = actions_pb2.ListActionsRequest(
        tenant_id=key.tenant_id,
        states=[actions_pb2.ACTION_STATE_AWAITING_APPROVAL],
        page_size=page_size,
        page_token=page_token,
    )
    return ActionListReply.from_proto(await actions.ListActions(request))


@router.get(
    "/v1/tenants/{tenant_id}/actions/{action_id}",
    response_model=Action,
    summary="One action: its arguments, summary, state, approval, result.",
    responses=problem_responses(400, 401, 403, 404, 429, 503, 504),
)
async def get_action(tenant_id: TenantId, action_id: ActionId, key: AgentKey, actions: ActionsStub) -> Action:
    response = await actions.GetAction(actions_pb2.GetActionRequest(tenant_id=key.tenant_id, action_id=action_id))
    return Action.from_proto(response.action)


async def _decide(
    actions: actions_pb2_grpc.ActionsServiceStub,
    tenant_id: str,
    action_id: str,
    agent_id: str,
    decision: actions_pb2.ApprovalDecision,
    note: str,
) -> Action:
    request = actions_pb2.DecideApprovalRequest(
        tenant_id=tenant_id, action_id=action_id, decision=decision, agent_id=agent_id, note=note
    )
    response = await actions.DecideApproval(request)
    return Action.from_proto(response.action)


@router.post(
    "/v1/tenants/{tenant_id}/actions/{action_id}:approve",
    response_model=Action,
    summary="Approve an action awaiting approval: it executes now, exactly once; the answer has its outcome.",
    description="409 when the action is not awaiting approval (decided already, withdrawn, or never needed it). "
    "503 when the company's system cannot be reached (the action is then retryable; nothing half-done).",
    responses=problem_responses(400, 401, 403, 404, 409, 413, 429, 503, 504),
)
async def approve_action(
    tenant_id: TenantId, action_id: ActionId, body: DecisionRequest, key: AgentKey, actions: ActionsStub
) -> Action:
    return await _decide(
        actions, key.tenant_id, action_id, key.name, actions_pb2.APPROVAL_DECISION_APPROVE, body.note
    )


@router.post(
    "/v1/tenants/{tenant_id}/actions/{action_id}:reject",
    response_model=Action,
    summary="Reject an action awaiting approval: it never runs.",
    description="409 when the action is not awaiting approval.",
    responses=problem_responses(400, 401, 403, 404, 409, 413, 429, 503, 504),
)
async def reject_action(
    tenant_id: TenantId, action_id: ActionId, body: DecisionRequest, key: AgentKey, actions: ActionsStub
) -> Action:
    return await _decide(actions, key.tenant_id, action_id, key.name, actions_pb2.APPROVAL_DECISION_REJECT, body.note)


@router.get(
    "/v1/tenants/{tenant_id}/audit",
    response_model=AuditListReply,
    summary="The audit trail of the tenant's actions and reads, oldest first, personal data masked.",
    responses=problem_responses(400, 401, 403, 429, 503, 504),
)
async def list_audit_events(
    tenant_id: TenantId,
    key: AgentKey,
    actions: ActionsStub,
    conversation_id: ConversationFilter = "",
    customer_id: CustomerFilter = "",
    action_id: Annotated[str, Query(pattern=f"({ID_PATTERN})|^$", description="Only this action's.")] = "",
    page_size: Annotated[int, Query(ge=1, le=500)] = 100,
    page_token: PageToken = "",
) -> AuditListReply:
    request = actions_pb2.ListAuditEventsRequest(
        tenant_id=key.tenant_id,
        conversation_id=conversation_id,
        customer_id=customer_id,
        action_id=action_id,
        page_size=page_size,
        page_token=page_token,
    )
    return AuditListReply.from_proto(await actions.ListAuditEvents(request))


@router.get(
    "/v1/tenants/{tenant_id}/audit:export",
    response_class=StreamingResponse,
    summary="The audit trail as JSON Lines (one event per line, oldest first), streamed.",
    description="Each line is an audit event under its proto field names (enums by name, times in RFC 3339). "
    "A failure after the first line ends the download without its final chunk, so a partial export is never "
    "mistaken for a whole one.",
    responses={
        200: {"description": "JSON Lines.", "content": {JSON_LINES: {"schema": {"type": "string"}}}},
        **problem_responses(400, 401, 403, 429, 503, 504),
    },
)
async def export_audit(
    tenant_id: TenantId,
    key: AdminKey,
    actions: ActionsStub,
    conversation_id: ConversationFilter = "",
    customer_id: CustomerFilter = "",
    since: Annotated[IsoDateTime | None, Query(description="Events at or after this time.")] = None,
    until: Annotated[IsoDateTime | None, Query(description="Events before this time.")] = None,
) -> StreamingResponse:
    request = actions_pb2.ExportAuditRequest(
        tenant_id=key.tenant_id,
        conversation_id=conversation_id,
        customer_id=customer_id,
        since=to_timestamp(since),
        until=to_timestamp(until),
    )
    call = actions.ExportAudit(request)
    try:
        # The first chunk before the 200: a refusal (bad range, backend down) is still a problem+json.
        first = await call.read()
    except BaseException:
        call.cancel()
        raise

    async def lines() -> AsyncIterator[bytes]:
        chunk = first
        try:
            while chunk is not grpc.aio.EOF:
                assert isinstance(chunk, actions_pb2.ExportAuditResponse)
                yield chunk.jsonl.encode()
                chunk = await call.read()
        except grpc.aio.AioRpcError as error:
            log.warning("audit_export_broken", code=error.code().name, backend_detail=error.details())
            raise
        finally:
            call.cancel()

    filename = f"audit-{key.tenant_id}.jsonl".replace(":", "_")
    return StreamingResponse(
        lines(), media_type=JSON_LINES, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
