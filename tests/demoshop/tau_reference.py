"""An independent statement of the τ-bench retail write tools' semantics over the raw JSON data (dicts),
written for these tests only: the oracle the back office's database implementation is checked against.

It follows τ-bench's behaviour (sierra-research/tau-bench @59a200c, tau_bench/envs/retail/tools/),
float arithmetic included: the comparison rounds money to cents.
"""

from __future__ import annotations

from typing import Any

Data = dict[str, dict[str, Any]]


class Refused(Exception):
    pass


def _pending_or_delivered(data: Data, order_id: str, status: str, verb: str) -> dict[str, Any]:
    order: dict[str, Any] | None = data["orders"].get(order_id)
    if order is None:
        raise Refused("order not found")
    if order["status"] != status:
        raise Refused(f"non-{status} order cannot be {verb}")
    return order


def _items_present(order: dict[str, Any], item_ids: list[str]) -> None:
    present = [item["item_id"] for item in order["items"]]
    if any(item_ids.count(item_id) > present.count(item_id) for item_id in item_ids):
        raise Refused("item not found")


def _difference(data: Data, order: dict[str, Any], item_ids: list[str], new_item_ids: list[str]) -> float:
    if len(item_ids) != len(new_item_ids):
        raise Refused("count mismatch")
    total = 0.0
    for old, new in zip(item_ids, new_item_ids, strict=True):
        item = next(item for item in order["items"] if item["item_id"] == old)
        variant = data["products"][item["product_id"]]["variants"].get(new)
        if variant is None or not variant["available"]:
            raise Refused("new item not found or available")
        total += variant["price"] - item["price"]
    return total


def _method(data: Data, order: dict[str, Any], payment_method_id: str) -> dict[str, Any]:
    methods = data["users"][order["user_id"]]["payment_methods"]
    if payment_method_id not in methods:
        raise Refused("payment method not found")
    method: dict[str, Any] = methods[payment_method_id]
    return method


def cancel_pending_order(data: Data, order_id: str, reason: str) -> None:
    order = _pending_or_delivered(data, order_id, "pending", "cancelled")
    if reason not in ("no longer needed", "ordered by mistake"):
        raise Refused("invalid reason")
    refunds = []
    for payment in order["payment_history"]:
        refunds.append({**payment, "transaction_type": "refund"})
        if "gift_card" in payment["payment_method_id"]:
            method = data["users"][order["user_id"]]["payment_methods"][payment["payment_method_id"]]
            method["balance"] = round(method["balance"] + payment["amount"], 2)
    order["status"] = "cancelled"
    order["cancel_reason"] = reason
    order["payment_history"].extend(refunds)


def modify_pending_order_address(data: Data, order_id: str, **address: str) -> None:
    order = _pending_or_delivered(data, order_id, "pending", "modified")
    order["address"] = dict(address)


def modify_user_address(data: Data, user_id: str, **address: str) -> None:
    if user_id not in data["users"]:
        raise Refused("user not found")
    data["users"][user_id]["address"] = dict(address)


def modify_pending_order_items(
    data: Data, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_method_id: str
) -> None:
    order = _pending_or_delivered(data, order_id, "pending", "modified")
    _items_present(order, item_ids)
    difference = _difference(data, order, item_ids, new_item_ids)
    method = _method(data, order, payment_method_id)
    if method["source"] == "gift_card" and method["balance"] < difference:
        raise Refused("insufficient gift card balance")
    order["payment_history"].append(
        {
            "transaction_type": "payment" if difference > 0 else "refund",
            "amount": abs(difference),
            "payment_method_id": payment_method_id,
        }
    )
    if method["source"] == "gift_card":
        method["balance"] = round(method["balance"] - difference, 2)
    for old, new in zip(item_ids, new_item_ids, strict=True):
        item = next(item for item in order["items"] if item["item_id"] == old)
        variant = data["products"][item["product_id"]]["variants"][new]
        item.update(item_id=new, price=variant["price"], options=variant["options"])
    order["status"] = "pending (item modified)"


def modify_pending_order_payment(data: Data, order_id: str, payment_method_id: str) -> None:
    order = _pending_or_delivered(data, order_id, "pending", "modified")
    method = _method(data, order, payment_method_id)
    history = order["payment_history"]
    if len(history) > 1 or history[0]["transaction_type"] != "payment":
        raise Refused("exactly one payment")
    original = history[0]["payment_method_id"]
    if original == payment_method_id:
        raise Refused("same payment method")
    amount = history[0]["amount"]
    if method["source"] == "gift_card" and method["balance"] < amount:
        raise Refused("insufficient gift card balance")
    history.append({"transaction_type": "payment", "amount": amount, "payment_method_id": payment_method_id})
    history.append({"transaction_type": "refund", "amount": amount, "payment_method_id": original})
    if method["source"] == "gift_card":
        method["balance"] = round(method["balance"] - amount, 2)
    if "gift_card" in original:
        old = data["users"][order["user_id"]]["payment_methods"][original]
        old["balance"] = round(old["balance"] + amount, 2)


def return_delivered_order_items(data: Data, order_id: str, item_ids: list[str], payment_method_id: str) -> None:
    order = _pending_or_delivered(data, order_id, "delivered", "returned")
    _method(data, order, payment_method_id)
    if "gift_card" not in payment_method_id and payment_method_id != order["payment_history"][0]["payment_method_id"]:
        raise Refused("original payment method or a gift card")
    _items_present(order, item_ids)
    order["status"] = "return requested"
    order["return_items"] = sorted(item_ids)
    order["return_payment_method_id"] = payment_method_id


def exchange_delivered_order_items(
    data: Data, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_method_id: str
) -> None:
    order = _pending_or_delivered(data, order_id, "delivered", "exchanged")
    _items_present(order, item_ids)
    difference = round(_difference(data, order, item_ids, new_item_ids), 2)
    method = _method(data, order, payment_method_id)
    if method["source"] == "gift_card" and method["balance"] < difference:
        raise Refused("insufficient gift card balance")
    order["status"] = "exchange requested"
    order["exchange_items"] = sorted(item_ids)
    order["exchange_new_items"] = sorted(new_item_ids)
    order["exchange_payment_method_id"] = payment_method_id
    order["exchange_price_difference"] = difference


WRITES = {
    function.__name__: function
    for function in (
        cancel_pending_order,
        modify_pending_order_address,
        modify_pending_order_items,
        modify_pending_order_payment,
        modify_user_address,
        return_delivered_order_items,
        exchange_delivered_order_items,
    )
}


def replay(data: Data, actions: list[dict[str, Any]]) -> list[bool]:
    """Run the write actions on `data` in place; whether each one was accepted (reads are accepted)."""
    accepted = []
    for action in actions:
        write = WRITES.get(action["name"])
        if write is None:
            accepted.append(True)
            continue
        try:
            write(data, **action["kwargs"])
        except Refused:
            accepted.append(False)
        else:
            accepted.append(True)
    return accepted


def in_cents(value: Any) -> Any:
    """`value` with every float rounded to cents (τ-bench keeps float noise; the back office is exact)."""
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dict):
        return {key: in_cents(item) for key, item in value.items()}
    if isinstance(value, list):
        return [in_cents(item) for item in value]
    return value
