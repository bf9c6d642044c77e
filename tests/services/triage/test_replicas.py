"""Two triage replicas (two `python -m services.triage` processes, each with a data
folder of its own) on one fresh PostgreSQL database, in one test (starting processes
is the slow part): a retrain through one serves on the other within the follow bound,
a rollback through the other reaches the first, a process killed in the middle of
saving or promoting a version leaves nothing half-promoted, and a replica killed
during a retrain leaves the survivor serving a complete version while the restarted
one loads it before it reports SERVING.

Skipped only when PostgreSQL is not reachable (the postgres_url fixture)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from devstack.stack import REPO_ROOT
from servicekit.database import make_engine
from services.triage.intent_store import ModelStore
from tests.conftest import free_port
from tests.services.triage.test_intent_model import TENANT, contact, examples

# The follower polls every second (TRIAGE_MODEL_FOLLOW_SECONDS' default) and loads in a moment;
# lenient for a loaded 2-core machine: a replica that does not follow never gets there.
FOLLOW_BOUND_S = 15.0
START_BOUND_S = 120.0


class Replica:
    """One triage process; its log goes to a file the test prints when it fails."""

    def __init__(self, name: str, tmp_path: Path, database_url: str) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = tmp_path / f"{name}.log"
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            # Nothing on disk is shared: each replica has a folder of its own.
            "DATA_DIR": str(tmp_path / name),
            "DATABASE_URL": database_url,
            "RETRIEVAL_ADDR": "127.0.0.1:9",
            "TRIAGE_INTENT_ENCODERS": "minilm",
            "LOG_FORMAT": "json",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: grpc.Channel | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.triage"], cwd=REPO_ROOT, env=self.env, stdout=log, stderr=log
            )
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")

    def wait_serving(self) -> None:
        assert self.process is not None and self.channel is not None
        health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + START_BOUND_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"{self.name} exited: {self.log()}"
            try:
                status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
            except grpc.RpcError:
                status = None
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not SERVING within {START_BOUND_S} s: {self.log()}")

    @property
    def stub(self) -> triage_pb2_grpc.TriageServiceStub:
        assert self.channel is not None
        return triage_pb2_grpc.TriageServiceStub(self.channel)

    def model(self) -> triage_pb2.GetIntentModelResponse:
        return self.stub.GetIntentModel(triage_pb2.GetIntentModelRequest(tenant_id=TENANT), timeout=10)

    def kill(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def _wait_serving_version(replica: Replica, version: str) -> float:
    """Seconds until `replica` serves `version` (AssertionError past the bound)."""
    started = time.monotonic()
    while time.monotonic() - started < FOLLOW_BOUND_S:
        if replica.model().serving_version == version:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{replica.name} does not serve {version}: {replica.model()} {replica.log()}")


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Replica, Replica]]:
    a, b = Replica("a", tmp_path, postgres_url), Replica("b", tmp_path, postgres_url)
    try:
        a.start()
        b.start()
        a.wait_serving()
        b.wait_serving()
        yield a, b
    finally:
        a.kill()
        b.kill()


# Run in a process of its own against the shared database: the store's own save and
# promote, paused (then SIGKILLed by the test) just before the Nth COMMIT reaches the server.
_PAUSED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sqlalchemy import event
    from services.triage.intent_store import ModelStore, new_version

    url, folder, tenant, source, pause_at = sys.argv[1:6]
    store = ModelStore.open(url, Path(folder))
    store.prepare()
    model = store.load(tenant, source)
    model.version = new_version()
    commits = 0

    def before_commit(connection):
        global commits
        commits += 1
        if commits == int(pause_at):
            print("paused", model.version, flush=True)
            time.sleep(600)

    event.listen(store.artifacts.engine, "commit", before_commit)
    store.save(tenant, model)
    store.promote(tenant, model.version)
    print("done", model.version, flush=True)
    """
)


