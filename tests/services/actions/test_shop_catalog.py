"""The `shop` tenant's catalog against the demo company's real back office (demoshop/):
τ-bench's ground-truth writes go through the actions service (verification,
proposal with the policy's preconditions, the customer's yes) and leave the back
office exactly as τ-bench's own replay does; every policy rule refuses what it must."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from aftercare.actions.v1 import actions_pb2
from aftercare.type.v1 import customer_pb2
from servicekit.errors import details_from_rpc_error
from services.actions.catalog import DEFAULT_CATALOG_DIR
from services.actions.errors import precondition_failures
from tests.demoshop.live import TAU_RETAIL, LiveShop, needs_tau_retail
from tests.services.actions.conftest import ASSISTANT, CUSTOMER, Stub, running_stub, settings_for, state

pytestmark = needs_tau_retail
TENANT = "shop"
# tasks_dev whole, and a fixed sample of tasks_train (every 10th task).
TRAIN_SAMPLE_EVERY = 10


@pytest.fixture(scope="module")
def live_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveShop]:
    with LiveShop(tmp_path_factory.mktemp("demoshop")) as running:
        yield running


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    return {name: json.loads((TAU_RETAIL / f"{name}.json").read_text()) for name in ("users", "orders", "products")}


@pytest.fixture
async def office(live_shop: LiveShop) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_shop.url, headers=live_shop.headers, timeout=30.0) as client:
        (await client.post("/admin/reset")).raise_for_status()
        yield client


@pytest.fixture
async def stub(tmp_path: Path, live_shop: LiveShop, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stub]:
    monkeypatch.setenv("DEMOSHOP_TOKEN", live_shop.token)
    monkeypatch.setenv("SHOP_BACKOFFICE_URL", live_shop.url)
    async with running_stub(settings_for(tmp_path, DEFAULT_CATALOG_DIR)) as running:
        yield running


class Conversation:
    def __init__(self, stub: Stub, conversation_id: str) -> None:
        self.stub, self.id, self.customer_id = stub, conversation_id, ""
        self.requests = itertools.count()

    async def verify_email(self, email: str) -> str:
        found = await self.read("find_user_id_by_email", email=email)
        self.customer_id = found.verified_customer_id
        return self.customer_id

    async def read(self, tool: str, **arguments: Any) -> actions_pb2.ExecuteReadResponse:
        return await self.stub.ExecuteRead(actions_pb2.ExecuteReadRequest(
            customer=customer_pb2.CustomerRef(tenant_id=TENANT, customer_id=self.customer_id),
            conversation_id=self.id, tool=tool, arguments_json=json.dumps(arguments), actor=ASSISTANT))

    async def propose(self, tool: str, **arguments: Any) -> actions_pb2.Action:
        response = await self.stub.ProposeAction(actions_pb2.ProposeActionRequest(
            customer=customer_pb2.CustomerRef(tenant_id=TENANT, customer_id=self.customer_id),
            conversation_id=self.id, tool=tool, arguments_json=json.dumps(arguments),
            request_id=f"req-{next(self.requests)}", actor=ASSISTANT))
        return response.action

    async def confirm(self, action: actions_pb2.Action) -> actions_pb2.Action:
        response = await self.stub.ConfirmAction(actions_pb2.ConfirmActionRequest(
            tenant_id=TENANT, action_id=action.action_id, fingerprint=action.fingerprint, confirmation_text="yes",
            actor=CUSTOMER, conversation_id=self.id))
        return response.action

    async def approve(self, action: actions_pb2.Action) -> actions_pb2.Action:
        response = await self.stub.DecideApproval(actions_pb2.DecideApprovalRequest(
            tenant_id=TENANT, action_id=action.action_id, decision=actions_pb2.APPROVAL_DECISION_APPROVE,
            agent_id="agent-1", note="checked"))
        return response.action

    async def refused(self, tool: str, **arguments: Any) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await self.propose(tool, **arguments)
        return caught.value


def _tasks() -> list[dict[str, Any]]:
    if not (TAU_RETAIL / "tasks_dev.jsonl").exists():
        return []
    dev = [json.loads(line) for line in (TAU_RETAIL / "tasks_dev.jsonl").read_text().splitlines() if line.strip()]
    train = [json.loads(line) for line in (TAU_RETAIL / "tasks_train.jsonl").read_text().splitlines() if line.strip()]
    return dev + train[::TRAIN_SAMPLE_EVERY]


def _batches(tasks: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Tasks of different customers touch different records (orders and gift cards belong to
    one customer), so a batch of them replays to the same state in any order."""
    batches: list[list[dict[str, Any]]] = []
    for task in tasks:
        home = next((b for b in batches if all(t["user_id"] != task["user_id"] for t in b)), None)
        if home is None:
            batches.append([task])
        else:
            home.append(task)
    return batches


