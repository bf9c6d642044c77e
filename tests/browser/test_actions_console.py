"""The agent console's actions, clicked through in headless Chromium: an action the customer said
yes to waits for approval, the agent approves it with one click, and the demo company's real back
office (`python -m demoshop`) has cancelled the order; the handoff view shows the conversation's
actions with their audit trail. A real actions server (the shop catalog) runs beside the gateway;
the other services are the fake mesh."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import uvicorn
from google.protobuf.timestamp_pb2 import Timestamp

from aftercare.actions.v1 import actions_pb2, actions_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import conversation_pb2, customer_pb2
from gateway.app import create_app
from gateway.backends import Backends
from gateway.keys import Role
from servicekit.server import serving
from services.actions.app import servicers
from services.actions.catalog import DEFAULT_CATALOG_DIR
from services.actions.settings import ActionsSettings
from tests.demoshop.live import TAU_RETAIL, LiveShop, needs_tau_retail
from tests.gateway.conftest import start_mesh
from tests.gateway.live import LiveGateway
from tests.services.actions.conftest import ASSISTANT, CUSTOMER, settings_for

pytestmark = needs_tau_retail
TENANT = "shop"
CONVERSATION = "conv-browser"




class LiveActionsGateway(LiveGateway):
    """LiveGateway with a real actions server on the same event loop."""

    def __init__(self, keys_path: Path, actions_settings: ActionsSettings) -> None:
        super().__init__(keys_path)
        self.actions_settings = actions_settings
        self.actions_address = ""

    async def _serve(self) -> None:
        async with serving(self.actions_settings, servicers) as actions, start_mesh(self.keys_path) as mesh:
            self.mesh = mesh
            self.actions_address = f"127.0.0.1:{actions.port}"
            settings = mesh.settings(port=self.port, actions_addr=self.actions_address, **self.overrides)
            backends = Backends.connect(settings)
            config = uvicorn.Config(
                create_app(settings, backends), host="127.0.0.1", port=self.port, log_config=None, access_log=False
            )
            self._server = uvicorn.Server(config)
            served = asyncio.create_task(self._server.serve())
            while not self._server.started and not served.done():  # noqa: ASYNC110 (uvicorn has only a flag)
                await asyncio.sleep(0.02)
            self._ready.set()
            try:
                await served
            finally:
                await backends.close()


@pytest.fixture(scope="module")
def live_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveShop]:
    with LiveShop(tmp_path_factory.mktemp("demoshop")) as running:
        yield running


@pytest.fixture
def live(tmp_path: Path, live_shop: LiveShop, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveActionsGateway]:
    monkeypatch.setenv("DEMOSHOP_TOKEN", live_shop.token)
    monkeypatch.setenv("SHOP_BACKOFFICE_URL", live_shop.url)
    with live_shop.client() as office:
        office.post("/admin/reset").raise_for_status()
    gateway = LiveActionsGateway(tmp_path / "api_keys.json", settings_for(tmp_path / "actions", DEFAULT_CATALOG_DIR))
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def _big_pending_order() -> tuple[str, str, str]:
    """(order id, user id, email) of a pending order whose cancellation refunds more than $5,000."""
    orders = json.loads((TAU_RETAIL / "orders.json").read_text())
    users = json.loads((TAU_RETAIL / "users.json").read_text())
    for order_id, order in orders.items():
        paid = sum(p["amount"] for p in order["payment_history"] if p["transaction_type"] == "payment")
        if order["status"] == "pending" and paid > 5000:
            return order_id, order["user_id"], users[order["user_id"]]["email"]
    raise AssertionError("no pending order above $5,000 in the data")


def _propose_and_confirm(address: str, order_id: str, email: str) -> actions_pb2.Action:
    """The assistant's part, over gRPC as the concierge does it: verify, propose, the customer's yes."""
    with grpc.insecure_channel(address) as channel:
        stub = actions_pb2_grpc.ActionsServiceStub(channel)
        verified = stub.ExecuteRead(actions_pb2.ExecuteReadRequest(
            customer=customer_pb2.CustomerRef(tenant_id=TENANT), conversation_id=CONVERSATION,
            tool="find_user_id_by_email", arguments_json=json.dumps({"email": email}), actor=ASSISTANT), timeout=30)
        proposed = stub.ProposeAction(actions_pb2.ProposeActionRequest(
            customer=customer_pb2.CustomerRef(tenant_id=TENANT, customer_id=verified.verified_customer_id),
            conversation_id=CONVERSATION, tool="cancel_pending_order", request_id="r-1", actor=ASSISTANT,
            arguments_json=json.dumps({"order_id": order_id, "reason": "ordered by mistake"})), timeout=30).action
        confirmed: actions_pb2.Action = stub.ConfirmAction(actions_pb2.ConfirmActionRequest(
            tenant_id=TENANT, action_id=proposed.action_id, fingerprint=proposed.fingerprint, confirmation_text="yes",
            actor=CUSTOMER, conversation_id=CONVERSATION), timeout=30).action
    assert confirmed.state == actions_pb2.ACTION_STATE_AWAITING_APPROVAL
    return confirmed


def _handoff(user_id: str) -> escalation_pb2.Handoff:
    created = Timestamp()
    created.FromDatetime(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    return escalation_pb2.Handoff(
        handoff_id="ho-shop-1",
        customer=customer_pb2.CustomerRef(tenant_id=TENANT, customer_id=user_id),
        conversation=conversation_pb2.Conversation(
            conversation_id=CONVERSATION, channel=conversation_pb2.CHANNEL_CHAT,
            messages=[conversation_pb2.Message(role=conversation_pb2.ROLE_CUSTOMER, text="Please cancel my order.")],
        ),
        reason=escalation_pb2.HANDOFF_REASON_LOW_CONFIDENCE, queue="orders", priority=50,
        state=escalation_pb2.HANDOFF_STATE_WAITING, version=1, created_at=created,
        context=escalation_pb2.ContextPackage(summary="Customer wants a large order cancelled."),
    )


def test_an_agent_approves_a_pending_action_in_one_click_and_sees_its_audit_trail(
    page: Any, live: LiveActionsGateway, live_shop: LiveShop, artifacts: Path
) -> None:
    order_id, user_id, email = _big_pending_order()
    action = _propose_and_confirm(live.actions_address, order_id, email)
    live.mesh.escalation.list_handoffs.outcome = escalation_pb2.ListHandoffsResponse(handoffs=[_handoff(user_id)])
    live.mesh.escalation.get_handoff.outcome = escalation_pb2.GetHandoffResponse(handoff=_handoff(user_id))

    page.goto(f"{live.url}/console/agent.html")
    page.get_by_label("API key").fill(live.mesh.key(Role.AGENT, TENANT))
    page.get_by_role("button", name="Use key").click()
    page.wait_for_selector("header.top .who >> text=tenant shop")

    item = page.locator(f"#approvals li[data-action-id='{action.action_id}']")
    item.wait_for()
    text = item.inner_text()
    assert "cancel pending order" in text and user_id in text and order_id in text
    assert "$5,000" in text, "why it needs approval"
    assert action.summary in text
    assert page.locator("#approval-count").inner_text() == "1"
    page.screenshot(path=str(artifacts / "actions-pending-approval.png"), full_page=True)

    item.get_by_label("Note").fill("large refund checked")
    item.get_by_role("button", name="Approve").click()
    item.locator("text=Approved: done.").wait_for()
    with live_shop.client() as office:
        assert office.get(f"/orders/{order_id.lstrip('#')}").json()["status"] == "cancelled"
    page.locator("#approvals >> text=Nothing waiting for approval.").wait_for()

    page.locator("#queue li[data-id='ho-shop-1']").click()
    card = page.locator("#conversation-actions")
    card.locator(f"li[data-action-id='{action.action_id}'] .action-state >> text=done").wait_for()
    card.locator("summary >> text=Audit trail").click()
    trail = card.inner_text()
    assert "Approved by agent-shop: large refund checked" in trail
    for step in ("proposed", "customer said yes", "approval requested", "approved", "executed"):
        assert step in trail, step
    card.locator("summary >> text=Reads and verifications").click()
    assert "identity verified find_user_id_by_email" in card.inner_text()
    assert email not in page.content(), "personal data stays masked in the console"
    page.screenshot(path=str(artifacts / "actions-handoff-audit.png"), full_page=True)
    # What the agent clicked went to the actions service as the key's holder.
    agent_key = {"authorization": f"Bearer {live.mesh.key(Role.AGENT, TENANT)}"}
    with httpx.Client(base_url=live.url, headers=agent_key) as api:
        done = api.get(f"/v1/tenants/{TENANT}/actions/{action.action_id}").json()
    assert (done["state"], done["approval"]["decided_by"], done["approval"]["note"]) == (
        "succeeded", "agent-shop", "large refund checked"
    )