def _killed_mid_write(postgres_url: str, tmp_path: Path, source: str, pause_at: int) -> str:
    """The version a writer was saving (pause_at=1) or promoting (pause_at=2) when SIGKILLed."""
    output = tmp_path / f"writer-{pause_at}.log"
    with open(output, "wb") as log:
        writer = subprocess.Popen(
            [sys.executable, "-c", _PAUSED_WRITER, postgres_url, str(tmp_path / "w"), TENANT, source, str(pause_at)],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and writer.poll() is None:
            # Its log lines come first: the marker is a line of its own.
            lines = output.read_text(errors="replace").splitlines()
            paused = [line.split() for line in lines if line.startswith("paused ")]
            if paused:
                writer.send_signal(signal.SIGKILL)
                writer.wait(30)
                return paused[0][1]
            time.sleep(0.05)
        raise AssertionError(f"the writer did not pause: {output.read_text(errors='replace')[-3000:]}")
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(30)


def _store(postgres_url: str, tmp_path: Path) -> ModelStore:
    return ModelStore(make_engine(postgres_url), legacy_root=None)


def test_two_replicas_serve_the_same_version(
    tmp_path: Path, postgres_url: str, replicas: tuple[Replica, Replica]
) -> None:
    a, b = replicas
    assert a.model().replica != b.model().replica
    assert a.model().serving_version == b.model().serving_version == ""

    # Retrained through a: b serves it within the bound.
    first = a.stub.Retrain(triage_pb2.RetrainRequest(tenant_id=TENANT, examples=examples()), timeout=120)
    assert first.promoted
    follow_first = _wait_serving_version(b, first.model_version)
    _wait_serving_version(a, first.model_version)
    second = a.stub.Retrain(triage_pb2.RetrainRequest(tenant_id=TENANT, examples=examples()), timeout=120)
    assert second.promoted  # same data, same validation
    follow_second = _wait_serving_version(b, second.model_version)
    _wait_serving_version(a, second.model_version)
    answer_a = a.stub.TriageContact(contact("I was charged twice this month"), timeout=30).intent
    answer_b = b.stub.TriageContact(contact("I was charged twice this month"), timeout=30).intent
    assert answer_a == answer_b and answer_a.model_version == second.model_version

    # Rolled back through b: b serves it when the call returns, a follows.
    back = b.stub.RollbackModel(triage_pb2.RollbackModelRequest(tenant_id=TENANT), timeout=30)
    assert (back.model_version, back.previous_version) == (first.model_version, second.model_version)
    assert b.model().serving_version == first.model_version
    follow_back = _wait_serving_version(a, first.model_version)
    print(f"followed in {follow_first:.2f} s, {follow_second:.2f} s, {follow_back:.2f} s")

    # A writer killed while its version's bytes were being committed: no such version, nothing moved.
    half = _killed_mid_write(postgres_url, tmp_path, second.model_version, pause_at=1)
    # One killed while moving the pointer: the version is complete and stored, the pointer unchanged.
    unpromoted = _killed_mid_write(postgres_url, tmp_path, second.model_version, pause_at=2)
    store = _store(postgres_url, tmp_path)
    try:
        assert half not in store.versions(TENANT)
        assert unpromoted in store.versions(TENANT)
        pointer = store.pointer(TENANT)
        assert pointer is not None and pointer.version == first.model_version
        assert store.load(TENANT, unpromoted).labels == store.load(TENANT, first.model_version).labels
    finally:
        store.close()
    time.sleep(1.5)  # a follow interval and more: nobody moved
    for replica in (a, b):
        info = replica.model()
        assert (info.serving_version, info.current_version) == (first.model_version, first.model_version)
        assert half not in info.versions
    # The complete one can be promoted, by name, through either replica.
    a.stub.RollbackModel(triage_pb2.RollbackModelRequest(tenant_id=TENANT, model_version=unpromoted), timeout=30)
    _wait_serving_version(b, unpromoted)
    assert b.stub.TriageContact(contact("reset my password"), timeout=30).intent.label == "password_reset"

    # A replica SIGKILLed in the middle of a retrain (one process start saved: the same pair).
    _killed_during_a_retrain(postgres_url, tmp_path, a, b)


def _killed_during_a_retrain(postgres_url: str, tmp_path: Path, a: Replica, b: Replica) -> None:
    """The survivor serves a complete version; the restarted replica loads it before SERVING."""
    # More phrasings, so the retrain runs long enough to be killed in the middle.
    more = [
        triage_pb2.LabeledExample(text=f"{item.text} {suffix}", label=item.label)
        for item in examples()
        for suffix in ("", "please", "asap", "thanks", "right now", "today", "again", "urgent")
    ]
    errors: list[grpc.RpcError] = []

    def retrain() -> None:
        try:
            a.stub.Retrain(triage_pb2.RetrainRequest(tenant_id=TENANT, examples=more), timeout=120)
        except grpc.RpcError as error:
            errors.append(error)

    caller = threading.Thread(target=retrain)
    caller.start()
    time.sleep(1.0)
    a.kill()
    caller.join(60)

    # The survivor serves a complete version, the one the pointer names, and answers.
    store = _store(postgres_url, tmp_path)
    try:
        pointer = store.pointer(TENANT)
        assert pointer is not None and pointer.version in store.versions(TENANT)
        store.load(TENANT, pointer.version)  # complete: it loads
    finally:
        store.close()
    info = b.model()
    assert info.serving_version in info.versions and info.serving_version
    _wait_serving_version(b, info.current_version)
    assert b.stub.TriageContact(contact("reset my password"), timeout=30).intent.label == "password_reset"

    # Restarted, a loads the current version before it reports SERVING.
    a.start()
    a.wait_serving()
    restarted = a.model()
    assert restarted.serving_version and restarted.serving_version in restarted.versions
    assert restarted.HasField("loaded_at")
    _wait_serving_version(a, a.model().current_version)
