"""The agents' side of the actions service through the gateway: a real actions server (in process,
the shop tenant's real catalog) in front of the real demo back office (`python -m demoshop`), the real
escalation service (which carries out an agent's decision and tells the customer), and the gateway on
real channels to them. The assistant's part (verify, propose, the customer's yes, the handoff) is
played over gRPC, as the concierge would; the agent's part (pending approvals, approve, reject, the
handoff's account activity, the audit trail) over HTTP, and the back office's state says what really
happened."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from aftercare.actions.v1 import actions_pb2, actions_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.type.v1 import customer_pb2
from gateway.keys import Role
from servicekit.server import serving
from services.actions.app import servicers
from services.actions.catalog import DEFAULT_CATALOG_DIR
from services.escalation.app import servicers as escalation_servicers
from tests.demoshop.live import TAU_RETAIL, LiveShop, needs_tau_retail
from tests.gateway.conftest import Mesh, bearer, open_gateway
from tests.services.actions.conftest import ASSISTANT, CUSTOMER, settings_for
from tests.services.escalation.conftest import FakeRetrieval, FakeTriage, fake_embed, handoff_request, llm_down
from tests.services.escalation.conftest import settings_for as escalation_settings_for

pytestmark = needs_tau_retail
TENANT = "shop"
APPROVAL_THRESHOLD = 5000.0




@dataclass(frozen=True)
class PendingOrder:
    order_id: str
    user_id: str
    email: str
    paid: float


@pytest.fixture(scope="module")
def big_pending_orders() -> list[PendingOrder]:
    """Pending orders whose refund on cancellation is above the catalog's approval threshold,
    each of another customer (one customer per conversation)."""
    orders = json.loads((TAU_RETAIL / "orders.json").read_text())
    users = json.loads((TAU_RETAIL / "users.json").read_text())
    found: dict[str, PendingOrder] = {}
    for order_id, order in orders.items():
        paid = sum(p["amount"] for p in order["payment_history"] if p["transaction_type"] == "payment")
        if order["status"] == "pending" and paid > APPROVAL_THRESHOLD and order["user_id"] not in found:
            user_id = order["user_id"]
            found[user_id] = PendingOrder(order_id, user_id, users[user_id]["email"], round(paid, 2))
    assert len(found) >= 2
    return list(found.values())


@pytest.fixture(scope="module")
def live_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveShop]:
    with LiveShop(tmp_path_factory.mktemp("demoshop")) as running:
        yield running


@pytest.fixture
async def office(live_shop: LiveShop) -> AsyncIterator[httpx.AsyncClient]:
    """The back office, reset to the data folder."""
    async with httpx.AsyncClient(base_url=live_shop.url, headers=live_shop.headers, timeout=30.0) as client:
        (await client.post("/admin/reset")).raise_for_status()
        yield client


@dataclass
class Actions:
    stub: actions_pb2_grpc.ActionsServiceStub
    address: str


@pytest.fixture
async def actions(
    tmp_path: Path, live_shop: LiveShop, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Actions]:
    # What the shop catalog reads: the back office's token and where it runs.
    monkeypatch.setenv("DEMOSHOP_TOKEN", live_shop.token)
    monkeypatch.setenv("SHOP_BACKOFFICE_URL", live_shop.url)
    async with (
        serving(settings_for(tmp_path / "actions", DEFAULT_CATALOG_DIR), servicers) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        yield Actions(actions_pb2_grpc.ActionsServiceStub(channel), f"127.0.0.1:{running.port}")


@dataclass
class Escalation:
    stub: escalation_pb2_grpc.EscalationServiceStub
    address: str


@pytest.fixture
async def escalation(tmp_path: Path, actions: Actions) -> AsyncIterator[Escalation]:
    """The real escalation service on the real actions server (its LLM down: extractive packages)."""
    factory = functools.partial(escalation_servicers, llm=llm_down(), retrieval=FakeRetrieval(),
                                triage=FakeTriage(), embed=fake_embed)
    settings = escalation_settings_for(tmp_path / "escalation", actions_addr=actions.address)
    async with (
        serving(settings, factory) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        yield Escalation(escalation_pb2_grpc.EscalationServiceStub(channel), f"127.0.0.1:{running.port}")


@asynccontextmanager
async def gateway_for(
    mesh: Mesh, actions: Actions | None, role: Role = Role.AGENT, escalation: Escalation | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway on the fake mesh for the other services, the real actions server and, when given,
    the real escalation service, as a key of the shop tenant with `role`."""
    real = {"escalation_addr": escalation.address} if escalation else {}
    settings = mesh.settings(actions_addr=actions.address if actions else "", **real)
    async with open_gateway(settings, key=mesh.key(role, TENANT)) as client:
        yield client


