"""The account assistant on the `shop` tenant: a real actions service (its shop catalog)
against the real demo back office (demoshop/, τ-bench retail data), a real conversation
store, and a scripted planner in place of the LLM (an OpenAI-compatible server double
that answers the JSON a planner would). Happy paths here; refusals in
test_account_safety.py; the real local LLM in test_account_real_llm.py."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from aftercare.actions.v1 import actions_pb2, actions_pb2_grpc
from aftercare.concierge.v1 import concierge_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import customer_pb2
from servicekit.database import make_engine
from servicekit.llm import LlmClient
from servicekit.server import serving
from services.actions.app import servicers as actions_servicers
from services.actions.catalog import DEFAULT_CATALOG_DIR
from services.concierge import account_plans as plans
from services.concierge.servicer import ConciergeServicer
from services.concierge.settings import ConciergeSettings
from services.concierge.store import ConversationStore
from tests.demoshop.live import LiveShop, needs_tau_retail
from tests.llm_stream import completion
from tests.services.actions.conftest import settings_for
from tests.services.concierge.test_concierge import OPEN, FakeEscalation, FakeRetrieval, FakeTriage, stand_in

pytestmark = needs_tau_retail

D = concierge_pb2
# Isabella: #W4386313 pending (Skateboard, Bluetooth Speaker), #W1713682 delivered; paypal_8516781.
ISABELLA = "isabella.sanchez6218@example.com"
ISABELLA_ID = "isabella_sanchez_2068"
PENDING_ORDER = "#W4386313"
DELIVERED_ORDER = "#W1713682"
# Raj's pending order: another customer's.
RAJ_ORDER = "#W4566809"

Script = Callable[[str], dict[str, Any]]


def default_script(said: str) -> dict[str, Any]:
    """What a good planner answers to the latest customer message."""
    order = re.search(r"#?W\d{7}", said)
    order_id = ("#" + order.group(0).lstrip("#")) if order else None
    lowered = said.lower()
    if "cancel" in lowered:
        arguments: dict[str, Any] = {"order_id": order_id} if order_id else {}
        if "mistake" in lowered:
            arguments["reason"] = "ordered by mistake"
        elif "no longer" in lowered or "don't need" in lowered:
            arguments["reason"] = "no longer needed"
        return {"tool": "cancel_pending_order", "arguments": arguments}
    if "address" in lowered and "account" in lowered:
        return {"tool": "get_user_details", "arguments": {}}
    if order_id:
        return {"tool": "get_order_details", "arguments": {"order_id": order_id}}
    return {"tool": "none", "arguments": {}}


class ScriptedPlanner:
    """An OpenAI-compatible server double for chat_json: answers `script(latest customer message)`
    as JSON and keeps every prompt, so a test can see what the planner was shown."""

    def __init__(self, script: Script = default_script) -> None:
        self.script = script
        self.prompts: list[str] = []
        self.down = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("refused", request=request)
        body = json.loads(request.content)
        prompt = "\n".join(message["content"] for message in body["messages"])
        self.prompts.append(prompt)
        latest = prompt.split(plans.LATEST + "\n", 1)[1].split("\n\nAccount facts", 1)[0]
        text = json.dumps(self.script(latest))
        return completion([text[: len(text) // 2], text[len(text) // 2:]], chat=True)

    def client(self) -> LlmClient:
        return LlmClient("http://llm.test/v1", "planner", transport=httpx.MockTransport(self.handler), timeout_s=5)


@dataclass
class Shop:
    servicer: ConciergeServicer
    planner: ScriptedPlanner
    escalation: FakeEscalation
    office: httpx.AsyncClient
    actions: actions_pb2_grpc.ActionsServiceStub
    customer_id: str = "web-visitor-1"
    conversation_id: str = "conv-1"
    tenant_id: str = "shop"
    outcomes: list[concierge_pb2.ConverseResponse] = field(default_factory=list)

    async def say(self, text: str, **fields: Any) -> concierge_pb2.ConverseResponse:
        request = concierge_pb2.ConverseRequest(
            conversation_id=self.conversation_id, text=text,
            customer=customer_pb2.CustomerRef(tenant_id=self.tenant_id, customer_id=self.customer_id), **fields,
        )
        outcome = await self.servicer.Converse(request, None)  # type: ignore[arg-type]
        self.outcomes.append(outcome)
        return outcome

    async def order(self, order_id: str) -> dict[str, Any]:
        response = await self.office.get(f"/orders/{order_id.replace('#', '%23')}")
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    async def actions_of_conversation(self) -> list[actions_pb2.Action]:
        listed = await self.actions.ListActions(
            actions_pb2.ListActionsRequest(tenant_id=self.tenant_id, conversation_id=self.conversation_id)
        )
        return list(listed.actions)


@pytest.fixture(scope="module", name="live_shop")
def live_shop_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveShop]:
    with LiveShop(tmp_path_factory.mktemp("demoshop")) as running:
        yield running


@pytest.fixture(name="actions_addr")
async def actions_addr_fixture(
    tmp_path: Path, live_shop: LiveShop, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    monkeypatch.setenv("DEMOSHOP_TOKEN", live_shop.token)
    monkeypatch.setenv("SHOP_BACKOFFICE_URL", live_shop.url)
    async with serving(settings_for(tmp_path / "actions", DEFAULT_CATALOG_DIR), actions_servicers) as running:
        yield f"127.0.0.1:{running.port}"


@pytest.fixture(name="shop")
async def shop_fixture(tmp_path: Path, live_shop: LiveShop, actions_addr: str) -> AsyncIterator[Shop]:
    async with (
        httpx.AsyncClient(base_url=live_shop.url, headers=live_shop.headers, timeout=30.0) as office,
        grpc.aio.insecure_channel(actions_addr) as channel,
    ):
        (await office.post("/admin/reset")).raise_for_status()
        yield make_shop(tmp_path, office, actions_pb2_grpc.ActionsServiceStub(channel))


def make_shop(
    tmp_path: Path, office: httpx.AsyncClient, actions: actions_pb2_grpc.ActionsServiceStub,
    planner: ScriptedPlanner | None = None, llm: LlmClient | None = None,
) -> Shop:
    """A concierge on the real actions service; its LLM the scripted planner, or `llm` (a real server)."""
    config = ConciergeSettings(
        port=0, retrieval_addr="x", triage_addr="x", escalation_addr="x", actions_addr="x",
        llm_base_url="http://llm.test/v1",
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = ConversationStore(make_engine(f"sqlite:///{tmp_path / 'concierge.db'}"))
    store.migrate()
    planner = planner or ScriptedPlanner()
    escalation = FakeEscalation()
    servicer = ConciergeServicer(
        config, FakeRetrieval(), FakeTriage(), escalation, llm or planner.client(), store,  # type: ignore[arg-type]
        confidence=stand_in(config, OPEN), actions=actions,
    )
    return Shop(servicer, planner, escalation, office, actions)


def reason(outcome: concierge_pb2.ConverseResponse) -> str:
    return concierge_pb2.DecisionReason.Name(outcome.reason).removeprefix("DECISION_REASON_")


def decision(outcome: concierge_pb2.ConverseResponse) -> str:
    return concierge_pb2.Decision.Name(outcome.decision).removeprefix("DECISION_")


# --- happy paths ------------------------------------------------------------------------


async def test_verify_by_email_then_where_is_my_order_is_answered_from_the_record(shop: Shop) -> None:
    asked = await shop.say(f"Where is my order {DELIVERED_ORDER}?")
    assert (decision(asked), reason(asked)) == ("CLARIFY", "NEEDS_IDENTITY")
    assert "email" in asked.reply and not asked.verified_customer_id
    assert shop.planner.prompts == []  # nothing planned, nothing read before the identity

    answered = await shop.say(f"It's {ISABELLA}")
    assert (decision(answered), reason(answered)) == ("ANSWERED", "FROM_RECORDS")
    assert answered.verified_customer_id == ISABELLA_ID
    assert f"Order {DELIVERED_ORDER} is delivered" in answered.reply
    assert "Smart Watch" in answered.reply
    [cited] = answered.citations
    assert (cited.record.kind, cited.record.id, cited.record.tool) == ("order", DELIVERED_ORDER, "get_order_details")
    assert not cited.doc_id

    # The verification is the conversation's: a later question needs no identity.
    again = await shop.say(f"And {PENDING_ORDER}?")
    assert reason(again) == "FROM_RECORDS" and "is pending" in again.reply
    assert again.verified_customer_id == ISABELLA_ID


async def test_verify_by_name_and_zip(shop: Shop) -> None:
    outcome = await shop.say(f"Hi, I'm Isabella Sanchez, zip 85093. What's the status of {PENDING_ORDER}?")
    assert reason(outcome) == "FROM_RECORDS"
    assert outcome.verified_customer_id == ISABELLA_ID


async def test_cancel_with_an_explicit_yes(shop: Shop) -> None:
    await shop.say(f"I'm {ISABELLA}")
    proposed = await shop.say(f"Please cancel order {PENDING_ORDER}, I ordered it by mistake")
    assert (decision(proposed), reason(proposed)) == ("CONFIRM_ACTION", "ACTION_PROPOSED")
    pending = proposed.pending_action
    assert pending.tool == "cancel_pending_order" and pending.state == D.ACTION_STATE_PROPOSED
    assert PENDING_ORDER in pending.summary and "Skateboard" in pending.summary
    assert proposed.reply.endswith("Shall I go ahead? (yes/no)") and pending.summary in proposed.reply
    assert (await shop.order(PENDING_ORDER))["status"] == "pending"  # nothing before the yes

    done = await shop.say("Yes please")
    assert (decision(done), reason(done)) == ("ACTED", "ACTION_EXECUTED")
    assert done.pending_action.state == D.ACTION_STATE_EXECUTED
    assert done.pending_action.action_id == pending.action_id
    assert (await shop.order(PENDING_ORDER))["status"] == "cancelled"


async def test_the_widgets_yes_button_sends_the_fingerprint(shop: Shop) -> None:
    await shop.say(f"I'm {ISABELLA}")
    pending = (await shop.say(f"cancel {PENDING_ORDER}, I no longer need it")).pending_action
    reply = D.ActionReply(action_id=pending.action_id, fingerprint=pending.fingerprint, confirmed=True)
    done = await shop.say("Yes", action_reply=reply)
    assert reason(done) == "ACTION_EXECUTED"
    assert (await shop.order(PENDING_ORDER))["status"] == "cancelled"


async def test_a_missing_argument_is_asked_for_never_guessed(shop: Shop) -> None:
    await shop.say(f"I'm {ISABELLA}")
    asked = await shop.say(f"Cancel my order {PENDING_ORDER}")
    assert (decision(asked), reason(asked)) == ("CLARIFY", "NEEDS_ARGUMENT")
    assert "'no longer needed' or 'ordered by mistake'" in asked.reply
    assert not (await shop.actions_of_conversation())
    proposed = await shop.say(f"Cancel {PENDING_ORDER}, it was ordered by mistake")
    assert reason(proposed) == "ACTION_PROPOSED"


async def test_a_no_cancels_and_a_change_of_mind_revises(shop: Shop) -> None:
    await shop.say(f"I'm {ISABELLA}")
    first = (await shop.say(f"cancel {PENDING_ORDER}, I no longer need it")).pending_action
    # Neither yes nor no: the proposal is withdrawn and the new request planned.
    revised = await shop.say(f"Actually cancel {PENDING_ORDER} because I ordered it by mistake")
    assert reason(revised) == "ACTION_PROPOSED"
    assert revised.pending_action.action_id != first.action_id
    assert "ordered by mistake" in revised.pending_action.summary
    declined = await shop.say("No")
    assert (decision(declined), reason(declined)) == ("ACTED", "ACTION_CANCELLED")
    states = {a.action_id: a.state for a in await shop.actions_of_conversation()}
    assert states == {first.action_id: actions_pb2.ACTION_STATE_CANCELLED,
                      revised.pending_action.action_id: actions_pb2.ACTION_STATE_CANCELLED}
    assert (await shop.order(PENDING_ORDER))["status"] == "pending"
    # Nothing pending any more: a later "yes" confirms nothing.
    after = await shop.say("yes", action_reply=D.ActionReply(
        action_id=first.action_id, fingerprint=first.fingerprint, confirmed=True))
    assert reason(after) == "ACTION_NOT_ALLOWED"
    assert (await shop.order(PENDING_ORDER))["status"] == "pending"


async def test_a_policy_question_without_account_words_stays_on_the_knowledge_base(shop: Shop) -> None:
    outcome = await shop.say("Can I get a refund on a monthly plan?")
    assert reason(outcome) == "CONFIDENT"  # the knowledge-base path (FakeRetrieval's unit)
    assert shop.planner.prompts == []


async def test_a_tenant_without_a_catalog_is_not_the_assistants(shop: Shop) -> None:
    request = concierge_pb2.ConverseRequest(
        conversation_id="c-demo", text="Where is my order #W1713682?",
        customer=customer_pb2.CustomerRef(tenant_id="demo", customer_id="u1"),
    )
    outcome = await shop.servicer.Converse(request, None)  # type: ignore[arg-type]
    assert reason(outcome) != "NEEDS_IDENTITY"
    assert shop.planner.prompts == []


async def test_the_state_survives_a_restart_of_the_concierge(shop: Shop, tmp_path: Path) -> None:
    await shop.say(f"I'm {ISABELLA}")
    pending = (await shop.say(f"cancel {PENDING_ORDER} by mistake")).pending_action
    # A new servicer on the same database and actions service: the yes still lands.
    again = make_shop(tmp_path, shop.office, shop.actions)
    done = await again.say("go ahead")
    assert reason(done) == "ACTION_EXECUTED" and done.pending_action.action_id == pending.action_id
    assert done.verified_customer_id == ISABELLA_ID


async def test_a_choice_the_model_left_out_is_taken_from_the_customers_words_not_guessed(
    shop: Shop, tmp_path: Path
) -> None:
    # A small model often leaves the reason out; "by mistake" names exactly one of the choices.
    lazy = ScriptedPlanner(lambda said: {**default_script(said), "arguments": {"order_id": PENDING_ORDER}}
                           if "cancel" in said.lower() else default_script(said))
    rig = make_shop(tmp_path / "lazy", shop.office, shop.actions, lazy)
    await rig.say(f"I'm {ISABELLA}")
    proposed = await rig.say(f"Please cancel {PENDING_ORDER}, I ordered it by mistake")
    assert reason(proposed) == "ACTION_PROPOSED"
    assert "reason: ordered by mistake" in proposed.pending_action.summary
    # Words that match no choice (or both) are asked about, never filled in.
    rig.conversation_id = "conv-2"
    await rig.say(f"I'm {ISABELLA}")
    asked = await rig.say(f"Please cancel {PENDING_ORDER}")
    assert reason(asked) == "NEEDS_ARGUMENT"


async def test_a_write_the_customer_did_not_ask_for_is_not_proposed(shop: Shop, tmp_path: Path) -> None:
    # The real 0.5B model read "what did I pay" as "change the payment" (see the report).
    misreads = ScriptedPlanner(lambda said: {
        "tool": "modify_pending_order_payment",
        "arguments": {"order_id": PENDING_ORDER, "payment_method_id": "paypal_8516781"},
    })
    rig = make_shop(tmp_path / "misreads", shop.office, shop.actions, misreads)
    await rig.say(f"I'm {ISABELLA}")
    outcome = await rig.say(f"What did I pay for order {PENDING_ORDER}?")
    assert reason(outcome) == "FROM_RECORDS" and "Payments:" in outcome.reply
    assert not await rig.actions_of_conversation()


async def test_the_llm_down_hands_over_and_keeps_the_verification(shop: Shop) -> None:
    await shop.say(f"Where is my order {PENDING_ORDER}?")
    shop.planner.down = True
    handed = await shop.say(f"It's {ISABELLA}")
    assert (decision(handed), reason(handed)) == ("ESCALATED", "LLM_UNAVAILABLE")
    assert handed.verified_customer_id == ISABELLA_ID
    shop.planner.down = False
    answered = await shop.say(f"Where is my order {PENDING_ORDER}?")
    assert reason(answered) == "FROM_RECORDS"


async def test_a_customer_who_asks_for_a_human_gets_one_even_mid_request(shop: Shop) -> None:
    """Triage hears "a human" before the account assistant plans anything: a handoff, the
    order untouched."""
    await shop.say(f"I'm {ISABELLA}")
    proposed = await shop.say(f"Please cancel order {PENDING_ORDER}, I ordered it by mistake")
    assert reason(proposed) == "ACTION_PROPOSED"
    shop.servicer._triage.flags = [triage_pb2.RISK_FLAG_HUMAN_REQUESTED]  # type: ignore[attr-defined]
    prompts = len(shop.planner.prompts)
    handed = await shop.say(f"I want to talk to a human about my order {PENDING_ORDER}")
    assert (decision(handed), reason(handed)) == ("ESCALATED", "HUMAN_REQUESTED")
    assert len(shop.escalation.requests) == 1 and len(shop.planner.prompts) == prompts
    assert (await shop.order(PENDING_ORDER))["status"] == "pending"
