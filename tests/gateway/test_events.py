"""A conversation's live events (Server-Sent Events over escalation's
WatchConversation): each event reaches the client the moment it happens, in
order, with its sequence as the SSE id; a reconnect resumes after
Last-Event-ID; quiet streams get pings; a watch's expired deadline is
re-opened without gaps or repeats; a client that leaves frees the backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from google.protobuf.duration_pb2 import Duration

from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.type.v1 import conversation_pb2
from gateway.app import create_app
from gateway.keys import Role
from gateway.routes import events
from gateway.settings import GatewaySettings
from servicekit.errors import NotFound, Unavailable
from servicekit.server import mount, start_server
from servicekit.settings import ServiceSettings
from tests.gateway.conftest import TENANT, Mesh, bearer, one, open_gateway
from tests.gateway.test_streaming import served
from tests.gateway.test_tier2 import handoff, thread_message

CUSTOMER_URL = "/v1/conversations/conv-1/events"
AGENT_URL = f"/v1/tenants/{TENANT}/conversations/conv-1/events"
AS_CUSTOMER = {"customer_id": "cust-1"}


def message_event(sequence: int, role: int = conversation_pb2.ROLE_AGENT) -> escalation_pb2.WatchConversationResponse:
    return escalation_pb2.WatchConversationResponse(message=thread_message(sequence, role))


def handoff_event(state: int, **fields: Any) -> escalation_pb2.WatchConversationResponse:
    return escalation_pb2.WatchConversationResponse(handoff=handoff(state=state, **fields))


class LiveThread(escalation_pb2_grpc.EscalationServiceServicer):
    """WatchConversation over a thread the test writes to: every message after
    after_sequence (all of them when `replays`, as a careless backend would),
    then each new event the moment the test adds it."""

    def __init__(self, *, replays: bool = False, accepts: bool = True) -> None:
        self.events: list[escalation_pb2.WatchConversationResponse] = []
        self.added = asyncio.Condition()
        self.requests: list[escalation_pb2.WatchConversationRequest] = []
        self.open_watches = 0
        self.replays = replays
        self.accepts = accepts

    async def add(self, *new: escalation_pb2.WatchConversationResponse) -> None:
        async with self.added:
            self.events.extend(new)
            self.added.notify_all()

    async def _after(self, sent: int) -> list[escalation_pb2.WatchConversationResponse]:
        """The events after the first `sent`, once there are any."""
        async with self.added:
            await self.added.wait_for(lambda: len(self.events) > sent)
            return self.events[sent:]

    def _wanted(self, event: escalation_pb2.WatchConversationResponse, after: int) -> bool:
        return self.replays or event.WhichOneof("event") != "message" or event.message.sequence > after

    async def WatchConversation(
        self, request: escalation_pb2.WatchConversationRequest, context: Any
    ) -> AsyncIterator[escalation_pb2.WatchConversationResponse]:
        self.requests.append(request)
        if request.customer_id not in ("", "cust-1"):
            raise NotFound("no conversation conv-1 for this customer", reason="CONVERSATION_NOT_FOUND")
        if self.accepts:
            await context.send_initial_metadata(())
        self.open_watches += 1
        try:
            sent = 0
            while True:
                new = await self._after(sent)
                sent += len(new)
                for event in new:
                    if self._wanted(event, request.after_sequence):
                        yield event
        finally:
            self.open_watches -= 1


@asynccontextmanager
async def live_events(mesh: Mesh, thread: LiveThread) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway served by uvicorn, with `thread` as escalation; a client with a channel key."""
    backend = await start_server(ServiceSettings(port=0), [mount(thread, escalation_pb2, escalation_pb2_grpc)])
    settings = mesh.settings(escalation_addr=f"127.0.0.1:{backend.port}")
    try:
        async with (
            served(settings) as url,
            httpx.AsyncClient(base_url=url, headers=bearer(mesh.key(Role.AGENT)), timeout=10) as client,
        ):
            yield client
    finally:
        await backend.stop(0)


