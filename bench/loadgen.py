"""Realistic, bounded load on the gateway, and a ledger of what it acknowledged.

A worker picks one of the customer-care flows at a time (a multi-turn chat
conversation, an inbound email, a Tier-0 browsing event, an agent replying to
a handoff, a batch of product usage events) by weight, drives it through the
gateway's HTTP API with the API keys of the right role, and records every
request (endpoint, status, latency, Retry-After). Every record the system
acknowledged (a 200 for a chat turn, a handoff id, an agent reply, a usage
event, an approved outreach draft) goes into a `Ledger`, which `verify()` later
looks up again through the same API: that is how the resilience drill proves
nothing acknowledged was lost.

Everything is bounded: a phase runs a fixed number of workers for a fixed
time, every request has a client timeout, and nothing retries by itself.

Used by bench/resilience.py; no command line of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx

from devstack.demo import DEMO_QUESTIONS

DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

# Questions about the demo knowledge base (kb/demo): answerable ones and a few it cannot answer.
KB_QUESTIONS = [
    *DEMO_QUESTIONS,
    "How do I rotate an API key?",
    "My dashboard has been loading forever since yesterday, what is going on?",
    "I want to talk to a human, this is the third time I am asking.",
    "Do you ship to Antarctica?",
]
FOLLOW_UPS = [
    "And how do I do that from the mobile app?",
    "That did not work, I still get the same error.",
    "Thanks. Is there a limit on how often I can do that?",
    "Can you give me the link to the documentation for that?",
    "Ok, and what happens to my existing data?",
]
PAGES = [
    ("/settings/security", "two_factor"),
    ("/settings/api-keys", "api_keys"),
    ("/exports", "exports"),
    ("/dashboards/42", "dashboards"),
    ("/billing", "billing"),
    ("/integrations/webhooks", "webhooks"),
]
ERRORS = ["E-1042", "E-2010", "E-1101", "E-1003", ""]

# Request timeout of the load clients: longer than a healthy answer on a busy CPU,
# shorter than the gateway's own 60 s budget, so a pile-up shows as timeouts.
CLIENT_TIMEOUT_S = 30.0
CONNECT_BACKOFF_S = 0.5


def tweetsumm_customer_turns(limit: int = 400, split: str = "train") -> list[str]:
    """Real customer tweets (TweetSumm), the first customer turn of each dialogue."""
    path = DATA_DIR / "tweetsumm" / f"{split}.jsonl"
    texts: list[str] = []
    if not path.exists():
        return texts
    with path.open() as handle:
        for line in handle:
            dialogue = json.loads(line)
            for turn in dialogue["turns"]:
                if turn["speaker"] == "customer" and 10 <= len(turn["text"]) <= 2000:
                    texts.append(turn["text"])
                    break
            if len(texts) >= limit:
                break
    return texts


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# --- what happened -----------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    endpoint: str
    status: int  # HTTP status, or 0 when no response came (see `failure`)
    ms: float
    finished: float  # time.monotonic() at the end
    retry_after: str | None = None
    failure: str = ""  # "timeout", "connect", "protocol" when status is 0
    reason: str = ""  # problem+json reason of an error answer


class Recorder:
    """Every request of the run, for tables per phase and per endpoint."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.finished < end]


def outcome_label(sample: Sample) -> str:
    return sample.failure if sample.status == 0 else str(sample.status)


def summarise(samples: Sequence[Sample], duration_s: float) -> dict[str, Any]:
    """Throughput, latency percentiles and outcomes, overall and per endpoint."""

    def block(group: Sequence[Sample]) -> dict[str, Any]:
        ok = [s.ms for s in group if 200 <= s.status < 300]
        shed = [s for s in group if s.status in (429, 503)]
        return {
            "requests": len(group),
            "ok": len(ok),
            "rps": round(len(group) / duration_s, 2) if duration_s > 0 else 0.0,
            "ok_rps": round(len(ok) / duration_s, 2) if duration_s > 0 else 0.0,
            "p50_ms": round(percentile(ok, 50), 1),
            "p95_ms": round(percentile(ok, 95), 1),
            "p99_ms": round(percentile(ok, 99), 1),
            "outcomes": dict(sorted(Counter(outcome_label(s) for s in group).items())),
            "shed": len(shed),
            "shed_with_retry_after": sum(1 for s in shed if s.retry_after),
            "timeouts": sum(1 for s in group if s.failure == "timeout"),
            "reasons": dict(Counter(s.reason for s in group if s.reason)),
        }

    per_endpoint: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        per_endpoint[sample.endpoint].append(sample)
    return {
        "duration_s": round(duration_s, 1),
        "all": block(samples),
        "endpoints": {name: block(group) for name, group in sorted(per_endpoint.items())},
    }


