"""Tier 2 as a conversation, clicked through in headless Chromium: the customer
asks, the AI hands over, the agent sees it and replies, the customer sees the
reply arrive without reloading, answers, the agent sees that live, resolves,
and the customer rates. Real gateway, concierge and escalation services; only
triage, retrieval and outreach are scripted (see tests/browser/tier2.py)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.keys import Role
from tests.browser.tier2 import Tier2Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier2Stack]:
    running = Tier2Stack(tmp_path_factory.mktemp("tier2")).start()
    try:
        yield running
    finally:
        running.stop()


def open_console(browser: Any, stack: Tier2Stack, path: str, role: Role) -> tuple[Any, Any, list[str]]:
    """A page of its own (own tab storage: own customer and conversation), key entered as a person would."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(15_000)
    page.goto(f"{stack.url}/console/{path}")
    page.get_by_label("API key").fill(stack.keys[role])
    page.get_by_role("button", name="Use key").click()
    page.wait_for_selector("header.top .who >> text=tenant demo")
    return context, page, errors


def ask(page: Any, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")


def agent_api(stack: Tier2Stack, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{stack.url}/v1/tenants/demo{path}", timeout=10,
                             headers={"Authorization": f"Bearer {stack.keys[Role.AGENT]}"}, **kwargs)
    response.raise_for_status()
    return response.json()


def handoff_of(stack: Tier2Stack, customer: Any) -> dict[str, Any]:
    conversation_id = customer.evaluate("sessionStorage.getItem('aftercare.conversationId')")
    for item in agent_api(stack, "GET", "/handoffs")["handoffs"]:
        if item["conversation_id"] == conversation_id:
            return item
    raise AssertionError(f"no open handoff for {conversation_id}")


def test_customer_and_agent_talk_through_a_handoff_until_it_is_rated(
    browser: Any, stack: Tier2Stack, artifacts: Path
) -> None:
    customer_context, customer, customer_errors = open_console(browser, stack, "chat.html?dwell=600", Role.CHANNEL)
    agent_context, agent, agent_errors = open_console(browser, stack, "agent.html", Role.AGENT)
    try:
        # The customer asks; the AI hands over and says so, with a reference and the expected wait.
        ask(customer, "Why was I charged twice for November?")
        notice = customer.locator(".handoff-prompt")
        notice.wait_for()
        reference = re.search(r"reference (\S+)\)", notice.inner_text())
        assert reference, notice.inner_text()
        reference_text = reference.group(1)
        assert "will reply here" in notice.inner_text()
        # The concierge's own message names the reference and asks nothing ("yes please" is no question).
        said = customer.locator(".msg.assistant").last.inner_text()
        assert reference_text in said and "?" not in said, said
        customer.evaluate("window.notReloaded = true")
        customer.screenshot(path=str(artifacts / "tier2-1-customer-handed-over.png"), full_page=True)

        # The agent's queue picks it up by itself, highlighted as new.
        item = agent.locator("#queue li.new", has_text=reference_text)
        item.wait_for()
        agent.screenshot(path=str(artifacts / "tier2-2-agent-queue.png"), full_page=True)
        handoff_id = item.get_attribute("data-id")
        item.click()
        assert agent.locator("#reference").inner_text() == reference_text
        conversation = agent.locator("#conversation")
        conversation.locator(".msg.customer", has_text="charged twice").wait_for()
        assert "waiting" in agent.locator("#handoff-state").inner_text()
        assert "handed over by the AI" in (agent.locator("#history").text_content() or "")

        # The agent replies, signed with a name.
        agent.get_by_label("Your name, as the customer sees it").fill("Sam")
        agent.get_by_label("Reply to the customer").fill("Hi, I see two charges on the 1st; I have refunded one.")
        agent.get_by_role("button", name="Send reply").click()
        agent.locator("#action-status >> text=Sent.").wait_for()
        conversation.locator(".msg.agent.thread", has_text="refunded one").wait_for()

        # The customer sees it arrive, from Sam, without reloading.
        reply = customer.locator(".msg.agent")
        reply.wait_for()
        assert "I have refunded one." in reply.inner_text()
        assert reply.locator(".author").inner_text() == "Sam"
        assert customer.evaluate("window.notReloaded") is True
        customer.locator(".handoff-status .state[data-state='waiting_on_customer']").wait_for()
        customer.screenshot(path=str(artifacts / "tier2-3-customer-sees-reply.png"), full_page=True)

        # The customer answers: it goes to the team, the AI says nothing; the agent sees it live.
        assistant_bubbles = customer.locator(".msg.assistant").count()
        ask(customer, "Thank you! Will it show on my card this week?")
        customer.locator(".msg.customer .delivered").wait_for()
        assert customer.locator(".msg.assistant").count() == assistant_bubbles, "no bot bubble while a person has it"
        conversation.locator(".msg.customer.thread", has_text="this week").wait_for()
        agent.screenshot(path=str(artifacts / "tier2-4-agent-sees-answer.png"), full_page=True)

        # The agent resolves; the customer gets one click to rate, and is thanked.
        agent.get_by_label("Resolution").fill("Refunded the duplicate November charge.")
        agent.get_by_role("button", name="Resolve").click()
        agent.locator("#handoff-state >> text=resolved").wait_for()
        rating = customer.get_by_role("group", name="Rate the help you got")
        rating.wait_for()
        customer.screenshot(path=str(artifacts / "tier2-5-customer-rates.png"), full_page=True)
        rating.get_by_role("button", name="Rate 5 of 5").click()
        customer.locator(".csat.done >> text=Thank you").wait_for()
        customer.screenshot(path=str(artifacts / "tier2-6-customer-thanked.png"), full_page=True)

        stored = agent_api(stack, "GET", f"/handoffs/{handoff_id}")
        assert stored["csat_rating"] == 5
        assert stored["state"] == "resolved"
        texts = [(m["role"], m["text"]) for m in stored["thread"]]
        assert texts == [
            ("agent", "Hi, I see two charges on the 1st; I have refunded one."),
            ("customer", "Thank you! Will it show on my card this week?"),
        ]
        assert [m["author_name"] for m in stored["thread"] if m["role"] == "agent"] == ["Sam"]
        agent.locator("#csat >> text=5 of 5").wait_for()
        agent.screenshot(path=str(artifacts / "tier2-7-agent-resolved.png"), full_page=True)
        assert customer_errors == [] and agent_errors == []
    finally:
        customer_context.close()
        agent_context.close()


def test_a_retried_send_is_delivered_once(browser: Any, stack: Tier2Stack, artifacts: Path) -> None:
    customer_context, customer, _ = open_console(browser, stack, "chat.html?dwell=600", Role.CHANNEL)
    agent_context, agent, _ = open_console(browser, stack, "agent.html", Role.AGENT)
    try:
        ask(customer, "My export to CSV has been stuck for an hour.")
        customer.locator(".handoff-prompt").wait_for()
        handoff = handoff_of(stack, customer)
        agent.goto(f"{stack.url}/console/agent.html?handoff={handoff['handoff_id']}")
        agent.locator("#reference").wait_for()

        # The first Send reaches the server but its answer is lost on the way back.
        lost: list[str] = []

        def lose_answer(route: Any) -> None:
            if not lost:
                route.fetch()
                lost.append(route.request.post_data or "")
                route.abort("connectionreset")
            else:
                route.continue_()

        agent.route("**/replies", lose_answer)
        agent.get_by_label("Reply to the customer").fill("I restarted the export; it will arrive by email.")
        agent.get_by_role("button", name="Send reply").click()
        agent.locator("#action-status.error").wait_for()
        agent.get_by_role("button", name="Send reply").click()
        agent.locator("#action-status >> text=Sent.").wait_for()

        customer.locator(".msg.agent", has_text="restarted the export").wait_for()
        time.sleep(1.0)  # a duplicate would have arrived by now
        assert customer.locator(".msg.agent").count() == 1
        stored = agent_api(stack, "GET", f"/handoffs/{handoff['handoff_id']}")
        assert [m["text"] for m in stored["thread"]] == ["I restarted the export; it will arrive by email."]
    finally:
        customer_context.close()
        agent_context.close()


def test_the_widget_polls_when_the_event_stream_is_blocked(browser: Any, stack: Tier2Stack, artifacts: Path) -> None:
    customer_context, customer, errors = open_console(browser, stack, "chat.html?dwell=600", Role.CHANNEL)
    try:
        customer.route("**/events?*", lambda route: route.abort("failed"))
        ask(customer, "Can I move my invoices to another billing email?")
        customer.locator(".handoff-prompt").wait_for()
        handoff = handoff_of(stack, customer)
        agent_api(stack, "POST", f"/handoffs/{handoff['handoff_id']}/replies",
                  json={"final_text": "Yes: Settings > Billing > Invoice email.", "client_message_id": "poll-1",
                        "agent_name": "Ana"})
        reply = customer.locator(".msg.agent")
        reply.wait_for(timeout=20_000)
        assert "Invoice email" in reply.inner_text() and reply.locator(".author").inner_text() == "Ana"
        customer.screenshot(path=str(artifacts / "tier2-polled-reply.png"), full_page=True)
        assert errors == []
    finally:
        customer_context.close()
