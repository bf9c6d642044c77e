"""A tenant's intent model: which version serves, and retraining it as a long-running
operation (AIP-151): POST ...:retrain answers 202 at once with the operation and its
Location; poll that until `done`; POST ...:cancel stops it. Reading is for agents
(support leads watch it in the console), retraining and cancelling for admins.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from aftercare.operations.v1 import operations_pb2
from aftercare.triage.v1 import triage_pb2
from gateway.auth import AdminKey, AgentKey
from gateway.deps import BackendsDep, TenantId
from gateway.problems import problem_responses
from gateway.schemas.models import (
    OPERATION_ID_PATTERN,
    IntentModelReply,
    Operation,
    OperationsReply,
    RetrainRequest,
)

router = APIRouter(tags=["intent model"])

OperationId = Annotated[str, Path(pattern=OPERATION_ID_PATTERN, description="Operation id, from its name.")]


def _operation_name(tenant_id: str, operation_id: str) -> str:
    return f"tenants/{tenant_id}/operations/{operation_id}"


def operation_location(name: str) -> str:
    """The URL of an operation named "tenants/{t}/operations/{id}"."""
    return f"/v1/{name}"


@router.get(
    "/v1/tenants/{tenant_id}/intent-model",
    response_model=IntentModelReply,
    summary="Which intent model version serves the tenant, and the versions stored.",
    responses=problem_responses(400, 401, 403, 429, 503, 504),
)
async def get_intent_model(tenant_id: TenantId, key: AgentKey, backends: BackendsDep) -> IntentModelReply:
    response = await backends.triage.stub.GetIntentModel(triage_pb2.GetIntentModelRequest(tenant_id=key.tenant_id))
    return IntentModelReply.from_proto(response)


@router.post(
    "/v1/tenants/{tenant_id}/intent-model:retrain",
    response_model=Operation,
    status_code=202,
    summary="Start training a new intent model version from labelled examples; poll the operation it returns.",
    description=(
        "Answers 202 at once with the operation and a `Location` header to poll. The new version serves only "
        "if it validates at least as well as the serving one (`response.promoted`). While a retrain of the "
        "tenant runs, another is refused with 409 (`OPERATION_ALREADY_RUNNING`, naming it)."
    ),
    responses=problem_responses(400, 401, 403, 409, 413, 429, 503, 504),
)
async def retrain_intent_model(
    tenant_id: TenantId, body: RetrainRequest, key: AdminKey, backends: BackendsDep, response: Response
) -> Operation:
    started = await backends.triage.stub.StartRetrain(body.to_proto(key.tenant_id))
    response.headers["Location"] = operation_location(started.operation.name)
    return Operation.from_proto(started.operation)


@router.get(
    "/v1/tenants/{tenant_id}/operations/{operation_id}",
    response_model=Operation,
    summary="One long-running operation: state, progress (metadata) and, once done, its response or error.",
    responses=problem_responses(400, 401, 403, 404, 429, 503, 504),
)
async def get_operation(
    tenant_id: TenantId, operation_id: OperationId, key: AgentKey, backends: BackendsDep
) -> Operation:
    request = operations_pb2.GetOperationRequest(name=_operation_name(key.tenant_id, operation_id))
    answer = await backends.triage_operations.stub.GetOperation(request)
    return Operation.from_proto(answer.operation)


@router.get(
    "/v1/tenants/{tenant_id}/operations",
    response_model=OperationsReply,
    summary="The tenant's long-running operations, newest first, a page at a time.",
    responses=problem_responses(400, 401, 403, 429, 503, 504),
)
async def list_operations(
    tenant_id: TenantId,
    key: AgentKey,
    backends: BackendsDep,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    page_token: Annotated[str, Query(max_length=512)] = "",
    only_running: Annotated[bool, Query(description="Only operations not done yet.")] = False,
) -> OperationsReply:
    request = operations_pb2.ListOperationsRequest(
        tenant_id=key.tenant_id, page_size=page_size, page_token=page_token, only_running=only_running
    )
    return OperationsReply.from_proto(await backends.triage_operations.stub.ListOperations(request))


@router.post(
    "/v1/tenants/{tenant_id}/operations/{operation_id}:cancel",
    response_model=Operation,
    summary="Ask a running operation to stop; it ends cancelled at its next checkpoint (poll it until done).",
    responses=problem_responses(400, 401, 403, 404, 429, 503, 504),
)
async def cancel_operation(
    tenant_id: TenantId, operation_id: OperationId, key: AdminKey, backends: BackendsDep
) -> Operation:
    request = operations_pb2.CancelOperationRequest(name=_operation_name(key.tenant_id, operation_id))
    answer = await backends.triage_operations.stub.CancelOperation(request)
    return Operation.from_proto(answer.operation)
