"""The release loop on the demo tenant (issue 23): plant a broken, a worse and a better release,
and show that the golden suite blocks the broken one, that shadow ranks the better above the
worse against simulated human decisions, and that a canary of the worse one is rolled back by
itself; report the traffic and the time that took. Everything goes through the gateway's HTTP
API, as an admin, a customer and an agent would use it.

    .venv/bin/python bench/release_loop.py                                    # starts a mesh here
    .venv/bin/python bench/release_loop.py --gateway http://127.0.0.1:8080    # `make run`'s mesh

The candidates, each made through the API from the live release:
  BROKEN  every threshold 1.0: it never answers. The golden suite's answer scenarios catch it,
          and its promotion is refused (409 SUITE_NOT_PASSED).
  WORSE   every threshold far too low (--worse-threshold, 0.3): it sends the answers the live
          release holds back because the fit says they are likely wrong. The suite notices it
          only where a scenario scripts a handoff (unanswerable questions); shadow and canary
          measure it against humans on every question.
  BETTER  the refit (POST .../releases:refit, target accuracy 0.9) of the confidence from the
          judgements the humans made on a warm-up of live traffic: the issue's own way of
          making a better release, fed by the loop itself, so it is exercised end to end.
          The warm-up asks the train split of bench/demo_questions.jsonl; shadows and canary
          ask the test split (and then both), so the refit is never scored on what it saw.

The simulated humans. Each question is its own conversation (questions with earlier turns
are left out: after a handoff the next turn goes to the agent, not the assistant). When the
live turn answers, the customer rates it, helpful iff judge_demo (tools/concierge_evaluation.py:
cites a gold document and states every key fact) says it is right. When it escalates, an
agent (agent key) reads the handoff and replies, then resolves it: escalation judges the AI's
candidate answer against what the agent sent (servicekit/judging.py: word overlap), so the
agent sends the candidate itself when judge_demo says it is right (the draft accepted, as
agents do with a right draft) and the gold answer otherwise (or, for a question the knowledge
base cannot answer, a reply that says so). An agent's verdict is therefore judge_demo's too,
but for a wrong candidate whose words happen to overlap the gold answer's.

The phases: warm-up (live only) and refit; the candidates' golden suites (bench/scenarios.py's
machinery, recorded against each candidate; the live release runs it too, since it does not pass
every scenario on the CPU default: a candidate "breaks" the scenarios live passes and it fails)
and BROKEN's refused promotion; shadow of WORSE
then of BETTER (sample rate 1) on the same questions, each report read after the shadow caught
up; canary of WORSE at --percent until the concierge rolls it back (or --max-conversations /
--timeout), polling GET .../canary; it is started with a recorded override when its suite has
not passed (on the CPU default even the live release fails part of the demo suite, so no
run clears a release there). The time to rollback is the canary's own ended_at minus
its started_at, and minus the moment the humans' judgements first put the canary past the
bound (computed here with the concierge's own statistics on the same counts). Without
--gateway, the mesh is started here as bench/scenarios.py does (embedded CPU LLM, no intent
model: every turn's topic is ""), with the concierge's default settings as `make run` has
them. Prints a table and writes everything to --json (default var/bench/release_loop.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):  # run as a script: the repository root is what imports resolve against
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aftercare.concierge.v1 import releases_pb2
from bench.scenarios import Target, gateway_sender, load_suite, record_run, run_suite, select, started_stack
from servicekit.judging import agrees
from services.concierge import canary as canary_statistics
from tools.concierge_evaluation import judge_demo

REPO_ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = REPO_ROOT / "bench" / "demo_questions.jsonl"
SUITE = REPO_ROOT / "bench" / "scenarios" / "demo.json"
TENANT = "demo"
# What the agent sends when the knowledge base has no answer: the AI's candidate never says this.
NO_ANSWER_REPLY = (
    "Thanks for asking. That is not something our documentation covers, so I have passed it to the team "
    "who owns it; they will follow up with you here."
)
REQUEST_TIMEOUT_S = 90.0
# How long a shadow may take to decide the last turns it was offered.
SHADOW_CATCH_UP_S = 60.0
# The refit's minimum of judged answers (services/concierge/refit.py's default).
MIN_REFIT_JUDGEMENTS = 40
# How often the canary is read while traffic flows.
CANARY_POLL_S = 0.5


# --- the questions and the humans' verdicts ---------------------------------------------------


def load_questions(path: Path = QUESTIONS) -> list[dict[str, Any]]:
    """The demo questions a single-turn conversation can ask (no earlier turns)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row for row in rows if not row.get("history")]


