"""Gateway overhead: what HTTP -> gRPC -> HTTP costs on top of the backend call,
and how heavy each console page is.

Three processes, as deployed: a trivial concierge backend (answers at once,
no work), the real gateway (`python -m gateway`, tracing on, auth and rate
limiting on), and this client. It measures, one request at a time:
  - the backend called directly over gRPC (Converse), the baseline, back to back
    and after 0.3 s idle each (as calls between services come in the mesh);
  - the same call through the gateway (POST .../messages), JSON and auth included;
  - the streamed call (StreamConverse, 3 events) directly, and through the
    gateway as Server-Sent Events: time to the first event and to the last;
then requests/s through the gateway with concurrent clients, and the page
weight of every console page (HTML + the scripts and styles it loads).

    python bench/gateway_overhead.py [--requests 2000] [--concurrency 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc
from aftercare.type.v1 import answer_pb2, customer_pb2
from gateway.keys import Role, create_key
from servicekit.clients import connect

REPO_ROOT = Path(__file__).resolve().parent.parent
CONSOLE = REPO_ROOT / "gateway" / "console"
CONCIERGE = "aftercare.concierge.v1.ConciergeService"
# Calls in the mesh come one per chat message, each after the service sat idle: measured
# separately, since a hop after idle costs about three times a back-to-back one.
IDLE_S, IDLE_CALLS = 0.3, 100

ANSWER = concierge_pb2.ConverseResponse(
    reply="Open Settings > Security and turn on two-factor authentication.",
    citations=[answer_pb2.Citation(doc_id="kb-2fa", chunk_id="kb-2fa#0", title="Two-factor authentication",
                                   url="https://docs.example.com/2fa", score=0.91)],
    confidence=answer_pb2.Confidence(score=0.93, threshold=0.85),
    decision=concierge_pb2.DECISION_ANSWERED,
    reason=concierge_pb2.DECISION_REASON_CONFIDENT,
    decision_reason="confident",  # deprecated, still sent by the concierge
)
STREAM = [
    concierge_pb2.StreamConverseResponse(delta="Open Settings > Security "),
    concierge_pb2.StreamConverseResponse(delta="and turn on two-factor authentication."),
    concierge_pb2.StreamConverseResponse(outcome=ANSWER),
]
BODY = {"text": "How do I enable two-factor authentication?", "customer": {"customer_id": "bench"}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(samples_ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples_ms, 50), 3),
        "p99_ms": round(percentile(samples_ms, 99), 3),
        "mean_ms": round(statistics.fmean(samples_ms), 3),
        "n": len(samples_ms),
    }


# --- the trivial backend (a child process) ----------------------------------


class TrivialConcierge(concierge_pb2_grpc.ConciergeServiceServicer):
    async def Converse(self, request, context):  # type: ignore[no-untyped-def]
        return ANSWER

    async def StreamConverse(self, request, context):  # type: ignore[no-untyped-def]
        for event in STREAM:
            yield event


def serve_backend(port: int) -> None:
    from servicekit.server import mount, start_server
    from servicekit.settings import ServiceSettings

    async def main() -> None:
        server = await start_server(
            ServiceSettings(port=port), [mount(TrivialConcierge(), concierge_pb2, concierge_pb2_grpc)]
        )
        print(server.port, flush=True)
        await server.server.wait_for_termination()

    asyncio.run(main())


# --- measurements -------------------------------------------------------------


async def direct_unary(address: str, n: int, idle_s: float = 0.0) -> list[float]:
    """Converse straight to the backend; with `idle_s`, each measured call follows that long idle,
    as calls between services do in the mesh (one per chat message, not back to back)."""
    samples = []
    async with connect(address, CONCIERGE) as channel:
        stub = concierge_pb2_grpc.ConciergeServiceStub(channel)
        request = concierge_pb2.ConverseRequest(
            conversation_id="bench", text=BODY["text"], customer=customer_pb2.CustomerRef(tenant_id="bench",
                                                                                          customer_id="bench")
        )
        for i in range(n + 50):
            if i >= 50 and idle_s:
                await asyncio.sleep(idle_s)
            started = time.perf_counter()
            await stub.Converse(request)
            if i >= 50:  # warm-up
                samples.append((time.perf_counter() - started) * 1000)
    return samples


async def direct_stream(address: str, n: int) -> tuple[list[float], list[float]]:
    first, total = [], []
    async with connect(address, CONCIERGE) as channel:
        stub = concierge_pb2_grpc.ConciergeServiceStub(channel)
        request = concierge_pb2.StreamConverseRequest(request=concierge_pb2.ConverseRequest(
            conversation_id="bench", text=BODY["text"],
            customer=customer_pb2.CustomerRef(tenant_id="bench", customer_id="bench")))
        for i in range(n + 20):
            started = time.perf_counter()
            got_first = None
            async for _ in stub.StreamConverse(request):
                got_first = got_first or time.perf_counter()
            done = time.perf_counter()
            if i >= 20 and got_first is not None:
                first.append((got_first - started) * 1000)
                total.append((done - started) * 1000)
    return first, total


async def gateway_get(client: httpx.AsyncClient, path: str, n: int) -> list[float]:
    """A route that calls no backend: the HTTP stack, middleware (and auth) alone."""
    samples = []
    for i in range(n + 50):
        started = time.perf_counter()
        response = await client.get(path)
        response.raise_for_status()
        if i >= 50:
            samples.append((time.perf_counter() - started) * 1000)
    return samples


async def gateway_unary(client: httpx.AsyncClient, n: int) -> list[float]:
    samples = []
    for i in range(n + 50):
        started = time.perf_counter()
        response = await client.post("/v1/conversations/bench/messages", json=BODY)
        response.raise_for_status()
        if i >= 50:
            samples.append((time.perf_counter() - started) * 1000)
    return samples


async def gateway_stream(client: httpx.AsyncClient, n: int) -> tuple[list[float], list[float]]:
    first, total = [], []
    for i in range(n + 20):
        started = time.perf_counter()
        got_first = None
        async with client.stream("POST", "/v1/conversations/bench/messages/stream", json=BODY) as response:
            response.raise_for_status()
            async for chunk in response.aiter_bytes():
                if got_first is None and b"event:" in chunk:
                    got_first = time.perf_counter()
        done = time.perf_counter()
        if i >= 20 and got_first is not None:
            first.append((got_first - started) * 1000)
            total.append((done - started) * 1000)
    return first, total


async def throughput(client: httpx.AsyncClient, total: int, concurrency: int) -> dict[str, float]:
    counter = iter(range(total))
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        for _ in counter:
            started = time.perf_counter()
            response = await client.post("/v1/conversations/load/messages", json=BODY)
            latencies.append((time.perf_counter() - started) * 1000)
            errors += response.status_code != 200

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"requests_per_s": round(total / elapsed, 1), "concurrency": concurrency, "errors": errors,
            **{k: v for k, v in summary(latencies).items() if k != "n"}}


# Runs in the chat page: send `n` messages one after another; for each, the
# time from submit to the first streamed text in the answer, and to its end.
_CHAT_TIMING_JS = """async (n) => {
  const log = document.getElementById("chat-log");
  const input = document.querySelector("input[name=message]");
  const first = [], done = [];
  for (let i = 0; i < n; i++) {
    const before = log.querySelectorAll(".msg.assistant").length;
    const started = performance.now();
    let firstAt = null;
    const finished = new Promise((resolve) => {
      const observer = new MutationObserver(() => {
        const answers = log.querySelectorAll(".msg.assistant");
        const answer = answers.length > before ? answers[answers.length - 1] : null;
        if (answer && firstAt === null && answer.textContent.length > 0) firstAt = performance.now();
        if (answer && answer.classList.contains("done")) { observer.disconnect(); resolve(performance.now()); }
      });
      observer.observe(log, { childList: true, subtree: true, characterData: true, attributes: true });
    });
    input.value = "How do I enable two-factor authentication?";
    input.form.requestSubmit();
    const end = await finished;
    first.push(firstAt - started);
    done.push(end - started);
  }
  return { first, done };
}"""


def chat_page_timing(url: str, key: str, n: int) -> dict[str, Any] | None:
    """Time to first streamed text in the chat page (headless Chromium), or None without one."""
    import shutil

    chromium = shutil.which(os.environ.get("AFTERCARE_CHROMIUM", "/usr/bin/chromium"))
    if chromium is None:
        return None
    from playwright.sync_api import sync_playwright

    me = json.dumps({"key_id": "bench", "tenant_id": "bench", "role": "channel", "name": "bench"})
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.add_init_script(
                f"sessionStorage.setItem('aftercare.apiKey', {json.dumps(key)});"
                f"sessionStorage.setItem('aftercare.me', {json.dumps(me)});"
            )
            page.goto(f"{url}/console/chat.html?dwell=600")
            page.wait_for_selector("#chat-log")
            page.evaluate(_CHAT_TIMING_JS, 10)  # warm-up
            timing = page.evaluate(_CHAT_TIMING_JS, n)
        finally:
            browser.close()
    return {"first_text": summary(timing["first"]), "complete": summary(timing["done"])}


def page_weights() -> list[dict[str, Any]]:
    """Bytes of each page: its HTML and every script and stylesheet it loads."""
    rows = []
    for page in sorted(CONSOLE.glob("*.html")):
        html = page.read_text()
        assets = re.findall(r'<(?:script[^>]*\bsrc|link[^>]*\bhref)="([^"]+)"', html)
        files = [page, *(CONSOLE / asset for asset in assets)]
        raw = b"".join(f.read_bytes() for f in files)
        rows.append({
            "page": page.name,
            "files": len(files),
            "bytes": len(raw),
            # What goes over the wire behind a compressing proxy (the gateway itself does not compress).
            "gzip_bytes": sum(len(gzip.compress(f.read_bytes(), 9)) for f in files),
        })
    return rows


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc), robust to a busy machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--serve-backend", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_backend is not None:
        serve_backend(args.serve_backend)
        return 0

    with tempfile.TemporaryDirectory(prefix="aftercare-bench-") as temp:
        keys = Path(temp) / "api_keys.json"
        key, _ = create_key(keys, "bench", Role.CHANNEL, "bench")
        backend = subprocess.Popen([sys.executable, __file__, "--serve-backend", "0"], stdout=subprocess.PIPE,
                                   cwd=REPO_ROOT, text=True)
        gateway = None
        try:
            assert backend.stdout is not None
            address = f"127.0.0.1:{backend.stdout.readline().strip()}"
            port = free_port()
            env = {**os.environ, "PORT": str(port), "API_KEYS_FILE": str(keys), "LOG_LEVEL": "warning",
                   "LOG_FORMAT": "json", "RATE_LIMIT_PER_S": "1000000", "RATE_LIMIT_BURST": "1000000",
                   "OTEL_SERVICE_NAME": "gateway-bench",
                   **{f"{name}_ADDR": address
                      for name in ("RETRIEVAL", "TRIAGE", "CONCIERGE", "ESCALATION", "OUTREACH")}}
            env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
            gateway = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=REPO_ROOT, env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(f"http://127.0.0.1:{port}/healthz")

            async def measure() -> dict[str, Any]:
                limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30,
                                             headers={"Authorization": f"Bearer {key}"}) as client:
                    direct = summary(await direct_unary(address, args.requests))
                    after_idle = summary(await direct_unary(address, IDLE_CALLS, idle_s=IDLE_S))
                    healthz = summary(await gateway_get(client, "/healthz", args.requests))
                    me = summary(await gateway_get(client, "/v1/me", args.requests))
                    cpu_before = cpu_seconds(gateway.pid)
                    through = summary(await gateway_unary(client, args.requests))
                    # Warm-up requests are included in the CPU time: it errs on the high side.
                    cpu_ms = (cpu_seconds(gateway.pid) - cpu_before) * 1000 / (args.requests + 50)
                    stream_n = max(100, args.requests // 4)
                    d_first, d_total = await direct_stream(address, stream_n)
                    g_first, g_total = await gateway_stream(client, stream_n)
                    load = await throughput(client, args.requests, args.concurrency)
                return {
                    "grpc_direct": direct,
                    "grpc_direct_after_idle": after_idle,
                    "http_healthz_no_backend": healthz,
                    "http_v1_me_auth_no_backend": me,
                    "http_via_gateway": through,
                    "gateway_cpu_ms_per_request": round(cpu_ms, 3),
                    "overhead_p50_ms": round(through["p50_ms"] - direct["p50_ms"], 3),
                    "overhead_p99_ms": round(through["p99_ms"] - direct["p99_ms"], 3),
                    "stream_first_event_direct": summary(d_first),
                    "stream_first_event_via_gateway": summary(g_first),
                    "stream_complete_direct": summary(d_total),
                    "stream_complete_via_gateway": summary(g_total),
                    "throughput": load,
                }

            results = asyncio.run(measure())
            results["chat_page"] = chat_page_timing(f"http://127.0.0.1:{port}", key, max(50, args.requests // 20))
        finally:
            for process in (gateway, backend):
                if process is not None:
                    process.terminate()
                    process.wait(10)
    results["pages"] = page_weights()
    results["cpu_count"] = os.cpu_count()

    print(f"{'measurement':<36} {'p50 ms':>8} {'p99 ms':>8} {'n':>6}")
    for name in ("grpc_direct", "grpc_direct_after_idle", "http_healthz_no_backend", "http_v1_me_auth_no_backend",
                 "http_via_gateway", "stream_first_event_direct", "stream_first_event_via_gateway",
                 "stream_complete_direct", "stream_complete_via_gateway"):
        row = results[name]
        print(f"{name:<36} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} {row['n']:>6}")
    overhead = "gateway overhead (HTTP - gRPC)"
    print(f"{overhead:<36} {results['overhead_p50_ms']:>8.3f} {results['overhead_p99_ms']:>8.3f}")
    print(f"{'gateway CPU per request (ms)':<36} {results['gateway_cpu_ms_per_request']:>8.3f}")
    if results["chat_page"] is not None:
        for name in ("first_text", "complete"):
            row = results["chat_page"][name]
            label = f"chat page (Chromium) {name.replace('_', ' ')}"
            print(f"{label:<36} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} {row['n']:>6}")
    load = results["throughput"]
    print(f"\nthroughput: {load['requests_per_s']} requests/s through the gateway at concurrency "
          f"{load['concurrency']} (p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms, errors {load['errors']}), "
          f"{results['cpu_count']} CPUs")
    print(f"\n{'console page':<16} {'files':>5} {'bytes':>8} {'gzip':>8}")
    for row in results["pages"]:
        print(f"{row['page']:<16} {row['files']:>5} {row['bytes']:>8} {row['gzip_bytes']:>8}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
