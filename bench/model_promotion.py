"""Model promotion across triage replicas: how long a promotion made through one
replica takes to be served by every replica.

Starts two triage processes (`python -m services.triage`, MiniLM alone, each with a
data folder of its own) on one database: a fresh PostgreSQL database by default
(created on --postgres-admin and dropped after), or with --backend sqlite one SQLite
file both open (polling only: SQLite has no NOTIFY). Trains two versions of the demo
tenant's intent model (kb/demo-intents) through replica A, then makes --promotions
promotions, alternating between the two versions (RollbackModel naming one, through
A, each after a random pause of up to one follow interval), and polls both replicas'
GetIntentModel until each serves it.

Reported per promotion: the RPC's own time (A serves the version when it returns),
the time until B serves it, and until every replica does (from the start of the
RPC), p50 and max.

    python bench/model_promotion.py [--promotions 20] [--backend postgresql|sqlite] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_INTENTS = REPO_ROOT / "kb" / "demo-intents" / "intents.jsonl"
TENANT = "demo"
POLL_S = 0.005


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Replica:
    def __init__(self, name: str, folder: Path, database_url: str, follow_s: float) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = folder / f"{name}.log"
        env = {
            **os.environ,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "DATA_DIR": str(folder / name),
            "DATABASE_URL": database_url,
            "RETRIEVAL_ADDR": "127.0.0.1:9",
            "TRIAGE_INTENT_ENCODERS": "minilm",
            "TRIAGE_MODEL_FOLLOW_SECONDS": str(follow_s),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "warning",
        }
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.triage"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
            )
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = triage_pb2_grpc.TriageServiceStub(self.channel)

    def wait_serving(self, timeout_s: float = 180.0) -> None:
        health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=2).status == 1:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not SERVING within {timeout_s} s")

    def serving(self) -> str:
        return self.stub.GetIntentModel(triage_pb2.GetIntentModelRequest(tenant_id=TENANT), timeout=10).serving_version

    def stop(self) -> None:
        self.channel.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)


def demo_examples() -> list[triage_pb2.LabeledExample]:
    rows = [json.loads(line) for line in DEMO_INTENTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [triage_pb2.LabeledExample(text=row["text"], label=row["label"]) for row in rows]


def until_served(replica: Replica, version: str, started: float, timeout_s: float = 60.0) -> float:
    while replica.serving() != version:
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(f"{replica.name} did not serve {version} within {timeout_s} s")
        time.sleep(POLL_S)
    return time.perf_counter() - started


def measure(a: Replica, b: Replica, promotions: int, pause_s: float) -> dict[str, object]:
    examples = demo_examples()
    first = a.stub.Retrain(triage_pb2.RetrainRequest(tenant_id=TENANT, examples=examples), timeout=600)
    second = a.stub.Retrain(triage_pb2.RetrainRequest(tenant_id=TENANT, examples=examples), timeout=600)
    if not (first.promoted and second.promoted):
        raise RuntimeError("the two demo versions were not both promoted")
    for replica in (a, b):
        until_served(replica, second.model_version, time.perf_counter())
    rpc_s: list[float] = []
    to_b_s: list[float] = []
    to_all_s: list[float] = []
    pauses = random.Random(21)
    for index in range(promotions):
        target = first.model_version if index % 2 == 0 else second.model_version
        # A random moment in the follow interval: a promotion right after B polled waits a whole interval.
        time.sleep(pauses.uniform(0, pause_s))
        started = time.perf_counter()
        a.stub.RollbackModel(triage_pb2.RollbackModelRequest(tenant_id=TENANT, model_version=target), timeout=30)
        rpc_s.append(time.perf_counter() - started)
        # Poll B first (it is the one that follows); A serves it when its RPC returns.
        to_b_s.append(until_served(b, target, started))
        to_all_s.append(max(to_b_s[-1], until_served(a, target, started)))
    return {
        "promotions": promotions,
        "versions": [first.model_version, second.model_version],
        "examples": len(examples),
        "rpc_p50_ms": round(statistics.median(rpc_s) * 1000, 1),
        "rpc_max_ms": round(max(rpc_s) * 1000, 1),
        "to_replica_b_p50_ms": round(statistics.median(to_b_s) * 1000, 1),
        "to_replica_b_max_ms": round(max(to_b_s) * 1000, 1),
        "to_every_replica_p50_ms": round(statistics.median(to_all_s) * 1000, 1),
        "to_every_replica_p95_ms": round(percentile(to_all_s, 95) * 1000, 1),
        "to_every_replica_max_ms": round(max(to_all_s) * 1000, 1),
        "to_every_replica_ms": [round(s * 1000, 1) for s in to_all_s],
    }


def create_database(admin_url: str) -> tuple[str, str]:
    import psycopg

    name = f"aftercare_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
    return name, url.render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--promotions", type=int, default=20)
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--postgres-admin", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--follow-seconds", type=float, default=1.0, help="TRIAGE_MODEL_FOLLOW_SECONDS")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    database = None
    with tempfile.TemporaryDirectory(prefix="model-promotion-") as tmp:
        folder = Path(tmp)
        if args.backend == "postgresql":
            database, url = create_database(args.postgres_admin)
        else:
            url = f"sqlite:///{folder / 'shared' / 'triage.db'}"
            (folder / "shared").mkdir()
        replicas: list[Replica] = []
        try:
            started = time.monotonic()
            replicas = [Replica(name, folder, url, args.follow_seconds) for name in ("a", "b")]
            for replica in replicas:
                replica.wait_serving()
            start_s = time.monotonic() - started
            figures = measure(replicas[0], replicas[1], args.promotions, args.follow_seconds)
        finally:
            for replica in replicas:
                replica.stop()
            if database is not None:
                drop_database(args.postgres_admin, database)

    figures = {
        "backend": args.backend,
        "mechanism": "LISTEN/NOTIFY + polling" if args.backend == "postgresql" else "polling",
        "follow_seconds": args.follow_seconds,
        "replicas": 2,
        "two_replicas_start_s": round(start_s, 1),
        **figures,
    }
    width = max(len(k) for k in figures)
    print(f"{'figure'.ljust(width)}  value")
    print(f"{'-' * width}  -----")
    for key, value in figures.items():
        print(f"{key.ljust(width)}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