# --- what was acknowledged -----------------------------------------------------


@dataclass
class Ledger:
    """Records the system acknowledged (answered 2xx for), to be found again later."""

    # (conversation id, customer id) -> acknowledged turn indexes
    turns: dict[tuple[str, str], set[int]] = field(default_factory=lambda: defaultdict(set))
    handoffs: set[str] = field(default_factory=set)
    # marker in the reply text -> handoff id; only replies to a handoff with an AI draft
    # (the feedback export, through which they are counted, leaves draft-less ones out)
    replies: dict[str, str] = field(default_factory=dict)
    replies_without_draft: int = 0
    usage_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    approved_drafts: set[str] = field(default_factory=set)

    def counts(self) -> dict[str, int]:
        return {
            "conversation_turns": sum(len(v) for v in self.turns.values()),
            "handoffs": len(self.handoffs),
            "agent_replies": len(self.replies),
            "usage_events": len(self.usage_events),
            "approved_drafts": len(self.approved_drafts),
        }


@dataclass
class Keys:
    """API keys of one tenant by role; several per role so that the per-key rate
    limit (a per-client protection) does not cap the load on the whole system."""

    tenant: str
    channel: list[str]
    agent: list[str]
    admin: list[str]
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def pick(self, role: str, stable: str | None = None) -> str:
        keys: list[str] = getattr(self, role)
        if stable is not None:
            # An agent key is a named agent: one handoff is always worked by the same one.
            return keys[int(hashlib.sha256(stable.encode()).hexdigest(), 16) % len(keys)]
        return keys[next(self._turn) % len(keys)]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Client:
    """httpx with every request recorded; never raises for transport failures."""

    def __init__(self, base_url: str, recorder: Recorder, concurrency: int, timeout_s: float = CLIENT_TIMEOUT_S):
        self.recorder = recorder
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=concurrency + 16, max_keepalive_connections=concurrency + 16),
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def call(
        self, endpoint: str, method: str, url: str, key: str, json_body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await self.http.request(method, url, json=json_body, params=params, headers=_bearer(key))
        except httpx.TimeoutException:
            self._record(endpoint, 0, started, failure="timeout")
            return None
        except (httpx.ConnectError, httpx.ReadError, httpx.WriteError):
            self._record(endpoint, 0, started, failure="connect")
            await asyncio.sleep(CONNECT_BACKOFF_S)  # a real client does not hammer a gateway that is down
            return None
        except httpx.RemoteProtocolError:
            self._record(endpoint, 0, started, failure="protocol")
            await asyncio.sleep(CONNECT_BACKOFF_S)
            return None
        reason = ""
        if response.status_code >= 400 and response.headers.get("content-type", "").startswith(
            "application/problem+json"
        ):
            try:
                reason = str(response.json().get("reason", ""))
            except ValueError:
                reason = "unparsable_problem"
        self._record(endpoint, response.status_code, started, response.headers.get("retry-after"), reason=reason)
        return response

    def _record(
        self, endpoint: str, status: int, started: float, retry_after: str | None = None, *, failure: str = "",
        reason: str = "",
    ) -> None:
        self.recorder.add(
            Sample(endpoint, status, (time.perf_counter() - started) * 1000, time.monotonic(), retry_after, failure,
                   reason)
        )


# --- the flows -----------------------------------------------------------------


class Workload:
    """The customer-care flows, driven through the gateway."""

    # Relative frequency of each flow when workers pick one.
    DEFAULT_MIX: ClassVar[dict[str, int]] = {"conversation": 5, "email": 1, "browsing": 3, "agent_reply": 2, "usage": 2}

    def __init__(
        self,
        client: Client,
        keys: Keys,
        ledger: Ledger,
        account_ids: Sequence[str],
        *,
        seed: int = 7,
        customer_texts: Sequence[str] = (),
        mix: dict[str, int] | None = None,
        max_turns: int = 3,
    ) -> None:
        self.client = client
        self.keys = keys
        self.ledger = ledger
        self.account_ids = list(account_ids)
        self.rng = random.Random(seed)
        self.customer_texts = list(customer_texts)
        self.mix = mix or self.DEFAULT_MIX
        self.max_turns = max_turns
        self.run_id = uuid.uuid4().hex[:8]
        self._ids = itertools.count()
        self._open_handoffs: list[str] = []
        self.flows: dict[str, Callable[[], Awaitable[None]]] = {
            "conversation": self.conversation,
            "email": self.email,
            "browsing": self.browsing,
            "agent_reply": self.agent_reply,
            "usage": self.usage,
        }

    def _next_id(self, kind: str) -> str:
        return f"drill-{self.run_id}-{kind}-{next(self._ids)}"

    def _question(self) -> str:
        if self.customer_texts and self.rng.random() < 0.35:
            return self.rng.choice(self.customer_texts)[:4000]
        return self.rng.choice(KB_QUESTIONS)

    async def send_message(self, conversation_id: str, customer_id: str, text: str) -> dict[str, Any] | None:
        """One chat turn; the acknowledged turn (and its handoff) go into the ledger."""
        response = await self.client.call(
            "POST /v1/conversations/{id}/messages",
            "POST",
            f"/v1/conversations/{conversation_id}/messages",
            self.keys.pick("channel"),
            {"text": text, "customer": {"customer_id": customer_id}, "client_message_id": uuid.uuid4().hex},
        )
        if response is None or response.status_code != 200:
            return None
        body: dict[str, Any] = response.json()
        self._acknowledge_turn(conversation_id, customer_id, body)
        return body

    def _acknowledge_turn(self, conversation_id: str, customer_id: str, body: dict[str, Any]) -> None:
        self.ledger.turns[(conversation_id, customer_id)].add(int(body["turn_index"]))
        if body.get("handoff_id"):
            self.ledger.handoffs.add(body["handoff_id"])
            self._open_handoffs.append(body["handoff_id"])

    async def conversation(self) -> None:
        conversation_id, customer_id = self._next_id("conv"), self._next_id("cust")
        turns = self.rng.randint(1, self.max_turns)
        text = self._question()
        for turn in range(turns):
            body = await self.send_message(conversation_id, customer_id, text if turn == 0 else
                                           self.rng.choice(FOLLOW_UPS))
            if body is None or body.get("decision") == "escalated":
                return  # a customer handed to a human waits for the agent
            await asyncio.sleep(self.rng.uniform(0.05, 0.3))  # reading the answer

    async def email(self) -> None:
        thread = self._next_id("mail")
        sender = f"{thread}@customer.example"
        response = await self.client.call(
            "POST /v1/tenants/{t}/intake/email",
            "POST",
            f"/v1/tenants/{self.keys.tenant}/intake/email",
            self.keys.pick("channel"),
            {"sender": sender, "subject": "Question about my account", "body": self._question(), "thread_id": thread},
        )
        if response is not None and response.status_code == 200:
            body = response.json()
            self._acknowledge_turn(body["conversation_id"], body["customer_id"], body)

    async def browsing(self) -> None:
        page, feature = self.rng.choice(PAGES)
        error = self.rng.choice(ERRORS)
        await self.client.call(
            "POST /v1/tenants/{t}/browsing-events",
            "POST",
            f"/v1/tenants/{self.keys.tenant}/browsing-events",
            self.keys.pick("channel"),
            {
                "customer_id": f"drill-{self.run_id}-visitor-{self.rng.randint(0, 200)}",
                "page": page,
                "feature": feature,
                "dwell_seconds": self.rng.randint(1, 600),
                "recent_errors": [error] if error else [],
            },
        )

    async def agent_reply(self) -> None:
        if not self._open_handoffs:
            await self.browsing()  # nothing to work on yet: agents read, customers browse
            return
        handoff_id = self._open_handoffs.pop(self.rng.randrange(len(self._open_handoffs)))
        key = self.keys.pick("agent", stable=handoff_id)
        url = f"/v1/tenants/{self.keys.tenant}/handoffs/{handoff_id}"
        handoff = await self.client.call("GET /v1/tenants/{t}/handoffs/{id}", "GET", url, key)
        if handoff is None or handoff.status_code != 200:
            self._open_handoffs.append(handoff_id)
            return
        marker = f"drillreply{uuid.uuid4().hex[:12]}"
        draft = (handoff.json().get("context") or {}).get("draft_reply", "")
        response = await self.client.call(
            "POST /v1/tenants/{t}/handoffs/{id}/replies",
            "POST",
            f"{url}/replies",
            key,
            {"final_text": f"Hello, thanks for waiting. I checked your account and reset the sync job ({marker})."},
        )
        if response is None or response.status_code != 200:
            self._open_handoffs.append(handoff_id)
            return
        if draft.strip():
            self.ledger.replies[marker] = handoff_id
        else:
            self.ledger.replies_without_draft += 1

    def usage_batch(self, size: int) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        events = []
        for _ in range(size):
            status = self.rng.choice([200, 200, 200, 200, 429, 500])
            events.append({
                "event_id": self._next_id("ev"),
                "account_id": self.rng.choice(self.account_ids),
                "occurred_at": (now - timedelta(minutes=self.rng.randint(0, 600))).isoformat(),
                "feature": "ingestion",
                "endpoint": "POST /v2/events/batch",
                "status_code": status,
                "error_code": "" if status == 200 else "E-1101",
                "count": self.rng.randint(1, 50),
                "client_version": "py-2.4.0",
            })
        return events

    async def usage(self) -> None:
        if not self.account_ids:
            return
        await self.post_usage(self.usage_batch(25))

    async def post_usage(self, events: list[dict[str, Any]], endpoint: str = "POST /v1/tenants/{t}/usage-events"
                         ) -> dict[str, Any] | None:
        response = await self.client.call(
            endpoint, "POST", f"/v1/tenants/{self.keys.tenant}/usage-events", self.keys.pick("channel"),
            {"events": events},
        )
        if response is None or response.status_code != 200:
            return None
        body: dict[str, Any] = response.json()
        rejected = {r["event_id"] for r in body.get("rejected", [])}
        for event in events:
            if event["event_id"] not in rejected:
                self.ledger.usage_events[event["event_id"]] = event
        return body

    async def one(self) -> None:
        names = list(self.mix)
        name = self.rng.choices(names, weights=[self.mix[n] for n in names])[0]
        await self.flows[name]()


async def run_workers(workload: Workload, workers: int, duration_s: float, grace_s: float = 10.0) -> None:
    """`workers` concurrent customers/agents, each doing one flow after another until
    the time is up; flows under way get `grace_s` more, then are cancelled (a
    cancelled request was never acknowledged, so the ledger is unaffected)."""
    deadline = time.monotonic() + duration_s

    async def worker() -> None:
        while time.monotonic() < deadline:
            await workload.one()

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(workers))), duration_s + grace_s)


