"""Retrain as a long-running operation, through a real triage process
(`python -m services.triage`, its default encoders unless --encoders):

    python bench/retrain_operation.py --json var/bench/retrain_operation.json            # Banking77, all 10,003
    python bench/retrain_operation.py --limit 1000 --json var/bench/retrain_op_1k.json   # a stratified sample

Three phases, each on a fresh tenant in one throw-away data directory (SQLite):
  1. full     StartRetrain, then GetOperation every --poll-s until done: total time, the
              progress updates seen (distinct percent/step pairs), the result.
  2. cancel   StartRetrain, CancelOperation after --cancel-after-s: time until CANCELLED.
  3. restart  StartRetrain, SIGKILL the process once progress reaches --kill-at-percent,
              start a new process on the same data: when it serves, when it took the
              operation over (attempts 2: resumed = trained again from the stored request),
              when it ended, and how.
Prints a table per phase and writes everything to --json. Data is read where it lies.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aftercare.operations.v1 import operations_pb2, operations_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "banking77" / "train.csv"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_examples(path: Path, text_col: str, label_col: str, limit: int, seed: int) -> list[tuple[str, str]]:
    """Every row, or a stratified sample of `limit` (the same share of every label, at least 5 each)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [(row[text_col], row[label_col]) for row in csv.DictReader(handle)]
    if not limit or limit >= len(rows):
        return rows
    by_label: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row[1]].append(row)
    rng = random.Random(seed)
    share = limit / len(rows)
    sample = []
    for label_rows in by_label.values():
        sample += rng.sample(label_rows, min(len(label_rows), max(5, round(share * len(label_rows)))))
    rng.shuffle(sample)
    return sample


class Triage:
    """One triage process and its clients."""

    def __init__(self, data_dir: Path, port: int, encoders: str, log_path: Path) -> None:
        env = {
            **os.environ,
            "PORT": str(port),
            "DATA_DIR": str(data_dir),
            "RETRIEVAL_ADDR": "127.0.0.1:9",
            "LOG_LEVEL": "info",
            "LOG_FORMAT": "json",
        }
        if encoders:
            env["TRIAGE_INTENT_ENCODERS"] = encoders
        self.started = time.monotonic()
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.triage"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
        )
        self.triage = triage_pb2_grpc.TriageServiceStub(self.channel)
        self.operations = operations_pb2_grpc.OperationsServiceStub(self.channel)

    def wait_serving(self, within: float = 600.0) -> float:
        """Seconds from the process start until it reports SERVING."""
        health = health_pb2_grpc.HealthStub(self.channel)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"triage exited with {self.process.returncode}")
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return time.monotonic() - self.started
            except grpc.RpcError:
                pass
            if time.monotonic() - self.started > within:
                raise TimeoutError("triage did not become ready")
            time.sleep(0.2)

    def start_retrain(self, tenant: str, examples: list[tuple[str, str]]) -> str:
        request = triage_pb2.StartRetrainRequest(
            tenant_id=tenant, examples=[triage_pb2.LabeledExample(text=t, label=lab) for t, lab in examples]
        )
        response: triage_pb2.StartRetrainResponse = self.triage.StartRetrain(request, timeout=120)
        return response.operation.name

    def get(self, name: str) -> operations_pb2.Operation:
        response: operations_pb2.GetOperationResponse = self.operations.GetOperation(
            operations_pb2.GetOperationRequest(name=name), timeout=30
        )
        return response.operation

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.channel.close()

    def stop(self) -> None:
        self.channel.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def metadata(operation: operations_pb2.Operation) -> triage_pb2.RetrainMetadata:
    meta = triage_pb2.RetrainMetadata()
    operation.metadata.Unpack(meta)
    return meta


def outcome(operation: operations_pb2.Operation) -> dict[str, Any]:
    meta = metadata(operation)
    ended: dict[str, Any] = {
        "state": triage_pb2.RetrainState.Name(meta.state).removeprefix("RETRAIN_STATE_").lower(),
        "attempts": meta.attempts,
    }
    if operation.WhichOneof("result") == "response":
        response = triage_pb2.RetrainResponse()
        operation.response.Unpack(response)
        ended |= {
            "model_version": response.model_version,
            "promoted": response.promoted,
            "validation_accuracy": round(response.validation_accuracy, 4),
            "validation_ece": round(response.validation_ece, 4),
        }
    elif operation.WhichOneof("result") == "error":
        ended |= {"error_code": operation.error.code, "error_message": operation.error.message}
    return ended


class Watch:
    """GetOperation every `poll_s`; every distinct (percent, step) seen, with its time since the start."""

    def __init__(self, triage: Triage, name: str, started: float, poll_s: float) -> None:
        self.triage, self.name, self.started, self.poll_s = triage, name, started, poll_s
        self.updates: list[dict[str, Any]] = []

    def until(self, ok: Callable[[operations_pb2.Operation], bool], within: float = 7200.0) -> operations_pb2.Operation:
        while True:
            operation = self.triage.get(self.name)
            meta = metadata(operation)
            seen = (meta.progress_percent, meta.step, meta.attempts)
            if (
                not self.updates
                or (self.updates[-1]["percent"], self.updates[-1]["step"], self.updates[-1]["attempt"]) != seen
            ):
                self.updates.append(
                    {
                        "t_s": round(time.monotonic() - self.started, 2),
                        "percent": seen[0],
                        "step": seen[1],
                        "attempt": seen[2],
                    }
                )
            if ok(operation):
                return operation
            if time.monotonic() - self.started > within:
                raise TimeoutError(f"{self.name} not there after {within:.0f}s: {meta}")
            time.sleep(self.poll_s)


