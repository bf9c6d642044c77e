"""Mesh latency: start the whole mesh (as `make run` does), send chat messages
through the gateway's streaming endpoint (Server-Sent Events, as the chat widget
does), and report end-to-end latency by decision (answers: time to the first
shown sentence and to the outcome; handoffs: time to the outcome) and what the
gRPC hops add.

The hop cost is read from the traces: for each gRPC call, the client span's
duration minus the server span's duration is the time spent on the wire,
serialising and in gRPC itself. Spans go to an in-process OTLP receiver.

    python bench/mesh_latency.py [--requests 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.demo import DEMO_QUESTIONS
from devstack.otlp_receiver import OtlpReceiver, ReceivedSpan
from devstack.stack import REPO_ROOT, Stack, StackConfig

SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def hop_overheads(spans: list[ReceivedSpan]) -> dict[str, list[float]]:
    """Per gRPC method, (client span - matching server span) of each call, in ms."""
    servers = {
        span.parent_span_id: span for span in spans if span.kind == SPAN_KIND_SERVER and span.name.startswith("/")
    }
    hops: dict[str, list[float]] = {}
    for client in spans:
        if client.kind == SPAN_KIND_CLIENT and client.name.startswith("/") and client.span_id in servers:
            hops.setdefault(client.name, []).append(client.duration_ms - servers[client.span_id].duration_ms)
    return hops


def server_times(spans: list[ReceivedSpan]) -> dict[str, list[float]]:
    """Per gRPC method, how long the server spent on each call, in ms."""
    times: dict[str, list[float]] = {}
    for span in spans:
        if span.kind == SPAN_KIND_SERVER and span.name.startswith("/"):
            times.setdefault(span.name, []).append(span.duration_ms)
    return times


async def _throughput(gateway_url: str, key: str, total: int, concurrency: int) -> dict[str, float]:
    """`concurrency` clients send `total` messages between them, as fast as answers come back."""
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    counter = iter(range(total))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            t0 = time.perf_counter()
            response = await http.post(
                f"/v1/conversations/load-{i}/messages",
                json={
                    "text": DEMO_QUESTIONS[i % len(DEMO_QUESTIONS)],
                    "customer": {"tenant_id": "demo", "customer_id": f"l{i}"},
                },
            )
            latencies.append((time.perf_counter() - t0) * 1000)
            errors += response.status_code != 200
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    async with httpx.AsyncClient(base_url=gateway_url, timeout=120, headers={"Authorization": f"Bearer {key}"}) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "chats_per_s": round(total / elapsed, 2),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "errors": errors,
        "statuses": statuses,
    }


def _streamed(client: httpx.Client, conversation: str, text: str, customer: str) -> tuple[dict, float, float | None]:
    """One message through the SSE endpoint: the outcome, ms to it, and ms to the first delta."""
    t0 = time.perf_counter()
    first: float | None = None
    event = ""
    body: dict = {}
    with client.stream(
        "POST", f"/v1/conversations/{conversation}/messages/stream",
        json={"text": text, "customer": {"tenant_id": "demo", "customer_id": customer}},
    ) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                if event == "delta" and first is None:
                    first = (time.perf_counter() - t0) * 1000
                elif event == "outcome":
                    body = json.loads(line.split(":", 1)[1])
                elif event == "error":
                    raise RuntimeError(line)
    return body, (time.perf_counter() - t0) * 1000, first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4, help="clients for the throughput pass")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    receiver = OtlpReceiver().start()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        (data_dir / "models").symlink_to((REPO_ROOT / "var" / "models").resolve(), target_is_directory=True)
        (REPO_ROOT / "var" / "models").mkdir(parents=True, exist_ok=True)
        config = StackConfig(
            data_dir=data_dir,
            gateway_port=18080,
            service_ports=(18051, 18052, 18054, 18055, 18053),
            llm_port=18081,
            demo_kb=None,
            extra_env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
                # The capacity pass measures the mesh, not the gateway's per-key rate limit (10/s).
                "RATE_LIMIT_PER_S": "1000",
                "RATE_LIMIT_BURST": "1000",
            },
        )
        stack = Stack(config)
        started = time.monotonic()
        stack.start()
        ready_s = time.monotonic() - started
        ingest_started = time.monotonic()
        stack.ingest(REPO_ROOT / "kb" / "demo", "demo")
        ingest_s = time.monotonic() - ingest_started
        try:
            latencies: list[float] = []
            by_decision: dict[str, list[float]] = {}
            first_shown: list[float] = []
            trace_ids: list[str] = []
            decisions: dict[str, int] = {}
            auth = {"Authorization": f"Bearer {stack.api_keys['channel']}"}
            with httpx.Client(base_url=stack.gateway_url, timeout=60, headers=auth) as client:
                for i in range(args.requests + 3):
                    question = DEMO_QUESTIONS[i % len(DEMO_QUESTIONS)]
                    body, elapsed, first = _streamed(client, f"bench-{i}", question, f"c{i}")
                    if i < 3:  # warm-up
                        continue
                    latencies.append(elapsed)
                    by_decision.setdefault(body["decision"], []).append(elapsed)
                    if body["decision"] == "answered" and first is not None:
                        first_shown.append(first)
                    trace_ids.append(body["trace_id"])
                    decisions[body["decision"]] = decisions.get(body["decision"], 0) + 1
            throughput = asyncio.run(
                _throughput(stack.gateway_url, stack.api_keys["channel"], args.requests, args.concurrency)
            )
            time.sleep(1.0)
            traces = [
                receiver.wait_for(t, {"gateway", "concierge", "retrieval", "triage", "escalation"}, timeout_s=5)
                for t in trace_ids
            ]
            per_trace = [hop_overheads(spans) for spans in traces]
            hops = [sum(sum(calls) for calls in trace.values()) for trace in per_trace]
            by_method: dict[str, list[float]] = {}
            served: dict[str, list[float]] = {}
            for trace, spans in zip(per_trace, traces, strict=True):
                for method, calls in trace.items():
                    by_method.setdefault(method, []).extend(calls)
                for method, times in server_times(spans).items():
                    served.setdefault(method, []).extend(times)
        finally:
            stack.stop()
            receiver.stop()

    figures = {
        "requests": len(latencies),
        "start_to_readyz_s": round(ready_s, 2),
        "demo_kb_ingest_s": round(ingest_s, 2),
        "chat_p50_ms": round(percentile(latencies, 50), 1),
        "chat_p95_ms": round(percentile(latencies, 95), 1),
        "answered_p50_ms": round(percentile(by_decision.get("answered", []), 50), 1),
        "answered_first_sentence_p50_ms": round(percentile(first_shown, 50), 1),
        "escalated_p50_ms": round(percentile(by_decision.get("escalated", []), 50), 1),
        "grpc_hops_added_p50_ms": round(statistics.median(hops), 2) if hops else None,
        "grpc_hops_added_p95_ms": round(percentile(hops, 95), 2) if hops else None,
        # Where the hops' time goes: per method, calls per chat and the median cost of one call.
        "grpc_hops_by_method": {
            method.rsplit("/", 1)[-1]: {
                "calls_per_chat": round(len(calls) / max(len(per_trace), 1), 2),
                "p50_ms": round(statistics.median(calls), 2),
            }
            for method, calls in sorted(by_method.items())
        },
        # Where a chat's time goes: the median time each service spends serving one call.
        "server_p50_ms_by_method": {
            method.rsplit("/", 1)[-1]: round(statistics.median(times), 1) for method, times in sorted(served.items())
        },
        "decisions": decisions,
        "concurrency": args.concurrency,
        "chats_per_s": throughput["chats_per_s"],
        "concurrent_p50_ms": throughput["p50_ms"],
        "concurrent_p95_ms": throughput["p95_ms"],
        "concurrent_errors": throughput["errors"],
        "concurrent_statuses": throughput["statuses"],
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
