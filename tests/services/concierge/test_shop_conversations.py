"""The scripted conversation suite (issue 22): every conversation of shop_conversations.py
through a real concierge servicer, the real actions service (the shop catalog) and the real
demo back office, with the back office's final state compared to the state its expected
writes give when replayed on the initial data.

The planner is scripted, not a model: a planner double (test_account_flow.py's
ScriptedPlanner) answers, for the message the assistant acts on, the plan the conversation
gives for that message. Everything else is the product's own code. What a real model plans
is measured by bench/actions_tau.py.

One back office and one actions service for the module; the back office is reset before
each conversation, and each conversation has its own id (verification and actions are the
conversation's) and its own concierge store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from aftercare.actions.v1 import actions_pb2, actions_pb2_grpc
from aftercare.concierge.v1 import concierge_pb2
from demoshop.store import Shop as BackOfficeStore
from servicekit.pii import mask
from servicekit.server import serving
from services.actions.app import servicers as actions_servicers
from services.actions.catalog import DEFAULT_CATALOG_DIR
from services.concierge import account_plans
from tests.demoshop.examples import Source
from tests.demoshop.live import TAU_RETAIL, LiveShop, needs_tau_retail
from tests.services.actions.conftest import settings_for
from tests.services.concierge.shop_conversations import (
    SUITE,
    AgentDecides,
    Conversation,
    Expect,
    Press,
    Say,
)
from tests.services.concierge.test_account_flow import (
    ScriptedPlanner,
    Shop,
    decision,
    live_shop_fixture,  # noqa: F401  (one back office per module)
    make_shop,
    reason,
)

pytestmark = needs_tau_retail

# Conversations that expose a bug of the account assistant (services/concierge/account*.py), each
# written up in /work/briefing/REQUESTS.md; strict: a fix makes them pass and must remove them here.
KNOWN_BUGS: dict[str, str] = {
}


@pytest.fixture(scope="module")
def source() -> Source:
    return {name: json.loads((TAU_RETAIL / f"{name}.json").read_text()) for name in ("users", "orders", "products")}


@dataclass
class Backend:
    office: httpx.AsyncClient
    actions: actions_pb2_grpc.ActionsServiceStub


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend(live_shop: LiveShop, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Backend]:
    """The actions service (shop catalog) pointed at the live back office, for the whole module."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DEMOSHOP_TOKEN", live_shop.token)
        env.setenv("SHOP_BACKOFFICE_URL", live_shop.url)
        settings = settings_for(tmp_path_factory.mktemp("actions"), DEFAULT_CATALOG_DIR)
        async with (
            serving(settings, actions_servicers) as running,
            grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
            httpx.AsyncClient(base_url=live_shop.url, headers=live_shop.headers, timeout=30.0) as office,
        ):
            yield Backend(office, actions_pb2_grpc.ActionsServiceStub(channel))


# --- the planner double ---------------------------------------------------------------------------


@dataclass
class SuitePlanner:
    """Answers the plan of the conversation's message the assistant acts on (the latest message, or
    an earlier one it returns to); remembers every message it was asked about."""

    conversation: Conversation
    turn: int = 0
    asked: list[tuple[int, str]] = field(default_factory=list)
    unscripted: list[str] = field(default_factory=list)

    def answer(self, latest: str) -> dict[str, Any]:
        self.asked.append((self.turn, latest))
        # The newest message so far with that text; earlier messages come back masked (emails hidden).
        for turn in reversed(self.conversation.turns[: self.turn + 1]):
            if isinstance(turn, Say) and latest.strip() in (turn.text.strip(), mask(turn.text).strip()):
                if turn.plan is None:
                    break
                return turn.plan.as_json()
        self.unscripted.append(latest)
        return {"tool": "none", "arguments": {}}


# --- running a conversation -----------------------------------------------------------------------


def check(expect: Expect, outcome: concierge_pb2.ConverseResponse) -> list[str]:
    """What in the outcome differs from what the turn expects."""
    problems: list[str] = []
    if expect.decision and decision(outcome) != expect.decision:
        problems.append(f"decision {decision(outcome)}, expected {expect.decision}")
    if expect.reason and reason(outcome) != expect.reason:
        problems.append(f"reason {reason(outcome)}, expected {expect.reason}")
    problems += [f"the reply lacks {text!r}" for text in expect.says if text not in outcome.reply]
    problems += [f"the reply shows {text!r}" for text in expect.never_says if text in outcome.reply]
    if expect.cites is not None:
        cited = [citation.record.id for citation in outcome.citations]
        if cited != [expect.cites]:
            problems.append(f"cites {cited}, expected [{expect.cites!r}]")
    if expect.action_state:
        state = concierge_pb2.ActionState.Name(outcome.pending_action.state).removeprefix("ACTION_STATE_")
        if not outcome.HasField("pending_action") or state != expect.action_state:
            problems.append(f"pending action {state}, expected {expect.action_state}")
    return problems


