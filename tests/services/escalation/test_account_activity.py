"""A handoff's account activity and agents' approvals, against a real actions service
(its shop catalog) over the real demo back office (demoshop, τ-bench retail data):
the assistant's part is played over gRPC as the concierge plays it (verify, read an
order, propose a cancellation above the $5,000 approval rule, the customer's yes),
then escalation shows it in GetHandoff and decides it with DecideActionApproval,
telling the customer the outcome once in the conversation's thread."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from aftercare.actions.v1 import actions_pb2, actions_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import customer_pb2
from servicekit.server import serving
from services.actions.app import servicers as actions_servicers
from services.actions.catalog import DEFAULT_CATALOG_DIR
from tests.conftest import free_port
from tests.demoshop.live import TAU_RETAIL, LiveShop, needs_tau_retail
from tests.services.actions.conftest import settings_for as actions_settings_for
from tests.services.escalation.conftest import (
    AGENT,
    Stub,
    expect_error,
    handoff_request,
    running_stub,
    settings_for,
)

pytestmark = needs_tau_retail

E = escalation_pb2
A = actions_pb2
TENANT = "shop"
VISITOR = "web-visitor-1"
ASSISTANT = A.Actor(kind=A.ACTOR_KIND_ASSISTANT)
CUSTOMER = A.Actor(kind=A.ACTOR_KIND_CUSTOMER)


@dataclass(frozen=True)
class BigOrder:
    """A pending order whose cancellation refunds more than $5,000 (the catalog's approval rule)."""

    order_id: str
    user_id: str
    email: str


def _big_pending_order() -> BigOrder:
    orders = json.loads((TAU_RETAIL / "orders.json").read_text())
    users = json.loads((TAU_RETAIL / "users.json").read_text())
    for order_id, order in orders.items():
        paid = sum(p["amount"] for p in order["payment_history"] if p["transaction_type"] == "payment")
        if order["status"] == "pending" and paid > 5000:
            return BigOrder(order_id, order["user_id"], users[order["user_id"]]["email"])
    raise AssertionError("no pending order above $5,000 in the data")


@pytest.fixture(scope="module", name="live_shop")
def live_shop_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveShop]:
    with LiveShop(tmp_path_factory.mktemp("demoshop")) as running:
        yield running


@pytest.fixture(name="office")
async def office_fixture(live_shop: LiveShop) -> AsyncIterator[httpx.AsyncClient]:
    """The back office, reset to the data's state."""
    async with httpx.AsyncClient(base_url=live_shop.url, headers=live_shop.headers, timeout=30.0) as office:
        (await office.post("/admin/reset")).raise_for_status()
        yield office


