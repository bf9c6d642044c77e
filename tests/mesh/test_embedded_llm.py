"""The embedded LLM server as devstack launches it: requests that overlap are
queued and each streams to its end (llama-cpp-python's default would cut the
running one short when the next arrives)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.llm_server import command, ensure_model
from servicekit.llm import LlmClient
from tests.conftest import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def llm_url() -> Iterator[str]:
    port = free_port()
    model = ensure_model(REPO_ROOT / "var" / "models")
    server = subprocess.Popen(command(model, port), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, "the LLM server exited"
            time.sleep(0.25)
        else:
            pytest.fail("the LLM server did not start within 60 s")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


async def test_overlapping_completions_each_run_to_the_end(llm_url: str) -> None:
    llm = LlmClient(llm_url, "gemma-3-270m", max_concurrency=4, timeout_s=60)
    try:
        alone = await llm.complete("A long story about a cat:", max_tokens=40, stop=[])
        first = asyncio.ensure_future(llm.complete("A long story about a cat:", max_tokens=40, stop=[]))
        await asyncio.sleep(0.3)
        second = await llm.complete("A long story about a dog:", max_tokens=40, stop=[])
        # The first was running when the second came in: it still gets all of its tokens.
        assert (await first).text == alone.text
        assert second.completion_tokens == 40
    finally:
        await llm.aclose()
