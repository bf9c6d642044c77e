"""Milvus Lite's engine is a child process of the retrieval service: if it dies, the
service stops too (and its supervisor starts both again) instead of looking alive
while every call fails."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.retrieval import app
from services.retrieval.app import EXIT_ENGINE_LOST, stop_when_engine_exits
from services.retrieval.store import Store
from tests.conftest import free_port

REPO_ROOT = Path(__file__).resolve().parents[3]


async def test_the_watchdog_stops_the_service_when_the_engine_dies(tmp_path: Path) -> None:
    store = await asyncio.to_thread(Store.open, str(tmp_path / "milvus.db"), "kb", 8)
    stopped = asyncio.Event()
    watchdog = asyncio.create_task(stop_when_engine_exits(store, stopped.set))
    try:
        await asyncio.sleep(1.5)
        assert not stopped.is_set() and store.engine_exit_code() is None
        assert store._engine is not None
        store._engine.kill()
        await asyncio.wait_for(stopped.wait(), 10)
        assert store.engine_exit_code() is not None
    finally:
        watchdog.cancel()
        await store.close()  # nothing left to flush to: closing still succeeds


async def test_the_service_stops_even_when_logging_the_engines_death_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    class DeadEngine:
        def engine_exit_code(self) -> int:
            return -9

    class BrokenLog:
        def error(self, *args: object, **kwargs: object) -> None:
            raise ValueError("I/O operation on closed file")

    monkeypatch.setattr(app, "ENGINE_CHECK_S", 0.01)
    monkeypatch.setattr(app, "log", BrokenLog())
    stopped = asyncio.Event()
    with pytest.raises(ValueError):
        await asyncio.wait_for(stop_when_engine_exits(DeadEngine(), stopped.set), 5)  # type: ignore[arg-type]
    assert stopped.is_set()


def _engine_pid(service_pid: int) -> int | None:
    children = subprocess.run(
        ["ps", "--ppid", str(service_pid), "-o", "pid=,comm="], capture_output=True, text=True, check=False
    ).stdout.split("\n")
    return next((int(line.split()[0]) for line in children if line.strip().endswith("milvus")), None)


def test_the_service_process_exits_when_its_engine_is_killed(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "DATA_DIR": str(tmp_path), "LOG_LEVEL": "warning"}
    with (tmp_path / "service.log").open("wb") as log:
        service = subprocess.Popen(
            [sys.executable, "-m", "services.retrieval"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 120
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                assert service.poll() is None, (tmp_path / "service.log").read_text()[-2000:]
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                assert time.monotonic() < deadline, "the service did not become ready"
                time.sleep(0.3)
        engine = _engine_pid(service.pid)
        assert engine is not None, "no milvus engine among the service's children"
        os.kill(engine, 9)
        # A failure for its supervisor (a restart policy of OnFailure would restart it too).
        assert service.wait(timeout=30) == EXIT_ENGINE_LOST
        assert "milvus_lite_engine_exited" in (tmp_path / "service.log").read_text()
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