async def handoff_for(escalation: Escalation, conversation: str, action: actions_pb2.Action) -> escalation_pb2.Handoff:
    """The assistant's handoff of the conversation, as the concierge makes one for an approval:
    the action's summary, then a line with why approval is needed."""
    request = handoff_request(key=conversation, tenant=TENANT, conversation_id=conversation,
                              texts=("Please cancel my order.", "yes, cancel it"),
                              reason=escalation_pb2.HANDOFF_REASON_APPROVAL_REQUIRED)
    request.ai_attempt.candidate_answer = f"{action.summary}\n{' '.join(action.approval.reasons)}"
    request.ai_attempt.explanation = "action_awaiting_approval"
    return (await escalation.stub.CreateHandoff(request)).handoff


async def awaiting_approval(stub: actions_pb2_grpc.ActionsServiceStub, conversation: str,
                            order: PendingOrder) -> actions_pb2.Action:
    """The assistant's part: verify the customer, propose cancelling their big order, relay their yes."""
    verified = await stub.ExecuteRead(actions_pb2.ExecuteReadRequest(
        customer=customer_pb2.CustomerRef(tenant_id=TENANT), conversation_id=conversation,
        tool="find_user_id_by_email", arguments_json=json.dumps({"email": order.email}), actor=ASSISTANT))
    assert verified.verified_customer_id == order.user_id
    proposed = (await stub.ProposeAction(actions_pb2.ProposeActionRequest(
        customer=customer_pb2.CustomerRef(tenant_id=TENANT, customer_id=order.user_id), conversation_id=conversation,
        tool="cancel_pending_order",
        arguments_json=json.dumps({"order_id": order.order_id, "reason": "no longer needed"}),
        request_id=f"{conversation}-1", actor=ASSISTANT))).action
    confirmed: actions_pb2.Action = (await stub.ConfirmAction(actions_pb2.ConfirmActionRequest(
        tenant_id=TENANT, action_id=proposed.action_id, fingerprint=proposed.fingerprint,
        confirmation_text="yes, cancel it", actor=CUSTOMER, conversation_id=conversation))).action
    assert confirmed.state == actions_pb2.ACTION_STATE_AWAITING_APPROVAL
    return confirmed


