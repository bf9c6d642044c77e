"""Latency of the shop tenant's account assistant through the whole mesh (gateway -> concierge
-> actions -> back office, and the LLM): a read question and a confirmed write, p50/p95.

    python bench/actions_latency.py --n 20 --json var/bench/actions_latency.json
    python bench/actions_latency.py --gateway http://127.0.0.1:8080 --reset --backoffice-token TOKEN

Each sample is a new conversation of another customer of the τ-bench data, verified first by
email (the identity turn, timed apart: no LLM). Then:
- read: "Where is my order #W...?" about one of their orders (answered from the record);
- write: "Please cancel my order #W..., I no longer need it." about one of their pending
  orders (the proposal: the planner's LLM call, the policy check, the proposed action), then
  "yes" (the confirmation and the back office's write; no LLM call). Every write sample uses
  another pending order, so nothing needs a reset between samples.

Each turn's time is the client's, through the gateway's chat endpoint. When the mesh is started
here its spans go to an in-process OTLP receiver, and the time the concierge spent in LLM calls
(its `chat` spans) is reported apart from the rest of the turn. A turn whose outcome is not the
expected one (e.g. the planner asked a question instead of proposing) is counted as an error
and kept out of the percentiles. The first sample of each kind is a warm-up (the account
planner's first, uncached prompt), reported on its own. The machine's load is printed with the
table: on 2 shared cores it moves every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.shop_mesh import Conversation, ShopTarget, add_target_arguments, free_port, open_target, percentile
from devstack.demo import SHOP_DATA
from devstack.otlp_receiver import OtlpReceiver
from devstack.processes import stop_on_signals

KINDS = ("identity", "read", "write_proposal", "write_yes", "write_total")
LABELS = {
    "identity": "identity turn (email; no LLM)",
    "read": "read: where is my order",
    "write_proposal": "write: proposal (LLM planner)",
    "write_yes": "write: yes -> executed (no LLM)",
    "write_total": "write: proposal + yes",
}


@dataclass
class Samples:
    """Per kind: the turns' milliseconds, the LLM's share of them (when traced), and the errors."""

    ms: dict[str, list[float]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    llm_ms: dict[str, list[float]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    errors: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    warmup_ms: dict[str, float] = field(default_factory=dict)


# The shop catalog's approval rule for a cancellation (services/actions/catalogs/shop.json).
APPROVAL_ABOVE = 5000.0


def _paid(order: dict[str, Any]) -> float:
    return sum(float(p["amount"]) for p in order.get("payment_history") or [] if p.get("transaction_type") == "payment")


def pick_customers(data_dir: Path, n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(email, order id) pairs: for reads, any order of n different customers; for writes, a pending
    order of n other customers that needs no agent's approval. Deterministic: sorted by user id."""
    users = json.loads((data_dir / "users.json").read_text())
    orders = json.loads((data_dir / "orders.json").read_text())
    reads: list[tuple[str, str]] = []
    writes: list[tuple[str, str]] = []
    for user_id in sorted(users):
        user = users[user_id]
        own = [orders[o] for o in user.get("orders") or [] if o in orders]
        # Pending, and under the shop catalog's approval rule (a refund above $5,000 waits for an agent).
        pending = [o["order_id"] for o in own if o["status"] == "pending" and _paid(o) <= APPROVAL_ABOVE]
        if pending and len(writes) < n:
            writes.append((user["email"], pending[0]))
        elif own and len(reads) < n:
            reads.append((user["email"], own[0]["order_id"]))
        if len(reads) >= n and len(writes) >= n:
            break
    if len(writes) < n or len(reads) < n:
        raise SystemExit(f"the data has only {len(reads)} readers and {len(writes)} pending orders for --n {n}")
    return reads, writes


