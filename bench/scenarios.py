"""Golden conversations: run a tenant's suite of scenarios against the real mesh through the
gateway and report pass/fail per scenario and per assertion (issue 23).

A suite is a JSON file (the format is bench/scenarios/README.md's): scripted customer turns,
and for each turn what a correct assistant does (decision and reason, cited documents, what
the reply says and must not say, the action proposed) and what it must never do. A scenario
can instead have a simulated customer: an LLM given a goal writes each message, until it says
the goal is reached, the assistant hands over, or its turns run out; what no turn may do and
how the conversation ends are checked then, since the path there is the simulator's. The runner
sends each scenario as one fresh conversation of a fresh customer, with a chosen release
(`--release r3`: the `X-Aftercare-Release` header, admin key) or the tenant's live one, and
can record the run against that release (`--record`), which is what promotion checks.

    .venv/bin/python bench/scenarios.py --suite bench/scenarios/demo.json          # starts a mesh here
    .venv/bin/python bench/scenarios.py --suite bench/scenarios/demo.json --gateway http://127.0.0.1:8080 \\
        --release r3 --record --json var/scenarios-r3.json

The mesh is started here on free ports unless --gateway names a running one (`make run`); keys
come from --key TENANT=KEY, or are created in the gateway's key file and revoked afterwards.
Simulated customers run on the mesh's LLM server (started here: the embedded one; with
--gateway: --llm-base-url, `make run`'s by default)."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if __package__ in (None, ""):  # run as a script: the repository root is what imports resolve against
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aftercare.concierge.v1 import concierge_pb2
from devstack import llm_server

if TYPE_CHECKING:
    from devstack.stack import Stack

FORMAT = "aftercare-scenarios/1"
RELEASE_HEADER = "X-Aftercare-Release"
# A turn waits this long for its answer: above the gateway's own 60 s budget, so that a slow
# turn comes back as the gateway's 504 (a failed assertion), not as our timeout.
TURN_TIMEOUT_S = 90.0
# `make run`'s LLM server (devstack's llm_port): the simulated customers' with --gateway.
DEFAULT_LLM_BASE_URL = "http://127.0.0.1:8081/v1"
# The most messages a simulated customer may be given: each is an LLM call and a turn.
MAX_SIMULATED_TURNS = 20

# The gateway's codes: the proto enums' names, lower case, without their prefix.
DECISIONS = frozenset(
    name.removeprefix("DECISION_").lower() for name in concierge_pb2.Decision.keys() if name != "DECISION_UNSPECIFIED"
)
REASONS = frozenset(
    name.removeprefix("DECISION_REASON_").lower()
    for name in concierge_pb2.DecisionReason.keys()
    if name != "DECISION_REASON_UNSPECIFIED"
)
ACTION_STATES = frozenset(
    name.removeprefix("ACTION_STATE_").lower()
    for name in concierge_pb2.ActionState.keys()
    if name != "ACTION_STATE_UNSPECIFIED"
)
# Outcomes a scenario or a turn can forbid: a decision's code, or one of these.
FORBIDDEN_EXTRAS = {
    "handoff": "a handoff was created",
    "action": "an action was proposed or acted on",
    "executed": "an action was executed",
    "citation": "the reply cited something",
}
FORBIDDABLE = DECISIONS | FORBIDDEN_EXTRAS.keys()


class SuiteError(ValueError):
    """The suite file is not valid; the message names the scenario and the field."""


# --- the format ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionExpectation:
    """The action the reply must carry (pending_action): its catalog tool, each argument's value
    found in its summary (what the customer says yes to, in words), and where it stands."""

    tool: str = ""
    arguments: Mapping[str, str] = field(default_factory=dict)
    state: str = ""


@dataclass(frozen=True)
class Expectation:
    """What a correct assistant's reply to one turn shows; empty fields are not checked.
    `decision`/`reason`: any one of these. `cites`: each must be among the citations (a doc id,
    a title, or a record id, case-insensitive). `says`: each in the reply; `says_any`: at least
    one; `never_says`: none (all case-insensitive). `handoff`: a handoff (with its reference) was
    made (True) or not (False). `forbid`: outcomes that must not happen."""

    decision: tuple[str, ...] = ()
    reason: tuple[str, ...] = ()
    cites: tuple[str, ...] = ()
    says: tuple[str, ...] = ()
    says_any: tuple[str, ...] = ()
    never_says: tuple[str, ...] = ()
    action: ActionExpectation | None = None
    handoff: bool | None = None
    forbid: tuple[str, ...] = ()


@dataclass(frozen=True)
class Turn:
    """One customer turn: a typed message (`say`), or the widget's Yes/No button on the pending
    action (`press`: True for yes), sent as an action_reply with its id and fingerprint."""

    say: str = ""
    press: bool | None = None
    expect: Expectation = Expectation()

    @property
    def text(self) -> str:
        if self.press is None:
            return self.say
        return "Yes" if self.press else "No"


@dataclass(frozen=True)
class SimulatedCustomer:
    """A customer played by an LLM told this goal, instead of scripted turns: at most
    `max_turns` messages."""

    goal: str
    max_turns: int = 8


@dataclass(frozen=True)
class Scenario:
    name: str
    tenant: str
    tags: tuple[str, ...]
    turns: tuple[Turn, ...]
    summary: str = ""
    # Checked on every turn, besides each turn's own forbid.
    forbid: tuple[str, ...] = ()
    simulated: SimulatedCustomer | None = None
    # A simulated conversation's last turn (simulated scenarios only: a scripted one says it per turn).
    expect_end: Expectation | None = None


@dataclass(frozen=True)
class Suite:
    path: str
    tenant: str
    description: str
    scenarios: tuple[Scenario, ...]
    # sha256 of the file as written: which scenarios, exactly (recorded with a run).
    digest: str


def _names(value: Any, where: str, allowed: frozenset[str] | set[str] | Any, prefix: str = "") -> tuple[str, ...]:
    """One name or a list of them, lower case, without the enum prefix, each one of `allowed`."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) and item for item in items):
        raise SuiteError(f"{where}: expected a name or a list of names, got {value!r}")
    names = tuple(item.lower().removeprefix(prefix.lower()) for item in items)
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise SuiteError(f"{where}: unknown {', '.join(unknown)} (one of: {', '.join(sorted(allowed))})")
    return names