async def order_record(office: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    response = await office.get(f"/orders/{order_id.lstrip('#')}")
    response.raise_for_status()
    record: dict[str, Any] = response.json()
    return record


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert "Traceback" not in response.text
    return body


async def test_an_agent_sees_a_pending_approval_approves_it_and_the_customer_is_told_once(
    mesh: Mesh, actions: Actions, escalation: Escalation, office: httpx.AsyncClient,
    big_pending_orders: list[PendingOrder],
) -> None:
    order = big_pending_orders[0]
    action = await awaiting_approval(actions.stub, "conv-approve", order)
    handoff = await handoff_for(escalation, "conv-approve", action)
    async with gateway_for(mesh, actions, escalation=escalation) as gateway:
        pending = await gateway.get(f"/v1/tenants/{TENANT}/actions/pending-approvals")
        assert pending.status_code == 200, pending.text
        (listed,) = pending.json()["actions"]
        assert listed["action_id"] == action.action_id
        assert (listed["tool"], listed["customer_id"], listed["state"]) == (
            "cancel_pending_order", order.user_id, "awaiting_approval"
        )
        assert listed["arguments"] == {"order_id": order.order_id, "reason": "no longer needed"}
        assert order.order_id in listed["summary"] and listed["summary"] == action.summary
        assert listed["approval"]["required"] is True
        assert any("5,000" in reason for reason in listed["approval"]["reasons"])
        assert listed["approval"]["decided_by"] == "" and listed["result"] is None
        # Nothing happened yet in the company's system.
        assert (await order_record(office, order.order_id))["status"] == "pending"

        # The handoff shows the customer's account: who was verified, and the action waiting.
        opened = (await gateway.get(f"/v1/tenants/{TENANT}/handoffs/{handoff.handoff_id}")).json()
        # What is to be approved and why, in words (the LLM is down: no summary of "yes, cancel it").
        assert opened["reason"] == "approval_required"
        assert opened["context"]["summary"] == f"Approval requested: {action.summary}"
        why = opened["context"]["ai_attempt_summary"]
        assert f'proposed "{action.summary}" and the customer said yes' in why
        assert all(reason.rstrip(".") in why for reason in action.approval.reasons) and "another customer" not in why
        activity = opened["context"]["account_activity"]
        assert (activity["verified_customer_id"], activity["complete"]) == (order.user_id, True)
        assert [(a["action_id"], a["state"]) for a in activity["actions"]] == [(action.action_id, "awaiting_approval")]

        by_conversation = await gateway.get(f"/v1/tenants/{TENANT}/actions", params={"conversation_id": "conv-approve"})
        assert [a["action_id"] for a in by_conversation.json()["actions"]] == [action.action_id]
        succeeded = await gateway.get(f"/v1/tenants/{TENANT}/actions", params={"state": "succeeded"})
        assert succeeded.json()["actions"] == []

        approved = await gateway.post(f"/v1/tenants/{TENANT}/actions/{action.action_id}:approve",
                                      json={"note": "checked the order", "agent_name": "Dana"})
        assert approved.status_code == 200, approved.text
        outcome = approved.json()
        # The agent is the key's holder (mesh.key names it "agent-shop").
        assert (outcome["action"]["state"], outcome["action"]["decided_by"]) == ("succeeded", "agent-shop")
        assert outcome["handoff_id"] == handoff.handoff_id
        told = outcome["message"]
        assert (told["role"], told["author_name"]) == ("agent", "Dana")
        assert "approved" in told["text"] and order.order_id in told["text"]
        assert (await order_record(office, order.order_id))["status"] == "cancelled"

        fetched = (await gateway.get(f"/v1/tenants/{TENANT}/actions/{action.action_id}")).json()
        assert (fetched["state"], fetched["attempts"], fetched["result"]["status"]) == ("succeeded", 1, "cancelled")
        assert (fetched["approval"]["decided_by"], fetched["approval"]["note"]) == ("agent-shop", "checked the order")
        assert (await gateway.get(f"/v1/tenants/{TENANT}/actions/pending-approvals")).json()["actions"] == []

        # A second click (or a retried request) gets the stored outcome: nothing runs twice, nothing is said twice.
        again = await gateway.post(f"/v1/tenants/{TENANT}/actions/{action.action_id}:approve", json={})
        assert (again.status_code, again.json()["action"]["state"]) == (200, "succeeded"), again.text
        after = (await gateway.get(f"/v1/tenants/{TENANT}/handoffs/{handoff.handoff_id}")).json()
        assert [m["text"] for m in after["thread"]].count(told["text"]) == 1
        assert after["context"]["account_activity"]["actions"][0]["state"] == "succeeded"
        # Rejecting what was approved is a conflict with its state.
        _problem(await gateway.post(f"/v1/tenants/{TENANT}/actions/{action.action_id}:reject", json={}), 409)
    assert (await order_record(office, order.order_id))["status"] == "cancelled"
    refunds = [p for p in (await order_record(office, order.order_id))["payment_history"]
               if p["transaction_type"] == "refund"]
    assert len(refunds) == 1


async def test_a_rejected_action_never_reaches_the_company_system(
    mesh: Mesh, actions: Actions, escalation: Escalation, office: httpx.AsyncClient,
    big_pending_orders: list[PendingOrder],
) -> None:
    order = big_pending_orders[1]
    action = await awaiting_approval(actions.stub, "conv-reject", order)
    async with gateway_for(mesh, actions, escalation=escalation) as gateway:
        rejected = await gateway.post(
            f"/v1/tenants/{TENANT}/actions/{action.action_id}:reject", json={"note": "refund too large for chat"}
        )
        assert rejected.status_code == 200, rejected.text
        outcome = rejected.json()
        assert (outcome["action"]["state"], outcome["action"]["decided_by"]) == ("rejected", "agent-shop")
        # No handoff in this conversation: the decision is recorded, nobody to tell.
        assert (outcome["message"], outcome["handoff_id"]) == (None, None)
        _problem(await gateway.post(f"/v1/tenants/{TENANT}/actions/{action.action_id}:approve", json={}), 409)
    assert (await order_record(office, order.order_id))["status"] == "pending"


async def test_the_audit_trail_of_a_conversation_masks_personal_data_and_exports_as_json_lines(
    mesh: Mesh, actions: Actions, escalation: Escalation, office: httpx.AsyncClient,
    big_pending_orders: list[PendingOrder],
) -> None:
    order = big_pending_orders[0]
    action = await awaiting_approval(actions.stub, "conv-audit", order)
    async with gateway_for(mesh, actions, escalation=escalation) as gateway:
        approved = await gateway.post(f"/v1/tenants/{TENANT}/actions/{action.action_id}:approve", json={"note": "ok"})
        assert approved.status_code == 200, approved.text
        trail = await gateway.get(f"/v1/tenants/{TENANT}/audit", params={"conversation_id": "conv-audit"})
        assert trail.status_code == 200, trail.text
        events = trail.json()["events"]
        kinds = [event["kind"] for event in events]
        assert kinds == ["identity_verified", "proposed", "confirmed", "approval_requested", "approved",
                         "executing", "executed"]
        assert [e["sequence"] for e in events] == sorted(e["sequence"] for e in events)
        assert events[0]["arguments"] == {"email": "[masked]"} and order.email not in trail.text
        approved = events[kinds.index("approved")]
        assert approved["actor"] == {"kind": "agent", "id": "agent-shop"} and approved["action_id"] == action.action_id
        assert events[kinds.index("confirmed")]["actor"]["kind"] == "customer"
        assert all(e["catalog_version"] for e in events)

        one_action = await gateway.get(f"/v1/tenants/{TENANT}/audit", params={"action_id": action.action_id})
        assert [e["kind"] for e in one_action.json()["events"]] == kinds[1:]
        by_customer = await gateway.get(f"/v1/tenants/{TENANT}/audit", params={"customer_id": order.user_id})
        assert len(by_customer.json()["events"]) == len(events)

        # The export is an admin's (like the feedback export), streamed as JSON Lines.
        _problem(await gateway.get(f"/v1/tenants/{TENANT}/audit:export"), 403)
        admin_key = mesh.key(Role.ADMIN, TENANT)
        exported = await gateway.get(f"/v1/tenants/{TENANT}/audit:export", params={"conversation_id": "conv-audit"},
                                     headers=bearer(admin_key))
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in exported.text.splitlines()]
        assert [line["kind"] for line in lines] == [f"AUDIT_EVENT_KIND_{kind.upper()}" for kind in kinds]
        assert order.email not in exported.text
        bad_range = await gateway.get(f"/v1/tenants/{TENANT}/audit:export", headers=bearer(admin_key),
                                      params={"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"})
        assert _problem(bad_range, 400)["errors"][0]["field"] == "until"