def latest_action(rig: Shop) -> concierge_pb2.PendingAction:
    return next(o.pending_action for o in reversed(rig.outcomes) if o.HasField("pending_action"))


async def run_turns(conversation: Conversation, rig: Shop, planner: SuitePlanner) -> list[str]:
    """Every turn through the concierge; what differs from the script, one block per turn."""
    problems: list[str] = []
    for index, turn in enumerate(conversation.turns):
        planner.turn = index
        asked_before = len(planner.asked)
        if isinstance(turn, AgentDecides):
            waiting = latest_action(rig)
            verdict = actions_pb2.APPROVAL_DECISION_APPROVE if turn.approve else actions_pb2.APPROVAL_DECISION_REJECT
            decided = await rig.actions.DecideApproval(actions_pb2.DecideApprovalRequest(
                tenant_id=rig.tenant_id, action_id=waiting.action_id, agent_id="agent-ana", decision=verdict,
                note="scripted suite",
            ))
            state = actions_pb2.ActionState.Name(decided.action.state).removeprefix("ACTION_STATE_")
            if state != turn.state:
                problems.append(f"turn {index} (the agent decides): action {state}, expected {turn.state}")
            continue
        if isinstance(turn, Press):
            pending = latest_action(rig)
            fingerprint = "0" * 64 if turn.forged else pending.fingerprint
            reply = concierge_pb2.ActionReply(action_id=pending.action_id, fingerprint=fingerprint,
                                              confirmed=turn.confirmed)
            outcome = await rig.say(turn.text, action_reply=reply)
        else:
            outcome = await rig.say(turn.text)
        found = check(turn.expect, outcome)
        if not outcome.verified_customer_id and len(planner.asked) > asked_before:
            found.append("the planner was asked before the customer was verified")
        if reason(outcome) == "ACTION_AWAITING_APPROVAL" and not outcome.handoff_id:
            found.append("awaiting approval without a handoff to an agent")
        if found:
            problems.append(f"turn {index}: {turn.text!r} -> {decision(outcome)}/{reason(outcome)}: {outcome.reply!r}")
            problems += [f"    {problem}" for problem in found]
    if planner.unscripted:
        problems.append(f"the planner was asked about messages the script does not plan: {planner.unscripted}")
    return problems


async def audit_problems(conversation: Conversation, rig: Shop) -> list[str]:
    """From the actions service's audit trail: who the conversation was verified as, and each
    expected write executed exactly once."""
    listed = await rig.actions.ListAuditEvents(actions_pb2.ListAuditEventsRequest(
        tenant_id=rig.tenant_id, conversation_id=rig.conversation_id, page_size=500,
    ))
    verified = {e.customer_id for e in listed.events if e.kind == actions_pb2.AUDIT_EVENT_KIND_IDENTITY_VERIFIED}
    executed = [e for e in listed.events if e.kind == actions_pb2.AUDIT_EVENT_KIND_EXECUTED]
    problems: list[str] = []
    if verified != ({conversation.customer} if conversation.customer else set()):
        problems.append(f"verified as {sorted(verified)}, expected {conversation.customer or 'nobody'}")
    if len(executed) != len(conversation.writes):
        problems.append(f"{len(executed)} executions in the audit trail, expected {len(conversation.writes)}")
    return problems


async def executed_writes(rig: Shop) -> list[dict[str, Any]]:
    """The conversation's actions that ran, oldest first, as τ-bench actions."""
    listed = await rig.actions.ListActions(
        actions_pb2.ListActionsRequest(tenant_id=rig.tenant_id, conversation_id=rig.conversation_id)
    )
    ran = [a for a in listed.actions if a.state == actions_pb2.ACTION_STATE_SUCCEEDED]
    ran.sort(key=lambda action: action.created_at.ToDatetime())
    return [{"name": action.tool, "kwargs": json.loads(action.arguments_json)} for action in ran]


def state_diff(expected: dict[str, Any], actual: dict[str, Any], limit: int = 6) -> str:
    """The users and orders that differ, field by field."""
    lines: list[str] = []
    for kind in ("users", "orders"):
        for key in sorted(set(expected[kind]) | set(actual[kind])):
            want, got = expected[kind].get(key), actual[kind].get(key)
            if want == got:
                continue
            if want is None or got is None:
                lines.append(f"{kind} {key}: expected {json.dumps(want)}, actual {json.dumps(got)}")
                continue
            for name in sorted(set(want) | set(got)):
                if want.get(name) != got.get(name):
                    lines.append(f"{kind} {key}.{name}: expected {json.dumps(want.get(name))}, "
                                 f"actual {json.dumps(got.get(name))}")
    shown = lines[: limit * 4]
    return "\n".join(shown + ([f"... and {len(lines) - len(shown)} more"] if len(lines) > len(shown) else []))


