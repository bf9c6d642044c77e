"""Customer channels: chat messages (whole or streamed as Server-Sent Events),
email/ticket intake, Tier-0 browsing events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import customer_pb2
from gateway.auth import ChannelKey, Forbidden, check_tenant
from gateway.deps import BackendsDep, ConversationId, DocId, HandoffId, SettingsDep, TenantId
from gateway.disconnect import until_client_leaves
from gateway.intake import converse_request, reply_route
from gateway.keys import ApiKey, Role
from gateway.problems import NotFoundProblem, problem_responses, rpc_error_problem
from gateway.schemas.conversations import (
    BrowsingEventRequest,
    ConversationReply,
    DeltaEvent,
    DismissReply,
    DismissRequest,
    EmailIntakeReply,
    EmailIntakeRequest,
    HandoffRatingReply,
    Me,
    MessageReply,
    PostMessageRequest,
    RateHandoffRequest,
    RateTurnRequest,
    RatingReply,
    RetractionEvent,
    SuggestionReply,
)
from gateway.schemas.releases import RELEASE_ID_PATTERN
from servicekit.ids import CUSTOMER_ID_PATTERN
from servicekit.tracing import current_trace_id

router = APIRouter()

# Serve one turn with a named release of the tenant's instead of its live one (evaluation:
# bench/scenarios.py runs a candidate's golden conversations); admin keys only.
RELEASE_HEADER = "X-Aftercare-Release"
ReleaseHeader = Annotated[
    str | None,
    Header(
        alias=RELEASE_HEADER,
        pattern=RELEASE_ID_PATTERN,
        description="Answer with this release of the tenant's (e.g. 'r3') instead of the live one, to evaluate "
        "a candidate. Admin keys only (403 otherwise). The reply's `release_id` names the release that served.",
    ),
]


def _release_for(key: ApiKey, release_id: str | None) -> str:
    """The release a turn asks for ("" for the live one); only an admin may name one: a
    customer's channel must not pick an unproven candidate."""
    if release_id is None:
        return ""
    if key.role < Role.ADMIN:
        raise Forbidden(
            f"Naming a release ({RELEASE_HEADER}) needs an admin key; this key's role is {key.role.label}.",
            "ROLE_FORBIDDEN",
        )
    return release_id

_SSE_DESCRIPTION = (
    "A stream of Server-Sent Events, each sent the moment the concierge produces it:\n\n"
    '- `delta` (`{"text": ...}`): the next piece of the reply, a whole sentence sent as soon as it '
    "is produced and checked; append it to the text shown so far.\n"
    '- `retraction` (`{"reason": ..., "replacement": ...}`): a check failed after text was shown. Withdraw '
    "everything streamed so far and show `replacement` (the handoff message) instead; `reason` is the stable "
    "code the outcome's `decision_reason` uses, e.g. `unsafe_promise`. It comes before the outcome.\n"
    "- `outcome` (a MessageReply): the full result, always the last event; its `reply` is the text to keep.\n"
    "- `error` (a Problem): the backend failed mid-stream; nothing follows.\n\n"
    "Errors before the first event are ordinary problem+json responses."
)


def sse_event(event: str, data: BaseModel | dict[str, Any] | bytes, event_id: int | None = None) -> bytes:
    """One Server-Sent Event; `data` is a model, a dict or JSON already encoded (one line)."""
    if isinstance(data, bytes):
        payload = data.decode()
    else:
        payload = data.model_dump_json() if isinstance(data, BaseModel) else json.dumps(data)
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {payload}\n\n".encode()


@router.get(
    "/v1/me",
    response_model=Me,
    tags=["auth"],
    summary="The API key's tenant, role and holder; calls no backend.",
    responses=problem_responses(401, 429),
)
async def me(key: ChannelKey) -> Me:
    return Me(key_id=key.key_id, tenant_id=key.tenant_id, role=key.role.label, name=key.name)