async def test_refusals_are_problems_with_the_right_status(
    mesh: Mesh, actions: Actions, escalation: Escalation
) -> None:
    async with gateway_for(mesh, actions, escalation=escalation) as gateway:
        unknown = _problem(await gateway.get(f"/v1/tenants/{TENANT}/actions/no-such-action"), 404)
        assert unknown["reason"] == "ACTION_NOT_FOUND"
        _problem(await gateway.post(f"/v1/tenants/{TENANT}/actions/no-such-action:approve", json={}), 404)
        # Another tenant's actions are not this key's to see.
        assert _problem(await gateway.get("/v1/tenants/demo/actions/pending-approvals"), 403)["reason"] == (
            "TENANT_FORBIDDEN"
        )
        bad = _problem(await gateway.get(f"/v1/tenants/{TENANT}/actions", params={"state": "done"}), 400)
        assert bad["reason"] == "INVALID_ARGUMENT"
        too_long = await gateway.post(f"/v1/tenants/{TENANT}/actions/a-1:reject", json={"note": "x" * 1001})
        _problem(too_long, 400)
        _problem(await gateway.post(f"/v1/tenants/{TENANT}/actions/a-1:reject", json={"agent_id": "me"}), 400)
    # A customer-facing key approves nothing.
    async with gateway_for(mesh, actions, Role.CHANNEL) as channel:
        for response in (
            await channel.get(f"/v1/tenants/{TENANT}/actions/pending-approvals"),
            await channel.post(f"/v1/tenants/{TENANT}/actions/a-1:approve", json={}),
            await channel.get(f"/v1/tenants/{TENANT}/audit"),
        ):
            assert _problem(response, 403)["reason"] == "ROLE_FORBIDDEN"


