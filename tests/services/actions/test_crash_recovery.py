"""A crash between the company's answer and its record: the actions process is
killed (SIGKILL) by the back office right after the write took effect, before
the answer reaches it. After a restart the reconciler settles the action by
re-sending its idempotency key: one effect, and the audit trail says so. On
SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aftercare.actions.v1 import actions_pb2
from tests.conftest import free_port
from tests.services.actions.conftest import (
    TENANT,
    TOKEN,
    RunningOffice,
    Stub,
    acme_catalog,
    confirm,
    events,
    kinds,
    propose,
    state,
    verify,
    write_catalog,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return "" if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


class ActionsProcess:
    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.actions"], cwd=REPO, env=self.env, stdout=out, stderr=out
            )

    async def ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
                try:
                    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"actions did not start:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture
def actions_process(tmp_path: Path, back_office: RunningOffice, database_url: str) -> Iterator[ActionsProcess]:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATA_DIR": str(tmp_path / "var"),
        "DATABASE_URL": database_url,
        "ACTIONS_CATALOG_DIR": str(write_catalog(tmp_path / "catalogs", acme_catalog(back_office.url))),
        "ACME_TOKEN": TOKEN,
        "RECONCILE_INTERVAL_S": "0.2",
        "LEASE_GRACE_S": "1",
        "LOG_FORMAT": "console",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "",
    }
    process = ActionsProcess(env, port, tmp_path / "actions.log")
    try:
        yield process
    finally:
        process.stop()


async def test_a_crash_after_the_call_is_reconciled_without_a_second_execution(
    actions_process: ActionsProcess, back_office: RunningOffice
) -> None:
    killed = threading.Event()

    def crash() -> None:
        # The refund is done (and its answer stored under the key); the caller dies now.
        actions_process.kill()
        killed.set()
        time.sleep(0.3)

    actions_process.start()
    await actions_process.ready()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{actions_process.port}") as channel:
        stub = Stub(channel)
        await verify(stub, "conv-1")
        action = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "damaged"})
        back_office.office.after_effect = crash
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await confirm(stub, action)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert killed.is_set() and back_office.office.effects == ["O-1"]
    back_office.office.after_effect = None

    actions_process.start()
    await actions_process.ready()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{actions_process.port}") as channel:
        stub = Stub(channel)
        deadline = time.monotonic() + 30
        while True:
            current = (await stub.GetAction(actions_pb2.GetActionRequest(tenant_id=TENANT,
                                                                         action_id=action.action_id))).action
            if state(current) != "EXECUTING" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert state(current) == "SUCCEEDED", current
        assert json.loads(current.result_json)["status"] == "refunded" and current.attempts == 2
        # One effect; the second request carried the same key and got the stored answer.
        assert back_office.office.effects == ["O-1"]
        assert [key for _, _, key in back_office.office.writes()] == [action.idempotency_key] * 2
        # A replayed yes after the restart gets the stored outcome.
        assert state(await confirm(stub, action)) == "SUCCEEDED" and len(back_office.office.writes()) == 2
        trail = await events(stub, action_id=action.action_id)
        assert kinds(trail) == [
            "PROPOSED", "CONFIRMED", "EXECUTING", "EXECUTING", "EXECUTED", "RECONCILED"
        ]
        reconciled = trail[-1]
        assert reconciled.actor.kind == actions_pb2.ACTOR_KIND_SYSTEM
        assert "interrupted" in reconciled.detail and "idempotency store" in reconciled.detail
