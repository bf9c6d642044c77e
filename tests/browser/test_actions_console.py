"""The customer's account, clicked through in headless Chromium on the `shop` tenant: the chat
widget's Yes / No on a proposed action (a yes cancels the order in the demo company's back
office, a No withdraws it), an agent approving an action from the handoff's Account card while
the customer's chat shows the outcome as it arrives, and an agent running a catalog action for
the customer with the copilot form. Real gateway, concierge, escalation and actions services and
the real back office (`python -m demoshop`); the concierge's LLM is the scripted planner (see
tests/browser/shop.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from gateway.keys import Role
from tests.browser.shop import TENANT, Customer, ShopStack, customers
from tests.demoshop.live import LiveShop, needs_tau_retail
from tests.services.escalation.conftest import handoff_request

pytestmark = needs_tau_retail


@pytest.fixture(scope="module")
def live_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveShop]:
    with LiveShop(tmp_path_factory.mktemp("demoshop")) as running:
        yield running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, live_shop: LiveShop) -> Iterator[ShopStack]:
    # What the shop catalog reads, before the actions service starts: the back office's token and address.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DEMOSHOP_TOKEN", live_shop.token)
        env.setenv("SHOP_BACKOFFICE_URL", live_shop.url)
        running = ShopStack(tmp_path_factory.mktemp("shop-stack")).start()
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture
def office(live_shop: LiveShop) -> Iterator[httpx.Client]:
    """The back office, reset to the data folder for each test."""
    with live_shop.client() as client:
        client.post("/admin/reset").raise_for_status()
        yield client


def order_status(office: httpx.Client, order_id: str) -> str:
    response = office.get(f"/orders/{order_id.lstrip('#')}")
    response.raise_for_status()
    status: str = response.json()["status"]
    return status


def open_console(browser: Any, stack: ShopStack, path: str, role: Role) -> tuple[Any, Any, list[str]]:
    """A page of its own (own tab storage: own customer and conversation), key entered as a person would."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(15_000)
    page.goto(f"{stack.url}/console/{path}")
    page.get_by_label("API key").fill(stack.keys[role])
    page.get_by_role("button", name="Use key").click()
    page.wait_for_selector(f"header.top .who >> text=tenant {TENANT}")
    return context, page, errors


def say(page: Any, text: str) -> Any:
    """The customer types a message; returns the assistant's answer once it is complete."""
    answers = page.locator(".msg.assistant.done")
    before = answers.count()
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")
    answers.nth(before).wait_for()
    return answers.nth(before)


def agent_api(stack: ShopStack, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{stack.url}/v1/tenants/{TENANT}{path}", timeout=15,
                             headers={"Authorization": f"Bearer {stack.keys[Role.AGENT]}"}, **kwargs)
    response.raise_for_status()
    return response.json()


def conversation_of(page: Any) -> str:
    conversation: str = page.evaluate("sessionStorage.getItem('aftercare.conversationId')")
    return conversation


def one_customer(test: str, *, small_pending: int = 0, big_pending: int = 0, delivered: int = 0) -> Customer:
    """A customer of the data with at least these orders (each test has its own)."""
    fits = [c for c in customers() if len(c.pending()) >= small_pending and len(c.pending(big=True)) >= big_pending
            and len(c.delivered()) >= delivered]
    assert fits, f"no customer in the data for {test}"
    return fits[0]


def test_the_customer_says_yes_and_no_with_the_widgets_buttons(
    browser: Any, stack: ShopStack, office: httpx.Client, artifacts: Path
) -> None:
    customer = one_customer("yes and no", small_pending=2)
    first, second = customer.pending()[:2]
    context, page, errors = open_console(browser, stack, "chat.html?dwell=600", Role.CHANNEL)
    try:
        say(page, f"Hi, I'm {customer.email}")
        say(page, f"Please cancel order {first.order_id}, I ordered it by mistake")
        box = page.get_by_role("group", name="Confirm the proposed action")
        box.wait_for()
        assert first.order_id in box.inner_text()
        assert order_status(office, first.order_id) == "pending", "nothing before the yes"
        page.screenshot(path=str(artifacts / "account-1-proposed.png"), full_page=True)

        # Yes: the order is cancelled in the company's system, and the customer is told so.
        answers = page.locator(".msg.assistant.done")
        before = answers.count()
        box.get_by_role("button", name="Yes, go ahead").click()
        done = answers.nth(before)
        done.wait_for()
        assert done.inner_text().startswith("Done") and first.order_id in done.inner_text()
        assert order_status(office, first.order_id) == "cancelled"
        assert box.get_by_role("button", name="No").is_disabled(), "the buttons answer once"

        # No: the next proposal is withdrawn and nothing changes.
        say(page, f"And cancel order {second.order_id} too, I no longer need it")
        second_box = page.get_by_role("group", name="Confirm the proposed action").last
        assert second.order_id in second_box.inner_text()
        before = answers.count()
        second_box.get_by_role("button", name="No").click()
        answers.nth(before).wait_for()
        assert order_status(office, second.order_id) == "pending"
        page.screenshot(path=str(artifacts / "account-2-yes-and-no.png"), full_page=True)

        states = {a["arguments"]["order_id"]: a["state"] for a in agent_api(
            stack, "GET", "/actions", params={"conversation_id": conversation_of(page)})["actions"]}
        assert states == {first.order_id: "succeeded", second.order_id: "cancelled"}
        assert errors == []
    finally:
        context.close()