async def test_without_an_actions_service_the_routes_say_so_and_readiness_leaves_it_out(mesh: Mesh) -> None:
    async with gateway_for(mesh, None) as gateway:
        problem = _problem(await gateway.get(f"/v1/tenants/{TENANT}/actions/pending-approvals"), 503)
        assert problem["reason"] == "ACTIONS_NOT_CONFIGURED"
        ready = await gateway.get("/readyz")
        assert "actions" not in ready.json()["backends"]


async def test_readiness_names_an_actions_service_that_is_down(mesh: Mesh) -> None:
    gone = Actions(stub=None, address="127.0.0.1:1")  # type: ignore[arg-type]
    async with gateway_for(mesh, gone) as gateway:
        ready = await gateway.get("/readyz")
        body = _problem(ready, 503)
        assert "actions" in body["detail"]
        problem = _problem(await gateway.get(f"/v1/tenants/{TENANT}/actions"), 503)
        assert problem["detail"] == "A backend service is unavailable; retry later."


async def test_an_action_shows_its_arguments_masked_for_consoles(
    mesh: Mesh, actions: Actions, office: httpx.AsyncClient, big_pending_orders: list[PendingOrder]
) -> None:
    order = big_pending_orders[0]
    verified = await actions.stub.ExecuteRead(actions_pb2.ExecuteReadRequest(
        customer=customer_pb2.CustomerRef(tenant_id=TENANT), conversation_id="conv-mask",
        tool="find_user_id_by_email", arguments_json=json.dumps({"email": order.email}), actor=ASSISTANT))
    address = {"address1": "12 Secret Lane", "address2": "", "city": "Austin", "state": "TX", "country": "USA",
               "zip": "78701"}
    await actions.stub.ProposeAction(actions_pb2.ProposeActionRequest(
        customer=customer_pb2.CustomerRef(tenant_id=TENANT, customer_id=verified.verified_customer_id),
        conversation_id="conv-mask", tool="modify_user_address",
        arguments_json=json.dumps({"user_id": order.user_id, **address}), request_id="mask-1", actor=ASSISTANT))
    async with gateway_for(mesh, actions) as gateway:
        (listed,) = (await gateway.get(f"/v1/tenants/{TENANT}/actions", params={"conversation_id": "conv-mask"})
                     ).json()["actions"]
    assert listed["state"] == "proposed" and listed["approval"]["required"] is False
    assert listed["arguments"]["address1"] == "12 Secret Lane"
    masked = listed["masked_arguments"]
    assert (masked["address1"], masked["zip"], masked["city"]) == ("[masked]", "[masked]", "Austin")


def _small_pending_order(excluded_user: str = "") -> PendingOrder:
    """A pending order whose cancellation needs no approval, of a customer other than `excluded_user`."""
    orders = json.loads((TAU_RETAIL / "orders.json").read_text())
    users = json.loads((TAU_RETAIL / "users.json").read_text())
    for order_id, order in orders.items():
        paid = sum(p["amount"] for p in order["payment_history"] if p["transaction_type"] == "payment")
        if order["status"] == "pending" and paid < 1000 and order["user_id"] != excluded_user:
            user_id = order["user_id"]
            return PendingOrder(order_id, user_id, users[user_id]["email"], round(paid, 2))
    raise AssertionError("no small pending order in the data")


