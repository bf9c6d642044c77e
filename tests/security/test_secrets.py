"""API keys are stored hashed, and no secret (API key, mesh secret, LLM API
key) ever reaches a log line, however a client presents it.

The gateway runs as its own process (`python -m gateway`, as deployed, JSON
logs at debug level into a file) in front of test doubles of the backends."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.keys import KeyStore, Role, create_key, issue_demo_keys
from tests.conftest import free_port
from tests.gateway.conftest import start_mesh

REPO_ROOT = Path(__file__).resolve().parents[2]
MESH_SECRET = "mesh-secret-7f3a9c1e55d04b2a8e6f"
LLM_API_KEY = "sk-llm-key-0b9d2e7c4a1f4e8d"


def _key_id(key: str) -> str:
    return key[3:15]  # ak_<12 hex>_<secret>; the secret may itself hold "_"


def _secret_part(key: str) -> str:
    return key[16:]


def test_api_keys_are_stored_hashed(tmp_path: Path) -> None:
    path = tmp_path / "gateway" / "api_keys.json"
    demo = issue_demo_keys(path, "demo")  # what devstack (make run) does at every start
    keys = [*demo.values(), *(create_key(path, "acme", role)[0] for role in Role)]
    stored = path.read_text()
    records = {record["key_id"]: record for record in json.loads(stored)["keys"]}
    assert len(records) == len(keys)
    for key in keys:
        assert key not in stored and _secret_part(key) not in stored, "no plaintext key in the key file"
        key_id = _key_id(key)
        assert records[key_id]["secret_sha256"] == hashlib.sha256(_secret_part(key).encode()).hexdigest()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, "readable by its owner only"
    store = KeyStore(path=path)
    assert all(store.verify(key) is not None for key in keys)
    # The hash alone does not open the door.
    some = records[_key_id(keys[0])]
    assert store.verify(f"ak_{some['key_id']}_{some['secret_sha256'][:43]}") is None


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """A gateway process (URL, its log file, a valid channel key) in front of fakes."""
    import asyncio
    import threading

    keys_path = tmp_path / "api_keys.json"
    key = create_key(keys_path, "demo", Role.CHANNEL, "web")[0]
    ready = threading.Event()
    address: list[str] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def fakes() -> None:
        async def serve() -> None:
            async with start_mesh(keys_path) as mesh:
                address.append(mesh.address)
                ready.set()
                await stop.wait()

        loop.run_until_complete(serve())

    thread = threading.Thread(target=fakes, daemon=True)
    thread.start()
    assert ready.wait(30)
    port = free_port()
    log_file = tmp_path / "gateway.log"
    env = {
        **os.environ,
        "PORT": str(port),
        "API_KEYS_FILE": str(keys_path),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "debug",
        "MESH_SECRET": MESH_SECRET,
        "LLM_API_KEY": LLM_API_KEY,
        **{f"{name}_ADDR": address[0] for name in ("RETRIEVAL", "TRIAGE", "CONCIERGE", "ESCALATION", "OUTREACH")},
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    with log_file.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=REPO_ROOT, env=env, stdout=sink,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail(f"gateway did not start: {log_file.read_text()[-2000:]}")
        yield url, log_file, key
    finally:
        process.terminate()
        process.wait(10)
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_no_secret_reaches_a_log_line(gateway_process: tuple[str, Path, str]) -> None:
    url, log_file, key = gateway_process
    key_id = _key_id(key)
    wrong = f"ak_{key_id}_{'A' * 43}"
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert http.get("/v1/me", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
        assert http.get("/v1/me", headers={"Authorization": key}).status_code == 401  # no scheme
        assert http.get("/v1/me", headers={"Authorization": f"Basic {key}"}).status_code == 401
        assert http.get("/v1/me", params={"api_key": key}).status_code == 401  # keys go in a header only
        # A key pasted into a message, in a request that fails validation and in one that goes through.
        for body in ({"text": key, "customer": {"customer_id": 7}}, {"text": f"my key is {key}",
                                                                     "customer": {"customer_id": "c"}}):
            status = http.post("/v1/conversations/c1/messages", json=body,
                               headers={"Authorization": f"Bearer {key}"}).status_code
            assert status < 500
    time.sleep(0.5)  # the last lines reach the file
    logged = log_file.read_text()
    assert "http_request" in logged, "the access log is on: the check would be empty otherwise"
    for secret in (key, _secret_part(key), wrong, MESH_SECRET, LLM_API_KEY):
        assert secret not in logged, f"a secret reached the gateway log: {secret[:6]}..."