def pick(questions: Sequence[dict[str, Any]], split: str, limit: int | None, seed: int) -> list[dict[str, Any]]:
    """A fixed, mixed sample of one split ("" for both): the file is grouped by kind."""
    chosen = [q for q in questions if not split or q.get("split") == split]
    random.Random(seed).shuffle(chosen)
    return chosen[:limit] if limit is not None else chosen


def agent_reply_text(question: Mapping[str, Any], candidate: str, cited: Sequence[str]) -> str:
    """What the simulated agent sends for an escalated question (module doc): the AI's candidate
    when it is right, else the right answer, else a reply saying the knowledge base has none."""
    if candidate.strip() and judge_demo(candidate, cited, dict(question)):
        return candidate
    return str(question.get("reference_answer") or "") or NO_ANSWER_REPLY


def agent_verdict(candidate: str, sent: str) -> bool | None:
    """The verdict escalation records for an agent's reply: its judge on the AI's candidate
    against what the agent sent; None when there was no candidate to judge."""
    return agrees(candidate, sent) if candidate.strip() else None


# --- the HTTP API ---------------------------------------------------------------------------


class ApiError(Exception):
    """A refused call: its HTTP status and the problem's stable reason."""

    def __init__(self, method: str, path: str, status: int, reason: str, detail: str):
        super().__init__(f"{method} {path}: {status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail


class Api:
    """The gateway's routes this benchmark uses, each with the key of the role that would call it."""

    def __init__(self, base_url: str, keys: Mapping[str, str], tenant: str = TENANT):
        self.base_url = base_url
        self.keys = dict(keys)
        self.tenant = tenant
        self.client = httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S)

    def close(self) -> None:
        self.client.close()

    def call(self, method: str, path: str, role: str, body: Mapping[str, Any] | None = None,
             params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        response = self.client.request(
            method, path, json=body, params=params, headers={"Authorization": f"Bearer {self.keys[role]}"}
        )
        if not response.is_success:
            try:
                problem = response.json()
            except ValueError:
                problem = {}
            raise ApiError(method, path, response.status_code, str(problem.get("reason", "")),
                           str(problem.get("detail", response.text[:300])))
        reply: dict[str, Any] = response.json()
        return reply

    def tenant_path(self, tail: str) -> str:
        return f"/v1/tenants/{self.tenant}/{tail}"

    # An admin's.
    def release(self, release_id: str) -> dict[str, Any]:
        return self.call("GET", self.tenant_path(f"releases/{release_id}"), "admin")

    def create_release(self, description: str, thresholds: Mapping[str, float], request_id: str) -> dict[str, Any]:
        body = {"description": description, "overrides": {"thresholds": dict(thresholds)}, "request_id": request_id}
        return self.call("POST", self.tenant_path("releases"), "admin", body)

    def refit(self, request_id: str, target_accuracy: float) -> dict[str, Any]:
        body = {"request_id": request_id, "target_accuracy": target_accuracy}
        return self.call("POST", self.tenant_path("releases:refit"), "admin", body)

    def promote(self, release_id: str, override_reason: str = "") -> dict[str, Any]:
        body = {"override_reason": override_reason}
        return self.call("POST", self.tenant_path(f"releases/{release_id}:promote"), "admin", body)

    def start_shadow(self, release_id: str, sample_rate: float) -> dict[str, Any]:
        return self.call("POST", self.tenant_path(f"releases/{release_id}:shadow"), "admin",
                         {"sample_rate": sample_rate})

    def stop_shadow(self) -> dict[str, Any]:
        return self.call("POST", self.tenant_path("shadow:stop"), "admin", {})

    def shadow_report(self, shadow_id: str, max_disagreements: int) -> dict[str, Any]:
        return self.call("GET", self.tenant_path("shadow-report"), "admin",
                         params={"shadow_id": shadow_id, "max_disagreements": max_disagreements})

    def start_canary(self, release_id: str, percent: int, policy: Mapping[str, Any],
                     override_reason: str = "") -> dict[str, Any]:
        body = {"percent": percent, "policy": dict(policy), "override_reason": override_reason}
        return self.call("POST", self.tenant_path(f"releases/{release_id}:canary"), "admin", body)

    def canary(self) -> dict[str, Any]:
        return self.call("GET", self.tenant_path("canary"), "admin")

    def stop_canary(self, reason: str) -> dict[str, Any]:
        return self.call("POST", self.tenant_path("canary:stop"), "admin", {"reason": reason})

    # A customer's.
    def send(self, conversation_id: str, customer_id: str, text: str) -> dict[str, Any]:
        body = {"text": text, "customer": {"tenant_id": self.tenant, "customer_id": customer_id}}
        return self.call("POST", f"/v1/conversations/{conversation_id}/messages", "channel", body)

    def rate(self, conversation_id: str, turn_index: int, customer_id: str, helpful: bool) -> None:
        body = {"customer_id": customer_id, "rating": "helpful" if helpful else "not_helpful"}
        self.call("POST", f"/v1/conversations/{conversation_id}/turns/{turn_index}/rating", "channel", body)

    # An agent's.
    def handoff(self, handoff_id: str) -> dict[str, Any]:
        return self.call("GET", self.tenant_path(f"handoffs/{handoff_id}"), "agent")

    def reply(self, handoff_id: str, text: str, client_message_id: str) -> dict[str, Any]:
        body = {"final_text": text, "client_message_id": client_message_id}
        return self.call("POST", self.tenant_path(f"handoffs/{handoff_id}/replies"), "agent", body)

    def resolve(self, handoff_id: str, resolution: str) -> None:
        self.call("POST", self.tenant_path(f"handoffs/{handoff_id}/resolve"), "agent", {"resolution": resolution})


# --- one simulated conversation ---------------------------------------------------------------


@dataclass
class Exchange:
    """One conversation: the question, what the assistant did, what the humans said of it."""

    question_id: str
    conversation_id: str
    release_id: str
    decision: str
    reason: str
    confidence: float
    seconds: float
    # "customer" (a rating of the answer), "agent" (a verdict on the AI's candidate), "" (none).
    judged_by: str = ""
    # The verdict escalation records: judge_demo's for a rating, its word-overlap judge for an agent's.
    correct: bool | None = None
    # When the verdict was recorded: this machine's UTC clock as the call returned (compared with the
    # canary's ended_at, so the mesh's clock is taken to be this one: true for a mesh on this machine).
    judged_at: str = ""


def converse(api: Api, question: Mapping[str, Any], conversation_id: str) -> Exchange:
    """Ask the question in a fresh conversation and let the humans do what they do (module doc)."""
    customer_id = f"cust-{conversation_id}"[:128]
    started = time.perf_counter()
    reply = api.send(conversation_id, customer_id, str(question["question"]))
    exchange = Exchange(
        question_id=str(question["id"]), conversation_id=conversation_id, release_id=str(reply.get("release_id") or ""),
        decision=str(reply.get("decision", "")), reason=str(reply.get("decision_reason", "")),
        confidence=float(reply.get("confidence") or 0.0), seconds=round(time.perf_counter() - started, 3),
    )
    if exchange.decision == "answered":
        cited = [str(c.get("doc_id") or "") for c in reply.get("citations") or []]
        helpful = judge_demo(str(reply.get("reply", "")), cited, dict(question))
        api.rate(conversation_id, int(reply["turn_index"]), customer_id, helpful)
        exchange.judged_by, exchange.correct, exchange.judged_at = "customer", helpful, _now()
    elif exchange.decision == "escalated" and reply.get("handoff_id"):
        handoff_id = str(reply["handoff_id"])
        attempt = ((api.handoff(handoff_id).get("context") or {}).get("ai_attempt")) or {}
        candidate = str(attempt.get("candidate_answer") or "")
        cited = [str(c.get("doc_id") or "") for c in attempt.get("citations") or []]
        sent = agent_reply_text(question, candidate, cited)
        api.reply(handoff_id, sent, f"{conversation_id}-agent")
        verdict = agent_verdict(candidate, sent)
        if verdict is not None:
            exchange.judged_by, exchange.correct, exchange.judged_at = "agent", verdict, _now()
        api.resolve(handoff_id, "Answered by the agent (release-loop benchmark).")
    return exchange


def drive(api: Api, questions: Sequence[dict[str, Any]], prefix: str,
          after: Callable[[Exchange], bool] | None = None) -> list[Exchange]:
    """Each question in its own conversation, one at a time; `after` returning False stops."""
    exchanges: list[Exchange] = []
    for number, question in enumerate(questions):
        exchanges.append(converse(api, question, f"{prefix}-{number:04d}-{question['id']}"[:128]))
        if after is not None and not after(exchanges[-1]):
            break
    return exchanges


def traffic_summary(exchanges: Sequence[Exchange]) -> dict[str, Any]:
    """What a phase's traffic was: decisions and the humans' verdicts."""
    answered = [e for e in exchanges if e.decision == "answered"]
    judged = [e for e in exchanges if e.correct is not None]
    seconds = sorted(e.seconds for e in exchanges)
    return {
        "conversations": len(exchanges),
        "answered": len(answered),
        "escalated": sum(e.decision == "escalated" for e in exchanges),
        "other_decisions": sum(e.decision not in ("answered", "escalated") for e in exchanges),
        # The answers given that humans judged (what a canary's accuracy is measured on).
        "rated_by_customers": sum(e.judged_by == "customer" for e in exchanges),
        "rated_helpful": sum(e.judged_by == "customer" and bool(e.correct) for e in exchanges),
        "judged_by_agents": sum(e.judged_by == "agent" for e in exchanges),
        "agent_verdicts_right": sum(e.judged_by == "agent" and bool(e.correct) for e in exchanges),
        "judged": len(judged),
        "turn_p50_s": seconds[len(seconds) // 2] if seconds else None,
    }


# --- the canary's statistics on the humans' counts ----------------------------------------------


@dataclass
class ArmTally:
    """One canary arm's counts as the concierge's evaluation counts them, from the humans' side."""

    release_id: str
    turns: int = 0
    escalated: int = 0
    judged: int = 0
    judged_correct: int = 0

    def add(self, exchange: Exchange) -> None:
        if exchange.decision == "forwarded":  # a human answered: the release decided nothing
            return
        self.turns += 1
        self.escalated += exchange.decision == "escalated"
        # The answers it gave, judged: the bad outcome a canary is stopped for (an escalated
        # turn's candidate, judged by the agent who replaced it, reached no customer).
        if exchange.decision == "answered" and exchange.correct is not None:
            self.judged += 1
            self.judged_correct += exchange.correct

    def as_arm(self) -> releases_pb2.CanaryArm:
        return releases_pb2.CanaryArm(
            release_id=self.release_id, turns=self.turns, escalated=self.escalated,
            judged=self.judged, judged_correct=self.judged_correct,
        )


def past_bound(canary: ArmTally, live: ArmTally, policy: releases_pb2.CanaryPolicy) -> str:
    """The concierge's verdict in words when these counts put the canary past the policy's
    bound, else "" (the same statistics: services/concierge/canary.py)."""
    compared = canary_statistics.comparisons(canary.as_arm(), live.as_arm(), canary_statistics.with_defaults(policy))
    return canary_statistics.verdict(compared) if any(c.worse for c in compared) else ""


def policy_message(policy: Mapping[str, Any]) -> releases_pb2.CanaryPolicy:
    """The policy as the gateway returned it (JSON, the proto's field names)."""
    known = releases_pb2.CanaryPolicy.DESCRIPTOR.fields_by_name
    return releases_pb2.CanaryPolicy(**{name: value for name, value in policy.items() if name in known})


# --- the mesh ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mesh:
    gateway_url: str
    # role -> a key of the demo tenant.
    keys: Mapping[str, str]
    origin: str


@contextlib.contextmanager
def started_mesh(say: Callable[[str], object] = print) -> Iterator[Mesh]:
    """A mesh of its own, as bench/scenarios.py starts one, with a key of every role (the loop is
    a customer, an agent and an admin)."""
    with started_stack("release-loop-", say) as stack:
        yield Mesh(stack.gateway_url, dict(stack.api_keys), "started here (embedded CPU LLM, no intent model)")


@contextlib.contextmanager
def running_mesh(gateway: str, keys_file: Path) -> Iterator[Mesh]:
    """A running mesh: a key of every role created in its key file, revoked afterwards."""
    from gateway.keys import Role, create_key, revoke_key

    if not keys_file.exists():
        raise SystemExit(f"no key file {keys_file}: give the gateway's --keys-file")
    made = {role.label: create_key(keys_file, TENANT, role, f"release-loop-{role.label}") for role in Role}
    time.sleep(1.2)  # the gateway re-reads its key file at most once a second
    try:
        yield Mesh(gateway.rstrip("/"), {label: key for label, (key, _) in made.items()}, f"running at {gateway}")
    finally:
        for _, record in made.values():
            revoke_key(keys_file, record.key_id)


# --- the phases -------------------------------------------------------------------------------


def make_candidates(api: Api, live: dict[str, Any], run: str, worse_threshold: float) -> dict[str, dict[str, Any]]:
    """BROKEN and WORSE from the live release's thresholds (every intent's, and the default)."""
    intents = {"", *live["components"]["thresholds"]}
    plans = {
        "BROKEN": ("release-loop: every threshold 1.0, so it never answers (a suite must catch it)", 1.0),
        "WORSE": (f"release-loop: every threshold {worse_threshold:g}, far too low: it answers what the fit "
                  "says is likely wrong", worse_threshold),
    }
    made = {}
    for name, (description, threshold) in plans.items():
        made[name] = api.create_release(description, {intent: threshold for intent in intents},
                                        f"release-loop-{run}-{name.lower()}")
    return made


def run_suites(api: Api, suite_path: Path, tags: Sequence[str], releases: Mapping[str, str],
               say: Callable[[str], object]) -> dict[str, dict[str, Any]]:
    """The golden suite against each release (admin key, the release header), recorded against
    the candidates (what promotion and canaries check)."""
    suite = load_suite(suite_path)
    chosen = select(suite.scenarios, tags)
    target = Target(api.base_url, {TENANT: api.keys["admin"]}, "release loop")
    results: dict[str, dict[str, Any]] = {}
    for name, release_id in releases.items():
        send, client = gateway_sender(target, release_id)
        with client:
            report = run_suite(suite, chosen, send, release=release_id, target=target.origin, say=lambda _line: None)
        failed = [r.name for r in report.scenarios if not r.passed and not r.skipped]
        # What the candidate broke: scenarios the live release passes (the suite is not all green on live).
        live_failed = set(results["LIVE"]["failed"]) if "LIVE" in results else set(failed)
        results[name] = {
            "release_id": release_id, "passed": report.passed, "total": report.total, "partial": report.partial,
            "assertions_failed": report.assertions_failed, "assertions": report.assertions, "failed": failed,
            "new_failures": [scenario for scenario in failed if scenario not in live_failed],
            "recorded": record_run(target, report, release_id) if name != "LIVE" else [],
        }
        breaks = len(results[name]["new_failures"])
        say(f"suite {release_id} ({name}): {report.passed}/{report.total} passed"
            + (" (partial)" if report.partial else "") + f"; fails {breaks} that live passes")
    return results


def refused(call: Callable[[], object]) -> dict[str, Any]:
    """What the API answered a call that should be refused."""
    try:
        call()
    except ApiError as error:
        return {"status": error.status, "reason": error.reason, "detail": error.detail}
    return {"status": 200, "reason": "ACCEPTED", "detail": "the call was not refused"}


def shadow_phase(api: Api, release_id: str, questions: Sequence[dict[str, Any]], prefix: str,
                 say: Callable[[str], object]) -> dict[str, Any]:
    """Shadow the release on the questions' live traffic with the humans acting; the report
    once the shadow decided every turn it was offered and it counts every human verdict."""
    shadow_id = str(api.start_shadow(release_id, 1.0)["shadow"]["shadow_id"])
    started = time.monotonic()
    exchanges = drive(api, questions, prefix)
    driven_s = time.monotonic() - started
    # The shadow decides in the background: wait until it has taken every turn (or stops moving).
    deadline, seen, moved = time.monotonic() + SHADOW_CATCH_UP_S, -1, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - moved < 5.0:
        shadow = api.shadow_report(shadow_id, 0)["shadow"]
        now_seen = int(shadow["shadowed_turns"]) + int(shadow["skipped_turns"])
        if now_seen >= len(exchanges):
            break
        if now_seen != seen:
            seen, moved = now_seen, time.monotonic()
        time.sleep(0.5)
    api.stop_shadow()
    judged = sum(e.correct is not None for e in exchanges)
    report, reads = read_report(api, shadow_id, judged)
    say(f"shadow {release_id}: {report['shadow']['shadowed_turns']} turns shadowed, "
        f"{report['shadow']['skipped_turns']} skipped, over {len(exchanges)} conversations in {driven_s:.0f}s; "
        f"{report['live']['human_judged']} of {judged} human verdicts in the report")
    return {"release_id": release_id, "traffic": traffic_summary(exchanges), "seconds": round(driven_s, 1),
            "report_reads": reads, "report": report}


def read_report(api: Api, shadow_id: str, judged: int, attempts: int = 5) -> tuple[dict[str, Any], int]:
    """The shadow report once it counts the humans' verdicts: the concierge reads agents' from
    escalation with a short budget per page and, when that is missed (a busy machine), reports
    with customers' ratings only; read again a few times before taking what there is."""
    report, reads = api.shadow_report(shadow_id, 5), 1
    while int(report["live"]["human_judged"]) < judged and reads < attempts:
        time.sleep(2.0)
        report, reads = api.shadow_report(shadow_id, 5), reads + 1
    return report, reads


def refit(api: Api, request_id: str, target_accuracy: float, judged: int, attempts: int = 5) -> dict[str, Any]:
    """The refit, asked again (same request id) while it finds fewer judged answers than the
    humans made: as with the shadow report, a missed read of escalation leaves only ratings."""
    attempt = 1
    while True:
        try:
            return {**api.refit(request_id, target_accuracy), "attempts": attempt}
        except ApiError as error:
            if error.reason != "NOT_ENOUGH_JUDGEMENTS" or judged < MIN_REFIT_JUDGEMENTS or attempt >= attempts:
                raise
        attempt += 1
        time.sleep(2.0)


def arm_figures(arm: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("release_id", "turns", "answered", "answered_rate", "human_judged", "agreed", "agreement",
            "answered_judged", "answered_correct", "judged_accuracy")
    return {key: arm.get(key) for key in keys}


def ranking(shadows: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Which candidate each of the report's figures puts first (ties: "tie")."""
    ranks = {}
    for figure in ("judged_accuracy", "agreement"):
        values = {name: float(s["report"]["candidate"].get(figure) or 0.0) for name, s in shadows.items()}
        best = max(values.values())
        leaders = [name for name, value in values.items() if value == best]
        ranks[figure] = leaders[0] if len(leaders) == 1 else "tie"
    return ranks


def canary_phase(api: Api, release_id: str, live_id: str, questions: Sequence[dict[str, Any]], prefix: str,
                 percent: int, policy: Mapping[str, Any], override_reason: str, max_conversations: int,
                 timeout_s: float, say: Callable[[str], object]) -> dict[str, Any]:
    """Canary the release (by override when its suite has not passed) and drive traffic with the
    humans acting until the concierge rolls it back, or the bounds are reached."""
    refusal: dict[str, Any] = {}
    try:
        started = api.start_canary(release_id, percent, policy)["canary"]
    except ApiError as error:
        if error.reason != "SUITE_NOT_PASSED":
            raise
        refusal = {"status": error.status, "reason": error.reason, "detail": error.detail}
        started = api.start_canary(release_id, percent, policy, override_reason)["canary"]
    clock = time.monotonic()
    effective_policy = policy_message(started.get("policy") or {})
    canary_tally, live_tally = ArmTally(release_id), ArmTally(live_id)
    seen = {"conversations": 0, "polled": 0.0}
    crossing: dict[str, Any] = {}
    observed_s: list[float] = []

    def after(exchange: Exchange) -> bool:
        seen["conversations"] += 1
        (canary_tally if exchange.release_id == release_id else live_tally).add(exchange)
        if not crossing:
            words = past_bound(canary_tally, live_tally, effective_policy)
            if words:
                crossing.update(at=exchange.judged_at or _now(), conversations=seen["conversations"], verdict=words,
                                canary=asdict(canary_tally), live=asdict(live_tally))
        if time.monotonic() - seen["polled"] >= CANARY_POLL_S:
            seen["polled"] = time.monotonic()
            if api.canary()["state"] != "running":
                observed_s.append(time.monotonic() - clock)
                return False
        return time.monotonic() - clock < timeout_s

    cycle = [questions[i % len(questions)] for i in range(max_conversations)]
    exchanges = drive(api, cycle, prefix, after)
    final = api.canary()
    if final["state"] == "running":
        # A bound was reached first: the tenant is left as it was found.
        final = api.stop_canary("release-loop benchmark: traffic bound reached without a rollback")
    started_at, ended_at, crossed_at = _parse(final.get("started_at")), _parse(final.get("ended_at")), _parse(
        crossing.get("at"))
    from_start = (ended_at - started_at).total_seconds() if started_at and ended_at else None
    from_bound = (ended_at - crossed_at).total_seconds() if ended_at and crossed_at else None
    say(f"canary {release_id}: {final['state']} after {len(exchanges)} conversations"
        + (f", {from_start:.1f}s from its start" if from_start is not None else ""))
    return {
        "release_id": release_id, "live_release_id": live_id, "percent": percent,
        "refused_without_override": refusal, "override_reason": override_reason if refusal else "",
        "state": final["state"], "end_reason": final.get("end_reason", ""), "policy": final.get("policy"),
        "conversations": len(exchanges),
        "by_arm": {
            "canary": traffic_summary([e for e in exchanges if e.release_id == release_id]),
            "live": traffic_summary([e for e in exchanges if e.release_id == live_id]),
        },
        "judgements": sum(e.correct is not None for e in exchanges),
        "rollback_s_from_start": _round(from_start),
        "rollback_s_from_bound": _round(from_bound),
        "rollback_observed_s": _round(observed_s[0]) if observed_s else None,
        "bound_first_crossed": crossing,
        "conversations_after_bound": len(exchanges) - crossing["conversations"] if crossing else None,
        "server_figures": {"canary": final.get("canary"), "live": final.get("live"), "verdict": final.get("verdict")},
        "exchanges": [asdict(e) for e in exchanges],
    }


# --- the report -------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _rate(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def table(result: Mapping[str, Any]) -> str:
    """The figures a reader needs, in one block of text."""
    lines = [f"mesh: {result['mesh']}", f"live release {result['live']['release_id']}: {result['live']['config']}"]
    lines.append("")
    lines.append(f"{'':<8} {'release':<8} {'how':<52} {'suite passed':>12}  {'breaks':>6}  promotion (no override)")
    rows = [(name, candidate["release_id"], candidate["how"]) for name, candidate in result["candidates"].items()]
    if "LIVE" in result["suites"]:
        rows.append(("(live)", result["suites"]["LIVE"]["release_id"], "the live release, for reference"))
    for name, release_id, how in rows:
        suite = result["suites"].get("LIVE" if name == "(live)" else name, {})
        promotion = result["promotion"].get(name)
        lines.append(
            f"{name:<8} {release_id:<8} {how:<52} {suite.get('passed', '-')!s:>7}/{suite.get('total', '-')!s:<4}  "
            f"{len(suite.get('new_failures', [])):>6}  "
            + (f"{promotion['status']} {promotion['reason']}" if promotion else "-")
        )
    lines.append("(breaks: scenarios the live release passes that the candidate fails)")
    for name, promotion in result["promotion"].items():
        lines.append(f"{name} promotion without override: {promotion['status']} {promotion['reason']}: "
                     f"{promotion['detail']}")
    validation = (result.get("refit") or {}).get("validation")
    if validation:
        lines.append(
            f"refit: {validation['examples']} judged answers ({validation['correct']} right), {validation['folds']} "
            f"folds; threshold {validation['threshold']:.2f} answers {validation['refit_coverage']:.2f} of them at "
            f"accuracy {validation['refit_accuracy']:.2f} out of fold (live fit at its threshold: "
            f"{validation['live_coverage']:.2f} at {validation['live_accuracy']:.2f}); "
            f"ECE {validation['refit_ece']:.3f} (live {validation['live_ece']:.3f})"
        )
    lines.append("")
    lines.append("shadow, the same questions for each: live | candidate (judged accuracy: of the answers it gave)")
    lines.append(f"{'':<8} {'release':<8} {'turns':>6} {'skipped':>8}  {'answered rate':>13}  {'agreement':>11}  "
                 f"{'judged accuracy':>15}  {'judged answers':>14}")
    for name, shadow in result["shadows"].items():
        report = shadow["report"]
        live, cand = report["live"], report["candidate"]
        pair = {figure: f"{_rate(live.get(figure))} | {_rate(cand.get(figure))}"
                for figure in ("answered_rate", "agreement", "judged_accuracy")}
        lines.append(
            f"{name:<8} {shadow['release_id']:<8} {report['shadow']['shadowed_turns']:>6} "
            f"{report['shadow']['skipped_turns']:>8}  {pair['answered_rate']:>13}  {pair['agreement']:>11}  "
            f"{pair['judged_accuracy']:>15}  {live.get('answered_judged', 0):>6} | {cand.get('answered_judged', 0):<5}"
        )
    if result.get("ranking"):
        lines.append("ranked first: " + ", ".join(f"by {k} {v}" for k, v in result["ranking"].items()))
    canary = result.get("canary")
    if canary:
        lines.append("")
        crossing = canary["bound_first_crossed"]
        arms = canary["by_arm"]
        lines.extend([
            f"canary {canary['release_id']} at {canary['percent']}% against live {canary['live_release_id']}: "
            f"{canary['state']}" + (" (started by override)" if canary["override_reason"] else ""),
            f"  conversations {canary['conversations']} (canary {arms['canary']['conversations']}, live "
            f"{arms['live']['conversations']}); human judgements {canary['judgements']}, of answers given (the "
            f"customers' ratings): canary {arms['canary']['rated_by_customers']}, "
            f"live {arms['live']['rated_by_customers']}",
        ])
        if crossing:
            lines.append(
                f"  past the bound after {crossing['conversations']} conversations (by the humans' counts); "
                f"{canary['conversations_after_bound']} more were served before the rollback was seen"
            )
        if canary["state"] == "rolled_back":
            from_bound = canary["rollback_s_from_bound"]
            lines.append(
                f"  time to rollback: {canary['rollback_s_from_start']} s from the canary's start"
                + (f", {from_bound} s from the judgement that put it past the bound" if from_bound is not None else "")
            )
        lines.append(f"  {'why it ended' if canary['end_reason'] else 'last evaluation'}: "
                     f"{canary['end_reason'] or canary['server_figures']['verdict']}")
    return "\n".join(lines)


# --- the command line ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", help="a running mesh's gateway (`make run`: http://127.0.0.1:8080) instead of "
                                          "starting one here")
    parser.add_argument("--keys-file", type=Path, default=Path("var/gateway/api_keys.json"),
                        help="with --gateway: where the keys of each role are created (and revoked after)")
    parser.add_argument("--questions", type=int, default=None,
                        help="questions per shadow (default: the whole test split)")
    parser.add_argument("--warm-up", type=int, default=None,
                        help="questions of the warm-up whose judgements the refit learns from (default: the whole "
                             "train split; the refit needs 40 judged answers)")
    parser.add_argument("--percent", type=int, default=50, help="the canary's share of conversations (1 to 50)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds the canary may run before it is "
                                                                      "stopped by hand")
    parser.add_argument("--max-conversations", type=int, default=1000, help="the canary's traffic bound")
    parser.add_argument("--min-judged", type=int, default=0, help="the canary policy's min_judged (0: the default)")
    parser.add_argument("--worse-threshold", type=float, default=0.3, help="WORSE's thresholds")
    parser.add_argument("--target-accuracy", type=float, default=0.9, help="the refit's target accuracy")
    parser.add_argument("--suite", type=Path, default=SUITE, help="the tenant's golden suite")
    parser.add_argument("--suite-tags", default="", help="only these scenarios (a partial run: canaries then need "
                                                         "an override)")
    parser.add_argument("--json", type=Path, default=Path("var/bench/release_loop.json"))
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    questions = load_questions()
    warm_up = pick(questions, "train", args.warm_up, seed=23)
    shadowed = pick(questions, "test", args.questions, seed=23)
    canary_traffic = pick(questions, "", None, seed=24)
    run = uuid.uuid4().hex[:8]
    started = time.monotonic()
    mesh = running_mesh(args.gateway, args.keys_file) if args.gateway else started_mesh(say)
    with mesh as target:
        api = Api(target.gateway_url, target.keys)
        try:
            result = loop(api, args, run, warm_up, shadowed, canary_traffic, say)
        finally:
            api.close()
    result = {"mesh": target.origin, "run": run, "seconds": round(time.monotonic() - started, 1), **result}
    print()
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwritten to {args.json}")
    return 0


def loop(api: Api, args: argparse.Namespace, run: str, warm_up: Sequence[dict[str, Any]],
         shadowed: Sequence[dict[str, Any]], canary_traffic: Sequence[dict[str, Any]],
         say: Callable[[str], None]) -> dict[str, Any]:
    live = api.release("live")
    components = live["components"]
    live_id = str(live["release_id"])
    say(f"live release {live_id}: model {components['llm_model']}, prompt {components['prompt_version']}, "
        f"fit {components['confidence_fit_version']}, thresholds {components['thresholds']}")

    made = make_candidates(api, live, run, args.worse_threshold)
    say(f"warm-up: {len(warm_up)} questions (train split) on live, humans judging ...")
    warm = drive(api, warm_up, f"loop-{run}-warm")
    say(f"warm-up: {traffic_summary(warm)}")
    refitted = refit(api, f"release-loop-{run}-refit", args.target_accuracy, sum(e.correct is not None for e in warm))
    made["BETTER"] = refitted["release"]
    candidates = {
        name: {"release_id": str(release["release_id"]), "thresholds": release["components"]["thresholds"],
               "fit": release["components"]["confidence_fit_version"],
               "how": {"BROKEN": "every threshold 1.0 (never answers)",
                       "WORSE": f"every threshold {args.worse_threshold:g} (answers what it gets wrong)",
                       "BETTER": f"refit from the warm-up's judgements, target {args.target_accuracy:g}"}[name]}
        for name, release in made.items()
    }
    say("candidates: " + ", ".join(f"{n} {c['release_id']} {c['thresholds']}" for n, c in candidates.items()))

    tags = [tag for tag in args.suite_tags.split(",") if tag]
    suites = run_suites(api, args.suite, tags, {"LIVE": live_id, **{n: c["release_id"] for n, c in candidates.items()}},
                        say)
    promotion = {"BROKEN": refused(lambda: api.promote(candidates["BROKEN"]["release_id"]))}
    say(f"promotion of BROKEN without override: {promotion['BROKEN']['status']} {promotion['BROKEN']['reason']}")

    shadows = {
        name: shadow_phase(api, candidates[name]["release_id"], shadowed, f"loop-{run}-shadow-{name.lower()}", say)
        for name in ("WORSE", "BETTER")
    }
    ranks = ranking(shadows)
    say(f"shadow ranking: {ranks}")

    policy = {"min_judged": args.min_judged} if args.min_judged else {}
    canary = canary_phase(
        api, candidates["WORSE"]["release_id"], live_id, canary_traffic, f"loop-{run}-canary", args.percent, policy,
        "release-loop benchmark: a planted worse release, canaried to show its automatic rollback",
        args.max_conversations, args.timeout, say,
    )
    return {
        "live": {"release_id": live_id, "config": (
            f"model {components['llm_model']}, prompt {components['prompt_version']}, fit "
            f"{components['confidence_fit_version']}, thresholds {components['thresholds']}")},
        "candidates": candidates,
        "warm_up": traffic_summary(warm),
        "refit": {"validation": refitted["validation"], "attempts": refitted["attempts"]},
        "suites": suites,
        "promotion": promotion,
        "shadows": {name: {**s, "candidate": arm_figures(s["report"]["candidate"]),
                           "live": arm_figures(s["report"]["live"])} for name, s in shadows.items()},
        "ranking": ranks,
        "canary": canary,
    }


if __name__ == "__main__":
    raise SystemExit(main())
