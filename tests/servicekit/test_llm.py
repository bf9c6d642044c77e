"""The LLM client sheds load: a bounded number of calls in flight and waiting."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from servicekit.llm import LlmBusy, LlmClient, LlmUnavailable
from tests.llm_stream import completion, sse


def slow_server(release: asyncio.Event) -> httpx.MockTransport:
    async def handler(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return completion(["ok"], model="m")

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


async def test_a_stream_cut_short_is_no_completion() -> None:
    # What llama-cpp-python's server sends a request it interrupts: tokens, then a bare [DONE].
    def handler(request: httpx.Request) -> httpx.Response:
        return sse([{"model": "m", "choices": [{"index": 0, "text": word}]} for word in ("Yes", ",", " it")])

    llm = LlmClient("http://llm.test/v1", "m", transport=httpx.MockTransport(handler))
    with pytest.raises(LlmUnavailable, match="before the completion finished"):
        await llm.complete("Can I return it?", max_tokens=20, stop=[])
    await llm.aclose()