async def bounded(jobs: Sequence[Callable[[], Awaitable[None]]], concurrency: int, budget_s: float,
                  grace_s: float = 30.0) -> int:
    """Run jobs in order, `concurrency` at a time, starting none after `budget_s` and
    cancelling what still runs `grace_s` later; returns how many were started."""
    deadline = time.monotonic() + budget_s
    semaphore = asyncio.Semaphore(concurrency)
    started = 0

    async def run(job: Callable[[], Awaitable[None]]) -> None:
        nonlocal started
        async with semaphore:
            if time.monotonic() >= deadline:
                return
            started += 1
            await job()

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(run(job) for job in jobs)), budget_s + grace_s)
    return started


# --- finding acknowledged records again ---------------------------------------


async def verify(workload: Workload) -> dict[str, Any]:
    """Look every acknowledged record up through the API; what is missing is lost.

    Reads are retried a few times (the drill may have just restarted a service):
    a record counts as lost only when the service answers and it is not there."""
    client, keys, ledger = workload.client, workload.keys, workload.ledger
    tenant = keys.tenant
    found: dict[str, int] = {}
    missing: dict[str, list[str]] = {}
    unreadable: dict[str, int] = Counter()

    async def get(endpoint: str, url: str, role: str, params: dict[str, Any] | None = None) -> httpx.Response | None:
        for attempt in range(5):
            response = await client.call(endpoint, "GET", url, keys.pick(role), params=params)
            if response is not None and response.status_code < 500 and response.status_code != 429:
                return response
            await asyncio.sleep(0.5 * (attempt + 1))
        return None

    # Conversation turns: each conversation's stored turns.
    lost_turns: list[str] = []
    found_turns = 0
    semaphore = asyncio.Semaphore(8)

    async def check_conversation(conversation_id: str, customer_id: str, acked: set[int]) -> None:
        nonlocal found_turns
        async with semaphore:
            response = await get("verify GET /v1/conversations/{id}", f"/v1/conversations/{conversation_id}",
                                 "channel", {"customer_id": customer_id})
        if response is None:
            unreadable["conversation_turns"] += len(acked)
            return
        stored = {int(t["outcome"]["turn_index"]) for t in response.json().get("turns", [])} \
            if response.status_code == 200 else set()
        found_turns += len(acked & stored)
        lost_turns.extend(f"{conversation_id}#{i}" for i in sorted(acked - stored))

    await asyncio.gather(*(check_conversation(c, u, set(t)) for (c, u), t in list(ledger.turns.items())))
    found["conversation_turns"], missing["conversation_turns"] = found_turns, lost_turns

    # Handoffs: the queue in every state, a page at a time.
    stored_handoffs: set[str] = set()
    readable = True
    for state in ("waiting", "assigned", "resolved"):
        token = ""
        while True:
            params = {"state": state, "page_size": 200, **({"page_token": token} if token else {})}
            response = await get("verify GET /v1/tenants/{t}/handoffs", f"/v1/tenants/{tenant}/handoffs", "agent",
                                 params)
            if response is None or response.status_code != 200:
                readable = False
                break
            body = response.json()
            stored_handoffs.update(h["handoff_id"] for h in body["handoffs"])
            token = body.get("next_page_token") or ""
            if not token:
                break
    if not readable:
        unreadable["handoffs"] += len(ledger.handoffs)
    found["handoffs"] = len(ledger.handoffs & stored_handoffs)
    missing["handoffs"] = sorted(ledger.handoffs - stored_handoffs) if readable else []

    # Agent replies: the feedback export (every reply to an AI draft), a page at a time.
    exported = ""
    since = None
    for _ in range(50):
        response = await get("verify GET /v1/tenants/{t}/feedback/export", f"/v1/tenants/{tenant}/feedback/export",
                             "admin", {"since": since} if since else None)
        if response is None or response.status_code != 200:
            unreadable["agent_replies"] += len(ledger.replies)
            exported = ""
            break
        body = response.json()
        exported += body["jsonl"]
        if not body.get("resume_since") or body["resume_since"] == since:
            break
        since = body["resume_since"]
    if "agent_replies" not in unreadable:
        found["agent_replies"] = sum(1 for marker in ledger.replies if marker in exported)
        missing["agent_replies"] = [m for m in ledger.replies if m not in exported]
    else:
        found["agent_replies"], missing["agent_replies"] = 0, []

    # Usage events: sending an acknowledged event again must be reported as a duplicate.
    events = list(ledger.usage_events.values())
    not_duplicate: list[str] = []
    duplicates = 0
    for start in range(0, len(events), 1000):
        batch = events[start:start + 1000]
        body = None
        for attempt in range(5):
            body = await workload.post_usage(batch, endpoint="verify POST /v1/tenants/{t}/usage-events")
            if body is not None:
                break
            await asyncio.sleep(0.5 * (attempt + 1))
        if body is None:
            unreadable["usage_events"] += len(batch)
            continue
        duplicates += body["duplicates"]
        if body["accepted"]:
            # Accepted again means it was not stored the first time (the count is what matters;
            # the reply does not name which ones, so name the batch).
            not_duplicate.append(f"{body['accepted']} of batch starting {batch[0]['event_id']}")
    found["usage_events"] = duplicates
    missing["usage_events"] = not_duplicate

    # Approved outreach drafts: approved (or already sent) drafts.
    stored_drafts: set[str] = set()
    for state in ("approved", "sent"):
        response = await get("verify GET /v1/tenants/{t}/outreach/drafts", f"/v1/tenants/{tenant}/outreach/drafts",
                             "agent", {"state": state})
        if response is None or response.status_code != 200:
            unreadable["approved_drafts"] += len(ledger.approved_drafts)
            break
        stored_drafts.update(d["draft_id"] for d in response.json()["drafts"])
    found["approved_drafts"] = len(ledger.approved_drafts & stored_drafts)
    missing["approved_drafts"] = sorted(ledger.approved_drafts - stored_drafts)

    acknowledged = ledger.counts()
    lost = {name: acknowledged[name] - found.get(name, 0) - unreadable.get(name, 0) for name in acknowledged}
    return {
        "acknowledged": acknowledged,
        "found": found,
        "lost": lost,
        "unreadable": dict(unreadable),
        "missing_examples": {name: ids[:10] for name, ids in missing.items() if ids},
    }