def _texts(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) and item.strip() for item in items):
        raise SuiteError(f"{where}: expected a text or a list of non-empty texts, got {value!r}")
    return tuple(items)


def _only(raw: Mapping[str, Any], where: str, known: set[str]) -> None:
    # A misspelt key would silently check nothing: refuse it.
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SuiteError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _expectation(raw: Any, where: str) -> Expectation:
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: expected an object")
    _only(raw, where, {"decision", "reason", "cites", "says", "says_any", "never_says", "action", "handoff", "forbid"})
    if raw.get("handoff") not in (None, True, False):
        raise SuiteError(f"{where}.handoff: true or false")
    action = None
    if "action" in raw:
        spec = raw["action"]
        if not isinstance(spec, dict):
            raise SuiteError(f"{where}.action: expected an object")
        _only(spec, f"{where}.action", {"tool", "arguments", "state"})
        arguments = spec.get("arguments", {})
        if not isinstance(arguments, dict):
            raise SuiteError(f"{where}.action.arguments: expected an object")
        state = _names(spec.get("state", []), f"{where}.action.state", ACTION_STATES, "ACTION_STATE_")
        action = ActionExpectation(
            tool=str(spec.get("tool", "")),
            arguments={str(k): str(v) for k, v in arguments.items()},
            state=state[0] if state else "",
        )
    return Expectation(
        decision=_names(raw["decision"], f"{where}.decision", DECISIONS, "DECISION_") if "decision" in raw else (),
        reason=(_names(raw["reason"], f"{where}.reason", REASONS, "DECISION_REASON_") if "reason" in raw else ()),
        cites=_texts(raw["cites"], f"{where}.cites") if "cites" in raw else (),
        says=_texts(raw["says"], f"{where}.says") if "says" in raw else (),
        says_any=_texts(raw["says_any"], f"{where}.says_any") if "says_any" in raw else (),
        never_says=_texts(raw["never_says"], f"{where}.never_says") if "never_says" in raw else (),
        action=action,
        handoff=raw.get("handoff"),
        forbid=_names(raw["forbid"], f"{where}.forbid", FORBIDDABLE) if "forbid" in raw else (),
    )


def _turn(raw: Any, where: str) -> Turn:
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: expected an object")
    _only(raw, where, {"say", "press", "expect"})
    if ("say" in raw) == ("press" in raw):
        raise SuiteError(f"{where}: exactly one of say (a typed message) or press (yes/no) is needed")
    expect = _expectation(raw.get("expect", {}), f"{where}.expect")
    if "press" in raw:
        if raw["press"] not in ("yes", "no"):
            raise SuiteError(f"{where}.press: 'yes' or 'no', got {raw['press']!r}")
        return Turn(press=raw["press"] == "yes", expect=expect)
    say = raw["say"]
    if not isinstance(say, str) or not 1 <= len(say) <= 4000:
        raise SuiteError(f"{where}.say: a message of 1 to 4000 characters")
    return Turn(say=say, expect=expect)


def _simulated(raw: Any, where: str) -> SimulatedCustomer:
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: expected an object")
    _only(raw, where, {"goal", "max_turns"})
    goal = raw.get("goal")
    if not isinstance(goal, str) or not goal.strip():
        raise SuiteError(f"{where}.goal: the customer's goal, in words")
    max_turns = raw.get("max_turns", SimulatedCustomer.max_turns)
    # bool is an int to Python, not a number of turns to a reader.
    if isinstance(max_turns, bool) or not isinstance(max_turns, int) or not 1 <= max_turns <= MAX_SIMULATED_TURNS:
        raise SuiteError(f"{where}.max_turns: a number of messages from 1 to {MAX_SIMULATED_TURNS}")
    return SimulatedCustomer(goal=goal, max_turns=max_turns)