class ExpectedStates:
    """The users and orders after replaying writes on freshly loaded data, in a store of its own,
    loaded on the first mismatch only (loading takes seconds)."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.store: BackOfficeStore | None = None

    def after(self, writes: list[dict[str, Any]]) -> dict[str, Any]:
        if self.store is None:
            self.store = BackOfficeStore(self.scratch / "expected.db", TAU_RETAIL)
            self.store.prepare()
        replayed = self.store.replay(writes, keep_state=True)
        assert replayed.state is not None
        return replayed.state

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


@pytest.fixture(scope="module")
def expected_states(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExpectedStates]:
    made = ExpectedStates(tmp_path_factory.mktemp("expected"))
    yield made
    made.close()


# --- the tests --------------------------------------------------------------------------------------


def _cases() -> list[Any]:
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name])) if name in KNOWN_BUGS
        else name
        for name in SUITE
    ]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("name", _cases())
async def test_conversation(
    name: str, source: Source, backend: Backend, expected_states: ExpectedStates, tmp_path: Path
) -> None:
    conversation = SUITE[name](source)
    initial = (await backend.office.post("/admin/reset")).raise_for_status().json()["sha256"]
    planner = SuitePlanner(conversation)
    rig = make_shop(tmp_path, backend.office, backend.actions, ScriptedPlanner(planner.answer))
    rig.conversation_id = f"suite-{name}"

    problems = await run_turns(conversation, rig, planner)
    problems += await audit_problems(conversation, rig)

    writes = [dict(w) for w in conversation.writes]
    ran = await executed_writes(rig)
    if ran != writes:
        problems.append(f"executed {json.dumps(ran)}, expected {json.dumps(writes)}")
    expected = initial
    if writes:
        replayed = (await backend.office.post("/admin/replay", json={"actions": writes})).raise_for_status().json()
        assert all(result["ok"] for result in replayed["results"]), f"the expected writes fail: {replayed}"
        expected = replayed["sha256"]
    actual = (await backend.office.get("/state/digest")).raise_for_status().json()["sha256"]
    if actual != expected:
        exported = (await backend.office.get("/state/export")).raise_for_status().json()
        problems.append("the back office's final state is not the expected one:\n"
                        + state_diff(expected_states.after(writes), exported))
    assert not problems, f"{name}: {conversation.summary}\n" + "\n".join(problems)


def test_the_suite_covers_every_tool_of_the_catalog(source: Source) -> None:
    """At least 40 conversations; every read tool planned or used to verify, every write tool both
    done and refused; approvals; Yes/No buttons; an argument asked for; a change of mind."""
    catalog = json.loads((DEFAULT_CATALOG_DIR / "shop.json").read_text())
    reads = {tool["name"] for tool in catalog["tools"] if tool["kind"] == "read"}
    writes = {tool["name"] for tool in catalog["tools"] if tool["kind"] == "write"}
    conversations = [build(source) for build in SUITE.values()]
    assert len(conversations) >= 40
    assert len({c.name for c in conversations}) == len(conversations)

    says = [turn for c in conversations for turn in c.turns if isinstance(turn, Say)]
    planned = {turn.plan.tool for turn in says if turn.plan is not None}
    by_email = any(account_plans.emails(turn.text) for turn in says)
    by_name = any(account_plans.NAME.search(turn.text) and account_plans.ZIP.search(turn.text) for turn in says)
    identity = {tool for tool, used in (("find_user_id_by_email", by_email), ("find_user_id_by_name_zip", by_name))
                if used}
    passing = [c for c in conversations if c.name not in KNOWN_BUGS]
    done = {write["name"] for c in passing for write in c.writes}
    refused = {turn.plan.tool for c in passing for turn in c.turns if isinstance(turn, Say) and turn.plan
               and turn.expect.reason in ("ACTION_NOT_ALLOWED", "NEEDS_ARGUMENT", "NEEDS_IDENTITY")}
    assert reads <= planned | identity, reads - planned - identity
    assert writes <= done, writes - done
    assert writes <= refused, writes - refused
    reasons = {turn.expect.reason for c in passing for turn in c.turns if isinstance(turn, (Say, Press))}
    assert {"ACTION_AWAITING_APPROVAL", "ACTION_CANCELLED", "NEEDS_ARGUMENT", "NEEDS_IDENTITY",
            "ACTION_NOT_ALLOWED", "FROM_RECORDS", "ACTION_EXECUTED"} <= reasons
    assert any(isinstance(turn, Press) and turn.confirmed for c in passing for turn in c.turns)
    assert any(isinstance(turn, Press) and not turn.confirmed for c in passing for turn in c.turns)
    assert {True, False} <= {turn.approve for c in passing for turn in c.turns if isinstance(turn, AgentDecides)}