@router.post(
    "/v1/conversations/{conversation_id}/messages",
    response_model=MessageReply,
    tags=["conversations"],
    summary="Send a customer message; get the concierge's answer or handoff.",
    description="For a tenant with an action catalog, a reply may propose an action on the customer's account "
    "(`decision` 'confirm_action', `pending_action`): show its summary with Yes / No and send the customer's "
    "choice as the next message's `action_reply` (or let them type yes or no). Nothing is done before the yes.",
    responses=problem_responses(400, 401, 403, 404, 409, 413, 429, 503, 504),
)
async def post_message(
    conversation_id: ConversationId,
    body: PostMessageRequest,
    key: ChannelKey,
    backends: BackendsDep,
    http: Request,
    release: ReleaseHeader = None,
) -> MessageReply:
    check_tenant(key, body.customer.tenant_id)
    request = body.to_proto(conversation_id, key.tenant_id, release_id=_release_for(key, release))
    call = backends.concierge.stub.Converse(request)
    response: concierge_pb2.ConverseResponse = await until_client_leaves(http, call)
    return MessageReply.from_proto(conversation_id, response, trace_id=current_trace_id())


@router.post(
    "/v1/conversations/{conversation_id}/messages/stream",
    response_class=StreamingResponse,
    tags=["conversations"],
    summary="Send a customer message; the answer streams back as Server-Sent Events.",
    responses={
        200: {
            "description": _SSE_DESCRIPTION,
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **problem_responses(400, 401, 403, 404, 409, 413, 429, 503, 504),
    },
)
async def stream_message(
    conversation_id: ConversationId,
    body: PostMessageRequest,
    key: ChannelKey,
    backends: BackendsDep,
    http: Request,
    release: ReleaseHeader = None,
) -> StreamingResponse:
    check_tenant(key, body.customer.tenant_id)
    converse = body.to_proto(conversation_id, key.tenant_id, release_id=_release_for(key, release))
    request = concierge_pb2.StreamConverseRequest(request=converse)
    call = backends.concierge.stub.StreamConverse(request)
    try:
        # Waiting for the first event lets a refusal (bad input, backend down)
        # still be a proper status code instead of an error inside a 200 stream.
        first = await until_client_leaves(http, call, call.read())
    except BaseException:
        call.cancel()
        raise
    trace_id = current_trace_id()

    async def events() -> AsyncIterator[bytes]:
        message = first
        try:
            while message is not grpc.aio.EOF:
                kind = message.WhichOneof("event")
                # One SSE event per backend event, yielded (and so written) at once: StreamingResponse and the
                # pure-ASGI middleware pass each chunk straight to the server; nothing here batches them.
                if kind == "delta":
                    yield sse_event("delta", DeltaEvent(text=message.delta))
                elif kind == "retraction":
                    yield sse_event("retraction", RetractionEvent.from_proto(message.retraction))
                elif kind == "outcome":
                    yield sse_event("outcome", MessageReply.from_proto(conversation_id, message.outcome, trace_id))
                message = await call.read()
        except grpc.aio.AioRpcError as error:
            yield sse_event("error", bytes(rpc_error_problem(error).body))
        finally:
            call.cancel()  # the client went away, or we are done: free the backend

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        # No caching, and no buffering by proxies (nginx honours X-Accel-Buffering).
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/v1/tenants/{tenant_id}/intake/email",
    response_model=EmailIntakeReply,
    tags=["conversations"],
    summary="Inbound email or ticket (a mail webhook): answered by the concierge on the email channel.",
    responses=problem_responses(400, 401, 403, 409, 413, 429, 503, 504),
)
async def intake_email(
    tenant_id: TenantId,
    body: EmailIntakeRequest,
    key: ChannelKey,
    backends: BackendsDep,
    settings: SettingsDep,
    http: Request,
) -> EmailIntakeReply:
    request = converse_request(body, key.tenant_id, settings.pseudonym_key.get_secret_value().encode())
    # The route first: an agent's reply to this mail must find where to go. A failure here
    # leaves nothing done, so the mail system's retry is safe.
    await backends.outreach.stub.RecordReplyRoute(reply_route(body, request))
    call = backends.concierge.stub.Converse(request)
    response: concierge_pb2.ConverseResponse = await until_client_leaves(http, call)
    reply = MessageReply.from_proto(request.conversation_id, response, trace_id=current_trace_id())
    return EmailIntakeReply(**reply.model_dump(), customer_id=request.customer.customer_id)


@router.post(
    "/v1/tenants/{tenant_id}/browsing-events",
    response_model=SuggestionReply,
    tags=["tier 0"],
    summary="What a user is looking at in the product; at most one Tier-0 suggestion back, or none.",
    responses=problem_responses(400, 401, 403, 413, 429, 503, 504),
)
async def browsing_event(
    tenant_id: TenantId, body: BrowsingEventRequest, key: ChannelKey, backends: BackendsDep
) -> SuggestionReply:
    response = await backends.triage.stub.SuggestForContext(body.to_proto(key.tenant_id))
    return SuggestionReply.from_proto(response)