def parse_suite(document: Any, path: str = "<suite>", digest: str = "") -> Suite:
    """A Suite from a parsed JSON document; raises SuiteError naming what is wrong."""
    if not isinstance(document, dict):
        raise SuiteError(f"{path}: expected an object")
    _only(document, path, {"format", "tenant", "description", "scenarios"})
    if document.get("format") != FORMAT:
        raise SuiteError(f"{path}: format must be {FORMAT!r}, got {document.get('format')!r}")
    tenant = document.get("tenant")
    if not isinstance(tenant, str) or not tenant:
        raise SuiteError(f"{path}: tenant is required")
    raw_scenarios = document.get("scenarios")
    if not isinstance(raw_scenarios, list) or not raw_scenarios:
        raise SuiteError(f"{path}: scenarios must be a non-empty list")
    scenarios: list[Scenario] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_scenarios):
        where = f"scenarios[{index}]"
        if not isinstance(raw, dict):
            raise SuiteError(f"{where}: expected an object")
        name = raw.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,99}", name):
            raise SuiteError(f"{where}: name must be 1-100 of a-z, 0-9, '_', '.', '-', got {name!r}")
        where = f"scenario {name}"
        if name in seen:
            raise SuiteError(f"{where}: the name is used twice")
        seen.add(name)
        _only(raw, where, {"name", "tenant", "tags", "summary", "turns", "forbid", "simulated_customer",
                           "expect_end"})
        simulated = (_simulated(raw["simulated_customer"], f"{where}.simulated_customer")
                     if "simulated_customer" in raw else None)
        raw_turns = raw.get("turns", [])
        if simulated is not None and raw_turns:
            raise SuiteError(f"{where}: a customer is scripted (turns) or simulated (simulated_customer), not both")
        if not isinstance(raw_turns, list) or (not raw_turns and simulated is None):
            raise SuiteError(f"{where}: turns must be a non-empty list")
        if "expect_end" in raw and simulated is None:
            raise SuiteError(f"{where}.expect_end: only for a simulated_customer (scripted turns have expect)")
        turns = tuple(_turn(turn, f"{where} turn {number}") for number, turn in enumerate(raw_turns, 1))
        if turns and turns[0].press is not None:
            raise SuiteError(f"{where} turn 1: a conversation cannot open with a button press")
        tags = _texts(raw.get("tags", []), f"{where}.tags") if raw.get("tags") else ()
        scenarios.append(
            Scenario(
                name=name,
                tenant=str(raw.get("tenant") or tenant),
                tags=tags,
                turns=turns,
                summary=str(raw.get("summary", "")),
                forbid=_names(raw["forbid"], f"{where}.forbid", FORBIDDABLE) if "forbid" in raw else (),
                simulated=simulated,
                expect_end=_expectation(raw["expect_end"], f"{where}.expect_end") if "expect_end" in raw else None,
            )
        )
    return Suite(
        path=path, tenant=tenant, description=str(document.get("description", "")),
        scenarios=tuple(scenarios), digest=digest,
    )


def load_suite(path: Path) -> Suite:
    raw = path.read_bytes()
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as error:
        raise SuiteError(f"{path}: not JSON: {error}") from None
    return parse_suite(document, str(path), "sha256:" + hashlib.sha256(raw).hexdigest())


def select(scenarios: Sequence[Scenario], tags: Sequence[str] = (), limit: int | None = None,
           names: Sequence[str] = ()) -> list[Scenario]:
    """The scenarios with any of `tags` (all when none), by name when given, the first `limit`."""
    chosen = [s for s in scenarios if (not tags or set(tags) & set(s.tags)) and (not names or s.name in names)]
    return chosen[:limit] if limit is not None else chosen


# --- the checks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Assertion:
    turn: int
    check: str
    expected: str
    actual: str
    passed: bool

    def describe(self) -> str:
        return f"turn {self.turn}: {self.check}: expected {self.expected}, got {self.actual}"


def _folded(text: str) -> str:
    # Curly quotes and runs of spaces should not decide a check.
    return " ".join(text.replace("\u2019", "'").replace("\u2018", "'").lower().split())


def _forbidden_happened(outcome: str, reply: Mapping[str, Any]) -> bool:
    pending = reply.get("pending_action") or {}
    if outcome == "handoff":
        return bool(reply.get("handoff_id"))
    if outcome == "action":
        return bool(pending) and pending.get("state") not in (None, "", "unspecified", "cancelled")
    if outcome == "executed":
        return pending.get("state") == "executed"
    if outcome == "citation":
        return bool(reply.get("citations"))
    return reply.get("decision") == outcome