class Turns:
    """Sends turns of new conversations and times them, with the LLM's part from the traces."""

    def __init__(self, target: ShopTarget, receiver: OtlpReceiver | None) -> None:
        self.client = target.gateway(target.channel_key)
        self.receiver = receiver

    def close(self) -> None:
        self.client.close()

    def conversation(self) -> Conversation:
        run = uuid.uuid4().hex[:10]
        return Conversation(self.client, f"latency-{run}", f"latency-customer-{run}")

    def llm_ms(self, reply: dict[str, Any]) -> float | None:
        """Milliseconds the concierge spent in LLM calls for this turn (its gen_ai spans)."""
        if self.receiver is None or not reply.get("trace_id"):
            return None
        spans = self.receiver.wait_for(reply["trace_id"], {"gateway", "concierge"}, timeout_s=5.0)
        return sum(s.duration_ms for s in spans if s.service == "concierge" and "gen_ai.operation.name" in s.attributes)


def _expect(reply: dict[str, Any], decision: str, check: bool = True) -> str | None:
    """None when the reply is the expected outcome; else what it was instead."""
    if reply["decision"] == decision and check:
        return None
    return f"{reply['decision']}/{reply['decision_reason']}: {reply['reply'][:160]}"


def sample_read(turns: Turns, email: str, order_id: str) -> dict[str, Any]:
    chat = turns.conversation()
    out: dict[str, Any] = {}
    reply, seconds = chat.send(f"Hi, my email is {email}.")
    out["identity"] = (seconds * 1000, turns.llm_ms(reply), None if reply.get("verified_customer_id") else
                       _expect(reply, "verified", False))
    if out["identity"][2]:
        return out
    reply, seconds = chat.send(f"Where is my order {order_id}?")
    cited = any((c.get("record") or {}).get("id") == order_id for c in reply.get("citations") or [])
    out["read"] = (seconds * 1000, turns.llm_ms(reply), _expect(reply, "answered", cited))
    return out


def sample_write(turns: Turns, email: str, order_id: str) -> dict[str, Any]:
    chat = turns.conversation()
    out: dict[str, Any] = {}
    reply, seconds = chat.send(f"Hi, my email is {email}.")
    out["identity"] = (seconds * 1000, turns.llm_ms(reply), None if reply.get("verified_customer_id") else
                       _expect(reply, "verified", False))
    if out["identity"][2]:
        return out
    reply, proposal_s = chat.send(f"Please cancel my order {order_id}, I no longer need it.")
    pending = reply.get("pending_action") or {}
    out["write_proposal"] = (proposal_s * 1000, turns.llm_ms(reply),
                             _expect(reply, "confirm_action", pending.get("tool") == "cancel_pending_order"))
    if out["write_proposal"][2]:
        return out
    reply, yes_s = chat.send("yes")
    executed = (reply.get("pending_action") or {}).get("state") == "executed"
    out["write_yes"] = (yes_s * 1000, turns.llm_ms(reply), _expect(reply, "acted", executed))
    if not out["write_yes"][2]:
        llm = [x for x in (out["write_proposal"][1], out["write_yes"][1]) if x is not None]
        out["write_total"] = ((proposal_s + yes_s) * 1000, sum(llm) if len(llm) == 2 else None, None)
    return out


def collect(samples: Samples, measured: dict[str, Any], warmup: bool) -> None:
    for kind, (ms, llm_ms, error) in measured.items():
        if warmup:
            samples.warmup_ms.setdefault(kind, round(ms, 1))
            continue
        if error:
            samples.errors[kind].append(error)
            continue
        samples.ms[kind].append(ms)
        if llm_ms is not None:
            samples.llm_ms[kind].append(llm_ms)


def figures(samples: Samples) -> dict[str, Any]:
    def rounded(value: float | None) -> float | None:
        return round(value, 1) if value is not None else None

    table: dict[str, Any] = {}
    for kind in KINDS:
        values, llm = samples.ms[kind], samples.llm_ms[kind]
        rest = [total - part for total, part in zip(values, llm, strict=False)] if len(llm) == len(values) else []
        table[kind] = {
            "n": len(values),
            "p50_ms": rounded(percentile(values, 50)),
            "p95_ms": rounded(percentile(values, 95)),
            "mean_ms": rounded(statistics.fmean(values)) if values else None,
            "llm_p50_ms": rounded(percentile(llm, 50)),
            "rest_p50_ms": rounded(percentile(rest, 50)),
            "errors": len(samples.errors[kind]),
            "warmup_ms": samples.warmup_ms.get(kind),
        }
    return table


