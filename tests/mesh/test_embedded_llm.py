"""The embedded LLM server as devstack launches it: requests that overlap are
queued and each streams to its end (llama-cpp-python's default would cut the
running one short when the next arrives), and chat requests go through the
model's own chat template (read from the GGUF: no --chat_format is passed)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from devstack.llm_server import MODEL_ALIAS
from servicekit.llm import LlmClient
from tests.embedded_llm import embedded_llm_server


@pytest.fixture(scope="module")
def llm_url() -> Iterator[str]:
    with embedded_llm_server(startup_timeout_s=60.0) as url:
        yield url


async def test_serves_the_default_model_under_its_alias(llm_url: str) -> None:
    async with httpx.AsyncClient() as client:
        served = (await client.get(f"{llm_url}/models")).json()
    assert [m["id"] for m in served["data"]] == [MODEL_ALIAS]


async def test_overlapping_completions_each_run_to_the_end(llm_url: str) -> None:
    llm = LlmClient(llm_url, MODEL_ALIAS, max_concurrency=4, timeout_s=60)
    try:
        # The reference is the second run alone: after a run of the same prompt the server
        # re-evaluates only its last token (prefix cache), as it does for `first` below, and
        # that can tip a near-tie of the greedy pick differently from a cold prefill.
        await llm.complete("A long story about a cat:", max_tokens=40, stop=[])
        alone = await llm.complete("A long story about a cat:", max_tokens=40, stop=[])
        first = asyncio.ensure_future(llm.complete("A long story about a cat:", max_tokens=40, stop=[]))
        await asyncio.sleep(0.3)
        second = await llm.complete("A long story about a dog:", max_tokens=40, stop=[])
        # The first was running when the second came in: it still gets all of its tokens.
        assert (await first).text == alone.text
        assert alone.completion_tokens == 40
        assert second.completion_tokens == 40
    finally:
        await llm.aclose()


async def test_chat_goes_through_the_models_template(llm_url: str) -> None:
    llm = LlmClient(llm_url, MODEL_ALIAS, timeout_s=60)
    try:
        reply = await llm.chat(
            [{"role": "system", "content": "Answer with one word."},
             {"role": "user", "content": "What is the capital of France?"}],
            max_tokens=24,
        )
    finally:
        await llm.aclose()
    # Templated (ChatML), the instruction-tuned model answers and ends its turn at once;
    # an unformatted prompt would run on to max_tokens or echo the markup.
    assert "paris" in reply.text.lower()
    assert reply.completion_tokens < 24
    assert "<|im_" not in reply.text