async def test_ground_truth_writes_leave_the_same_state_as_tau_bench(
    stub: Stub, office: httpx.AsyncClient, data: dict[str, Any]
) -> None:
    tasks = _tasks()
    assert len(tasks) >= 60
    differences: list[str] = []
    for number, batch in enumerate(_batches(tasks)):
        (await office.post("/admin/reset")).raise_for_status()
        actions = [action for task in batch for action in task["actions"]]
        expected = (await office.post("/admin/replay", json={"actions": actions})).json()
        outcomes = iter(expected["results"])
        for index, task in enumerate(batch):
            talk = Conversation(stub, f"batch-{number}-task-{index}")
            assert await talk.verify_email(data["users"][task["user_id"]]["email"]) == task["user_id"]
            for action in task["actions"]:
                accepted_by_tau = next(outcomes)["ok"]
                try:
                    proposed = await talk.propose(action["name"], **action["kwargs"])
                    done = await talk.confirm(proposed)
                    if state(done) == "AWAITING_APPROVAL":
                        done = await talk.approve(done)
                    ours = state(done) == "SUCCEEDED"
                    why = done.error.message
                except grpc.aio.AioRpcError as error:
                    ours, why = False, f"{error.code().name} {error.details()}"
                if ours != accepted_by_tau:
                    differences.append(
                        f"{action['name']} {action['kwargs']}: tau {accepted_by_tau}, ours {ours}: {why}"
                    )
        digest = (await office.get("/state/digest")).json()["sha256"]
        if digest != expected["sha256"]:
            differences.append(f"batch {number}: the final state differs from the ground truth's")
    assert differences == [], "\n".join(differences)


def _find_order(data: dict[str, Any], status: str, **conditions: Any) -> dict[str, Any]:
    for order in data["orders"].values():
        if order["status"] == status and all(check(order) for check in conditions.values()):
            return dict(order)
    raise AssertionError(f"no {status} order in the data")


async def _conversation(stub: Stub, data: dict[str, Any], order: dict[str, Any], name: str) -> Conversation:
    talk = Conversation(stub, name)
    await talk.verify_email(data["users"][order["user_id"]]["email"])
    return talk


def _reasons(error: grpc.aio.AioRpcError) -> list[str]:
    return [subject for subject, _ in precondition_failures(error)]


