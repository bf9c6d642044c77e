"""The embedded LLM server (llama-cpp-python with the default model) started as devstack
starts it, on a free port, for the tests that need the real model."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.llm_server import command, ensure_model
from tests.conftest import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def embedded_llm_server(startup_timeout_s: float = 60.0) -> Iterator[str]:
    """Yields the server's OpenAI base URL once it lists its model; stops it afterwards."""
    port = free_port()
    model = ensure_model(REPO_ROOT / "var" / "models")
    server = subprocess.Popen(command(model, port), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, "the LLM server exited"
            if time.monotonic() > deadline:
                pytest.fail(f"the LLM server did not start within {startup_timeout_s:.0f} s")
            time.sleep(0.25)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
