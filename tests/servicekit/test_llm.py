"""The LLM client sheds load: a bounded number of calls in flight and waiting."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from servicekit.llm import LlmBusy, LlmClient


def slow_server(release: asyncio.Event) -> httpx.MockTransport:
    async def handler(request: httpx.Request) -> httpx.Response:
        await release.wait()
        event = {"model": "m", "choices": [{"text": "ok", "index": 0}]}
        return httpx.Response(200, text=f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n")

    return httpx.MockTransport(handler)


async def test_calls_beyond_the_slots_and_the_queue_are_refused_at_once() -> None:
    release = asyncio.Event()
    llm = LlmClient("http://llm.test/v1", "m", max_concurrency=1, max_waiting=1, transport=slow_server(release))
    running = asyncio.ensure_future(llm.complete("a", max_tokens=1, stop=[]))
    waiting = asyncio.ensure_future(llm.complete("b", max_tokens=1, stop=[]))
    await asyncio.sleep(0.05)
    with pytest.raises(LlmBusy):
        await llm.complete("c", max_tokens=1, stop=[])
    release.set()
    assert [c.text for c in await asyncio.gather(running, waiting)] == ["ok", "ok"]
    # Slots free again: a new call goes through.
    assert (await llm.complete("d", max_tokens=1, stop=[])).text == "ok"
    await llm.aclose()