@router.post(
    "/v1/tenants/{tenant_id}/suggestions/{doc_id}/dismiss",
    response_model=DismissReply,
    tags=["tier 0"],
    summary="The user dismissed a suggestion: it is never suggested to them again.",
    responses=problem_responses(400, 401, 403, 413, 429, 503, 504),
)
async def dismiss_suggestion(
    tenant_id: TenantId,
    doc_id: DocId,
    body: DismissRequest,
    key: ChannelKey,
    backends: BackendsDep,
) -> DismissReply:
    request = triage_pb2.DismissSuggestionRequest(
        customer=customer_pb2.CustomerRef(tenant_id=key.tenant_id, customer_id=body.customer_id), doc_id=doc_id
    )
    response = await backends.triage.stub.DismissSuggestion(request)
    return DismissReply(newly_dismissed=response.newly_dismissed)


@router.get(
    "/v1/conversations/{conversation_id}",
    response_model=ConversationReply,
    tags=["conversations"],
    summary="A stored conversation with every turn and its outcome (a returning customer's history).",
    responses=problem_responses(400, 401, 403, 404, 429, 503, 504),
)
async def get_conversation(
    conversation_id: ConversationId,
    key: ChannelKey,
    backends: BackendsDep,
    customer_id: Annotated[str, Query(pattern=CUSTOMER_ID_PATTERN, description="Whose conversation it is.")],
) -> ConversationReply:
    request = concierge_pb2.GetConversationRequest(
        customer=customer_pb2.CustomerRef(tenant_id=key.tenant_id, customer_id=customer_id),
        conversation_id=conversation_id,
    )
    response = await backends.concierge.stub.GetConversation(request)
    return ConversationReply.from_proto(conversation_id, response)


@router.post(
    "/v1/conversations/{conversation_id}/turns/{turn_index}/rating",
    response_model=RatingReply,
    tags=["conversations"],
    summary="The customer rates an answered turn helpful or not; rating again replaces the verdict.",
    responses=problem_responses(400, 401, 403, 404, 409, 413, 429, 503, 504),
)
async def rate_turn(
    conversation_id: ConversationId,
    turn_index: Annotated[int, Path(ge=0, le=2**31 - 1, description="The reply's turn_index.")],
    body: RateTurnRequest,
    key: ChannelKey,
    backends: BackendsDep,
) -> RatingReply:
    response = await backends.concierge.stub.RateTurn(body.to_proto(key.tenant_id, conversation_id, turn_index))
    return RatingReply(changed=response.changed)


@router.post(
    "/v1/conversations/{conversation_id}/handoffs/{handoff_id}/rating",
    response_model=HandoffRatingReply,
    tags=["conversations"],
    summary="The customer rates how a resolved handoff went (CSAT, 1 to 5); rating again replaces it.",
    responses=problem_responses(400, 401, 403, 404, 409, 413, 429, 503, 504),
)
async def rate_handoff(
    conversation_id: ConversationId,
    handoff_id: HandoffId,
    body: RateHandoffRequest,
    key: ChannelKey,
    backends: BackendsDep,
    customer_id: Annotated[str, Query(pattern=CUSTOMER_ID_PATTERN, description="Whose conversation it is.")],
) -> HandoffRatingReply:
    # RateHandoff checks the customer; the conversation in the path is checked here, before anything is written.
    found = await backends.escalation.stub.GetHandoff(
        escalation_pb2.GetHandoffRequest(tenant_id=key.tenant_id, handoff_id=handoff_id)
    )
    handoff = found.handoff
    owner = (handoff.conversation_id or handoff.conversation.conversation_id, handoff.customer.customer_id)
    if owner != (conversation_id, customer_id):
        # The same answer as for a handoff that does not exist: nothing about others' handoffs leaks.
        raise NotFoundProblem("No such handoff in this customer's conversation.", "HANDOFF_NOT_FOUND")
    response = await backends.escalation.stub.RateHandoff(body.to_proto(key.tenant_id, customer_id, handoff_id))
    return HandoffRatingReply(changed=response.changed, csat_rating=response.handoff.csat_rating or body.rating)