async def test_each_policy_rule_is_enforced_in_code(
    stub: Stub, office: httpx.AsyncClient, data: dict[str, Any]
) -> None:
    before = (await office.get("/state/digest")).json()["sha256"]
    delivered = _find_order(data, "delivered")
    talk = await _conversation(stub, data, delivered, "rules-1")
    error = await talk.refused("cancel_pending_order", order_id=delivered["order_id"], reason="no longer needed")
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and _reasons(error) == ["order_is_pending"]
    assert "delivered" in (error.details() or "")
    error = await talk.refused("modify_pending_order_address", order_id=delivered["order_id"], address1="1 A St",
                               address2="", city="Austin", state="TX", country="USA", zip="78701")
    assert _reasons(error) == ["order_is_pending"]
    # A refund goes to the original payment method or a gift card, nowhere else.
    user = data["users"][delivered["user_id"]]
    original = delivered["payment_history"][0]["payment_method_id"]
    others = [m for m, v in user["payment_methods"].items() if m != original and v["source"] != "gift_card"]
    item = delivered["items"][0]["item_id"]
    if others:
        error = await talk.refused("return_delivered_order_items", order_id=delivered["order_id"], item_ids=[item],
                                   payment_method_id=others[0])
        assert _reasons(error) == ["refund_to_original_or_gift_card"]
    error = await talk.refused("return_delivered_order_items", order_id=delivered["order_id"],
                               item_ids=["0000000000"], payment_method_id=original)
    assert _reasons(error) == ["items_in_order"]
    # Another customer's payment method is never used.
    stranger = next(m for u, v in data["users"].items() if u != delivered["user_id"] for m in v["payment_methods"])
    error = await talk.refused("return_delivered_order_items", order_id=delivered["order_id"], item_ids=[item],
                               payment_method_id=stranger)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    # Another customer's order is never read.
    foreign = next(o for o in data["orders"].values() if o["user_id"] != delivered["user_id"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await talk.read("get_order_details", order_id=foreign["order_id"])
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await office.get("/state/digest")).json()["sha256"] == before


async def test_items_change_once_and_need_a_same_product_available_option(
    stub: Stub, office: httpx.AsyncClient, data: dict[str, Any]
) -> None:
    def swappable(order: dict[str, Any]) -> bool:
        item = order["items"][0]
        variants = data["products"][item["product_id"]]["variants"]
        return any(v["available"] and k != item["item_id"] for k, v in variants.items())

    pending = _find_order(data, "pending", swappable=swappable)
    item = pending["items"][0]
    variants = data["products"][item["product_id"]]["variants"]
    new_item = next(k for k, v in variants.items() if v["available"] and k != item["item_id"])
    unavailable = next((k for k, v in variants.items() if not v["available"]), None)
    user = data["users"][pending["user_id"]]
    method = pending["payment_history"][0]["payment_method_id"]
    talk = await _conversation(stub, data, pending, "items-1")
    if unavailable is not None:
        error = await talk.refused("modify_pending_order_items", order_id=pending["order_id"],
                                   item_ids=[item["item_id"]], new_item_ids=[unavailable], payment_method_id=method)
        assert "new_items_same_product_available" in _reasons(error)
    # An item of another product is refused as well.
    other_product = next(p for p in data["products"].values() if p["product_id"] != item["product_id"])
    error = await talk.refused("modify_pending_order_items", order_id=pending["order_id"],
                               item_ids=[item["item_id"]], new_item_ids=[next(iter(other_product["variants"]))],
                               payment_method_id=method)
    assert "new_items_same_product_available" in _reasons(error)
    # A gift card without the balance for the difference is refused before anything is sent.
    cards = [m for m, v in user["payment_methods"].items() if v["source"] == "gift_card"]
    difference = variants[new_item]["price"] - item["price"]
    for card in cards:
        if user["payment_methods"][card]["balance"] < difference:
            error = await talk.refused("modify_pending_order_items", order_id=pending["order_id"],
                                       item_ids=[item["item_id"]], new_item_ids=[new_item], payment_method_id=card)
            assert _reasons(error) == ["gift_card_covers_difference"]
    action = await talk.propose("modify_pending_order_items", order_id=pending["order_id"],
                                item_ids=[item["item_id"]], new_item_ids=[new_item], payment_method_id=method)
    assert "only once" in action.summary and item["name"] in action.summary
    done = await talk.confirm(action)
    assert state(done) == "SUCCEEDED", done.error
    assert json.loads(done.result_json)["status"] == "pending (item modified)"
    # A second change of the same order is refused by the policy, not only by the back office.
    error = await talk.refused("modify_pending_order_items", order_id=pending["order_id"],
                               item_ids=[new_item], new_item_ids=[item["item_id"]], payment_method_id=method)
    assert _reasons(error)[0] == "order_is_pending"
    error = await talk.refused("cancel_pending_order", order_id=pending["order_id"], reason="ordered by mistake")
    assert _reasons(error) == ["order_is_pending"]


async def test_a_second_exchange_of_one_order_is_refused(
    stub: Stub, office: httpx.AsyncClient, data: dict[str, Any]
) -> None:
    def exchangeable(order: dict[str, Any]) -> bool:
        item = order["items"][0]
        variants = data["products"][item["product_id"]]["variants"]
        return any(v["available"] and k != item["item_id"] for k, v in variants.items())

    delivered = _find_order(data, "delivered", exchangeable=exchangeable)
    item = delivered["items"][0]
    variants = data["products"][item["product_id"]]["variants"]
    new_item = next(k for k, v in variants.items() if v["available"] and k != item["item_id"])
    method = delivered["payment_history"][0]["payment_method_id"]
    talk = await _conversation(stub, data, delivered, "exchange-1")
    done = await talk.confirm(await talk.propose(
        "exchange_delivered_order_items", order_id=delivered["order_id"], item_ids=[item["item_id"]],
        new_item_ids=[new_item], payment_method_id=method))
    assert state(done) == "SUCCEEDED", done.error
    error = await talk.refused("exchange_delivered_order_items", order_id=delivered["order_id"],
                               item_ids=[item["item_id"]], new_item_ids=[new_item], payment_method_id=method)
    assert _reasons(error) == ["order_is_delivered"] and details_from_rpc_error(error).reason == "PRECONDITION_FAILED"
    error = await talk.refused("return_delivered_order_items", order_id=delivered["order_id"],
                               item_ids=[item["item_id"]], payment_method_id=method)
    assert _reasons(error) == ["order_is_delivered"]


async def test_reads_answer_from_the_customers_own_records_with_a_source(
    stub: Stub, office: httpx.AsyncClient, data: dict[str, Any]
) -> None:
    order = _find_order(data, "processed")
    user = data["users"][order["user_id"]]
    talk = Conversation(stub, "reads-1")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await talk.read("get_order_details", order_id=order["order_id"])
    assert details_from_rpc_error(caught.value).reason == "IDENTITY_NOT_VERIFIED"
    found = await talk.read("find_user_id_by_name_zip", first_name=user["name"]["first_name"],
                            last_name=user["name"]["last_name"], zip=user["address"]["zip"])
    assert found.verified_customer_id == order["user_id"]
    talk.customer_id = found.verified_customer_id
    record = await talk.read("get_order_details", order_id=order["order_id"])
    assert json.loads(record.record_json)["fulfillments"] == order["fulfillments"]
    assert record.source.record_id == order["order_id"] and record.source.catalog_version.startswith("2026-12-07.1")
    profile = json.loads((await talk.read("get_user_details", user_id=order["user_id"])).record_json)
    assert profile["orders"] == user["orders"] and profile["email"] == user["email"]
    product = json.loads((await talk.read("get_product_details", product_id=order["items"][0]["product_id"]))
                         .record_json)
    assert product["product_id"] == order["items"][0]["product_id"]
    assert len(json.loads((await talk.read("list_all_product_types")).record_json)) == 50


async def test_fifty_concurrent_yeses_cancel_once_on_the_real_back_office(
    stub: Stub, office: httpx.AsyncClient, data: dict[str, Any]
) -> None:
    pending = _find_order(data, "pending", single_payment=lambda o: len(o["payment_history"]) == 1)
    talk = await _conversation(stub, data, pending, "concurrent-1")
    action = await talk.propose("cancel_pending_order", order_id=pending["order_id"], reason="ordered by mistake")
    outcomes = await asyncio.gather(*(talk.confirm(action) for _ in range(50)))
    assert {state(o) for o in outcomes} == {"SUCCEEDED"}
    order = json.loads((await talk.read("get_order_details", order_id=pending["order_id"])).record_json)
    # One refund per payment: the cancellation ran once.
    assert order["status"] == "cancelled"
    assert [p["transaction_type"] for p in order["payment_history"]] == ["payment", "refund"]
    listed = await stub.ListAuditEvents(actions_pb2.ListAuditEventsRequest(
        tenant_id=TENANT, action_id=action.action_id))
    assert [actions_pb2.AuditEventKind.Name(e.kind) for e in listed.events].count("AUDIT_EVENT_KIND_EXECUTED") == 1