def test_an_agent_approves_from_the_handoff_and_the_customers_chat_shows_the_outcome(
    browser: Any, stack: ShopStack, office: httpx.Client, artifacts: Path
) -> None:
    customer = one_customer("approval", big_pending=1)
    (big,) = customer.pending(big=True)[:1]
    customer_context, chat, customer_errors = open_console(browser, stack, "chat.html?dwell=600", Role.CHANNEL)
    agent_context, console, agent_errors = open_console(browser, stack, "agent.html", Role.AGENT)
    try:
        say(chat, f"Hi, I'm {customer.email}")
        say(chat, f"Please cancel order {big.order_id}, I ordered it by mistake")
        box = chat.get_by_role("group", name="Confirm the proposed action")
        box.get_by_role("button", name="Yes, go ahead").click()
        chat.locator(".msg.assistant.done", has_text="An agent will review it").wait_for()
        assert order_status(office, big.order_id) == "pending", "waits for the agent"

        # The agent opens the conversation's handoff: the Account card shows who and what waits.
        conversation = conversation_of(chat)
        (handoff,) = [h for h in agent_api(stack, "GET", "/handoffs")["handoffs"]
                      if h["conversation_id"] == conversation]
        console.locator(f"#queue li[data-id='{handoff['handoff_id']}']").click()
        account = console.locator("#account")
        account.locator("#verified-customer", has_text=customer.user_id).wait_for()
        item = account.locator(".conversation-action", has_text=big.order_id)
        item.locator(".action-state[data-state='awaiting_approval']").wait_for()
        assert "5,000" in item.inner_text(), "why it needs approval"
        pending = console.locator("#approvals li.pending-approval", has_text=big.order_id)
        pending.wait_for()
        console.screenshot(path=str(artifacts / "account-3-agent-sees-approval.png"), full_page=True)

        console.get_by_label("Your name, as the customer sees it").fill("Dana")
        console.get_by_label("Your name, as the customer sees it").press("Tab")
        item.get_by_label("Note").fill("large refund checked")
        item.get_by_role("button", name="Approve").click()
        account.locator(".conversation-action .action-state[data-state='succeeded']").wait_for()
        assert order_status(office, big.order_id) == "cancelled"
        console.locator("#approvals >> text=Nothing waiting for approval.").wait_for()
        console.locator("#conversation .msg.agent.thread", has_text="approved").wait_for()

        # The customer's chat shows the outcome as it arrives, from the agent, without a reload.
        told = chat.locator(".msg.agent", has_text="approved")
        told.wait_for()
        assert big.order_id in told.inner_text()
        assert told.locator(".author").inner_text() == "Dana"
        chat.screenshot(path=str(artifacts / "account-4-customer-told.png"), full_page=True)
        console.screenshot(path=str(artifacts / "account-5-agent-approved.png"), full_page=True)

        stored = agent_api(stack, "GET", f"/actions?conversation_id={conversation}")["actions"]
        assert [(a["state"], a["approval"]["decided_by"], a["approval"]["note"]) for a in stored] == [
            ("succeeded", "agent-shop", "large refund checked")
        ]
        thread = agent_api(stack, "GET", f"/handoffs/{handoff['handoff_id']}")["thread"]
        assert sum("approved" in m["text"] for m in thread) == 1, "told once"
        assert customer_errors == [] and agent_errors == []
    finally:
        customer_context.close()
        agent_context.close()