def examples_of(updates: list[dict[str, Any]], count: int = 8) -> list[str]:
    if len(updates) <= count:
        picked = updates
    else:
        picked = [updates[round(i * (len(updates) - 1) / (count - 1))] for i in range(count)]
    return [f"{u['t_s']:>8.1f}s {u['percent']:>3d}% {u['step']}" for u in picked]


def phase_full(triage: Triage, examples: list[tuple[str, str]], poll_s: float) -> dict[str, Any]:
    started = time.monotonic()
    name = triage.start_retrain("bench-full", examples)
    accepted_s = time.monotonic() - started
    watch = Watch(triage, name, started, poll_s)
    done = watch.until(lambda o: o.done)
    return {
        "operation": name,
        "start_retrain_s": round(accepted_s, 3),
        "total_s": round(time.monotonic() - started, 1),
        "progress_updates": len(watch.updates),
        "progress_examples": examples_of(watch.updates),
        "updates": watch.updates,
        **outcome(done),
    }


def phase_cancel(triage: Triage, examples: list[tuple[str, str]], poll_s: float, after_s: float) -> dict[str, Any]:
    started = time.monotonic()
    name = triage.start_retrain("bench-cancel", examples)
    watch = Watch(triage, name, started, poll_s)
    watch.until(lambda o: o.done or time.monotonic() - started >= after_s)
    asked = time.monotonic()
    step_then = watch.updates[-1]["step"]
    triage.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=name), timeout=30)
    done = watch.until(lambda o: o.done)
    return {
        "operation": name,
        "cancel_after_s": round(asked - started, 1),
        "step_when_cancelled": step_then,
        "cancelled_in_s": round(time.monotonic() - asked, 2),
        **outcome(done),
    }


def phase_restart(
    triage: Triage, examples: list[tuple[str, str]], poll_s: float, kill_at: int, restart: Callable[[], Triage]
) -> tuple[dict[str, Any], Triage]:
    started = time.monotonic()
    name = triage.start_retrain("bench-restart", examples)
    watch = Watch(triage, name, started, poll_s)
    running = watch.until(lambda o: o.done or metadata(o).progress_percent >= kill_at)
    if running.done:
        raise RuntimeError("the retrain ended before it could be killed: raise --limit or lower --kill-at-percent")
    killed_at = metadata(running)
    triage.kill()
    killed = time.monotonic()
    fresh = restart()
    serving_s = fresh.wait_serving()
    watch.triage = fresh
    taken = watch.until(lambda o: o.done or metadata(o).attempts >= 2)
    taken_over = time.monotonic()
    done = watch.until(lambda o: o.done)
    return {
        "operation": name,
        "killed_at_s": round(killed - started, 1),
        "killed_at_percent": killed_at.progress_percent,
        "killed_at_step": killed_at.step,
        "restarted_serving_after_s": round(serving_s, 1),
        "taken_over_after_kill_s": round(taken_over - killed, 1),
        "taken_over_attempt": metadata(taken).attempts,
        "ended_after_kill_s": round(time.monotonic() - killed, 1),
        "total_s": round(time.monotonic() - started, 1),
        "progress_updates": len(watch.updates),
        "progress_examples": examples_of(watch.updates),
        **outcome(done),
    }, fresh


def print_table(title: str, rows: dict[str, Any]) -> None:
    print(f"\n{title}")
    width = max(len(key) for key in rows)
    for key, value in rows.items():
        if key == "updates":
            continue
        if isinstance(value, list):
            print(f"  {key:<{width}}")
            for item in value:
                print(f"  {'':<{width}}  {item}")
        else:
            print(f"  {key:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--text-col", default="text")
    parser.add_argument("--label-col", default="category")
    parser.add_argument("--limit", type=int, default=0, help="a stratified sample of this many examples (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoders", default="", help="TRIAGE_INTENT_ENCODERS (default: the service's)")
    parser.add_argument("--poll-s", type=float, default=0.25)
    parser.add_argument("--cancel-after-s", type=float, default=5.0)
    parser.add_argument("--kill-at-percent", type=int, default=30)
    parser.add_argument("--phases", default="full,cancel,restart")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}

    examples = read_examples(args.data, args.text_col, args.label_col, args.limit, args.seed)
    result: dict[str, Any] = {
        "data": str(args.data),
        "examples": len(examples),
        "labels": len({label for _, label in examples}),
        "encoders": args.encoders or "service default",
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="retrain-op-") as tmp:
        data_dir = Path(tmp)
        log_path = data_dir / "triage.log"

        def launch() -> Triage:
            return Triage(data_dir, free_port(), args.encoders, log_path)

        triage = launch()
        try:
            result["first_start_serving_s"] = round(triage.wait_serving(), 1)
            if "full" in phases:
                result["full"] = phase_full(triage, examples, args.poll_s)
                print_table(f"full retrain of {len(examples)} examples", result["full"])
            if "cancel" in phases:
                result["cancel"] = phase_cancel(triage, examples, args.poll_s, args.cancel_after_s)
                print_table("cancel", result["cancel"])
            if "restart" in phases:
                result["restart"], triage = phase_restart(triage, examples, args.poll_s, args.kill_at_percent, launch)
                print_table("SIGKILL mid-training, then a new process", result["restart"])
        finally:
            triage.stop()
            result["load_after"] = os.getloadavg()
            taken_over = [line for line in log_path.read_text().splitlines() if "operation_taken_over" in line]
            result["log_taken_over"] = taken_over[:3]
    print(f"\nload average before {result['load_before']}, after {result['load_after']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