def check_turn(number: int, expect: Expectation, reply: Mapping[str, Any],
               forbid: Sequence[str] = ()) -> list[Assertion]:
    """Every assertion of one turn against the gateway's reply (MessageReply as JSON)."""
    results: list[Assertion] = []

    def add(check: str, expected: str, actual: str, passed: bool) -> None:
        results.append(Assertion(number, check, expected, actual, passed))

    decision = str(reply.get("decision", ""))
    reason = str(reply.get("decision_reason", ""))
    text = _folded(str(reply.get("reply", "")))
    citations = list(reply.get("citations") or [])
    pending = reply.get("pending_action") or {}
    if expect.decision:
        add("decision", " or ".join(expect.decision), decision, decision in expect.decision)
    if expect.reason:
        add("reason", " or ".join(expect.reason), reason, reason in expect.reason)
    cited = {
        _folded(str(value))
        for c in citations
        for value in (c.get("doc_id"), c.get("title"), (c.get("record") or {}).get("id"))
        if value
    }
    shown = ", ".join(sorted(cited)) or "no citation"
    for wanted in expect.cites:
        add("cites", wanted, shown, _folded(wanted) in cited)
    for phrase in expect.says:
        add("says", repr(phrase), repr(str(reply.get("reply", ""))[:200]), _folded(phrase) in text)
    if expect.says_any:
        add("says one of", " | ".join(map(repr, expect.says_any)), repr(str(reply.get("reply", ""))[:200]),
            any(_folded(phrase) in text for phrase in expect.says_any))
    for phrase in expect.never_says:
        add("never says", repr(phrase), "said" if _folded(phrase) in text else "not said", _folded(phrase) not in text)
    if expect.handoff is not None:
        made = bool(reply.get("handoff_id")) and bool(reply.get("handoff_reference"))
        add("handoff", "made" if expect.handoff else "none", "made" if made else "none", made == expect.handoff)
    action = expect.action
    if action is not None:
        if not pending:
            add("action", action.tool or "an action", "no pending_action", False)
        else:
            if action.tool:
                add("action tool", action.tool, str(pending.get("tool")), pending.get("tool") == action.tool)
            summary = _folded(str(pending.get("summary", "")))
            for name, value in action.arguments.items():
                add(f"action argument {name}", repr(value), repr(str(pending.get("summary", ""))[:200]),
                    _folded(value) in summary)
            if action.state:
                add("action state", action.state, str(pending.get("state")), pending.get("state") == action.state)
    for outcome in dict.fromkeys([*forbid, *expect.forbid]):
        happened = _forbidden_happened(outcome, reply)
        add("never", FORBIDDEN_EXTRAS.get(outcome, f"decision {outcome}"),
            "it happened" if happened else "it did not", not happened)
    return results


# --- the simulated customer ----------------------------------------------------------------

# What the customer is shown before writing its first message (the widget's greeting; not sent).
OPENING = "Hi! How can I help you today?"
# τ-bench's end of conversation: a simulator that writes it in its message is done too.
_STOP_MARK = re.compile(r"#+\s*STOP\s*#*", re.IGNORECASE)
# A simulator that labels its own line ("Customer: ...") means the words after the label.
_SPEAKER = re.compile(r"^\s*(customer|user|me)\s*:\s*", re.IGNORECASE)
CUSTOMER_TURN_SCHEMA: dict[str, Any] = {
    "type": "object",
    # The message before the verdict: the model writes what it would say, then whether it is done.
    "properties": {"message": {"type": "string"}, "done": {"type": "boolean"}},
    "required": ["message", "done"],
}


class SimulatorError(Exception):
    """The simulated customer has no next message; the text says why, for the scenario's failure."""


def customer_prompt(goal: str) -> str:
    """The simulated customer's rules. The end is a JSON field, not τ-bench's ###STOP### token: a
    small model shown the token tends to write it at once (bench/actions_tau.py measured it)."""
    return (
        "You simulate a CUSTOMER chatting with a company's support assistant.\n"
        f"The customer's goal: {goal}\n"
        "Write the customer's next message: one or two short sentences, in the first person, answering what "
        "the assistant just said, in the customer's own words, never inventing details (an email, an order "
        "number, a name) the goal does not give. done is true only when the assistant has done or answered "
        "what the customer wants, said it cannot, or handed the customer to a person."
    )


class CustomerLLM:
    """The LLM that plays simulated customers, over the OpenAI-compatible chat API: the
    transcript so far in one prompt, answered under a JSON schema as {"message", "done"}.
    Temperature 0 and a fixed seed, so that a run is as repeatable as the server allows.

    bench/actions_tau.py's simulator is τ-bench's (an online store's customer with a task's
    instruction); this one is any tenant's customer with a scenario's goal."""

    def __init__(self, base_url: str, model: str, *, timeout_s: float = 120.0, seed: int = 23,
                 max_tokens: int = 200, context_chars: int = 5000) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.seed = seed
        self.max_tokens = max_tokens
        # The transcript is cut to its latest messages past this many characters: the embedded
        # server's context is 2,048 tokens.
        self.context_chars = context_chars
        self.client = httpx.Client(base_url=self.base_url, timeout=timeout_s)
        # vLLM takes OpenAI's json_schema form, llama-cpp-python's server only json_object with the
        # schema inside (servicekit/llm.py's note): the first form the server accepts is kept.
        self.json_forms: list[dict[str, Any]] = [
            {"type": "json_schema", "json_schema": {"name": "customer_turn", "schema": CUSTOMER_TURN_SCHEMA}},
            {"type": "json_object", "schema": CUSTOMER_TURN_SCHEMA},
        ]

    def __enter__(self) -> CustomerLLM:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.client.close()

    def next_message(self, goal: str, transcript: Sequence[tuple[str, str]]) -> tuple[str, bool]:
        """The customer's next message after `transcript` ((who, text): "assistant" or "customer"),
        and whether the customer is done; raises SimulatorError."""
        shown: list[str] = []
        budget = self.context_chars
        for who, text in reversed(transcript):
            budget -= len(text) + 12
            if shown and budget < 0:
                break
            shown.insert(0, f"{'Assistant' if who == 'assistant' else 'Customer'}: {text}")
        messages = [{"role": "system", "content": customer_prompt(goal)},
                    {"role": "user", "content": "\n".join(shown) + "\n\nThe customer's next message, as JSON:"}]
        try:
            response = self._post(messages)
            while response.status_code >= 400 and len(self.json_forms) > 1:
                self.json_forms.pop(0)
                response = self._post(messages)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise SimulatorError(f"LLM at {self.base_url} unreachable") from None
        except httpx.HTTPError as error:
            raise SimulatorError(f"LLM at {self.base_url}: {type(error).__name__}") from None
        if response.status_code >= 400:
            raise SimulatorError(f"LLM at {self.base_url} answered {response.status_code} {response.text[:200]}")
        content = ""
        try:
            content = str(response.json()["choices"][0]["message"]["content"])
            value = json.loads(content)
            message, done = value["message"], value["done"]
        except (ValueError, KeyError, IndexError, TypeError):
            # Most often a message cut at max_tokens: the content says so.
            raise SimulatorError(f"LLM at {self.base_url}: not the schema's JSON: {content[:200]!r}") from None
        if not isinstance(message, str) or not isinstance(done, bool):
            raise SimulatorError(f"LLM at {self.base_url}: not the schema's JSON: {content[:200]!r}")
        if _STOP_MARK.search(message):
            message, done = _STOP_MARK.sub("", message), True
        return _SPEAKER.sub("", message.strip(), count=1).strip()[:4000], done

    def _post(self, messages: list[dict[str, str]]) -> httpx.Response:
        return self.client.post("/chat/completions", json={
            "model": self.model, "messages": messages, "temperature": 0.0, "seed": self.seed,
            "max_tokens": self.max_tokens, "response_format": self.json_forms[0],
        })


