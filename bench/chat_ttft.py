"""Chat time to first token: the chat page in a browser vs the concierge's own.

Starts the whole system (devstack, its default embedded CPU LLM, the demo
knowledge base ingested), then for each question measures, on the real mesh:
  - the concierge called directly over gRPC (StreamConverse): time from sending
    to the first streamed text, and to the final outcome;
  - the console's chat page in headless Chromium, timed inside the page with
    performance.now(): from submitting the message to the first streamed text
    in the answer, and to the end of streaming (the `.streaming` class removed).
The difference is what the gateway (HTTP, auth, Server-Sent Events) and the
browser add. Each question goes through both paths in new conversations; which
path goes first alternates, so the LLM's prompt cache favours neither, and
each turn starts once the previous handoff's background summary is written.

The concierge streams an answer sentence by sentence as each is checked; a
handoff is decided before any generation and arrives as one outcome (its
"first text" is the handoff message).

    python bench/chat_ttft.py [--questions 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc
from aftercare.type.v1 import conversation_pb2, customer_pb2
from devstack.demo import DEMO_QUESTIONS
from devstack.stack import REPO_ROOT, Stack, StackConfig
from servicekit.clients import connect

WARM_UP = "How do I turn on two-factor authentication?"
CONCIERGE = "aftercare.concierge.v1.ConciergeService"
CHROMIUM = os.environ.get("AFTERCARE_CHROMIUM", "/usr/bin/chromium")
GRPC, PAGE = "concierge gRPC StreamConverse", "chat page in Chromium"

# Runs in the chat page: type `text`, press Send, and time (performance.now())
# the first streamed text in the answer and the end of streaming. The observer
# is in place before the submit; the page adds the answer bubble and its
# `.streaming` class in the same task as the submit, so the callback sees both.
_TURN_JS = """async (text) => {
  const log = document.getElementById("chat-log");
  const input = document.querySelector("input[name=message]");
  const send = document.querySelector("form button[type=submit]");
  let firstAt = null;
  const finished = new Promise((resolve) => {
    const observer = new MutationObserver(() => {
      const answer = log.querySelector(".msg.assistant");
      if (!answer) return;
      if (firstAt === null && answer.textContent.length > 0) firstAt = performance.now();
      if (!answer.classList.contains("streaming")) { observer.disconnect(); resolve(answer); }
    });
    observer.observe(log, { childList: true, subtree: true, characterData: true, attributes: true });
  });
  input.value = text;
  const started = performance.now();
  send.click();
  const answer = await finished;
  const meta = answer.querySelector(".meta");
  return {
    first_text_ms: firstAt === null ? null : Math.round((firstAt - started) * 10) / 10,
    complete_ms: Math.round((performance.now() - started) * 10) / 10,
    decision: meta ? meta.textContent.split("· ").pop() : "error",
  };
}"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def settle(stack: Stack, timeout_s: float = 120.0) -> None:
    """Wait until escalation has written the LLM summary of every handoff. It does so in the
    background, on the same LLM and CPU, and slows the next turn: without this wait the page,
    which loads before its timer starts, paid less for it than the gRPC call did."""
    log = stack.log_dir / "escalation.log"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if text.count('"summary_settled"') >= text.count('"handoff_created"'):
            return
        await asyncio.sleep(0.2)


async def grpc_turn(stub: Any, tenant: str, conversation_id: str, text: str) -> dict[str, Any]:
    request = concierge_pb2.StreamConverseRequest(
        request=concierge_pb2.ConverseRequest(
            conversation_id=conversation_id,
            customer=customer_pb2.CustomerRef(tenant_id=tenant, customer_id=conversation_id),
            text=text,
            channel=conversation_pb2.CHANNEL_CHAT,
        )
    )
    started = time.perf_counter()
    first_at, outcome = None, None
    async for event in stub.StreamConverse(request):
        # Like the page: the first text shown is the first delta, or the outcome's reply if none streamed.
        first_at = first_at or time.perf_counter()
        if event.WhichOneof("event") == "outcome":
            outcome = event.outcome
    done = time.perf_counter()
    decision = concierge_pb2.Decision.Name(outcome.decision).removeprefix("DECISION_").lower() if outcome else "error"
    return {
        "first_text_ms": round((first_at - started) * 1000, 1) if first_at else None,
        "complete_ms": round((done - started) * 1000, 1),
        "decision": decision,
    }


async def page_turn(browser: Any, stack: Stack, me: dict[str, Any], conversation_id: str, text: str) -> dict[str, Any]:
    """One message in a fresh chat page (its own tab storage, so its own conversation)."""
    context = await browser.new_context()
    try:
        storage = {
            "aftercare.apiKey": stack.api_keys["channel"],
            "aftercare.me": json.dumps(me),
            "aftercare.conversationId": conversation_id,
            "aftercare.customerId": conversation_id,
        }
        await context.add_init_script(
            "".join(f"sessionStorage.setItem({json.dumps(k)}, {json.dumps(v)});" for k, v in storage.items())
        )
        page = await context.new_page()
        # A long dwell keeps the Tier-0 tip request out of the measurement.
        await page.goto(f"{stack.gateway_url}/console/chat.html?dwell=600")
        await page.wait_for_selector("#chat-log")
        await settle(stack)
        return await page.evaluate(_TURN_JS, text)
    finally:
        await context.close()


