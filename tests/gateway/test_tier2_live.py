"""The Tier-2 endpoints against the real concierge and escalation services (the
stack of the Tier-2 browser tests, without the browser): the concierge hands a
question it has no knowledge for over, saying so with the reference; an agent's
reply reaches the customer's event stream once, even when the Send is retried;
the customer's answer is forwarded and reaches the stream; the stored
conversation shows the agent's reply among the customer's messages; the
resolved handoff is rated; the delivery feed lists the reply once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.keys import Role
from tests.browser.tier2 import Tier2Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier2Stack]:
    running = Tier2Stack(tmp_path_factory.mktemp("tier2-live")).start()
    try:
        yield running
    finally:
        running.stop()


def _as(stack: Tier2Stack, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.keys[role]}"}


async def _collect(client: httpx.AsyncClient, headers: dict[str, str], into: list[tuple[str, dict[str, Any]]]) -> None:
    params = {"customer_id": "cust-live"}
    async with client.stream("GET", "/v1/conversations/conv-live/events", params=params, headers=headers) as stream:
        assert stream.status_code == 200
        fields: dict[str, str] = {}
        async for line in stream.aiter_lines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
            elif fields:
                into.append((fields.get("id", ""), json.loads(fields["data"]) | {"event": fields["event"]}))
                fields = {}


async def _until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.02)
    pytest.fail("the stream did not show it within 10 s")


async def test_a_reply_reaches_the_customers_stream_once_and_the_customer_answers_and_rates(
    stack: Tier2Stack,
) -> None:
    channel, agent = _as(stack, Role.CHANNEL), _as(stack, Role.AGENT)
    customer = {"customer_id": "cust-live"}
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        asked = await client.post("/v1/conversations/conv-live/messages", headers=channel,
                                  json={"text": "My invoice is wrong", "customer": customer, "client_message_id": "m1"})
        escalated = asked.json()
        assert (escalated["decision"], escalated["handoff_reference"][:3]) == ("escalated", "HO-"), asked.text
        assert escalated["decision_reason"] == "no_knowledge" and escalated["handoff_reference"] in escalated["reply"]
        handoff_id = escalated["handoff_id"]

        events: list[tuple[str, dict[str, Any]]] = []
        listening = asyncio.create_task(_collect(client, channel, events))
        try:
            await _until(lambda: any(e["event"] == "handoff" for _, e in events))
            reply = {"final_text": "I corrected the invoice.", "client_message_id": "send-1", "agent_name": "Dana"}
            sent = [await client.post(f"/v1/tenants/demo/handoffs/{handoff_id}/replies", headers=agent, json=reply)
                    for _ in range(2)]  # a retried Send
            await _until(lambda: any(e["event"] == "message" for _, e in events))
            answered = await client.post("/v1/conversations/conv-live/messages", headers=channel,
                                         json={"text": "Thanks!", "customer": customer, "client_message_id": "m2"})
            await _until(lambda: sum(e["event"] == "message" for _, e in events) == 2)
        finally:
            listening.cancel()
        stored = await client.get("/v1/conversations/conv-live", headers=channel, params=customer)

        resolved = await client.post(f"/v1/tenants/demo/handoffs/{handoff_id}/resolve", headers=agent,
                                     json={"resolution": "Invoice corrected"})
        rated = await client.post(f"/v1/conversations/conv-live/handoffs/{handoff_id}/rating", headers=channel,
                                  params=customer, json={"rating": 5})
        feed = await client.get("/v1/tenants/demo/deliveries", headers=agent)

    assert [s.status_code for s in sent] == [200, 200]
    assert sent[0].json()["message"] == sent[1].json()["message"], "a retried Send stores nothing new"
    messages = [(event_id, e["role"], e["text"]) for event_id, e in events if e["event"] == "message"]
    assert messages == [("1", "agent", "I corrected the invoice."), ("2", "customer", "Thanks!")]
    assert (answered.json()["decision"], answered.json()["reply"]) == ("forwarded", "")
    assert answered.json()["handoff_reference"] == escalated["handoff_reference"]
    said = [(m["role"], m["text"], m["author_name"]) for m in stored.json()["messages"]]
    assert said == [("customer", "My invoice is wrong", None), ("assistant", escalated["reply"], None),
                    ("agent", "I corrected the invoice.", "Dana"), ("customer", "Thanks!", None)], stored.text
    assert resolved.status_code == 200, resolved.text
    assert rated.json() == {"changed": True, "csat_rating": 5}
    assert [d["message"]["text"] for d in feed.json()["deliveries"]] == ["I corrected the invoice."]
