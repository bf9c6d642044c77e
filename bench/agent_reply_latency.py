"""Agent reply latency: from an agent's Send to the text in the customer's chat widget.

Starts the whole system (devstack, its embedded defaults) unless --gateway-url
points at one already running, opens the console's chat page in headless
Chromium as a customer, and asks until the AI hands the conversation over.
Then, with the widget showing the handoff and holding the conversation's event
stream, it sends N agent replies through the API
(POST /v1/tenants/{t}/handoffs/{id}/replies, as the agent console's Send does)
one after the other, and for each measures:
  - send -> shown: from the moment the request is sent to the moment the reply's
    text is in the widget's DOM (a MutationObserver in the page; both ends read
    the same wall clock of this machine, at millisecond resolution);
  - the API call alone (until the reply's 200).
Each reply carries a unique marker, so a late or repeated delivery cannot be
mistaken for the one being timed; a reply shown twice is counted.

    python bench/agent_reply_latency.py [--replies 50] [--json out.json]
    python bench/agent_reply_latency.py --gateway-url http://127.0.0.1:8080 \\
        --channel-key ak_... --agent-key ak_...
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
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.stack import REPO_ROOT, Stack, StackConfig

CHROMIUM = os.environ.get("AFTERCARE_CHROMIUM", "/usr/bin/chromium")
# Questions the demo's assistant hands over (a person asked for, a billing dispute, an unknown
# topic); the first that escalates opens the conversation the replies go to.
HANDOVER_QUESTIONS = [
    "I want to talk to a person about a charge on my invoice, please.",
    "I was charged twice for November and I want the duplicate refunded.",
    "Our SSO login with our own identity provider broke after your release last night, who can help?",
]

# Runs in the chat page: resolve with the wall-clock time at which a `.msg.agent` bubble
# containing `marker` enters the log, and how many such bubbles there are a moment later.
_SEEN_JS = """async (marker) => {
  const log = document.getElementById("chat-log");
  const shown = () => [...log.querySelectorAll(".msg.agent")].filter((el) => el.textContent.includes(marker));
  const at = await new Promise((resolve) => {
    if (shown().length) { resolve(performance.timeOrigin + performance.now()); return; }
    const observer = new MutationObserver(() => {
      if (shown().length) { observer.disconnect(); resolve(performance.timeOrigin + performance.now()); }
    });
    observer.observe(log, { childList: true, subtree: true, characterData: true });
  });
  return { seen_at_ms: at };
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


class Target:
    """Where the gateway is, and the keys to use."""

    def __init__(self, url: str, channel_key: str, agent_key: str) -> None:
        self.url = url.rstrip("/")
        self.channel_key = channel_key
        self.agent_key = agent_key
        self.me = httpx.get(f"{self.url}/v1/me", headers=self._auth(channel_key), timeout=10).raise_for_status().json()
        self.tenant = self.me["tenant_id"]

    @staticmethod
    def _auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def agent_headers(self) -> dict[str, str]:
        return self._auth(self.agent_key)


async def open_customer(browser: Any, target: Target, conversation_id: str) -> Any:
    """The chat page as a fresh customer (own tab storage), key already entered."""
    context = await browser.new_context()
    storage = {
        "aftercare.apiKey": target.channel_key,
        "aftercare.me": json.dumps(target.me),
        "aftercare.conversationId": conversation_id,
        "aftercare.customerId": f"bench-{conversation_id}",
    }
    await context.add_init_script(
        "".join(f"sessionStorage.setItem({json.dumps(k)}, {json.dumps(v)});" for k, v in storage.items())
    )
    page = await context.new_page()
    await page.goto(f"{target.url}/console/chat.html?dwell=600")
    await page.wait_for_selector("#chat-log")
    return page


async def hand_over(page: Any) -> None:
    """Ask until the assistant hands the conversation over (the handoff notice appears)."""
    for asked, question in enumerate(HANDOVER_QUESTIONS, start=1):
        await page.fill("input[name=message]", question)
        await page.press("input[name=message]", "Enter")
        await page.locator(".msg.assistant.done").nth(asked - 1).wait_for(state="attached", timeout=180_000)
        if await page.locator(".handoff-prompt").count():
            return
    raise RuntimeError("the assistant answered every question; none was handed over")


async def find_handoff(client: httpx.AsyncClient, target: Target, conversation_id: str) -> str:
    response = await client.get(f"{target.url}/v1/tenants/{target.tenant}/handoffs", headers=target.agent_headers())
    for item in response.raise_for_status().json()["handoffs"]:
        if item["conversation_id"] == conversation_id:
            return str(item["handoff_id"])
    raise RuntimeError(f"no open handoff for conversation {conversation_id}")


async def one_reply(page: Any, client: httpx.AsyncClient, target: Target, handoff_id: str, i: int) -> dict[str, Any]:
    marker = f"[{i}:{uuid.uuid4().hex[:8]}]"
    text = f"Thanks for waiting; here is update {marker} on your case."
    watch = asyncio.ensure_future(page.evaluate(_SEEN_JS, marker))
    await asyncio.sleep(0.05)  # the observer is in place before the reply exists
    sent_at_ms = time.time() * 1000
    started = time.perf_counter()
    response = await client.post(
        f"{target.url}/v1/tenants/{target.tenant}/handoffs/{handoff_id}/replies",
        headers=target.agent_headers(),
        json={"final_text": text, "client_message_id": f"bench-{marker}", "agent_name": "Bench"},
    )
    api_ms = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    seen = await asyncio.wait_for(watch, timeout=60)
    await asyncio.sleep(0.2)
    copies = await page.locator("#chat-log .msg.agent", has_text=marker).count()
    return {"send_to_shown_ms": round(seen["seen_at_ms"] - sent_at_ms, 1), "api_ms": round(api_ms, 1), "copies": copies}


async def measure(target: Target, replies: int) -> list[dict[str, Any]]:
    from playwright.async_api import async_playwright

    conversation_id = f"latency-{uuid.uuid4().hex[:10]}"
    async with async_playwright() as playwright:
        # --no-sandbox: containers run as root, where Chromium's sandbox cannot start.
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = await open_customer(browser, target, conversation_id)
            await hand_over(page)
            async with httpx.AsyncClient(timeout=30) as client:
                handoff_id = await find_handoff(client, target, conversation_id)
                await one_reply(page, client, target, handoff_id, -1)  # warm-up: the stream is open and flowing
                return [await one_reply(page, client, target, handoff_id, i) for i in range(replies)]
        finally:
            await browser.close()


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    shown = [r["send_to_shown_ms"] for r in rows]
    api = [r["api_ms"] for r in rows]
    return {
        "replies": len(rows),
        "send_to_shown_p50_ms": round(percentile(shown, 50), 1),
        "send_to_shown_p95_ms": round(percentile(shown, 95), 1),
        "send_to_shown_max_ms": round(max(shown), 1) if shown else None,
        "api_p50_ms": round(percentile(api, 50), 1),
        "api_p95_ms": round(percentile(api, 95), 1),
        "shown_more_than_once": sum(1 for r in rows if r["copies"] != 1),
    }


def run_on_own_stack(replies: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="aftercare-reply-latency-") as tmp:
        data_dir = Path(tmp)
        # Share the assembled model with other runs instead of joining the GGUF again.
        (REPO_ROOT / "var" / "models").mkdir(parents=True, exist_ok=True)
        (data_dir / "models").symlink_to((REPO_ROOT / "var" / "models").resolve(), target_is_directory=True)
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
            target = Target(stack.gateway_url, stack.api_keys["channel"], stack.api_keys["agent"])
            return asyncio.run(measure(target, replies)), {"stack": "devstack (started by this run)"}
        finally:
            stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=50)
    parser.add_argument("--json", type=Path, help="write the figures and per-reply rows here")
    parser.add_argument("--gateway-url", help="a running stack's gateway (default: start the devstack)")
    parser.add_argument("--channel-key", help="with --gateway-url: a channel key of its tenant")
    parser.add_argument("--agent-key", help="with --gateway-url: an agent key of the same tenant")
    args = parser.parse_args()
    if shutil.which(CHROMIUM) is None:
        parser.error(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set AFTERCARE_CHROMIUM)")
    if args.gateway_url:
        if not (args.channel_key and args.agent_key):
            parser.error("--gateway-url needs --channel-key and --agent-key")
        target = Target(args.gateway_url, args.channel_key, args.agent_key)
        rows, where = asyncio.run(measure(target, args.replies)), {"stack": args.gateway_url}
    else:
        rows, where = run_on_own_stack(args.replies)

    figures = summarise(rows)
    load = os.getloadavg()
    print(f"{'path':<40} {'p50':>8} {'p95':>8} {'max':>8} {'n':>4}")
    print(f"{'agent Send -> text in widget':<40} {figures['send_to_shown_p50_ms']:>8.1f} "
          f"{figures['send_to_shown_p95_ms']:>8.1f} {figures['send_to_shown_max_ms']:>8.1f} {figures['replies']:>4}")
    print(f"{'  of which the reply API call':<40} {figures['api_p50_ms']:>8.1f} {figures['api_p95_ms']:>8.1f}")
    print(f"\n(ms; headless Chromium, {where['stack']}; replies shown more than once: "
          f"{figures['shown_more_than_once']}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"on {os.cpu_count()} CPUs)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        results = {**figures, **where, "load_average": list(load), "cpus": os.cpu_count(), "rows": rows}
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