async def measure(stack: Stack, me: dict[str, Any], questions: list[str]) -> list[dict[str, Any]]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        # --no-sandbox: containers run as root, where Chromium's sandbox cannot start.
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            async with connect(stack.config.address("concierge"), CONCIERGE) as channel:
                stub = concierge_pb2_grpc.ConciergeServiceStub(channel)
                tenant = stack.config.demo_tenant
                await grpc_turn(stub, tenant, "ttft-warm-grpc", WARM_UP)
                await page_turn(browser, stack, me, "ttft-warm-page", WARM_UP)
                rows = []
                for i, text in enumerate(questions):
                    row: dict[str, Any] = {"question": text, "first": GRPC if i % 2 == 0 else PAGE}
                    for path in (GRPC, PAGE) if i % 2 == 0 else (PAGE, GRPC):
                        if path == GRPC:
                            await settle(stack)
                            row[path] = await grpc_turn(stub, tenant, f"ttft-{i}-grpc", text)
                        else:
                            row[path] = await page_turn(browser, stack, me, f"ttft-{i}-page", text)
                    rows.append(row)
        finally:
            await browser.close()
    return rows


def _ok(turn: dict[str, Any]) -> bool:
    return turn["decision"] != "error" and turn["first_text_ms"] is not None


def _both_ok(row: dict[str, Any]) -> bool:
    return _ok(row[GRPC]) and _ok(row[PAGE])


def summarise(rows: list[dict[str, Any]], path: str) -> dict[str, Any]:
    turns = [row[path] for row in rows if _ok(row[path])]
    first = [t["first_text_ms"] for t in turns]
    complete = [t["complete_ms"] for t in turns]
    decisions: dict[str, int] = {}
    for row in rows:
        decisions[row[path]["decision"]] = decisions.get(row[path]["decision"], 0) + 1
    return {
        "n": len(turns),
        "first_token_p50_ms": round(percentile(first, 50), 1),
        "first_token_p95_ms": round(percentile(first, 95), 1),
        "full_answer_p50_ms": round(percentile(complete, 50), 1),
        "full_answer_p95_ms": round(percentile(complete, 95), 1),
        "decisions": decisions,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--json", type=Path, help="write the figures and per-question rows here")
    args = parser.parse_args()
    if shutil.which(CHROMIUM) is None:
        parser.error(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set AFTERCARE_CHROMIUM)")
    questions = [DEMO_QUESTIONS[i % len(DEMO_QUESTIONS)] for i in range(args.questions)]

    with tempfile.TemporaryDirectory(prefix="aftercare-ttft-") as tmp:
        data_dir = Path(tmp)
        # Share the assembled model with other runs instead of joining the GGUF again.
        (REPO_ROOT / "var" / "models").mkdir(parents=True, exist_ok=True)
        (data_dir / "models").symlink_to((REPO_ROOT / "var" / "models").resolve(), target_is_directory=True)
        # Free ports, so a stack someone else runs on this machine is no obstacle.
        config = StackConfig(
            data_dir=data_dir,
            # No intent model training in the background: it would load the machine mid-run.
            demo_intents=None,
            gateway_port=free_port(),
            service_ports=tuple(free_port() for _ in range(5)),
            llm_port=free_port(),
        )
        stack = Stack(config)
        try:
            stack.start()
            auth = {"Authorization": f"Bearer {stack.api_keys['channel']}"}
            me = httpx.get(f"{stack.gateway_url}/v1/me", headers=auth, timeout=10).raise_for_status().json()
            rows = asyncio.run(measure(stack, me, questions))
        finally:
            stack.stop()

    figures = {path: summarise(rows, path) for path in (GRPC, PAGE)}
    added = {
        "first_token_p50_ms": round(figures[PAGE]["first_token_p50_ms"] - figures[GRPC]["first_token_p50_ms"], 1),
        "full_answer_p50_ms": round(figures[PAGE]["full_answer_p50_ms"] - figures[GRPC]["full_answer_p50_ms"], 1),
        # The same question on both paths: steadier than the p50s when the LLM's time varies a lot per question.
        "first_token_paired_median_ms": round(
            percentile([r[PAGE]["first_text_ms"] - r[GRPC]["first_text_ms"] for r in rows if _both_ok(r)], 50), 1
        ),
    }
    print(f"{'path':<32} {'first p50':>10} {'first p95':>10} {'full p50':>10} {'full p95':>10} {'n':>3}")
    for path, row in figures.items():
        print(
            f"{path:<32} {row['first_token_p50_ms']:>10.1f} {row['first_token_p95_ms']:>10.1f} "
            f"{row['full_answer_p50_ms']:>10.1f} {row['full_answer_p95_ms']:>10.1f} {row['n']:>3}"
        )
    print(
        f"{'added by gateway + browser':<32} {added['first_token_p50_ms']:>10.1f} {'':>10} "
        f"{added['full_answer_p50_ms']:>10.1f}"
    )
    print(
        f"\n(ms; 'added' is the difference of the p50s; median of the per-question differences of first token: "
        f"{added['first_token_paired_median_ms']:.1f})"
    )
    for path, row in figures.items():
        print(f"decisions, {path}: {row['decisions']}")
    print("note: an answer in a unit's own words is checked before its first sentence is sent, so its sentences "
          "follow each other within a millisecond: first ~ full")
    if any(row["decisions"].get("escalated") for row in figures.values()):
        print("note: a handoff is decided before any generation; its first text is the handoff message")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        results = {"questions": len(rows), **figures, "added_by_gateway_and_browser": added, "rows": rows}
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