# --- the runner ----------------------------------------------------------------------------

# (tenant, conversation id, request body) -> the reply as JSON; raises httpx.HTTPError.
Send = Callable[[str, str, dict[str, Any]], dict[str, Any]]


@dataclass
class TurnRecord:
    text: str
    seconds: float
    decision: str = ""
    reason: str = ""
    reply: str = ""
    # The calibrated confidence against the threshold in force: why an answer was or was not given.
    confidence: float | None = None
    calibrated: bool | None = None
    threshold: float | None = None
    citations: list[str] = field(default_factory=list)
    pending_action: dict[str, Any] | None = None
    handoff_id: str | None = None
    error: str = ""


@dataclass
class ScenarioResult:
    name: str
    tenant: str
    tags: list[str]
    passed: bool
    skipped: str = ""
    failures: list[str] = field(default_factory=list)
    assertions: list[dict[str, Any]] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)
    seconds: float = 0.0
    # A simulated conversation's end: "the customer was done", "handed over", "max_turns (N)", or a failure.
    ended: str = ""


class _Conversation:
    """One scenario's conversation: one fresh customer id, the pending action the latest reply
    carries, and every turn sent recorded in the result."""

    def __init__(self, scenario: Scenario, send: Send, run_token: str, result: ScenarioResult,
                 assertions: list[Assertion]) -> None:
        self.tenant = scenario.tenant
        self.send_body = send
        self.result = result
        self.assertions = assertions
        self.conversation_id = f"golden-{run_token}-{scenario.name}"[:128]
        self.customer = {"tenant_id": scenario.tenant, "customer_id": f"golden-{run_token}-{scenario.name}"[:128]}
        self.pending: dict[str, Any] = {}

    def send(self, number: int, turn: Turn) -> dict[str, Any] | None:
        """The reply, or None after recording why there is none (the scenario stops there)."""
        body: dict[str, Any] = {"text": turn.text, "customer": self.customer}
        if turn.press is not None:
            if not self.pending:
                self.assertions.append(Assertion(number, "a pending action to answer", "one", "none", False))
                return None
            body["action_reply"] = {"action_id": self.pending["action_id"],
                                    "fingerprint": self.pending["fingerprint"], "confirmed": turn.press}
        turn_started = time.perf_counter()
        try:
            reply = self.send_body(self.tenant, self.conversation_id, body)
        except httpx.HTTPStatusError as error:
            problem = error.response.text[:300]
            self.result.turns.append(TurnRecord(turn.text, time.perf_counter() - turn_started, error=problem))
            self.assertions.append(Assertion(number, "the gateway answers", "200",
                                             f"{error.response.status_code} {problem}", False))
            return None
        except httpx.HTTPError as error:
            self.result.turns.append(TurnRecord(turn.text, time.perf_counter() - turn_started, error=repr(error)))
            self.assertions.append(Assertion(number, "the gateway answers", "a reply", type(error).__name__, False))
            return None
        self.pending = reply.get("pending_action") or {}
        self.result.turns.append(TurnRecord(
            text=turn.text, seconds=round(time.perf_counter() - turn_started, 3),
            decision=str(reply.get("decision", "")), reason=str(reply.get("decision_reason", "")),
            reply=str(reply.get("reply", "")), confidence=reply.get("confidence"),
            calibrated=reply.get("calibrated"), threshold=reply.get("threshold"),
            citations=[str(c.get("doc_id") or (c.get("record") or {}).get("id") or c.get("title"))
                       for c in reply.get("citations") or []],
            pending_action=self.pending or None, handoff_id=reply.get("handoff_id"),
        ))
        return reply


