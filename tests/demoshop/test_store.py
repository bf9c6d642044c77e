"""The back office's store in process: the data loaded exactly, each τ-bench write's effect, and every
precondition refusing with τ-bench's message and leaving the state as it was."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from demoshop import records
from demoshop.loader import DataError
from demoshop.store import Shop, WriteResult
from demoshop.tools import TOOLS
from tests.demoshop import examples
from tests.demoshop.live import TAU_RETAIL, needs_tau_retail

pytestmark = needs_tau_retail


def run(shop: Shop, tool: str, **kwargs: Any) -> WriteResult:
    return shop.write(lambda conn: TOOLS[tool](conn, **kwargs))


def order(shop: Shop, order_id: str) -> dict[str, Any]:
    found: dict[str, Any] | None = shop.read(lambda conn: records.order_record(conn, order_id))
    assert found is not None
    return found


def balance(shop: Shop, user_id: str, method_id: str) -> float:
    user = shop.read(lambda conn: records.user_record(conn, user_id))
    return float(user["payment_methods"][method_id]["balance"])


ADDRESS = {
    "address1": "1 Test Street",
    "address2": "Apt 2",
    "city": "Testville",
    "state": "TX",
    "country": "USA",
    "zip": "75001",
}


def test_the_store_gives_back_the_data_exactly(shop: Shop, source: dict[str, Any]) -> None:
    state = shop.export()
    assert state["users"] == source["users"]
    assert state["orders"] == source["orders"]
    assert shop.read(records.load_products) == source["products"]
    assert len(shop.read(records.product_types)) == 50


def test_the_data_is_loaded_once_and_reset_reloads_it(tmp_path: Path, source: dict[str, Any]) -> None:
    pending = examples.first_order(source, lambda o: o["status"] == "pending")
    first = Shop(tmp_path / "shop.db", TAU_RETAIL)
    assert first.prepare() is True
    pristine = first.digest()
    assert run(first, "cancel_pending_order", order_id=pending["order_id"], reason="no longer needed").status == 200
    first.close()

    again = Shop(tmp_path / "shop.db", TAU_RETAIL)
    assert again.prepare() is False  # kept, with the change
    assert order(again, pending["order_id"])["status"] == "cancelled"
    assert again.prepare(reset=True) is True
    assert again.digest() == pristine
    assert again.reset() == pristine
    again.close()


def test_concurrent_first_starts_load_the_data_once(tmp_path: Path) -> None:
    shops = [Shop(tmp_path / "shop.db", TAU_RETAIL) for _ in range(4)]
    loaded: list[bool] = []
    threads = [threading.Thread(target=lambda s=s: loaded.append(s.prepare())) for s in shops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(loaded) == [False, False, False, True]
    assert len(shops[0].export()["orders"]) == 1000
    for made in shops:
        made.close()


def test_a_missing_data_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"users\.json"):
        Shop(tmp_path / "shop.db", tmp_path / "nowhere").prepare()


# The writes' effects.


def test_cancel_refunds_a_card_later_and_a_gift_card_at_once(shop: Shop, source: dict[str, Any]) -> None:
    by_card = examples.first_order(source, lambda o: o["status"] == "pending" and examples.paid_with(o, "credit_card"))
    result = run(shop, "cancel_pending_order", order_id=by_card["order_id"], reason="ordered by mistake")
    assert result.status == 200
    paid = by_card["payment_history"][0]
    assert result.body["status"] == "cancelled"
    assert result.body["cancel_reason"] == "ordered by mistake"
    assert result.body["payment_history"] == [paid, {**paid, "transaction_type": "refund"}]

    by_gift = examples.first_order(source, lambda o: o["status"] == "pending" and examples.paid_with(o, "gift_card"))
    gift = by_gift["payment_history"][0]
    before = balance(shop, by_gift["user_id"], gift["payment_method_id"])
    assert run(shop, "cancel_pending_order", order_id=by_gift["order_id"], reason="no longer needed").status == 200
    assert balance(shop, by_gift["user_id"], gift["payment_method_id"]) == round(before + gift["amount"], 2)


def test_modify_order_address_replaces_it_and_keeps_the_order_pending(shop: Shop, source: dict[str, Any]) -> None:
    pending = examples.first_order(source, lambda o: o["status"] == "pending")
    result = run(shop, "modify_pending_order_address", order_id=pending["order_id"], **ADDRESS)
    assert result.status == 200
    assert result.body["address"] == ADDRESS
    assert result.body["status"] == "pending"


def test_modify_items_swaps_variants_once_and_settles_the_difference(shop: Shop, source: dict[str, Any]) -> None:
    pending, item_id, new_item_id = examples.swappable(source, "pending")
    method_id = examples.method_of_kind(source, pending, "credit_card") or examples.method_of_kind(
        source, pending, "paypal"
    )
    assert method_id is not None
    old = next(item for item in pending["items"] if item["item_id"] == item_id)
    variant = source["products"][old["product_id"]]["variants"][new_item_id]
    result = run(
        shop,
        "modify_pending_order_items",
        order_id=pending["order_id"],
        item_ids=[item_id],
        new_item_ids=[new_item_id],
        payment_method_id=method_id,
    )
    assert result.status == 200
    changed = next(item for item in result.body["items"] if item["item_id"] == new_item_id)
    assert changed["price"] == variant["price"] and changed["options"] == variant["options"]
    difference = round(variant["price"] - old["price"], 2)
    assert result.body["payment_history"][-1] == {
        "transaction_type": "payment" if difference > 0 else "refund",
        "amount": abs(difference),
        "payment_method_id": method_id,
    }
    assert result.body["status"] == "pending (item modified)"
    # Once only: the order can no longer be modified or cancelled.
    again = run(
        shop,
        "modify_pending_order_items",
        order_id=pending["order_id"],
        item_ids=[new_item_id],
        new_item_ids=[item_id],
        payment_method_id=method_id,
    )
    assert (again.status, again.body["error"]) == (409, "Error: non-pending order cannot be modified")
    cancel = run(shop, "cancel_pending_order", order_id=pending["order_id"], reason="no longer needed")
    assert (cancel.status, cancel.body["error"]) == (409, "Error: non-pending order cannot be cancelled")


def test_modify_items_on_a_gift_card_moves_its_balance(shop: Shop, source: dict[str, Any]) -> None:
    pending, item_id, new_item_id = examples.swappable(
        source, "pending", lambda o: examples.method_of_kind(source, o, "gift_card") is not None
    )
    gift = examples.method_of_kind(source, pending, "gift_card")
    assert gift is not None
    old = next(item for item in pending["items"] if item["item_id"] == item_id)
    new_price = source["products"][old["product_id"]]["variants"][new_item_id]["price"]
    before = balance(shop, pending["user_id"], gift)
    result = run(
        shop,
        "modify_pending_order_items",
        order_id=pending["order_id"],
        item_ids=[item_id],
        new_item_ids=[new_item_id],
        payment_method_id=gift,
    )
    if before < new_price - old["price"]:
        assert result.body["code"] == "insufficient_balance"
    else:
        assert result.status == 200
        assert balance(shop, pending["user_id"], gift) == round(before - (new_price - old["price"]), 2)


def test_modify_items_with_a_duplicate_item_replaces_one_per_pair(shop: Shop, source: dict[str, Any]) -> None:
    def card(candidate: dict[str, Any]) -> str | None:
        return examples.method_of_kind(source, candidate, "credit_card") or examples.method_of_kind(
            source, candidate, "paypal"
        )

    def has_duplicate(candidate: dict[str, Any]) -> bool:
        ids = [item["item_id"] for item in candidate["items"]]
        return candidate["status"] == "pending" and len(set(ids)) < len(ids) and card(candidate) is not None

    pending = examples.first_order(source, has_duplicate)
    ids = [item["item_id"] for item in pending["items"]]
    twice = next(item_id for item_id in ids if ids.count(item_id) > 1)
    item = next(item for item in pending["items"] if item["item_id"] == twice)
    variant = examples.other_variant(source, item)
    assert variant is not None
    result = run(
        shop,
        "modify_pending_order_items",
        order_id=pending["order_id"],
        item_ids=[twice],
        new_item_ids=[variant["item_id"]],
        payment_method_id=card(pending),
    )
    assert result.status == 200
    after = [entry["item_id"] for entry in result.body["items"]]
    assert after.count(twice) == ids.count(twice) - 1
    assert after.index(variant["item_id"]) == ids.index(twice)  # the first one was replaced


def test_modify_payment_moves_the_charge_and_refunds_a_gift_card(shop: Shop, source: dict[str, Any]) -> None:
    by_gift = examples.first_order(
        source,
        lambda o: (
            o["status"] == "pending"
            and examples.paid_with(o, "gift_card")
            and examples.method_of_kind(source, o, "paypal") is not None
        ),
    )
    gift = by_gift["payment_history"][0]["payment_method_id"]
    paypal = examples.method_of_kind(source, by_gift, "paypal")
    amount = by_gift["payment_history"][0]["amount"]
    before = balance(shop, by_gift["user_id"], gift)
    result = run(shop, "modify_pending_order_payment", order_id=by_gift["order_id"], payment_method_id=paypal)
    assert result.status == 200
    assert result.body["payment_history"][1:] == [
        {"transaction_type": "payment", "amount": amount, "payment_method_id": paypal},
        {"transaction_type": "refund", "amount": amount, "payment_method_id": gift},
    ]
    assert result.body["status"] == "pending"
    assert balance(shop, by_gift["user_id"], gift) == round(before + amount, 2)
    # Now two payments and a refund: a second change is refused.
    again = run(shop, "modify_pending_order_payment", order_id=by_gift["order_id"], payment_method_id=gift)
    assert (again.status, again.body["code"]) == (409, "payment_history_not_single")


def test_modify_payment_to_a_gift_card_spends_its_balance(shop: Shop, source: dict[str, Any]) -> None:
    def fits(candidate: dict[str, Any]) -> bool:
        if candidate["status"] != "pending" or examples.paid_with(candidate, "gift_card"):
            return False
        amount = candidate["payment_history"][0]["amount"]
        return any(method.get("balance", 0) >= amount for method in examples.methods(source, candidate).values())

    pending = examples.first_order(source, fits)
    amount = pending["payment_history"][0]["amount"]
    gift = next(
        mid for mid, method in sorted(examples.methods(source, pending).items()) if method.get("balance", 0) >= amount
    )
    before = balance(shop, pending["user_id"], gift)
    assert run(shop, "modify_pending_order_payment", order_id=pending["order_id"], payment_method_id=gift).status == 200
    assert balance(shop, pending["user_id"], gift) == round(before - amount, 2)


def test_modify_user_address(shop: Shop, source: dict[str, Any]) -> None:
    user_id = sorted(source["users"])[0]
    result = run(shop, "modify_user_address", user_id=user_id, **ADDRESS)
    assert result.status == 200
    assert result.body["address"] == ADDRESS
    assert result.body["email"] == source["users"][user_id]["email"]


def test_return_records_the_items_and_the_refund_method(shop: Shop, source: dict[str, Any]) -> None:
    delivered = examples.first_order(
        source,
        lambda o: (
            o["status"] == "delivered"
            and len(o["items"]) > 1
            and not examples.paid_with(o, "gift_card")
            and examples.method_of_kind(source, o, "gift_card") is not None
        ),
    )
    item_ids = [item["item_id"] for item in delivered["items"]][::-1]
    gift = examples.method_of_kind(source, delivered, "gift_card")
    result = run(
        shop, "return_delivered_order_items", order_id=delivered["order_id"], item_ids=item_ids, payment_method_id=gift
    )
    assert result.status == 200
    assert result.body["status"] == "return requested"
    assert result.body["return_items"] == sorted(item_ids)
    assert result.body["return_payment_method_id"] == gift
    assert result.body["payment_history"] == delivered["payment_history"]  # refunded when the items arrive
    again = run(
        shop, "return_delivered_order_items", order_id=delivered["order_id"], item_ids=item_ids, payment_method_id=gift
    )
    assert (again.status, again.body["error"]) == (409, "Error: non-delivered order cannot be returned")


def test_exchange_records_the_new_items_and_the_price_difference(shop: Shop, source: dict[str, Any]) -> None:
    delivered, item_id, new_item_id = examples.swappable(
        source, "delivered", lambda o: not examples.paid_with(o, "gift_card")
    )
    method_id = delivered["payment_history"][0]["payment_method_id"]
    old = next(item for item in delivered["items"] if item["item_id"] == item_id)
    new_price = source["products"][old["product_id"]]["variants"][new_item_id]["price"]
    result = run(
        shop,
        "exchange_delivered_order_items",
        order_id=delivered["order_id"],
        item_ids=[item_id],
        new_item_ids=[new_item_id],
        payment_method_id=method_id,
    )
    assert result.status == 200
    assert result.body["status"] == "exchange requested"
    assert result.body["exchange_items"] == [item_id]
    assert result.body["exchange_new_items"] == [new_item_id]
    assert result.body["exchange_payment_method_id"] == method_id
    assert result.body["exchange_price_difference"] == round(new_price - old["price"], 2)
    assert result.body["items"] == delivered["items"]  # nothing changes until the exchange happens
    again = run(
        shop,
        "exchange_delivered_order_items",
        order_id=delivered["order_id"],
        item_ids=[item_id],
        new_item_ids=[new_item_id],
        payment_method_id=method_id,
    )
    assert (again.status, again.body["error"]) == (409, "Error: non-delivered order cannot be exchanged")


# Every precondition: refused with τ-bench's message, and nothing changed.


def _refusals(source: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], int, str, str]]:
    """(case, tool, arguments, status, code, error) for each rule of the policy."""

    def status(name: str) -> dict[str, Any]:
        return examples.first_order(source, lambda o: o["status"] == name)

    pending, p_item, p_new = examples.swappable(source, "pending")
    delivered, d_item, d_new = examples.swappable(source, "delivered")
    p_id, d_id = pending["order_id"], delivered["order_id"]
    p_method = pending["payment_history"][0]["payment_method_id"]
    d_method = delivered["payment_history"][0]["payment_method_id"]
    stranger = examples.order_of_another_user(source, pending, "pending")
    strangers_method = stranger["payment_history"][0]["payment_method_id"]
    p_product = next(item["product_id"] for item in pending["items"] if item["item_id"] == p_item)
    foreign_item = next(
        variant_id
        for product_id, product in sorted(source["products"].items())
        if product_id != p_product
        for variant_id, variant in product["variants"].items()
        if variant["available"]
    )
    unavailable = next(
        (order, item["item_id"], variant["item_id"])
        for _, order in sorted(source["orders"].items())
        if order["status"] == "delivered"
        for item in order["items"]
        if (variant := examples.other_variant(source, item, available=False)) is not None
    )
    not_original = next(
        (order, mid)
        for _, order in sorted(source["orders"].items())
        if order["status"] == "delivered"
        for mid, method in sorted(examples.methods(source, order).items())
        if method["source"] != "gift_card" and mid != order["payment_history"][0]["payment_method_id"]
    )
    poor = next(
        (order, mid)
        for _, order in sorted(source["orders"].items())
        if order["status"] == "pending" and examples.paid_with(order, "")
        for mid, method in sorted(examples.methods(source, order).items())
        if method["source"] == "gift_card"
        and method["balance"] < order["payment_history"][0]["amount"]
        and mid != order["payment_history"][0]["payment_method_id"]
    )
    pricier = next(
        (order, item["item_id"], variant_id, mid)
        for _, order in sorted(source["orders"].items())
        if order["status"] == "delivered"
        for mid, method in sorted(examples.methods(source, order).items())
        if method["source"] == "gift_card"
        for item in order["items"]
        for variant_id, variant in sorted(source["products"][item["product_id"]]["variants"].items())
        if variant["available"] and variant["price"] - item["price"] > method["balance"]
    )
    swap = {"item_ids": [p_item], "new_item_ids": [p_new], "payment_method_id": p_method}
    d_swap = {"item_ids": [d_item], "new_item_ids": [d_new], "payment_method_id": d_method}
    not_pending = "Error: non-pending order cannot be"
    return [
        ("cancel unknown", "cancel_pending_order", {"order_id": "#W0000000", "reason": "no longer needed"},
         404, "order_not_found", "Error: order not found"),
        ("cancel delivered", "cancel_pending_order", {"order_id": d_id, "reason": "no longer needed"},
         409, "order_not_pending", f"{not_pending} cancelled"),
        ("cancel processed", "cancel_pending_order", {"order_id": status("processed")["order_id"], "reason":
         "no longer needed"}, 409, "order_not_pending", f"{not_pending} cancelled"),
        ("cancel cancelled", "cancel_pending_order", {"order_id": status("cancelled")["order_id"], "reason":
         "no longer needed"}, 409, "order_not_pending", f"{not_pending} cancelled"),
        ("cancel bad reason", "cancel_pending_order", {"order_id": p_id, "reason": "changed my mind"},
         422, "invalid_reason", "Error: invalid reason"),
        ("address delivered", "modify_pending_order_address", {"order_id": d_id, **ADDRESS},
         409, "order_not_pending", f"{not_pending} modified"),
        ("items delivered", "modify_pending_order_items", {"order_id": d_id, **d_swap},
         409, "order_not_pending", f"{not_pending} modified"),
        ("items not in order", "modify_pending_order_items", {**swap, "order_id": p_id, "item_ids": ["0000000000"]},
         422, "item_not_found", "Error: 0000000000 not found"),
        ("items none", "modify_pending_order_items", {**swap, "order_id": p_id, "item_ids": [], "new_item_ids": []},
         422, "no_items", "Error: no items given"),
        ("items count", "modify_pending_order_items", {**swap, "order_id": p_id, "new_item_ids": [p_new, p_new]},
         422, "item_count_mismatch", "Error: the number of items to be exchanged should match"),
        ("items other product", "modify_pending_order_items", {**swap, "order_id": p_id, "new_item_ids":
         [foreign_item]}, 422, "new_item_unavailable", f"Error: new item {foreign_item} not found or available"),
        ("items unavailable", "modify_pending_order_items", {"order_id": p_id, **swap} | {"new_item_ids": ["x"]},
         422, "new_item_unavailable", "Error: new item x not found or available"),
        ("exchange unavailable", "exchange_delivered_order_items", {"order_id": unavailable[0]["order_id"],
         "item_ids": [unavailable[1]], "new_item_ids": [unavailable[2]], "payment_method_id":
         unavailable[0]["payment_history"][0]["payment_method_id"]}, 422, "new_item_unavailable",
         f"Error: new item {unavailable[2]} not found or available"),
        ("items unknown method", "modify_pending_order_items", {**swap, "order_id": p_id, "payment_method_id":
         "paypal_0"}, 422, "payment_method_not_found", "Error: payment method not found"),
        ("items another's method", "modify_pending_order_items", {**swap, "order_id": p_id, "payment_method_id":
         strangers_method}, 422, "payment_method_not_found", "Error: payment method not found"),
        ("payment delivered", "modify_pending_order_payment", {"order_id": d_id, "payment_method_id": d_method},
         409, "order_not_pending", f"{not_pending} modified"),
        ("payment same", "modify_pending_order_payment", {"order_id": p_id, "payment_method_id": p_method},
         422, "same_payment_method", "Error: the new payment method should be different from the current one"),
        ("payment poor gift card", "modify_pending_order_payment", {"order_id": poor[0]["order_id"],
         "payment_method_id": poor[1]}, 409, "insufficient_balance",
         "Error: insufficient gift card balance to pay for the order"),
        ("exchange poor gift card", "exchange_delivered_order_items", {"order_id": pricier[0]["order_id"],
         "item_ids": [pricier[1]], "new_item_ids": [pricier[2]], "payment_method_id": pricier[3]}, 409,
         "insufficient_balance", "Error: insufficient gift card balance to pay for the price difference"),
        ("user unknown", "modify_user_address", {"user_id": "nobody_0", **ADDRESS},
         404, "user_not_found", "Error: user not found"),
        ("return pending", "return_delivered_order_items", {"order_id": p_id, "item_ids": [p_item],
         "payment_method_id": p_method}, 409, "order_not_delivered", "Error: non-delivered order cannot be returned"),
        ("return to another card", "return_delivered_order_items", {"order_id": not_original[0]["order_id"],
         "item_ids": [not_original[0]["items"][0]["item_id"]], "payment_method_id": not_original[1]}, 422,
         "refund_method_not_allowed",
         "Error: payment method should be either the original payment method or a gift card"),
        ("return unknown item", "return_delivered_order_items", {"order_id": d_id, "item_ids": ["0000000000"],
         "payment_method_id": d_method}, 422, "item_not_found", "Error: some item not found"),
        ("return too many", "return_delivered_order_items", {"order_id": d_id, "item_ids": [d_item] * 9,
         "payment_method_id": d_method}, 422, "item_not_found", "Error: some item not found"),
        ("exchange pending", "exchange_delivered_order_items", {"order_id": p_id, **swap},
         409, "order_not_delivered", "Error: non-delivered order cannot be exchanged"),
    ]  # fmt: skip


REFUSAL_CASES = (
    "cancel unknown",
    "cancel delivered",
    "cancel processed",
    "cancel cancelled",
    "cancel bad reason",
    "address delivered",
    "items delivered",
    "items not in order",
    "items none",
    "items count",
    "items other product",
    "items unavailable",
    "exchange unavailable",
    "items unknown method",
    "items another's method",
    "payment delivered",
    "payment same",
    "payment poor gift card",
    "exchange poor gift card",
    "user unknown",
    "return pending",
    "return to another card",
    "return unknown item",
    "return too many",
    "exchange pending",
)


@pytest.fixture(scope="module")
def refusals(source: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any], int, str, str]]:
    table = {case: (tool, kwargs, status, code, error) for case, tool, kwargs, status, code, error in _refusals(source)}
    assert sorted(table) == sorted(REFUSAL_CASES)
    return table


@pytest.mark.parametrize("case", REFUSAL_CASES)
def test_each_rule_refuses_with_its_message_and_changes_nothing(
    case: str, refusals: dict[str, tuple[str, dict[str, Any], int, str, str]], shop: Shop
) -> None:
    tool, kwargs, status, code, error = refusals[case]
    before = shop.digest()
    result = run(shop, tool, **kwargs)
    assert (result.status, result.body) == (status, {"error": error, "code": code})
    assert shop.digest() == before
