"""A retrain operation survives the process that ran it: real `python -m services.triage`
processes, SIGKILLed in the middle of training. The operation is taken over (by the
restarted process on SQLite, by the other replica on PostgreSQL) and ends done: never
stuck RUNNING."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aftercare.operations.v1 import operations_pb2, operations_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from tests.conftest import free_port
from tests.services.triage.test_retrain_operation import demo_examples, metadata_of

REPO_ROOT = Path(__file__).resolve().parents[3]
TENANT = "acme"


class Replica:
    """One triage process and its clients."""

    def __init__(self, data_dir: Path, log_path: Path, database_url: str = "", stale_s: float = 30.0) -> None:
        self.port = free_port()
        self.log_path = log_path
        env = {
            **os.environ,
            "PORT": str(self.port),
            "DATA_DIR": str(data_dir),
            "RETRIEVAL_ADDR": "127.0.0.1:9",
            "TRIAGE_INTENT_ENCODERS": "minilm",
            "TRIAGE_OPERATION_STALE_S": str(stale_s),
            "DATABASE_URL": database_url,
            "LOG_LEVEL": "info",
            "LOG_FORMAT": "json",
        }
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.triage"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.triage = triage_pb2_grpc.TriageServiceStub(self.channel)
        self.operations = operations_pb2_grpc.OperationsServiceStub(self.channel)

    def wait_serving(self, within: float = 180.0) -> None:
        health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + within
        while True:
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            try:
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, "triage did not become ready"
            time.sleep(0.3)

    def get(self, name: str) -> operations_pb2.Operation:
        return self.operations.GetOperation(operations_pb2.GetOperationRequest(name=name), timeout=10).operation

    def poll(
        self, name: str, until: Callable[[operations_pb2.Operation], bool], within: float = 240.0
    ) -> operations_pb2.Operation:
        deadline = time.monotonic() + within
        while True:
            operation = self.get(name)
            if until(operation):
                return operation
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"stuck: {operation}"
            time.sleep(0.1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def close(self) -> None:
        self.channel.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def replicas(*made: Replica) -> Iterator[tuple[Replica, ...]]:
    try:
        yield made
    finally:
        for replica in made:
            replica.close()


def training(operation: operations_pb2.Operation) -> bool:
    return operation.done or metadata_of(operation).step.startswith(("encoding", "fitting", "simulating"))


def start_retrain(replica: Replica) -> operations_pb2.Operation:
    request = triage_pb2.StartRetrainRequest(tenant_id=TENANT, examples=demo_examples(2))
    return replica.triage.StartRetrain(request, timeout=30).operation


def test_a_restarted_replica_resumes_the_retrain_it_was_killed_in(tmp_path: Path) -> None:
    log = tmp_path / "triage.log"
    with replicas(Replica(tmp_path, log)) as (first,):
        first.wait_serving()
        operation = start_retrain(first)
        running = first.poll(operation.name, training)
        assert not running.done, "trained before it could be killed"
        killed_in = metadata_of(running)
        assert killed_in.attempts == 1 and killed_in.replica.split("/")[1].startswith(f"{first.process.pid}-")
        first.kill()

    with replicas(Replica(tmp_path, log)) as (second,):
        second.wait_serving()
        # Still RUNNING under the dead process until the new one takes it back (heartbeat older than 5 s).
        finished = second.poll(operation.name, lambda o: o.done)
        metadata = metadata_of(finished)
        assert metadata.state == triage_pb2.RETRAIN_STATE_SUCCEEDED, finished
        assert metadata.attempts == 2
        result = triage_pb2.RetrainResponse()
        assert finished.response.Unpack(result) and result.promoted
        model = second.triage.GetIntentModel(triage_pb2.GetIntentModelRequest(tenant_id=TENANT), timeout=10)
        assert model.serving_version == result.model_version
    assert "operation_taken_over" in log.read_text()


def test_the_other_replica_takes_over_when_the_one_training_dies(tmp_path: Path, postgres_url: str) -> None:
    made = [
        Replica(tmp_path / name, tmp_path / f"{name}.log", database_url=postgres_url, stale_s=10) for name in "ab"
    ]
    with replicas(*made) as (a, b):
        a.wait_serving()
        b.wait_serving()
        operation = start_retrain(a)
        running = a.poll(operation.name, training)
        assert not running.done, "trained before it could be killed"
        pid = int(metadata_of(running).replica.rsplit("/", 1)[1].split("-")[0])
        owner, survivor = (a, b) if pid == a.process.pid else (b, a)
        assert owner.process.pid == pid
        owner.kill()
        finished = survivor.poll(operation.name, lambda o: o.done)
        metadata = metadata_of(finished)
        assert metadata.state == triage_pb2.RETRAIN_STATE_SUCCEEDED and metadata.attempts == 2, finished
        model = survivor.triage.GetIntentModel(triage_pb2.GetIntentModelRequest(tenant_id=TENANT), timeout=10)
        result = triage_pb2.RetrainResponse()
        assert finished.response.Unpack(result) and model.current_version == result.model_version