def print_table(table: dict[str, Any], config: dict[str, Any]) -> None:
    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:,.0f}" if isinstance(value, float) else str(value)

    print(f"\nshop tenant through the mesh ({config['target']}; assistant {config['assistant_model']})")
    header = ("turn", "n", "p50 ms", "p95 ms", "mean ms", "LLM p50", "rest p50", "errors", "warm-up ms")
    print(f"{header[0]:<34}" + "".join(f"{h:>11}" for h in header[1:]))
    for kind in KINDS:
        row = table[kind]
        values = (row["n"], row["p50_ms"], row["p95_ms"], row["mean_ms"], row["llm_p50_ms"], row["rest_p50_ms"],
                  row["errors"], row["warmup_ms"])
        print(f"{LABELS[kind]:<34}" + "".join(f"{cell(v):>11}" for v in values))
    print(f"load average (1, 5, 15 min): before {config['load_before']}, after {config['load_after']} "
          f"on {config['cpu_count']} CPUs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="samples of each kind (after one warm-up each)")
    parser.add_argument("--json", type=Path, help="write the figures (and the errors' replies) here")
    parser.add_argument("--data", type=Path, default=SHOP_DATA, help="the τ-bench retail data (customers, orders)")
    parser.add_argument("--reset", action="store_true", help="reset the back office first (a running mesh's "
                                                             "orders may no longer be pending)")
    add_target_arguments(parser)
    args = parser.parse_args()
    stop_on_signals()  # SIGTERM and SIGHUP unwind like Ctrl+C: the mesh started here is stopped
    reads, writes = pick_customers(args.data, args.n + 1)
    # The receiver is made once the mesh's processes are started (a gRPC server in this process
    # while they are forked breaks their start: "epoll_wait error: Bad file descriptor", abort);
    # they are told its port now.
    receiver: OtlpReceiver | None = None
    otlp_port = free_port()

    def start_receiver() -> None:
        nonlocal receiver
        receiver = OtlpReceiver()
        # OtlpReceiver binds a free port of its own; it also listens on the one the mesh was given.
        receiver.port = receiver._server.add_insecure_port(f"127.0.0.1:{otlp_port}")
        receiver.start()

    tracing = {} if args.gateway else {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    samples = Samples()
    config: dict[str, Any] = {}
    try:
        say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        with open_target(args, say=say, extra_env=tracing, after_start=None if args.gateway else start_receiver) \
                as target:
            if args.reset:
                with target.backoffice() as backoffice:
                    backoffice.post("/admin/reset").raise_for_status()
            config = {"target": target.origin, "assistant_model": target.llm_model, "n": args.n,
                      "cpu_count": os.cpu_count(), "load_before": [round(x, 2) for x in os.getloadavg()],
                      "llm_split": not args.gateway}
            turns = Turns(target, receiver)
            started = time.monotonic()
            try:
                for index, ((read_email, read_order), (write_email, write_order)) in enumerate(
                    zip(reads, writes, strict=True)
                ):
                    # Reads and writes alternate: both see the same load over the run.
                    for sample, email, order_id in ((sample_read, read_email, read_order),
                                                    (sample_write, write_email, write_order)):
                        try:
                            collect(samples, sample(turns, email, order_id), warmup=index == 0)
                        except httpx.HTTPError as error:
                            # No answer at all (a timeout, a 5xx): listed apart from wrong outcomes.
                            samples.errors.setdefault("request_failed", []).append(f"{type(error).__name__}: {error}")
                    print(f"[{index}/{args.n}] {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
            finally:
                turns.close()
            config["load_after"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if receiver is not None:
            receiver.stop()
    table = figures(samples)
    print_table(table, config)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"turns": table, "config": config, "errors": samples.errors}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