def run_scenario(scenario: Scenario, send: Send, run_token: str,
                 customer: CustomerLLM | None = None) -> ScenarioResult:
    """One scenario as one fresh conversation of a fresh customer; stops at the first turn the
    gateway refuses (the rest cannot be judged). A simulated customer is played by `customer`;
    without one the scenario fails (it is not skipped: a skipped scenario makes a run partial)."""
    result = ScenarioResult(scenario.name, scenario.tenant, list(scenario.tags), passed=False)
    assertions: list[Assertion] = []
    conversation = _Conversation(scenario, send, run_token, result, assertions)
    started = time.perf_counter()
    if scenario.simulated is None:
        for number, turn in enumerate(scenario.turns, 1):
            reply = conversation.send(number, turn)
            if reply is None:
                break
            assertions.extend(check_turn(number, turn.expect, reply, scenario.forbid))
    elif customer is None:
        assertions.append(Assertion(1, "simulated customer", "an LLM to play it", "none given", False))
    else:
        result.ended = _simulate(scenario, scenario.simulated, conversation, customer)
    result.seconds = round(time.perf_counter() - started, 3)
    result.assertions = [asdict(a) for a in assertions]
    result.failures = [a.describe() for a in assertions if not a.passed]
    result.passed = not result.failures
    return result


def _simulate(scenario: Scenario, spec: SimulatedCustomer, conversation: _Conversation,
              customer: CustomerLLM) -> str:
    """Drive the conversation with the simulated customer; why it ended. Every turn is checked
    against the scenario's forbid, the last one against expect_end when it ended by itself."""
    assertions = conversation.assertions
    transcript: list[tuple[str, str]] = [("assistant", OPENING)]
    last: tuple[int, dict[str, Any]] | None = None
    ended = f"max_turns ({spec.max_turns})"
    for number in range(1, spec.max_turns + 1):
        try:
            message, done = customer.next_message(spec.goal, transcript)
        except SimulatorError as error:
            assertions.append(Assertion(number, "simulated customer", "a message", str(error), False))
            return "simulated customer failed"
        # Before the assistant answered anything nothing can be reached: the first message is sent.
        if done and last is not None:
            ended = "the customer was done"
            break
        if not message:
            assertions.append(Assertion(number, "simulated customer", "a message", "an empty one", False))
            return "simulated customer failed"
        reply = conversation.send(number, Turn(say=message))
        if reply is None:
            return "the gateway refused a turn"
        assertions.extend(check_turn(number, Expectation(), reply, scenario.forbid))
        last = (number, reply)
        transcript += [("customer", message), ("assistant", str(reply.get("reply", "")))]
        if reply.get("decision") == "escalated":
            ended = "handed over"
            break
    if scenario.expect_end is not None and last is not None:
        number, reply = last
        assertions.extend(replace(a, check=f"{a.check} at the end")
                          for a in check_turn(number, scenario.expect_end, reply))
    return ended


@dataclass
class SuiteRunReport:
    suite: str
    suite_digest: str
    release: str
    target: str
    partial: bool
    started_at: str
    finished_at: str = ""
    total: int = 0
    passed: int = 0
    skipped: int = 0
    assertions: int = 0
    assertions_failed: int = 0
    scenarios: list[ScenarioResult] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def run_suite(suite: Suite, scenarios: Sequence[Scenario], send: Send, *, release: str = "", target: str = "",
              say: Callable[[str], object] = print, customer: CustomerLLM | None = None) -> SuiteRunReport:
    """Every scenario in order; `customer` plays the simulated ones (without it they fail)."""
    report = SuiteRunReport(
        suite=suite.path, suite_digest=suite.digest, release=release or "live", target=target,
        partial=len(scenarios) < len(suite.scenarios), started_at=_now(),
    )
    run_token = uuid.uuid4().hex[:8]
    for scenario in scenarios:
        result = run_scenario(scenario, send, run_token, customer)
        report.scenarios.append(result)
        mark = "SKIP" if result.skipped else ("PASS" if result.passed else "FAIL")
        say(f"{mark} {scenario.name} ({result.seconds:.1f}s" + (f", {result.ended}" if result.ended else "") + ")")
        for failure in result.failures:
            say(f"     {failure}")
    report.finished_at = _now()
    ran = [r for r in report.scenarios if not r.skipped]
    report.total = len(ran)
    report.passed = sum(r.passed for r in ran)
    report.skipped = len(report.scenarios) - len(ran)
    report.assertions = sum(len(r.assertions) for r in ran)
    report.assertions_failed = sum(not a["passed"] for r in ran for a in r.assertions)
    return report


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def suite_run_body(report: SuiteRunReport, tenant: str) -> dict[str, Any]:
    """The body of POST /v1/tenants/{t}/releases/{id}/suite-runs (releases.proto's SuiteRun):
    the tenant's scenarios only, failures first."""
    mine = [r for r in report.scenarios if r.tenant == tenant and not r.skipped]
    mine.sort(key=lambda r: r.passed)
    return {
        "suite_digest": report.suite_digest,
        "total": len(mine),
        "passed": sum(r.passed for r in mine),
        # The gateway's limits: 100 failures a scenario, 1,000 characters each.
        "results": [{"name": r.name, "passed": r.passed, "failures": [f[:1000] for f in r.failures[:100]]}
                    for r in mine],
        "started_at": report.started_at,
        "finished_at": report.finished_at,
        # Who ran it is the key's holder (the gateway records it), never a claim in the body.
        "partial": report.partial or bool(report.skipped),
    }


