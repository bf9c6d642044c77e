"""The actions the assistant takes for customers, as agents see them: the tenant's actions (by
conversation, customer or state), the approvals waiting for an agent, approve or reject one (through
escalation, which tells the customer the outcome in their conversation), the copilot path (the
catalog's tools, a record read and an action proposed and confirmed by an agent for the customer,
with the checks the assistant gets), and the audit trail (a page at a time, or exported as JSON
Lines). Each handler is one call; the agent is the key's holder, never a claim in the body.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

import grpc
import structlog
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aftercare.actions.v1 import actions_pb2, actions_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import customer_pb2
from gateway.auth import AdminKey, AgentKey
from gateway.backends import Backends
from gateway.deps import BackendsDep, ConversationId, TenantId
from gateway.keys import ApiKey
from gateway.problems import problem_responses
from gateway.schemas.actions import (
    Action,
    ActionListReply,
    ActionStateName,
    ApprovalOutcome,
    AuditListReply,
    ConfirmRequest,
    DecisionRequest,
    ProposeRequest,
    ReadRecordRequest,
    RecordReply,
    ToolKindName,
    ToolListReply,
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
    backends: Backends, key: ApiKey, action_id: str, choice: escalation_pb2.ApprovalChoice, body: DecisionRequest
) -> ApprovalOutcome:
    # Through escalation, not straight to the actions service: the customer is told the outcome in
    # their conversation, once. No handoff id: escalation finds the conversation's newest one.
    request = escalation_pb2.DecideActionApprovalRequest(
        tenant_id=key.tenant_id,
        action_id=action_id,
        choice=choice,
        agent_id=key.name,
        agent_name=body.agent_name or "",
        note=body.note,
    )
    return ApprovalOutcome.from_proto(await backends.escalation.stub.DecideActionApproval(request))


_DECISION_PROBLEMS = problem_responses(400, 401, 403, 404, 409, 413, 429, 503, 504)


@router.post(
    "/v1/tenants/{tenant_id}/actions/{action_id}:approve",
    response_model=ApprovalOutcome,
    summary="Approve an action awaiting approval: it executes now, exactly once, and the customer is told the "
    "outcome in their conversation.",
    description="A retried approval returns the stored outcome and sends no second message. 409 when the action "
    "is not awaiting approval (rejected, withdrawn, or never needed it). 503 when the company's system cannot be "
    "reached (the action is then retryable; nothing half-done).",
    responses=_DECISION_PROBLEMS,
)
async def approve_action(
    tenant_id: TenantId, action_id: ActionId, body: DecisionRequest, key: AgentKey, backends: BackendsDep
) -> ApprovalOutcome:
    return await _decide(backends, key, action_id, escalation_pb2.APPROVAL_CHOICE_APPROVE, body)


@router.post(
    "/v1/tenants/{tenant_id}/actions/{action_id}:reject",
    response_model=ApprovalOutcome,
    summary="Reject an action awaiting approval: it never runs, and the customer is told (with the note).",
    description="409 when the action is not awaiting approval.",
    responses=_DECISION_PROBLEMS,
)
async def reject_action(
    tenant_id: TenantId, action_id: ActionId, body: DecisionRequest, key: AgentKey, backends: BackendsDep
) -> ApprovalOutcome:
    return await _decide(backends, key, action_id, escalation_pb2.APPROVAL_CHOICE_REJECT, body)


# --- the copilot path: an agent reads and acts for the customer ------------
# The actor is the key's holder (ACTOR_KIND_AGENT); the actions service makes the checks it makes
# for the assistant (verified customer, own records only, schema, preconditions, approval rules).


def _agent(key: ApiKey) -> actions_pb2.Actor:
    return actions_pb2.Actor(kind=actions_pb2.ACTOR_KIND_AGENT, id=key.name)


@router.get(
    "/v1/tenants/{tenant_id}/tools",
    response_model=ToolListReply,
    summary="The tenant's action catalog: every tool with its argument schema, rules and kind.",
    description="404 (CATALOG_NOT_FOUND) for a tenant without a catalog.",
    responses=problem_responses(400, 401, 403, 404, 429, 503, 504),
)
async def list_tools(
    tenant_id: TenantId,
    key: AgentKey,
    actions: ActionsStub,
    kind: Annotated[ToolKindName | None, Query(description="Only read or only write tools.")] = None,
) -> ToolListReply:
    request = actions_pb2.ListToolsRequest(
        tenant_id=key.tenant_id, kind=proto_enum(actions_pb2.ToolKind, kind) if kind else None
    )
    return ToolListReply.from_proto(await actions.ListTools(request))


@router.post(
    "/v1/tenants/{tenant_id}/conversations/{conversation_id}/records:read",
    response_model=RecordReply,
    summary="Read one of the conversation's verified customer's records with a read tool (copilot path).",
    description="Only the verified customer's own records: 403 for another's, 409 before verification. An "
    "identity tool (no customer_id) verifies the conversation's customer.",
    responses=problem_responses(400, 401, 403, 404, 409, 413, 429, 503, 504),
)
async def read_record(
    tenant_id: TenantId, conversation_id: ConversationId, body: ReadRecordRequest, key: AgentKey,
    actions: ActionsStub,
) -> RecordReply:
    request = actions_pb2.ExecuteReadRequest(
        customer=customer_pb2.CustomerRef(tenant_id=key.tenant_id, customer_id=body.customer_id or ""),
        conversation_id=conversation_id,
        tool=body.tool,
        arguments_json=json.dumps(body.arguments),
        actor=_agent(key),
    )
    return RecordReply.from_proto(await actions.ExecuteRead(request))


@router.post(
    "/v1/tenants/{tenant_id}/conversations/{conversation_id}/actions",
    response_model=Action,
    summary="Propose an action for the conversation's verified customer (copilot path): checked, not executed.",
    description="The answer has the summary, the fingerprint to confirm it with and whether an agent must approve "
    "it. 400: arguments against the tool's schema; 403: another customer's record; 409: identity not verified or "
    "a policy precondition (the detail names it). A retry with the same request_id returns the same action.",
    responses=problem_responses(400, 401, 403, 404, 409, 413, 429, 503, 504),
)
async def propose_action(
    tenant_id: TenantId, conversation_id: ConversationId, body: ProposeRequest, key: AgentKey, actions: ActionsStub
) -> Action:
    request = actions_pb2.ProposeActionRequest(
        customer=customer_pb2.CustomerRef(tenant_id=key.tenant_id, customer_id=body.customer_id),
        conversation_id=conversation_id,
        tool=body.tool,
        arguments_json=json.dumps(body.arguments),
        request_id=body.request_id,
        actor=_agent(key),
    )
    return Action.from_proto((await actions.ProposeAction(request)).action)


@router.post(
    "/v1/tenants/{tenant_id}/actions/{action_id}:confirm",
    response_model=Action,
    summary="Run a proposed action for the customer (copilot path): exactly once, or on to another agent's "
    "approval when a rule needs one.",
    description="The fingerprint must be the proposal's: a revised action's is refused (409). A repeated call "
    "returns the stored outcome. 503 when the company's system cannot be reached (nothing half-done).",
    responses=problem_responses(400, 401, 403, 404, 409, 413, 429, 503, 504),
)
async def confirm_action(
    tenant_id: TenantId, action_id: ActionId, body: ConfirmRequest, key: AgentKey, actions: ActionsStub
) -> Action:
    request = actions_pb2.ConfirmActionRequest(
        tenant_id=key.tenant_id,
        action_id=action_id,
        fingerprint=body.fingerprint,
        # What the audit trail records as the yes: who gave it, and on which path.
        confirmation_text=f"Confirmed by agent {key.name} for the customer (copilot).",
        actor=_agent(key),
        conversation_id=body.conversation_id,
    )
    return Action.from_proto((await actions.ConfirmAction(request)).action)


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
