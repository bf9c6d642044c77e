"""The chat turn's Server-Sent Events: each sentence reaches the client the moment
the concierge produces it, over a real HTTP connection (nothing on the way buffers),
and a retraction reaches the client as its own event before the outcome."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc
from aftercare.type.v1 import answer_pb2
from gateway.app import create_app
from gateway.backends import Backends
from gateway.keys import Role
from gateway.settings import GatewaySettings
from servicekit.server import mount, start_server
from servicekit.settings import ServiceSettings
from tests.conftest import free_port
from tests.gateway.conftest import Mesh, bearer

STREAM_URL = "/v1/conversations/conv-9/messages/stream"
BODY = {"text": "How do I rotate a key?", "customer": {"customer_id": "cust-1"}}


def _outcome(**fields: Any) -> concierge_pb2.StreamConverseResponse:
    return concierge_pb2.StreamConverseResponse(outcome=concierge_pb2.ConverseResponse(**fields))


class GatedConcierge(concierge_pb2_grpc.ConciergeServiceServicer):
    """StreamConverse plays `script`: a message is sent, an asyncio.Event holds the
    stream until the test sets it. `produced` counts the messages sent so far."""

    def __init__(self, script: list[concierge_pb2.StreamConverseResponse | asyncio.Event]) -> None:
        self.script = script
        self.produced = 0

    async def StreamConverse(
        self, request: concierge_pb2.StreamConverseRequest, context: Any
    ) -> AsyncIterator[concierge_pb2.StreamConverseResponse]:
        for item in self.script:
            if isinstance(item, asyncio.Event):
                await item.wait()
                continue
            self.produced += 1
            yield item


@asynccontextmanager
async def served(settings: GatewaySettings) -> AsyncIterator[str]:
    """The gateway served by uvicorn on a free port, on this test's event loop."""
    port = free_port()
    backends = Backends.connect(settings)
    config = uvicorn.Config(
        create_app(settings, backends),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=2,  # a failed test may leave a stream open
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
        await backends.close()


async def next_event(lines: AsyncIterator[str]) -> tuple[str, dict[str, Any]]:
    """The next SSE event read off the wire: (name, parsed data)."""
    fields: dict[str, str] = {}
    async for line in lines:
        if line:
            name, _, value = line.partition(": ")
            fields[name] = value
        elif fields:
            break
    return fields["event"], json.loads(fields["data"])


async def test_each_sentence_is_sent_before_the_next_is_produced(mesh: Mesh) -> None:
    gates = [asyncio.Event(), asyncio.Event()]
    concierge = GatedConcierge([
        concierge_pb2.StreamConverseResponse(delta="To rotate a key, open Settings > API."),
        gates[0],
        concierge_pb2.StreamConverseResponse(delta=" Then press Rotate."),
        gates[1],
        _outcome(
            reply="To rotate a key, open Settings > API. Then press Rotate.",
            confidence=answer_pb2.Confidence(score=0.93, threshold=0.85, calibrated=True, configuration_id="cfg-1"),
            decision=concierge_pb2.DECISION_ANSWERED,
            decision_reason="confident",
            reason=concierge_pb2.DECISION_REASON_CONFIDENT,
        ),
    ])
    backend = await start_server(ServiceSettings(port=0), [mount(concierge, concierge_pb2, concierge_pb2_grpc)])
    settings = mesh.settings(concierge_addr=f"127.0.0.1:{backend.port}")
    try:
        async with (
            served(settings) as url,
            httpx.AsyncClient(base_url=url, headers=bearer(mesh.key(Role.CHANNEL)), timeout=10) as client,
        ):
            # The backend sends nothing more until the test has read the first event, so
            # it arrives only if every layer between them passed it on by itself.
            try:
                async with asyncio.timeout(5):
                    response = await client.send(client.build_request("POST", STREAM_URL, json=BODY), stream=True)
                    lines = response.aiter_lines()
                    first = await next_event(lines)
            except TimeoutError:
                pytest.fail("the first sentence did not reach the client on its own: something buffers")
            try:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                assert response.headers["x-accel-buffering"] == "no"
                assert first == ("delta", {"text": "To rotate a key, open Settings > API."})
                assert concierge.produced == 1

                gates[0].set()
                async with asyncio.timeout(5):
                    second = await next_event(lines)
                assert second == ("delta", {"text": " Then press Rotate."})
                assert concierge.produced == 2

                gates[1].set()
                async with asyncio.timeout(5):
                    kind, outcome = await next_event(lines)
                    rest = [line async for line in lines if line]
            finally:
                await response.aclose()
    finally:
        for gate in gates:  # a failed test must not leave the stream, and so the servers, waiting
            gate.set()
        await backend.stop(0)

    assert kind == "outcome"
    assert (outcome["reply"], outcome["decision"], outcome["decision_reason"]) == (
        "To rotate a key, open Settings > API. Then press Rotate.", "answered", "confident"
    )
    assert (outcome["confidence"], outcome["calibrated"], outcome["configuration_id"]) == (0.93, True, "cfg-1")
    assert rest == [], "the outcome is the last event"


async def test_a_retraction_is_its_own_event_before_the_outcome(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    handoff = "I can't confirm that myself, so I've passed your question to a colleague who will reply here."
    mesh.concierge.stream_converse.outcome = [
        concierge_pb2.StreamConverseResponse(delta="Your refund is on its way."),
        concierge_pb2.StreamConverseResponse(
            retraction=concierge_pb2.Retraction(
                reason=concierge_pb2.DECISION_REASON_UNSAFE_PROMISE, replacement=handoff
            )
        ),
        _outcome(
            reply=handoff,
            confidence=answer_pb2.Confidence(score=0.4, threshold=0.85),
            decision=concierge_pb2.DECISION_ESCALATED,
            decision_reason="unsafe_promise",
            reason=concierge_pb2.DECISION_REASON_UNSAFE_PROMISE,
            handoff_id="ho-5",
        ),
    ]
    async with gateway.stream("POST", STREAM_URL, json=BODY) as response:
        assert response.status_code == 200
        text = (await response.aread()).decode()

    events = [
        (block.split("\n")[0].removeprefix("event: "), json.loads(block.split("\n")[1].removeprefix("data: ")))
        for block in text.strip().split("\n\n")
    ]
    assert [name for name, _ in events] == ["delta", "retraction", "outcome"]
    assert events[0][1] == {"text": "Your refund is on its way."}
    assert events[1][1] == {"reason": "unsafe_promise", "replacement": handoff}
    outcome = events[2][1]
    assert (outcome["reply"], outcome["decision"], outcome["decision_reason"], outcome["handoff_id"]) == (
        handoff, "escalated", events[1][1]["reason"], "ho-5"
    ), "the retraction's code is the outcome's decision_reason"
    assert (outcome["calibrated"], outcome["configuration_id"]) == (False, "")


async def test_a_retraction_for_a_reason_this_build_does_not_know_still_streams(
    mesh: Mesh, gateway: httpx.AsyncClient
) -> None:
    mesh.concierge.stream_converse.outcome = [
        concierge_pb2.StreamConverseResponse(delta="Sure."),
        concierge_pb2.StreamConverseResponse(retraction=concierge_pb2.Retraction(reason=99, replacement="Sorry.")),
        _outcome(reply="Sorry.", decision=concierge_pb2.DECISION_ESCALATED),
    ]
    response = await gateway.post(STREAM_URL, json=BODY)

    assert response.status_code == 200
    assert 'event: retraction\ndata: {"reason":"unspecified","replacement":"Sorry."}\n\n' in response.text
    assert response.text.rstrip().split("\n\n")[-1].startswith("event: outcome")
