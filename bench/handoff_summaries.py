"""Handoff summaries and handoff creation latency, on the CPU default.

    python bench/handoff_summaries.py --dialogues ../shared/data/tweetsumm/valid.jsonl \\
        --limit 40 --json var/bench/handoff_summaries.json [--mesh]

Each TweetSumm dialogue becomes a CreateHandoff call to a real escalation
service (gRPC, SQLite, the real LLM: the embedded llama.cpp server that this
script starts itself, or --llm-base-url). The context package's
one-sentence `summary` (and its `detail`) are scored with ROUGE-1/2/L
(F-measure, stemmed, best over the dialogue's human abstractive summaries,
averaged over dialogues) against a simple extractive baseline, the first
customer turn. "Names the issue": at least two of the content words of the
customer sentence of a human summary (its first sentence), or all of them
if it has fewer, appear in the text.

The same calls give the handoff creation latency (p50/p95) including the
context package (what a customer's turn waits: the LLM summary is written
afterwards, in the background) and the time until that summary was written or
refused; each package is scored once its summary is settled. Without --mesh the escalation service runs in this process
with retrieval and triage left out (only the LLM part of the package is
timed). With --mesh the whole local mesh is started (devstack, demo knowledge
base ingested) and the calls go to its escalation service, so the latency
includes triage, the knowledge-base search and similar cases.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from rouge_score import rouge_scorer

from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.type.v1 import conversation_pb2, customer_pb2, verdict_pb2
from devstack import llm_server
from devstack.stack import REPO_ROOT, Stack, StackConfig
from servicekit.server import serving
from services.escalation import summaries
from services.escalation.app import servicers
from services.escalation.settings import EscalationSettings

ROLES = {"customer": conversation_pb2.ROLE_CUSTOMER, "agent": conversation_pb2.ROLE_AGENT}
METRICS = ("rouge1", "rouge2", "rougeL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def load(path: Path, limit: int) -> list[dict[str, Any]]:
    dialogues = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        turns = [t for t in row["turns"] if t.get("text") and t.get("speaker") in ROLES]
        references = [s for s in row.get("abstractive_summaries") or [] if isinstance(s, str) and s.strip()]
        if turns and references and any(t["speaker"] == "customer" for t in turns):
            dialogues.append({"id": row["conversation_id"], "turns": turns, "references": references})
        if len(dialogues) == limit:
            break
    return dialogues


def request_for(dialogue: dict[str, Any], index: int) -> escalation_pb2.CreateHandoffRequest:
    return escalation_pb2.CreateHandoffRequest(
        idempotency_key=f"bench-{index}-{dialogue['id']}",
        customer=customer_pb2.CustomerRef(tenant_id="demo", customer_id=f"tweetsumm-{index}"),
        conversation=conversation_pb2.Conversation(
            # One conversation per call: a second handoff on a conversation is appended to its first.
            conversation_id=f"{index}-{dialogue['id']}"[:64],
            messages=[conversation_pb2.Message(role=ROLES[t["speaker"]], text=t["text"]) for t in dialogue["turns"]],
            channel=conversation_pb2.CHANNEL_CHAT,
        ),
        reason=escalation_pb2.HANDOFF_REASON_LOW_CONFIDENCE,
        priority=50,
    )


def summary_origin(package: escalation_pb2.ContextPackage) -> str:
    """How the summary was made, as the results name it: "llm", "extractive" or "pending"."""
    return escalation_pb2.SummaryOrigin.Name(package.summary_origin).removeprefix("SUMMARY_ORIGIN_").lower()


def names_issue(text: str, references: list[str]) -> bool:
    words = summaries.content_words(text)
    for reference in references:
        first = summaries._sentences(reference)[0] if summaries._sentences(reference) else reference
        issue = {w for w in summaries.content_words(first) if summaries._stem(w) not in _FRAMING_STEMS}
        if issue and len(words & issue) >= min(2, len(issue)):
            return True
    return False


_FRAMING_STEMS = {summaries._stem(w) for w in summaries._FRAMING}


class Scores:
    def __init__(self) -> None:
        self._scorer = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)
        self.values: dict[str, list[float]] = {m: [] for m in METRICS}
        self.named: list[bool] = []

    def add(self, text: str, references: list[str]) -> None:
        for metric in METRICS:
            self.values[metric].append(
                max(self._scorer.score(reference, text)[metric].fmeasure for reference in references)
            )
        self.named.append(names_issue(text, references))

    def means(self) -> dict[str, float]:
        return {m: round(statistics.mean(v), 4) for m, v in self.values.items()}


# How long the bench waits for a background summary before scoring the package as it is.
SUMMARY_WAIT_S = 300.0


async def settle(
    stub: escalation_pb2_grpc.EscalationServiceStub, handoff: escalation_pb2.Handoff, timeout_s: float
) -> escalation_pb2.ContextPackage:
    """The package once its background LLM summary is written or refused (at most timeout_s)."""
    request = escalation_pb2.GetHandoffRequest(tenant_id=handoff.customer.tenant_id, handoff_id=handoff.handoff_id)
    deadline = time.perf_counter() + timeout_s
    package = handoff.context
    while package.summary_origin == escalation_pb2.SUMMARY_ORIGIN_PENDING and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
        package = (await stub.GetHandoff(request, timeout=10)).handoff.context
    return package


async def create_all(
    stub: escalation_pb2_grpc.EscalationServiceStub, dialogues: list[dict[str, Any]], max_seconds: float
) -> tuple[list[escalation_pb2.ContextPackage], list[float], list[float]]:
    """One CreateHandoff per dialogue, in order, each followed by its summary settling; stops early
    once max_seconds (if > 0) have passed. Returns the settled packages, the CreateHandoff latencies
    (what the customer's turn waits) and the times until the summary was settled."""
    packages, latencies, settled = [], [], []
    started = time.perf_counter()
    for index, dialogue in enumerate(dialogues):
        if max_seconds and time.perf_counter() - started > max_seconds:
            break
        began = time.perf_counter()
        response = await stub.CreateHandoff(request_for(dialogue, index), timeout=300)
        latencies.append((time.perf_counter() - began) * 1000)
        packages.append(await settle(stub, response.handoff, SUMMARY_WAIT_S))
        settled.append((time.perf_counter() - began) * 1000)
    return packages, latencies, settled


async def run_in_process(
    llm_base_url: str, data_dir: Path, dialogues: list[dict[str, Any]], budget_s: float | None, max_seconds: float
) -> tuple[Any, Any]:
    overrides = {} if budget_s is None else {"summary_budget_s": budget_s, "llm_timeout_s": budget_s}
    settings = EscalationSettings(
        port=0,
        data_dir=data_dir,
        database_url="",
        llm_base_url=llm_base_url,
        llm_model=llm_server.MODEL_ALIAS,
        # Summaries alone: a draft per handoff would queue before the next handoff's summary.
        draft_mode="template",
        retrieval_addr="absent:1",
        triage_addr="absent:1",
        **overrides,
    )
    factory = functools.partial(servicers, connect_backends=False)
    async with serving(settings, factory) as running, grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = escalation_pb2_grpc.EscalationServiceStub(channel)
        # One warm-up call (loads the prompt prefix into the server's cache), not measured.
        warm = await stub.CreateHandoff(request_for(dialogues[0], -1), timeout=300)
        await settle(stub, warm.handoff, 300)
        return await create_all(stub, dialogues, max_seconds)


async def run_on_mesh(address: str, dialogues: list[dict[str, Any]], max_seconds: float) -> tuple[Any, Any]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = escalation_pb2_grpc.EscalationServiceStub(channel)
        warm = await stub.CreateHandoff(request_for(dialogues[0], -1), timeout=300)
        await settle(stub, warm.handoff, 300)
        return await create_all(stub, dialogues, max_seconds)


def first_customer_turn(turns: list[summaries.Turn]) -> str:
    """The simple baseline: the customer's first message as it is."""
    return next((turn.text for turn in turns if turn.speaker == "Customer"), "")


def start_llm(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    model = llm_server.ensure_model(REPO_ROOT / "var" / "models")
    env = {k: v for k, v in os.environ.items() if k != "PORT"}
    log = (data_dir / "llm.log").open("wb")
    process = subprocess.Popen(llm_server.command(model, port), env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the LLM server exited; see {data_dir / 'llm.log'}")
        try:
            httpx.get(f"{base_url}/models", timeout=1.0).raise_for_status()
            return process, base_url
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("the LLM server did not start within 120 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=Path, required=True)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=40, help="dialogues to use (0: all)")
    parser.add_argument("--llm-base-url", default="", help="an OpenAI-compatible server instead of starting one")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=0,
        help="stop creating handoffs after this long and score those done (0: no limit)",
    )
    parser.add_argument("--mesh", action="store_true", help="start the whole local mesh and time its escalation")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds the background LLM summary may take (default: the service's); raise it to score the "
        "LLM's summaries on a loaded machine rather than the fallback",
    )
    args = parser.parse_args()
    # A timeout's SIGTERM still stops the LLM server (and the mesh) this script started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    dialogues = load(args.dialogues, args.limit or 10**9)
    if not dialogues:
        parser.error(f"no usable dialogues in {args.dialogues}")
    with tempfile.TemporaryDirectory(prefix="handoff-bench-") as tmp:
        data_dir = Path(tmp)
        started = time.perf_counter()
        if args.mesh:
            budget_env = (
                {} if args.budget is None else {"SUMMARY_BUDGET_S": str(args.budget), "LLM_TIMEOUT_S": str(args.budget)}
            )
            config = StackConfig(
                data_dir=data_dir,
                gateway_port=free_port(),
                llm_port=free_port(),
                service_ports=tuple(free_port() for _ in range(5)),
                llm_base_url=args.llm_base_url or None,
                extra_env=budget_env,
            )
            with Stack(config) as stack:
                model = stack.llm_base_url
                packages, latencies, settled = asyncio.run(
                    run_on_mesh(config.address("escalation"), dialogues, args.max_seconds)
                )
        else:
            process = None
            if args.llm_base_url:
                model = args.llm_base_url
            else:
                process, model = start_llm(data_dir)
            try:
                packages, latencies, settled = asyncio.run(
                    run_in_process(model, data_dir, dialogues, args.budget, args.max_seconds)
                )
            finally:
                if process is not None:
                    process.terminate()
                    process.wait(timeout=10)
        seconds = time.perf_counter() - started

    dialogues = dialogues[: len(packages)]
    summary_scores, detail_scores, baseline_scores = Scores(), Scores(), Scores()
    examples = []
    for dialogue, package in zip(dialogues, packages, strict=True):
        turns = summaries.turns(request_for(dialogue, 0).conversation.messages)
        baseline = first_customer_turn(turns)
        summary_scores.add(package.summary, dialogue["references"])
        detail_scores.add(f"{package.summary} {package.detail}", dialogue["references"])
        baseline_scores.add(baseline, dialogue["references"])
        # Every package, for reading (does each state the issue and what was done or promised?).
        examples.append(
            {
                "id": dialogue["id"],
                "summary": package.summary,
                "detail": package.detail,
                "method": summary_origin(package),
                "sentiment": verdict_pb2.SentimentLabel.Name(package.sentiment)
                .removeprefix("SENTIMENT_LABEL_")
                .lower(),
                "reference": dialogue["references"][0],
            }
        )
    system, detail, base = summary_scores.means(), detail_scores.means(), baseline_scores.means()
    methods = [summary_origin(p) for p in packages]
    result = {
        "dialogues": len(dialogues),
        "data": str(args.dialogues),
        "mode": "mesh" if args.mesh else "in-process (retrieval and triage left out)",
        "llm": model,
        **system,
        "issue_named_share": round(statistics.mean(summary_scores.named), 4),
        "summary_plus_detail": {**detail, "issue_named_share": round(statistics.mean(detail_scores.named), 4)},
        "baseline_rouge1": base["rouge1"],
        "baseline_rouge2": base["rouge2"],
        "baseline_rougeL": base["rougeL"],
        "baseline_issue_named_share": round(statistics.mean(baseline_scores.named), 4),
        "llm_summary_share": round(methods.count("llm") / len(methods), 4),
        "summary_budget_s": args.budget
        if args.budget is not None
        else EscalationSettings.model_fields["summary_budget_s"].default,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "create_latency_ms": {
            "p50": round(percentile(latencies, 50), 1),
            "p95": round(percentile(latencies, 95), 1),
            "mean": round(statistics.mean(latencies), 1),
            "max": round(max(latencies), 1),
        },
        "summary_settled_ms": {
            "p50": round(percentile(settled, 50), 1),
            "p95": round(percentile(settled, 95), 1),
        },
        "wall_s": round(seconds, 1),
        "examples": examples,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")

    print(
        f"{len(dialogues)} TweetSumm dialogues, {result['mode']}, LLM summaries kept: {result['llm_summary_share']:.0%}"
    )
    print(f"{'':28}{'ROUGE-1':>9}{'ROUGE-2':>9}{'ROUGE-L':>9}{'names issue':>13}")
    rows = [
        ("package summary", system, result["issue_named_share"]),
        ("summary + detail", detail, result["summary_plus_detail"]["issue_named_share"]),
        ("baseline: 1st customer turn", base, result["baseline_issue_named_share"]),
    ]
    for name, scores, named in rows:
        print(f"{name:28}{scores['rouge1']:>9.4f}{scores['rouge2']:>9.4f}{scores['rougeL']:>9.4f}{named:>13.1%}")
    latency = result["create_latency_ms"]
    print(f"CreateHandoff latency incl. context package: p50 {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms")
    settle_ms = result["summary_settled_ms"]
    print(f"until the LLM summary was written or refused: p50 {settle_ms['p50']:.0f} ms, p95 {settle_ms['p95']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