async def test_an_agent_verifies_reads_and_cancels_for_the_customer_on_the_copilot_path(
    mesh: Mesh, actions: Actions, escalation: Escalation, office: httpx.AsyncClient
) -> None:
    order = _small_pending_order()
    someone_else = _small_pending_order(excluded_user=order.user_id)
    conversation = f"/v1/tenants/{TENANT}/conversations/conv-copilot"
    async with gateway_for(mesh, actions, escalation=escalation) as gateway:
        tools = (await gateway.get(f"/v1/tenants/{TENANT}/tools")).json()["tools"]
        cancel = next(tool for tool in tools if tool["name"] == "cancel_pending_order")
        assert cancel["kind"] == "write" and "order_id" in cancel["arguments_schema"]["properties"]
        assert any(tool["verifies_identity"] for tool in tools)

        # Nothing of the customer's before they are verified in the conversation.
        early = await gateway.post(f"{conversation}/records:read", json={
            "tool": "get_order_details", "arguments": {"order_id": order.order_id}, "customer_id": order.user_id})
        assert _problem(early, 409)["reason"] == "IDENTITY_NOT_VERIFIED"
        verified = await gateway.post(f"{conversation}/records:read", json={
            "tool": "find_user_id_by_email", "arguments": {"email": order.email}})
        assert verified.status_code == 200, verified.text
        assert verified.json()["verified_customer_id"] == order.user_id

        read = await gateway.post(f"{conversation}/records:read", json={
            "tool": "get_order_details", "arguments": {"order_id": order.order_id}, "customer_id": order.user_id})
        assert read.status_code == 200, read.text
        assert (read.json()["record"]["status"], read.json()["source"]["record_id"]) == ("pending", order.order_id)
        # Another customer's order is refused, to an agent as to the assistant.
        theirs = await gateway.post(f"{conversation}/actions", json={
            "tool": "cancel_pending_order", "customer_id": order.user_id, "request_id": "cp-theirs",
            "arguments": {"order_id": someone_else.order_id, "reason": "no longer needed"}})
        assert _problem(theirs, 403)["detail"]

        proposed = await gateway.post(f"{conversation}/actions", json={
            "tool": "cancel_pending_order", "arguments": {"order_id": order.order_id, "reason": "ordered by mistake"},
            "customer_id": order.user_id, "request_id": "cp-1"})
        assert proposed.status_code == 200, proposed.text
        action = proposed.json()
        assert (action["state"], action["approval"]["required"]) == ("proposed", False)
        assert order.order_id in action["summary"]
        # Nothing is done before the confirmation; a wrong fingerprint does nothing either.
        assert (await order_record(office, order.order_id))["status"] == "pending"
        wrong = await gateway.post(f"/v1/tenants/{TENANT}/actions/{action['action_id']}:confirm",
                                   json={"conversation_id": "conv-copilot", "fingerprint": "0" * 64})
        assert _problem(wrong, 409)["reason"] == "CONFIRMATION_MISMATCH"

        ran = await gateway.post(f"/v1/tenants/{TENANT}/actions/{action['action_id']}:confirm",
                                 json={"conversation_id": "conv-copilot", "fingerprint": action["fingerprint"]})
        assert ran.status_code == 200, ran.text
        assert (ran.json()["state"], ran.json()["attempts"]) == ("succeeded", 1)
        assert (await order_record(office, order.order_id))["status"] == "cancelled"
        again = await gateway.post(f"/v1/tenants/{TENANT}/actions/{action['action_id']}:confirm",
                                   json={"conversation_id": "conv-copilot", "fingerprint": action["fingerprint"]})
        assert (again.json()["state"], again.json()["attempts"]) == ("succeeded", 1)
        # A cancelled order cannot be cancelled again: the policy's precondition, in the problem's words.
        twice = await gateway.post(f"{conversation}/actions", json={
            "tool": "cancel_pending_order", "arguments": {"order_id": order.order_id, "reason": "ordered by mistake"},
            "customer_id": order.user_id, "request_id": "cp-2"})
        assert _problem(twice, 409)["detail"]

        trail = (await gateway.get(f"/v1/tenants/{TENANT}/audit", params={"action_id": action["action_id"]})).json()
        confirmed = next(event for event in trail["events"] if event["kind"] == "confirmed")
        assert confirmed["actor"] == {"kind": "agent", "id": "agent-shop"}