def test_an_agent_verifies_reads_and_cancels_for_the_customer_with_the_copilot(
    browser: Any, stack: ShopStack, office: httpx.Client, artifacts: Path
) -> None:
    customer = one_customer("copilot", small_pending=1, delivered=1)
    pending, delivered = customer.pending()[0], customer.delivered()[0]
    conversation = f"conv-copilot-{customer.user_id}"
    # A handoff of a conversation where nobody was verified yet (the customer asked for a person).
    with grpc.insecure_channel(stack.escalation_address) as channel:
        handoff = escalation_pb2_grpc.EscalationServiceStub(channel).CreateHandoff(handoff_request(
            key=conversation, tenant=TENANT, conversation_id=conversation, texts=("I need to cancel an order.",),
            reason=escalation_pb2.HANDOFF_REASON_CUSTOMER_REQUEST), timeout=30).handoff
    context, console, errors = open_console(browser, stack, f"agent.html?handoff={handoff.handoff_id}", Role.AGENT)
    try:
        account = console.locator("#account")
        account.locator("#verified-customer", has_text="nobody verified yet").wait_for()
        form = console.get_by_role("form", name="Act for the customer")
        tool = form.get_by_label("Tool")
        tool.locator("option[value='cancel_pending_order']").wait_for(state="attached")

        # A write before anyone is verified: the form says what to do first.
        tool.select_option("cancel_pending_order")
        form.get_by_label("order_id").fill(pending.order_id)
        form.get_by_role("button", name="Check").click()
        form.locator("#copilot-result .error", has_text="verify the customer").wait_for()

        # Verify with an identity tool; the Account card picks the customer up.
        tool.select_option("find_user_id_by_email")
        form.get_by_label("email").fill(customer.email)
        form.get_by_role("button", name="Read").click()
        form.locator("#copilot-result", has_text=f"verified {customer.user_id}").wait_for()
        account.locator("#verified-customer", has_text=customer.user_id).wait_for()

        # Read an order: the record is shown, and listed among the records read.
        tool.select_option("get_order_details")
        form.get_by_label("order_id").fill(pending.order_id)
        form.get_by_role("button", name="Read").click()
        record = form.locator("#copilot-record")
        record.wait_for()
        assert '"pending"' in record.inner_text()
        account.locator("#records-read", has_text=pending.order_id).wait_for()

        # A missing argument is refused, never guessed: the reason is not chosen for the agent.
        tool.select_option("cancel_pending_order")
        assert form.get_by_label("reason").input_value() == ""
        form.get_by_label("order_id").fill(pending.order_id)
        form.get_by_role("button", name="Check").click()
        missing = form.locator("#copilot-result .error")
        missing.wait_for()
        assert "reason" in missing.inner_text(), missing.inner_text()

        # A policy precondition refuses a delivered order: the problem's own words.
        form.get_by_label("order_id").fill(delivered.order_id)
        form.get_by_label("reason").select_option("no longer needed")
        form.get_by_role("button", name="Check").click()
        refusal = form.locator("#copilot-result .error", has_text=delivered.order_id)
        refusal.wait_for()
        assert re.search(r"pending", refusal.inner_text()), refusal.inner_text()

        # Check shows the summary; nothing happens until "Run for the customer".
        form.get_by_label("order_id").fill(pending.order_id)
        form.get_by_role("button", name="Check").click()
        proposal = form.locator(".proposal")
        proposal.wait_for()
        assert pending.order_id in proposal.locator(".summary").inner_text()
        assert order_status(office, pending.order_id) == "pending"
        console.screenshot(path=str(artifacts / "account-6-copilot-checked.png"), full_page=True)
        proposal.get_by_role("button", name="Run for the customer").click()
        form.locator("#copilot-outcome", has_text="Done").wait_for()
        assert order_status(office, pending.order_id) == "cancelled"
        account.locator(".conversation-action .action-state[data-state='succeeded']").wait_for()
        console.screenshot(path=str(artifacts / "account-7-copilot-done.png"), full_page=True)

        trail = agent_api(stack, "GET", "/audit", params={"conversation_id": conversation})["events"]
        confirmed = [e for e in trail if e["kind"] == "confirmed"]
        assert [e["actor"] for e in confirmed] == [{"kind": "agent", "id": "agent-shop"}]
        assert customer.email not in console.content(), "personal data stays masked in the console"
        assert errors == []
    finally:
        context.close()
