"""The delivery feed: agents' replies for channel integrations to deliver
(a messaging app, a ticket system), in order, from a cursor. Each message
appears once; its message_id is the integration's idempotency key."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import conversation_pb2
from gateway.auth import AgentKey
from gateway.deps import BackendsDep, TenantId
from gateway.problems import problem_responses
from gateway.schemas.common import proto_enum
from gateway.schemas.deliveries import DeliveriesReply

router = APIRouter(tags=["handoffs"])


@router.get(
    "/v1/tenants/{tenant_id}/deliveries",
    response_model=DeliveriesReply,
    summary="Agents' messages to deliver, oldest first, after a cursor (poll with the last next_cursor).",
    responses=problem_responses(400, 401, 403, 429, 503, 504),
)
async def list_deliveries(
    tenant_id: TenantId,
    key: AgentKey,
    backends: BackendsDep,
    channel: Annotated[Literal["api", "chat", "email"] | None, Query(description="Every channel when omitted.")] = None,
    after: Annotated[
        str, Query(max_length=512, description="next_cursor of the previous page; the start when empty.")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeliveriesReply:
    request = escalation_pb2.ListDeliveriesRequest(
        tenant_id=key.tenant_id,
        channel=proto_enum(conversation_pb2.Channel, channel) if channel else None,
        after_cursor=after,
        page_size=limit,
    )
    response = await backends.escalation.stub.ListDeliveries(request)
    return DeliveriesReply.from_proto(response)
