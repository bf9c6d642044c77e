"""A conversation's live events as Server-Sent Events: the messages of its human
part (agents' replies, the customer's messages while a human has it) and the
changes of its handoff. The chat widget holds one open per conversation, the
agent console one per handoff it shows.

The gateway relays escalation's WatchConversation: one SSE event per backend
event, written the moment it arrives; a `: ping` comment after every quiet
15 s keeps proxies from closing the connection; the gRPC stream is cancelled
as soon as the client leaves. A message event's `id:` is its sequence, so a
client reconnecting with Last-Event-ID gets exactly what it missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, TypeAlias

import grpc
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from aftercare.escalation.v1 import escalation_pb2
from gateway.auth import AgentKey, ChannelKey
from gateway.backends import Backends
from gateway.deps import BackendsDep, ConversationId, TenantId
from gateway.disconnect import ClientGone, until_client_leaves
from gateway.problems import problem_responses, rpc_error_problem
from gateway.routes.conversations import sse_event
from gateway.schemas.handoffs import HandoffStatus, ThreadMessage
from servicekit import deadlines
from servicekit.ids import CUSTOMER_ID_PATTERN

_WatchCall: TypeAlias = (
    "grpc.aio.UnaryStreamCall[escalation_pb2.WatchConversationRequest, escalation_pb2.WatchConversationResponse]"
)

router = APIRouter()

# A comment line after this many quiet seconds: idle connections stay open through proxies.
PING_INTERVAL_S = 15.0
_PING = b": ping\n\n"
# Escalation refuses a watch (unknown conversation, another customer's) at once;
# one it neither accepts nor refuses within this time is taken as accepted.
ACCEPT_WAIT_S = 2.0
# A watch lives as long as the page, not as long as a request: it runs in
# windows with deadlines of their own (the mesh's default for escalation may
# cap them), each re-opened after the last sequence sent.
WATCH_WINDOW_S = 300.0

_SSE_DESCRIPTION = (
    "A stream of Server-Sent Events, each sent the moment it happens, until the client disconnects:\n\n"
    "- `message` (a ThreadMessage: `message_id`, `sequence`, `role` 'agent' or 'customer', `author_name`, "
    "`text`, `sent_at`): a message of the conversation's human part. Its SSE `id` is its sequence: reconnect "
    "with `Last-Event-ID` (browsers do) or `?after=` to get only what came after it.\n"
    "- `handoff` (a HandoffStatus: `handoff_id`, `reference`, `state`, `expected_wait_s`, `queue_position`, "
    "`csat_rating`): the conversation's handoff changed.\n"
    "- `error` (a Problem): the backend failed; nothing follows; reconnect to resume.\n\n"
    "A `: ping` comment comes after every 15 s without an event. Errors before the stream starts (no such "
    "conversation for this customer, backend down) are ordinary problem+json responses."
)
_SSE_RESPONSES = {
    200: {"description": _SSE_DESCRIPTION, "content": {"text/event-stream": {"schema": {"type": "string"}}}},
    **problem_responses(400, 401, 403, 404, 429, 503, 504),
}

AfterSequence = Annotated[
    int, Query(ge=0, le=2**62, description="Only messages with a greater sequence (Last-Event-ID wins when sent).")
]
LastEventId = Annotated[
    str | None,
    Header(pattern=r"^[0-9]{0,18}$", description="The last message sequence received; set by a reconnecting browser."),
]


@router.get(
    "/v1/conversations/{conversation_id}/events",
    response_class=StreamingResponse,
    tags=["conversations"],
    summary="The customer's live view of a conversation with a human: agents' replies and the handoff's state.",
    responses=_SSE_RESPONSES,
)
async def conversation_events(
    conversation_id: ConversationId,
    key: ChannelKey,
    backends: BackendsDep,
    http: Request,
    customer_id: Annotated[str, Query(pattern=CUSTOMER_ID_PATTERN, description="Whose conversation it is.")],
    after: AfterSequence = 0,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    request = escalation_pb2.WatchConversationRequest(
        tenant_id=key.tenant_id,
        conversation_id=conversation_id,
        customer_id=customer_id,
        after_sequence=_resume_after(after, last_event_id),
    )
    return await _event_stream(http, backends, request)


@router.get(
    "/v1/tenants/{tenant_id}/conversations/{conversation_id}/events",
    response_class=StreamingResponse,
    tags=["handoffs"],
    summary="The agent's live view of a conversation: every new message and handoff change.",
    responses=_SSE_RESPONSES,
)
async def agent_conversation_events(
    tenant_id: TenantId,
    conversation_id: ConversationId,
    key: AgentKey,
    backends: BackendsDep,
    http: Request,
    after: AfterSequence = 0,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    request = escalation_pb2.WatchConversationRequest(
        tenant_id=key.tenant_id, conversation_id=conversation_id, after_sequence=_resume_after(after, last_event_id)
    )
    return await _event_stream(http, backends, request)


def _resume_after(after: int, last_event_id: str | None) -> int:
    # A reconnecting browser repeats the page's URL (its stale ?after) and adds Last-Event-ID.
    return int(last_event_id) if last_event_id else after


def _watch(backends: Backends, request: escalation_pb2.WatchConversationRequest) -> _WatchCall:
    # Not under the request's budget (DeadlineMiddleware): that is for answering, and this answer lasts.
    deadlines.set_remaining(None)
    call: _WatchCall = backends.escalation.stub.WatchConversation(request, timeout=WATCH_WINDOW_S)
    return call


async def _event_stream(
    http: Request, backends: Backends, request: escalation_pb2.WatchConversationRequest
) -> StreamingResponse:
    call = _watch(backends, request)
    try:
        # A refusal must be a status code (a browser's EventSource stops on it), not an error in a 200 stream.
        await until_client_leaves(http, call, _accepted(call))
    except BaseException:
        call.cancel()
        raise
    return StreamingResponse(
        _relay(http, backends, request, call),
        media_type="text/event-stream",
        # No caching, and no buffering by proxies (nginx honours X-Accel-Buffering).
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _accepted(call: _WatchCall) -> None:
    """Returns once escalation sent its headers (accepted) or stayed silent for
    ACCEPT_WAIT_S; raises its error when it refused the watch."""
    try:
        async with asyncio.timeout(ACCEPT_WAIT_S):
            await call.initial_metadata()
    except TimeoutError:
        return
    if call.done() and (code := await call.code()) != grpc.StatusCode.OK:
        raise grpc.aio.AioRpcError(
            code, await call.initial_metadata(), await call.trailing_metadata(), await call.details()
        )


async def _relay(
    http: Request,
    backends: Backends,
    request: escalation_pb2.WatchConversationRequest,
    call: _WatchCall,
) -> AsyncIterator[bytes]:
    """The SSE bytes of a watch, window after window, until the client leaves,
    escalation ends the watch, or it fails (an `error` event)."""
    sent_after = request.after_sequence
    try:
        while True:
            try:
                async for event in _events(http, call):
                    if event is None:
                        yield _PING
                    elif event.WhichOneof("event") == "handoff":
                        yield sse_event("handoff", HandoffStatus.from_proto(event.handoff))
                    elif event.WhichOneof("event") == "message" and event.message.sequence > sent_after:
                        # A re-opened window may repeat what was sent: each sequence goes out once, in order.
                        sent_after = event.message.sequence
                        yield sse_event("message", ThreadMessage.from_proto(event.message), event_id=sent_after)
                return  # escalation ended the watch; the client reconnects with Last-Event-ID
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    yield sse_event("error", bytes(rpc_error_problem(error).body))
                    return
            # The window's deadline passed: watch on from the last message sent.
            call = _watch(backends, _after(request, sent_after))
    except ClientGone:
        return
    finally:
        call.cancel()  # the client went away, or we are done: free the backend


async def _events(
    http: Request, call: _WatchCall
) -> AsyncIterator[escalation_pb2.WatchConversationResponse | None]:
    """The watch's events as they come, and None after each PING_INTERVAL_S
    without one. Raises ClientGone when the client disconnects."""
    pending: asyncio.Future[object] | None = None
    try:
        while True:
            # One read stays pending across pings: cancelling a gRPC read cancels the call.
            pending = asyncio.ensure_future(call.read())
            while not pending.done():
                done, _ = await until_client_leaves(http, call, asyncio.wait({pending}, timeout=PING_INTERVAL_S))
                if not done:
                    yield None
            event = pending.result()
            if event is grpc.aio.EOF:
                return
            assert isinstance(event, escalation_pb2.WatchConversationResponse)
            yield event
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


def _after(
    request: escalation_pb2.WatchConversationRequest, sequence: int
) -> escalation_pb2.WatchConversationRequest:
    reopened = escalation_pb2.WatchConversationRequest()
    reopened.CopyFrom(request)
    reopened.after_sequence = sequence
    return reopened