class EventReader:
    """SSE events read off the wire one at a time: (id, event, data), or ("ping",)."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self) -> tuple[Any, ...]:
        fields: dict[str, str] = {}
        async with asyncio.timeout(5):
            async for line in self.lines:
                if line.startswith(":"):
                    return ("ping",)
                if line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                elif fields:
                    break
        return (fields.get("id"), fields["event"], json.loads(fields["data"]))


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, url: str = CUSTOMER_URL, **options: Any
) -> AsyncIterator[EventReader]:
    options.setdefault("params", AS_CUSTOMER if url == CUSTOMER_URL else None)
    response = await client.send(client.build_request("GET", url, **options), stream=True)
    try:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert (response.headers["cache-control"], response.headers["x-accel-buffering"]) == ("no-cache", "no")
        yield EventReader(response)
    finally:
        await response.aclose()


async def until(condition: Any, what: str) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.02)
    pytest.fail(what)


# --- over a real connection ----------------------------------------------------


async def test_each_event_reaches_the_client_before_the_next_exists(mesh: Mesh) -> None:
    thread = LiveThread()
    async with live_events(mesh, thread) as client, open_stream(client) as stream:
        # The backend makes each event only after the test has read the one before:
        # it arrives only if nothing between them holds it back.
        await thread.add(
            handoff_event(escalation_pb2.HANDOFF_STATE_WAITING, queue_position=2, expected_wait=Duration(seconds=120))
        )
        first = await stream.next()
        await thread.add(message_event(1))
        second = await stream.next()
        await thread.add(message_event(2, conversation_pb2.ROLE_CUSTOMER))
        third = await stream.next()
        await thread.add(handoff_event(escalation_pb2.HANDOFF_STATE_WAITING_ON_CUSTOMER))
        fourth = await stream.next()

    assert first == (None, "handoff", {
        "handoff_id": "ho-1", "reference": "HO-7KQ2M9", "state": "waiting", "expected_wait_s": 120,
        "queue_position": 2, "csat_rating": None,
    })
    assert second == ("1", "message", {
        "message_id": "m-1", "sequence": 1, "role": "agent", "author_name": "Dana", "text": "text 1",
        "sent_at": "2026-12-06T10:01:00Z",
    })
    assert (third[0], third[1], third[2]["role"], third[2]["author_name"]) == ("2", "message", "customer", None)
    assert (fourth[1], fourth[2]["state"]) == ("handoff", "waiting_on_customer")
    request = one(thread.requests)
    assert (request.tenant_id, request.conversation_id, request.customer_id, request.after_sequence) == (
        TENANT, "conv-1", "cust-1", 0
    )


async def test_a_reconnect_resumes_after_the_last_event_id(mesh: Mesh) -> None:
    thread = LiveThread()
    await thread.add(message_event(1), message_event(2), message_event(3))
    async with live_events(mesh, thread) as client:
        async with open_stream(client) as stream:
            seen = [(await stream.next())[0] for _ in range(3)]
        # What a browser does: the same URL (its stale ?after) and Last-Event-ID.
        async with open_stream(
            client, params=AS_CUSTOMER | {"after": "1"}, headers={"Last-Event-ID": seen[-1]}
        ) as stream:
            await thread.add(message_event(4))
            resumed = await stream.next()
        async with open_stream(client, params=AS_CUSTOMER | {"after": "2"}) as stream:
            from_query = await stream.next()

    assert seen == ["1", "2", "3"]
    assert resumed[0] == "4", "nothing already received comes again"
    assert from_query[0] == "3"
    assert [r.after_sequence for r in thread.requests] == [0, 3, 2]


async def test_the_agent_console_watches_every_message(mesh: Mesh) -> None:
    thread = LiveThread()
    await thread.add(message_event(1, conversation_pb2.ROLE_CUSTOMER))
    async with live_events(mesh, thread) as client, open_stream(client, AGENT_URL) as stream:
        event = await stream.next()

    assert event[:2] == ("1", "message")
    request = one(thread.requests)
    assert (request.tenant_id, request.customer_id, request.after_sequence) == (TENANT, "", 0)


async def test_a_quiet_stream_is_pinged(mesh: Mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "PING_INTERVAL_S", 0.1)
    thread = LiveThread()
    async with live_events(mesh, thread) as client, open_stream(client) as stream:
        pings = [await stream.next(), await stream.next()]
        await thread.add(message_event(1))
        after_pings = await stream.next()

    assert pings == [("ping",), ("ping",)]
    assert after_pings[:2] == ("1", "message"), "a ping does not lose the read it waited on"


async def test_a_client_that_leaves_ends_the_watch(mesh: Mesh) -> None:
    thread = LiveThread()
    await thread.add(message_event(1))
    async with live_events(mesh, thread) as client:
        async with open_stream(client) as stream:
            await stream.next()
            assert thread.open_watches == 1
        # The response is closed: the connection drops, and the gRPC stream must end with it.
        await until(lambda: thread.open_watches == 0, "the backend kept watching for a client that left")


async def test_an_expired_watch_is_reopened_without_gaps_or_repeats(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "WATCH_WINDOW_S", 0.3)
    thread = LiveThread(replays=True)  # a backend that sends everything again: the gateway still sends each once
    await thread.add(message_event(1), message_event(2))
    async with live_events(mesh, thread) as client, open_stream(client) as stream:
        first = [(await stream.next())[0] for _ in range(2)]
        await until(lambda: len(thread.requests) >= 3, "the watch was not re-opened when its deadline passed")
        await thread.add(message_event(3))
        third = await stream.next()

    assert first == ["1", "2"]
    assert third[0] == "3"
    assert [r.after_sequence for r in thread.requests[:3]] == [0, 2, 2]


async def test_a_backend_that_neither_accepts_nor_refuses_still_gets_a_stream(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "ACCEPT_WAIT_S", 0.2)
    thread = LiveThread(accepts=False)  # sends no headers until its first event
    async with live_events(mesh, thread) as client, open_stream(client) as stream:
        await thread.add(message_event(1))
        event = await stream.next()

    assert event[:2] == ("1", "message")


async def test_another_customers_conversation_is_404_before_any_stream(mesh: Mesh) -> None:
    thread = LiveThread()
    async with live_events(mesh, thread) as client:
        response = await client.get(CUSTOMER_URL, params={"customer_id": "cust-2"})

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["reason"] == "CONVERSATION_NOT_FOUND"


# --- in process: finite streams and refusals -------------------------------------


async def test_a_finished_watch_ends_the_stream(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.watch_conversation.outcome = [
        handoff_event(escalation_pb2.HANDOFF_STATE_RESOLVED, csat_rating=5),
        message_event(7),
    ]
    response = await gateway.get(CUSTOMER_URL, params=AS_CUSTOMER)

    assert response.status_code == 200
    blocks = response.text.strip().split("\n\n")
    assert blocks[0].startswith('event: handoff\ndata: {"handoff_id":"ho-1"')
    assert '"state":"resolved"' in blocks[0] and '"csat_rating":5' in blocks[0]
    assert blocks[1].startswith('id: 7\nevent: message\ndata: {"message_id":"m-7","sequence":7')
    assert len(blocks) == 2


async def test_a_backend_failing_mid_stream_ends_with_an_error_event(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.watch_conversation.outcome = [message_event(1), Unavailable("escalation is restarting")]
    response = await gateway.get(CUSTOMER_URL, params=AS_CUSTOMER)

    blocks = response.text.strip().split("\n\n")
    assert blocks[0].startswith("id: 1\nevent: message")
    name, data = blocks[1].split("\n")
    assert name == "event: error"
    problem = json.loads(data.removeprefix("data: "))
    assert (problem["status"], problem["reason"]) == (503, "UNAVAILABLE")


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (NotFound("no conversation conv-1 for this customer", reason="CONVERSATION_NOT_FOUND"), 404,
         "CONVERSATION_NOT_FOUND"),
        (Unavailable("escalation is restarting"), 503, "UNAVAILABLE"),
    ],
)
async def test_a_refused_watch_is_a_problem(
    mesh: Mesh, gateway: httpx.AsyncClient, error: Exception, status: int, reason: str
) -> None:
    mesh.escalation.watch_conversation.outcome = error
    response = await gateway.get(CUSTOMER_URL, params=AS_CUSTOMER)

    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["reason"] == reason


@pytest.mark.parametrize(
    ("params", "headers", "field"),
    [
        ({}, {}, "query.customer_id"),
        (AS_CUSTOMER | {"after": "-1"}, {}, "query.after"),
        (AS_CUSTOMER | {"after": "x"}, {}, "query.after"),
        (AS_CUSTOMER, {"Last-Event-ID": "abc"}, "header.last-event-id"),
    ],
)
async def test_bad_stream_parameters_are_400(
    mesh: Mesh, gateway: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str], field: str
) -> None:
    response = await gateway.get(CUSTOMER_URL, params=params, headers=headers)

    assert response.status_code == 400, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert mesh.escalation.watch_conversation.requests == []


async def test_a_channel_key_cannot_watch_as_an_agent(mesh: Mesh) -> None:
    async with open_gateway(mesh.settings(), key=mesh.key(Role.CHANNEL)) as channel:
        response = await channel.get(AGENT_URL)

    assert (response.status_code, response.json()["reason"]) == (403, "ROLE_FORBIDDEN")
    assert mesh.escalation.watch_conversation.requests == []


def test_the_stream_is_documented_as_server_sent_events() -> None:
    unused = "127.0.0.1:1"
    schema = create_app(GatewaySettings(
        retrieval_addr=unused, triage_addr=unused, concierge_addr=unused, escalation_addr=unused,
        outreach_addr=unused,
    )).openapi()
    for path in (CUSTOMER_URL.replace("conv-1", "{conversation_id}"),
                 "/v1/tenants/{tenant_id}/conversations/{conversation_id}/events"):
        responses = schema["paths"][path]["get"]["responses"]
        assert "text/event-stream" in responses["200"]["content"]
        assert "application/problem+json" in responses["404"]["content"]