# --- the mesh and its keys -----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    gateway_url: str
    # tenant -> the key its conversations are sent with (admin when a release is named).
    keys: Mapping[str, str]
    origin: str
    # The mesh's OpenAI-compatible LLM server (base URL): what simulated customers run on.
    llm_base_url: str = ""


def gateway_sender(target: Target, release: str = "", timeout_s: float = TURN_TIMEOUT_S) -> tuple[Send, httpx.Client]:
    """A Send through the gateway's chat API, and the client to close afterwards."""
    client = httpx.Client(base_url=target.gateway_url, timeout=timeout_s)

    def send(tenant: str, conversation_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if tenant not in target.keys:
            raise SystemExit(f"no key for tenant {tenant!r} (--key {tenant}=KEY)")
        headers = {"Authorization": f"Bearer {target.keys[tenant]}"}
        if release:
            headers[RELEASE_HEADER] = release
        response = client.post(f"/v1/conversations/{conversation_id}/messages", json=body, headers=headers)
        response.raise_for_status()
        reply: dict[str, Any] = response.json()
        return reply

    return send, client


@contextlib.contextmanager
def started_stack(prefix: str, say: Callable[[str], object] = print, llm_base_url: str | None = None,
                  llm_model: str = "") -> Iterator[Stack]:
    """A devstack on free ports in a throw-away folder: the demo knowledge base and the shop
    tenant set up as `make run` does them, without the background intent-model training (it
    would load the machine mid-run), and no rate limit (a bench is one client sending as fast
    as the mesh answers). The benches that drive a mesh of their own start it here."""
    from devstack.stack import REPO_ROOT, Stack, StackConfig, StackError, free_port

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        data_dir = Path(tmp)
        models = REPO_ROOT / "var" / "models"
        models.mkdir(parents=True, exist_ok=True)
        (data_dir / "models").symlink_to(models.resolve(), target_is_directory=True)
        config = StackConfig(
            data_dir=data_dir, gateway_port=free_port(), service_ports=tuple(free_port() for _ in range(5)),
            llm_port=free_port(), llm_base_url=llm_base_url, llm_model=llm_model or llm_server.MODEL_ALIAS,
            demo_intents=None,
            extra_env={"RATE_LIMIT_PER_S": "1000", "RATE_LIMIT_BURST": "1000"},
        )
        stack = Stack(config)
        started = time.monotonic()
        say(f"starting the mesh (logs in {stack.log_dir}) ...")
        try:
            stack.start()
        except StackError:
            for log in sorted(stack.log_dir.glob("*.log")):
                say(f"--- the end of {log.name} ---\n" + "\n".join(log.read_text().splitlines()[-15:]))
            raise
        try:
            say(f"mesh ready in {time.monotonic() - started:.0f}s")
            yield stack
        finally:
            stack.stop()


@contextlib.contextmanager
def started_mesh(tenants: set[str], admin: bool, say: Callable[[str], object] = print,
                 llm_base_url: str | None = None, llm_model: str = "") -> Iterator[Target]:
    """A mesh of its own (started_stack) with a key per tenant: admin keys, or channel keys."""
    with started_stack("scenarios-", say, llm_base_url, llm_model) as stack:
        role = "admin" if admin else "channel"
        known = {stack.config.demo_tenant: stack.api_keys, stack.config.shop_tenant: stack.shop_keys}
        missing = sorted(tenants - {t for t, keys in known.items() if keys})
        if missing:
            raise SystemExit(f"the mesh started here serves no tenant {', '.join(missing)}")
        yield Target(stack.gateway_url, {t: known[t][role] for t in tenants},
                     "started here" if llm_base_url else "started here (embedded LLM)", stack.llm_base_url)


@contextlib.contextmanager
def running_mesh(gateway: str, tenants: set[str], admin: bool, given: Mapping[str, str],
                 keys_file: Path, llm_base_url: str = DEFAULT_LLM_BASE_URL) -> Iterator[Target]:
    """A running mesh: the keys given, the others created in its key file and revoked afterwards."""
    from gateway.keys import Role, create_key, revoke_key

    keys = dict(given)
    created: list[str] = []
    for tenant in sorted(tenants - keys.keys()):
        if not keys_file.exists():
            raise SystemExit(f"no key for tenant {tenant}: give --key {tenant}=KEY, or a --keys-file to create one")
        role = Role.ADMIN if admin else Role.CHANNEL
        keys[tenant], record = create_key(keys_file, tenant, role, f"golden-scenarios-{role.label}")
        created.append(record.key_id)
    if created:
        time.sleep(1.2)  # the gateway re-reads its key file at most once a second
    try:
        yield Target(gateway.rstrip("/"), keys, f"running at {gateway}", llm_base_url)
    finally:
        for key_id in created:
            revoke_key(keys_file, key_id)


def record_run(target: Target, report: SuiteRunReport, release: str) -> list[str]:
    """POST the run against the release for each tenant it covered; lines for the terminal."""
    lines = []
    with httpx.Client(base_url=target.gateway_url, timeout=30.0) as client:
        for tenant in sorted({r.tenant for r in report.scenarios}):
            response = client.post(
                f"/v1/tenants/{tenant}/releases/{release}/suite-runs",
                json=suite_run_body(report, tenant),
                headers={"Authorization": f"Bearer {target.keys[tenant]}"},
            )
            if response.is_success:
                lines.append(f"recorded against {tenant}/{release}: {response.json()['run']['run_id']}")
            else:
                lines.append(f"NOT recorded against {tenant}/{release}: {response.status_code} {response.text[:300]}")
    return lines


# --- the command line ----------------------------------------------------------------------


def _key(value: str) -> tuple[str, str]:
    tenant, _, key = value.partition("=")
    if not tenant or not key:
        raise argparse.ArgumentTypeError("TENANT=KEY")
    return tenant, key


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", type=Path, action="append", required=True,
                        help="a suite file (bench/scenarios/*.json); repeat for several")
    parser.add_argument("--tags", default="", help="only scenarios with any of these tags (comma-separated)")
    parser.add_argument("--name", action="append", default=[], help="only this scenario (repeatable)")
    parser.add_argument("--limit", type=int, help="only the first N scenarios (after --tags)")
    parser.add_argument("--release", default="", help="serve every turn with this release (admin key) instead "
                                                      "of the tenant's live one")
    parser.add_argument("--record", action="store_true", help="record the run against --release (admin key)")
    parser.add_argument("--json", type=Path, help="write the whole report here (per assertion, per turn)")
    parser.add_argument("--gateway", help="a running mesh's gateway (`make run`: http://127.0.0.1:8080) instead of "
                                          "starting one here")
    parser.add_argument("--key", type=_key, action="append", default=[], metavar="TENANT=KEY",
                        help="with --gateway: the key of a tenant's conversations (admin with --release/--record)")
    parser.add_argument("--keys-file", type=Path, default=Path("var/gateway/api_keys.json"),
                        help="with --gateway, for a tenant without --key: create a key here, revoke it after")
    parser.add_argument("--llm-base-url", help="an OpenAI-compatible server: the simulated customers' (started "
                                               "here: the mesh's too, instead of the embedded one; with --gateway: "
                                               f"default {DEFAULT_LLM_BASE_URL}, `make run`'s)")
    parser.add_argument("--llm-model", default=llm_server.MODEL_ALIAS,
                        help="the model the simulated customers ask for (default the embedded one's)")
    args = parser.parse_args(argv)
    if args.record and not args.release:
        parser.error("--record needs --release (the release the run is recorded against)")

    try:
        suites = [load_suite(path) for path in args.suite]
    except (SuiteError, OSError) as error:
        print(f"invalid suite: {error}", file=sys.stderr)
        return 2
    tags = [tag for tag in args.tags.split(",") if tag]
    chosen = [(suite, select(suite.scenarios, tags, None, args.name)) for suite in suites]
    if args.limit is not None:
        # The first N over all the suites, in order.
        left, trimmed = args.limit, []
        for suite, picked in chosen:
            trimmed.append((suite, picked[:max(left, 0)]))
            left -= len(trimmed[-1][1])
        chosen = trimmed
    tenants = {s.tenant for _, picked in chosen for s in picked}
    if not tenants:
        print("no scenario selected", file=sys.stderr)
        return 2
    admin = bool(args.release or args.record)
    mesh = (running_mesh(args.gateway, tenants, admin, dict(args.key), args.keys_file,
                         args.llm_base_url or DEFAULT_LLM_BASE_URL) if args.gateway
            else started_mesh(tenants, admin, llm_base_url=args.llm_base_url, llm_model=args.llm_model))
    reports: list[SuiteRunReport] = []
    with mesh as target:
        send, client = gateway_sender(target, args.release)
        with client, CustomerLLM(target.llm_base_url, args.llm_model) as customer:
            for suite, picked in chosen:
                print(f"suite {suite.path}: {len(picked)} of {len(suite.scenarios)} scenarios, "
                      f"release {args.release or 'live'}, mesh {target.origin}")
                report = run_suite(suite, picked, send, release=args.release, target=target.origin,
                                   customer=customer)
                reports.append(report)
                if args.record:
                    for line in record_run(target, report, args.release):
                        print(line)
    for report in reports:
        print(f"{report.suite}: {report.passed}/{report.total} scenarios passed, "
              f"{report.assertions - report.assertions_failed}/{report.assertions} assertions"
              + (f", {report.skipped} skipped" if report.skipped else ""))
        by_tag: dict[str, list[bool]] = {}
        for result in report.scenarios:
            for tag in [] if result.skipped else result.tags:
                by_tag.setdefault(tag, []).append(result.passed)
        print("  by tag: " + ", ".join(f"{tag} {sum(v)}/{len(v)}" for tag, v in sorted(by_tag.items())))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.as_json() for r in reports], indent=1) + "\n")
        print(f"report written to {args.json}")
    return 0 if all(r.passed == r.total for r in reports) else 1


if __name__ == "__main__":
    raise SystemExit(main())