@pytest.fixture(name="actions_addr")
async def actions_addr_fixture(
    tmp_path: Path, live_shop: LiveShop, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    monkeypatch.setenv("DEMOSHOP_TOKEN", live_shop.token)
    monkeypatch.setenv("SHOP_BACKOFFICE_URL", live_shop.url)
    async with serving(actions_settings_for(tmp_path / "actions", DEFAULT_CATALOG_DIR), actions_servicers) as running:
        yield f"127.0.0.1:{running.port}"


@pytest.fixture(name="actions")
async def actions_fixture(actions_addr: str) -> AsyncIterator[actions_pb2_grpc.ActionsServiceStub]:
    async with grpc.aio.insecure_channel(actions_addr) as channel:
        yield actions_pb2_grpc.ActionsServiceStub(channel)


@pytest.fixture(name="escalation")
async def escalation_fixture(tmp_path: Path, actions_addr: str) -> AsyncIterator[Stub]:
    async with running_stub(settings_for(tmp_path / "escalation", actions_addr=actions_addr)) as stub:
        yield stub


@pytest.fixture(name="any_escalation", params=["sqlite", "postgresql"])
async def any_escalation_fixture(
    request: pytest.FixtureRequest, tmp_path: Path, actions_addr: str
) -> AsyncIterator[Stub]:
    """Escalation on SQLite, then on PostgreSQL (a shared database: conversations must be fresh)."""
    url = "" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = settings_for(tmp_path / "escalation", actions_addr=actions_addr, database_url=url)
    async with running_stub(settings) as stub:
        yield stub


async def _awaiting_approval(
    actions: actions_pb2_grpc.ActionsServiceStub, conversation: str, order: BigOrder, *, proposer: A.Actor = ASSISTANT
) -> A.Action:
    """The assistant's part: verify the customer, read the order, propose its cancellation, the customer's yes."""
    verified = await actions.ExecuteRead(A.ExecuteReadRequest(
        customer=customer_pb2.CustomerRef(tenant_id=TENANT), conversation_id=conversation,
        tool="find_user_id_by_email", arguments_json=json.dumps({"email": order.email}), actor=ASSISTANT,
    ))
    assert verified.verified_customer_id == order.user_id
    owner = customer_pb2.CustomerRef(tenant_id=TENANT, customer_id=order.user_id)
    for _ in range(2):  # read twice: the handoff lists the record once
        await actions.ExecuteRead(A.ExecuteReadRequest(
            customer=owner, conversation_id=conversation, tool="get_order_details",
            arguments_json=json.dumps({"order_id": order.order_id}), actor=ASSISTANT,
        ))
    proposed = (await actions.ProposeAction(A.ProposeActionRequest(
        customer=owner, conversation_id=conversation, tool="cancel_pending_order", request_id=f"r-{conversation}",
        arguments_json=json.dumps({"order_id": order.order_id, "reason": "ordered by mistake"}), actor=proposer,
    ))).action
    confirmed = (await actions.ConfirmAction(A.ConfirmActionRequest(
        tenant_id=TENANT, action_id=proposed.action_id, fingerprint=proposed.fingerprint, confirmation_text="yes",
        actor=CUSTOMER, conversation_id=conversation,
    ))).action
    assert confirmed.state == A.ACTION_STATE_AWAITING_APPROVAL
    return confirmed


async def _handoff(escalation: Stub, conversation: str) -> E.Handoff:
    """What the concierge hands over when an action awaits approval."""
    request = handoff_request(key=f"key-{conversation}", tenant=TENANT, customer_id=VISITOR,
                              conversation_id=conversation, texts=("Please cancel my order.",))
    return (await escalation.CreateHandoff(request)).handoff


def _decide(action_id: str, choice: int, *, handoff_id: str = "", agent: str = "ana", name: str = "Ana",
            note: str = "", tenant: str = TENANT) -> E.DecideActionApprovalRequest:
    return E.DecideActionApprovalRequest(tenant_id=tenant, handoff_id=handoff_id, action_id=action_id, choice=choice,
                                         agent_id=agent, agent_name=name, note=note)


async def _order(office: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    response = await office.get(f"/orders/{order_id.replace('#', '%23')}")
    response.raise_for_status()
    found: dict[str, Any] = response.json()
    return found


async def _thread(escalation: Stub, conversation: str) -> list[E.ThreadMessage]:
    listed = await escalation.ListConversationMessages(
        E.ListConversationMessagesRequest(tenant_id=TENANT, conversation_id=conversation)
    )
    return list(listed.messages)


async def _delivered(escalation: Stub, conversation: str) -> list[str]:
    """The conversation's messages in the tenant's deliveries feed (all of it: PostgreSQL's is shared by runs)."""
    found: list[str] = []
    cursor = ""
    while True:
        page = await escalation.ListDeliveries(
            E.ListDeliveriesRequest(tenant_id=TENANT, after_cursor=cursor, page_size=500)
        )
        found += [d.message.message_id for d in page.deliveries if d.message.conversation_id == conversation]
        if not page.deliveries:
            return found
        cursor = page.next_cursor


async def _audit_kinds(actions: actions_pb2_grpc.ActionsServiceStub, action_id: str) -> list[str]:
    page = await actions.ListAuditEvents(A.ListAuditEventsRequest(tenant_id=TENANT, action_id=action_id))
    return [A.AuditEventKind.Name(e.kind).removeprefix("AUDIT_EVENT_KIND_") for e in page.events]


async def _next_agent_message(stream: Any) -> E.ThreadMessage:
    while True:
        event = await stream.read()
        if event.HasField("message") and event.message.message.role == AGENT:
            message: E.ThreadMessage = event.message
            return message


# --- the handoff shows the account activity ---------------------------------------------------


async def test_the_handoff_shows_the_records_read_and_the_action_awaiting_approval(
    office: httpx.AsyncClient, actions: actions_pb2_grpc.ActionsServiceStub, escalation: Stub
) -> None:
    order = _big_pending_order()
    action = await _awaiting_approval(actions, "conv-show", order)
    handoff = await _handoff(escalation, "conv-show")
    # Not stored with the package: CreateHandoff's copy has none.
    assert not handoff.context.HasField("account_activity")

    got = (await escalation.GetHandoff(E.GetHandoffRequest(tenant_id=TENANT, handoff_id=handoff.handoff_id))).handoff
    activity = got.context.account_activity
    assert activity.complete
    assert activity.verified_customer_id == order.user_id
    # The identity lookup verifies; the order was read twice and is listed once.
    assert [(r.tool, r.record_id) for r in activity.records] == [("get_order_details", order.order_id)]
    assert json.loads(activity.records[0].masked_arguments_json) == {"order_id": order.order_id}
    assert activity.records[0].HasField("read_at")
    [shown] = activity.actions
    assert (shown.action_id, shown.tool) == (action.action_id, "cancel_pending_order")
    assert shown.state == E.ACCOUNT_ACTION_STATE_AWAITING_APPROVAL
    assert shown.summary == action.summary and order.order_id in shown.summary
    assert any("$5,000" in reason for reason in shown.approval_reasons)
    assert shown.fingerprint == action.fingerprint and not shown.decided_by and not shown.error_message
    assert json.loads(shown.masked_arguments_json)["order_id"] == order.order_id


async def test_a_tenant_without_a_catalog_shows_empty_complete_activity(tmp_path: Path, escalation: Stub) -> None:
    created = (await escalation.CreateHandoff(handoff_request(key="k-demo", conversation_id="c-demo"))).handoff
    got = (await escalation.GetHandoff(E.GetHandoffRequest(tenant_id="demo", handoff_id=created.handoff_id))).handoff
    activity = got.context.account_activity
    assert activity.complete and not activity.records and not activity.actions and not activity.verified_customer_id


async def test_without_the_actions_service_the_handoff_is_served_marked_incomplete(tmp_path: Path) -> None:
    # An address where nothing listens: the actions service is down.
    settings = settings_for(tmp_path, actions_addr=f"127.0.0.1:{free_port()}", account_activity_timeout_s=1.0)
    async with running_stub(settings) as escalation:
        created = (await escalation.CreateHandoff(handoff_request(key="k", tenant=TENANT, conversation_id="c"))).handoff
        started = time.monotonic()
        got = await escalation.GetHandoff(E.GetHandoffRequest(tenant_id=TENANT, handoff_id=created.handoff_id))
        assert time.monotonic() - started < 5.0
    assert got.handoff.handoff_id == created.handoff_id
    activity = got.handoff.context.account_activity
    assert not activity.complete and not activity.actions and not activity.records


async def test_with_no_actions_service_configured_there_is_no_activity_and_no_decision(tmp_path: Path) -> None:
    async with running_stub(settings_for(tmp_path)) as escalation:
        created = (await escalation.CreateHandoff(handoff_request(key="k", tenant=TENANT, conversation_id="c"))).handoff
        got = await escalation.GetHandoff(E.GetHandoffRequest(tenant_id=TENANT, handoff_id=created.handoff_id))
        assert not got.handoff.context.HasField("account_activity")
        _, reason = await expect_error(
            escalation.DecideActionApproval(_decide("a-1", E.APPROVAL_CHOICE_APPROVE)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
    assert reason == "ACTIONS_NOT_CONFIGURED"


# --- approvals ----------------------------------------------------------------------------------


async def test_an_approval_runs_the_action_once_and_tells_the_customer_once(
    office: httpx.AsyncClient, actions: actions_pb2_grpc.ActionsServiceStub, any_escalation: Stub
) -> None:
    escalation = any_escalation
    conversation = f"conv-yes-{uuid.uuid4().hex[:8]}"
    order = _big_pending_order()
    action = await _awaiting_approval(actions, conversation, order)
    handoff = await _handoff(escalation, conversation)
    stream = escalation.WatchConversation(E.WatchConversationRequest(tenant_id=TENANT, conversation_id=conversation))

    # No handoff named: the newest handoff of the action's conversation is found.
    decided = await escalation.DecideActionApproval(_decide(action.action_id, E.APPROVAL_CHOICE_APPROVE))

    assert decided.action.state == E.ACCOUNT_ACTION_STATE_SUCCEEDED
    assert decided.action.decided_by == "ana"
    assert (await _order(office, order.order_id))["status"] == "cancelled"
    text = f"Good news: your request was approved and done: {action.summary}"
    assert decided.message.message.text == text
    assert (decided.message.author_id, decided.message.author_name) == ("ana", "Ana")
    assert decided.message.message.role == AGENT and decided.message.handoff_id == handoff.handoff_id
    # Stored as an agent's reply is: the customer's move next, the deciding agent on it.
    assert decided.handoff.state == E.HANDOFF_STATE_WAITING_ON_CUSTOMER
    assert decided.handoff.assigned_agent_id == "ana"
    # ...and pushed to the customer's open stream.
    pushed = await asyncio.wait_for(_next_agent_message(stream), timeout=10.0)
    assert pushed.message_id == decided.message.message_id and pushed.message.text == text
    stream.cancel()

    # A retried call (a double click, a lost answer): the same outcome, no second run, no second message.
    again = await escalation.DecideActionApproval(
        _decide(action.action_id, E.APPROVAL_CHOICE_APPROVE, handoff_id=handoff.handoff_id)
    )
    assert again.action.state == E.ACCOUNT_ACTION_STATE_SUCCEEDED
    assert again.message.message_id == decided.message.message_id
    assert [m.message.text for m in await _thread(escalation, conversation) if m.message.role == AGENT] == [text]
    kinds = await _audit_kinds(actions, action.action_id)
    assert kinds.count("EXECUTED") == 1 and kinds.count("APPROVED") == 1
    refunds = [p for p in (await _order(office, order.order_id))["payment_history"]
               if p["transaction_type"] == "refund"]
    assert len(refunds) == 1
    # Channels deliver it once too.
    assert await _delivered(escalation, conversation) == [decided.message.message_id]

    # The handoff view now shows the action done, and who approved it.
    got = (await escalation.GetHandoff(E.GetHandoffRequest(tenant_id=TENANT, handoff_id=handoff.handoff_id))).handoff
    [shown] = got.context.account_activity.actions
    assert (shown.state, shown.decided_by) == (E.ACCOUNT_ACTION_STATE_SUCCEEDED, "ana")

    # Decided one way, it cannot be decided the other.
    _, reason = await expect_error(
        escalation.DecideActionApproval(_decide(action.action_id, E.APPROVAL_CHOICE_REJECT)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason == "NOT_AWAITING_APPROVAL"
    assert len(await _thread(escalation, conversation)) == 1


async def test_a_rejection_changes_nothing_and_tells_the_customer_why(
    office: httpx.AsyncClient, actions: actions_pb2_grpc.ActionsServiceStub, escalation: Stub
) -> None:
    order = _big_pending_order()
    action = await _awaiting_approval(actions, "conv-no", order)
    handoff = await _handoff(escalation, "conv-no")
    note = "Orders this large are cancelled by phone; we will call you today."

    decided = await escalation.DecideActionApproval(
        _decide(action.action_id, E.APPROVAL_CHOICE_REJECT, handoff_id=handoff.handoff_id, name="", note=note)
    )

    assert decided.action.state == E.ACCOUNT_ACTION_STATE_REJECTED
    assert (await _order(office, order.order_id))["status"] == "pending"
    expected = f"Your request was not approved, so nothing was changed: {action.summary.rstrip('.')}. {note}"
    assert decided.message.message.text == expected
    assert decided.message.author_name == "Support agent"
    again = await escalation.DecideActionApproval(_decide(action.action_id, E.APPROVAL_CHOICE_REJECT, note=note))
    assert again.action.state == E.ACCOUNT_ACTION_STATE_REJECTED
    assert again.message.message_id == decided.message.message_id
    assert [m.message.text for m in await _thread(escalation, "conv-no")] == [expected]
    assert "EXECUTED" not in await _audit_kinds(actions, action.action_id)
    _, reason = await expect_error(
        escalation.DecideActionApproval(_decide(action.action_id, E.APPROVAL_CHOICE_APPROVE)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason == "NOT_AWAITING_APPROVAL"
    assert (await _order(office, order.order_id))["status"] == "pending"


async def test_an_approved_action_the_order_system_refuses_is_told_as_nothing_changed(
    office: httpx.AsyncClient, actions: actions_pb2_grpc.ActionsServiceStub, escalation: Stub
) -> None:
    order = _big_pending_order()
    action = await _awaiting_approval(actions, "conv-late", order)
    await _handoff(escalation, "conv-late")
    # Meanwhile the order was cancelled another way (on the phone): the policy no longer holds.
    cancelled = await office.post(f"/orders/{order.order_id.replace('#', '%23')}/cancel",
                                  json={"reason": "no longer needed"})
    cancelled.raise_for_status()

    decided = await escalation.DecideActionApproval(_decide(action.action_id, E.APPROVAL_CHOICE_APPROVE))

    assert decided.action.state == E.ACCOUNT_ACTION_STATE_FAILED
    assert decided.action.error_message
    assert decided.message.message.text == (
        "Your request was approved, but our order system could not do it, so nothing was changed: "
        f"{decided.action.error_message}"
    )
    assert "pending" in decided.action.error_message


async def test_a_decision_without_a_handoff_is_recorded_and_sends_nothing(
    office: httpx.AsyncClient, actions: actions_pb2_grpc.ActionsServiceStub, escalation: Stub
) -> None:
    order = _big_pending_order()
    action = await _awaiting_approval(actions, "conv-alone", order)
    decided = await escalation.DecideActionApproval(_decide(action.action_id, E.APPROVAL_CHOICE_REJECT))
    assert decided.action.state == E.ACCOUNT_ACTION_STATE_REJECTED
    assert not decided.HasField("message") and not decided.HasField("handoff")
    assert await _thread(escalation, "conv-alone") == []


async def test_refusals_say_what_is_wrong(
    office: httpx.AsyncClient, actions: actions_pb2_grpc.ActionsServiceStub, escalation: Stub
) -> None:
    order = _big_pending_order()
    action = await _awaiting_approval(actions, "conv-ref", order)
    other = await _handoff(escalation, "conv-other")
    approve = E.APPROVAL_CHOICE_APPROVE

    violations, _ = await expect_error(
        escalation.DecideActionApproval(E.DecideActionApprovalRequest(
            tenant_id="bad tenant", action_id="", choice=E.APPROVAL_CHOICE_UNSPECIFIED, agent_id="", note="x" * 1001,
            agent_name="n" * 201,
        )),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert {name for name, _ in violations} == {"tenant_id", "action_id", "choice", "agent_id", "note", "agent_name"}
    # An unknown action, or another tenant's.
    _, reason = await expect_error(
        escalation.DecideActionApproval(_decide("no-such-action", approve)), grpc.StatusCode.NOT_FOUND
    )
    assert reason == "ACTION_NOT_FOUND"
    _, reason = await expect_error(
        escalation.DecideActionApproval(_decide(action.action_id, approve, tenant="demo")), grpc.StatusCode.NOT_FOUND
    )
    assert reason == "ACTION_NOT_FOUND"
    # An unknown handoff, or a handoff of another conversation.
    _, reason = await expect_error(
        escalation.DecideActionApproval(_decide(action.action_id, approve, handoff_id="nope")),
        grpc.StatusCode.NOT_FOUND,
    )
    assert reason == "HANDOFF_NOT_FOUND"
    _, reason = await expect_error(
        escalation.DecideActionApproval(_decide(action.action_id, approve, handoff_id=other.handoff_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason == "ACTION_OF_ANOTHER_CONVERSATION"
    # None of it decided anything.
    still = (await actions.GetAction(A.GetActionRequest(tenant_id=TENANT, action_id=action.action_id))).action
    assert still.state == A.ACTION_STATE_AWAITING_APPROVAL
    assert (await _order(office, order.order_id))["status"] == "pending"


async def test_an_agent_cannot_approve_what_they_proposed(
    office: httpx.AsyncClient, actions: actions_pb2_grpc.ActionsServiceStub, escalation: Stub
) -> None:
    order = _big_pending_order()
    action = await _awaiting_approval(
        actions, "conv-self", order, proposer=A.Actor(kind=A.ACTOR_KIND_AGENT, id="ana")
    )
    _, reason = await expect_error(
        escalation.DecideActionApproval(_decide(action.action_id, E.APPROVAL_CHOICE_APPROVE)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason == "SELF_APPROVAL"
    decided = await escalation.DecideActionApproval(
        _decide(action.action_id, E.APPROVAL_CHOICE_APPROVE, agent="ben", name="Ben")
    )
    assert decided.action.state == E.ACCOUNT_ACTION_STATE_SUCCEEDED


async def test_an_unreachable_actions_service_is_unavailable(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, actions_addr=f"127.0.0.1:{free_port()}")
    async with running_stub(settings) as escalation:
        _, reason = await expect_error(
            escalation.DecideActionApproval(_decide("a-1", E.APPROVAL_CHOICE_APPROVE)), grpc.StatusCode.UNAVAILABLE
        )
    assert reason == "ACTIONS_UNAVAILABLE"


async def test_an_approval_while_the_order_system_is_down_is_unavailable_and_a_retry_settles_it(
    live_shop: LiveShop, office: httpx.AsyncClient, actions: actions_pb2_grpc.ActionsServiceStub, escalation: Stub
) -> None:
    order = _big_pending_order()
    action = await _awaiting_approval(actions, "conv-down", order)
    handoff = await _handoff(escalation, "conv-down")
    live_shop.stop()
    try:
        _, reason = await expect_error(
            escalation.DecideActionApproval(_decide(action.action_id, E.APPROVAL_CHOICE_APPROVE)),
            grpc.StatusCode.UNAVAILABLE,
        )
        assert reason == "CONNECTOR_UNAVAILABLE"
        # Nothing final to tell the customer; the agent sees it approved and still to run.
        assert await _thread(escalation, "conv-down") == []
        got = await escalation.GetHandoff(E.GetHandoffRequest(tenant_id=TENANT, handoff_id=handoff.handoff_id))
        [shown] = got.handoff.context.account_activity.actions
        assert (shown.state, shown.decided_by) == (E.ACCOUNT_ACTION_STATE_EXECUTING, "ana")
    finally:
        live_shop.start()
    # The agent approves again (or the actions service's own retry got there first): done once, told once.
    decided = await escalation.DecideActionApproval(_decide(action.action_id, E.APPROVAL_CHOICE_APPROVE))
    assert decided.action.state == E.ACCOUNT_ACTION_STATE_SUCCEEDED
    assert (await _order(office, order.order_id))["status"] == "cancelled"
    assert [m.message_id for m in await _thread(escalation, "conv-down")] == [decided.message.message_id]
    assert (await _audit_kinds(actions, action.action_id)).count("EXECUTED") == 1


async def test_an_agents_own_reply_cannot_take_an_outcome_messages_id(stub: Stub) -> None:
    created = (await stub.CreateHandoff(handoff_request(key="k"))).handoff
    violations, _ = await expect_error(
        stub.SubmitAgentReply(E.SubmitAgentReplyRequest(
            tenant_id="demo", handoff_id=created.handoff_id, agent_id="ana", final_text="Done.",
            client_message_id="action-outcome:a-1",
        )),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [name for name, _ in violations] == ["client_message_id"]
