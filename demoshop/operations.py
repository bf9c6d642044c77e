"""The back office's writes, with the τ-bench retail tools' semantics and error messages.

Each function runs inside the caller's write transaction and checks every rule before it changes
anything, so that a refused write leaves no trace. Deliberate differences from τ-bench: money is
exact (integer cents), an empty list of items is refused, and a payment method must belong to the
order's customer (τ-bench looks it up there too, so that is no difference in effect).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from demoshop.records import Record, order_record, to_cents, user_record
from demoshop.schema import order_items, orders, payment_methods, payments, users, variants

CANCEL_REASONS = ("no longer needed", "ordered by mistake")


class ShopError(Exception):
    """A refused request: HTTP status, a stable code and τ-bench's message ("Error: ...")."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": self.message, "code": self.code}


def _order(conn: Connection, order_id: str) -> Record:
    order = order_record(conn, order_id)
    if order is None:
        raise ShopError(404, "order_not_found", "Error: order not found")
    return order


def _require_status(order: Record, status: str, verb: str) -> None:
    if order["status"] != status:
        adjective = "non-pending" if status == "pending" else "non-delivered"
        raise ShopError(409, f"order_not_{status}", f"Error: {adjective} order cannot be {verb}")


def _payment_method(conn: Connection, user_id: str, payment_method_id: str) -> sa.Row[Any]:
    """The customer's payment method `payment_method_id` (another customer's is not found)."""
    row = conn.execute(
        sa.select(payment_methods).where(
            payment_methods.c.payment_method_id == payment_method_id, payment_methods.c.user_id == user_id
        )
    ).one_or_none()
    if row is None:
        raise ShopError(422, "payment_method_not_found", "Error: payment method not found")
    return row


def _check_items_in_order(order: Record, item_ids: Sequence[str], message: str | None = None) -> None:
    """Every item id is in the order, as many times as it is listed."""
    if not item_ids:
        raise ShopError(422, "no_items", "Error: no items given")
    in_order = [item["item_id"] for item in order["items"]]
    for item_id in item_ids:
        if item_ids.count(item_id) > in_order.count(item_id):
            raise ShopError(422, "item_not_found", message or f"Error: {item_id} not found")


def _price_difference_cents(
    conn: Connection, order: Record, item_ids: Sequence[str], new_item_ids: Sequence[str]
) -> int:
    """What the new items cost more (negative: less) than the ones they replace; each new item must be an
    available variant of the same product."""
    if len(item_ids) != len(new_item_ids):
        raise ShopError(422, "item_count_mismatch", "Error: the number of items to be exchanged should match")
    difference = 0
    for item_id, new_item_id in zip(item_ids, new_item_ids, strict=True):
        item = next(item for item in order["items"] if item["item_id"] == item_id)
        variant = conn.execute(
            sa.select(variants.c.price_cents).where(
                variants.c.item_id == new_item_id,
                variants.c.product_id == item["product_id"],
                variants.c.available.is_(True),
            )
        ).one_or_none()
        if variant is None:
            raise ShopError(422, "new_item_unavailable", f"Error: new item {new_item_id} not found or available")
        difference += variant.price_cents - to_cents(item["price"])
    return difference


def _add_to_balance(conn: Connection, payment_method_id: str, cents: int) -> None:
    conn.execute(
        sa.update(payment_methods)
        .where(payment_methods.c.payment_method_id == payment_method_id)
        .values(balance_cents=payment_methods.c.balance_cents + cents)
    )


def _append_payments(conn: Connection, order: Record, entries: Sequence[tuple[str, int, str]]) -> None:
    """Append (transaction_type, amount_cents, payment_method_id) entries to the order's payment history."""
    start = len(order["payment_history"])
    conn.execute(
        sa.insert(payments),
        [
            {
                "order_id": order["order_id"],
                "position": start + offset,
                "transaction_type": kind,
                "amount_cents": cents,
                "payment_method_id": method_id,
            }
            for offset, (kind, cents, method_id) in enumerate(entries)
        ],
    )


def _set_order(conn: Connection, order_id: str, **values: Any) -> None:
    conn.execute(sa.update(orders).where(orders.c.order_id == order_id).values(**values))


def cancel_pending_order(conn: Connection, order_id: str, reason: str) -> Record:
    order = _order(conn, order_id)
    _require_status(order, "pending", "cancelled")
    if reason not in CANCEL_REASONS:
        raise ShopError(422, "invalid_reason", "Error: invalid reason")
    refunds = []
    for payment in order["payment_history"]:
        cents = to_cents(payment["amount"])
        refunds.append(("refund", cents, payment["payment_method_id"]))
        method = _payment_method(conn, order["user_id"], payment["payment_method_id"])
        if method.source == "gift_card":  # a gift card is refunded at once; others in 5 to 7 business days
            _add_to_balance(conn, method.payment_method_id, cents)
    if refunds:
        _append_payments(conn, order, refunds)
    _set_order(conn, order_id, status="cancelled", cancel_reason=reason)
    return _order(conn, order_id)


def modify_pending_order_address(
    conn: Connection, order_id: str, address1: str, address2: str, city: str, state: str, country: str, zip: str
) -> Record:
    order = _order(conn, order_id)
    _require_status(order, "pending", "modified")
    _set_order(conn, order_id, address1=address1, address2=address2, city=city, state=state, country=country, zip=zip)
    return _order(conn, order_id)


def modify_pending_order_items(
    conn: Connection, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_method_id: str
) -> Record:
    order = _order(conn, order_id)
    _require_status(order, "pending", "modified")
    _check_items_in_order(order, item_ids)
    difference = _price_difference_cents(conn, order, item_ids, new_item_ids)
    method = _payment_method(conn, order["user_id"], payment_method_id)
    if method.source == "gift_card" and method.balance_cents < difference:
        raise ShopError(409, "insufficient_balance", "Error: insufficient gift card balance to pay for the new item")
    # As τ-bench: a payment when the new items cost more, otherwise a refund (of 0 when they cost the same).
    _append_payments(conn, order, [("payment" if difference > 0 else "refund", abs(difference), payment_method_id)])
    if method.source == "gift_card":
        _add_to_balance(conn, payment_method_id, -difference)
    # Each pair replaces the first item that still has the old id (duplicates replace one item each).
    current = [item["item_id"] for item in order["items"]]
    for item_id, new_item_id in zip(item_ids, new_item_ids, strict=True):
        position = current.index(item_id)
        current[position] = new_item_id
        variant = conn.execute(sa.select(variants).where(variants.c.item_id == new_item_id)).one()
        conn.execute(
            sa.update(order_items)
            .where(order_items.c.order_id == order_id, order_items.c.position == position)
            .values(item_id=new_item_id, price_cents=variant.price_cents, options=variant.options)
        )
    # Items can be modified once: the order is no longer "pending", so nothing else can change it.
    _set_order(conn, order_id, status="pending (item modified)")
    return _order(conn, order_id)


def modify_pending_order_payment(conn: Connection, order_id: str, payment_method_id: str) -> Record:
    order = _order(conn, order_id)
    _require_status(order, "pending", "modified")
    method = _payment_method(conn, order["user_id"], payment_method_id)
    history = order["payment_history"]
    if len(history) != 1 or history[0]["transaction_type"] != "payment":
        raise ShopError(
            409, "payment_history_not_single", "Error: there should be exactly one payment for a pending order"
        )
    original_id = history[0]["payment_method_id"]
    if original_id == payment_method_id:
        raise ShopError(
            422, "same_payment_method", "Error: the new payment method should be different from the current one"
        )
    cents = to_cents(history[0]["amount"])
    if method.source == "gift_card" and method.balance_cents < cents:
        raise ShopError(409, "insufficient_balance", "Error: insufficient gift card balance to pay for the order")
    _append_payments(conn, order, [("payment", cents, payment_method_id), ("refund", cents, original_id)])
    if method.source == "gift_card":
        _add_to_balance(conn, payment_method_id, -cents)
    if _payment_method(conn, order["user_id"], original_id).source == "gift_card":
        _add_to_balance(conn, original_id, cents)
    return _order(conn, order_id)


def modify_user_address(
    conn: Connection, user_id: str, address1: str, address2: str, city: str, state: str, country: str, zip: str
) -> Record:
    updated = conn.execute(
        sa.update(users)
        .where(users.c.user_id == user_id)
        .values(address1=address1, address2=address2, city=city, state=state, country=country, zip=zip)
    )
    if updated.rowcount == 0:
        raise ShopError(404, "user_not_found", "Error: user not found")
    user = user_record(conn, user_id)
    assert user is not None
    return user


def return_delivered_order_items(
    conn: Connection, order_id: str, item_ids: list[str], payment_method_id: str
) -> Record:
    order = _order(conn, order_id)
    _require_status(order, "delivered", "returned")
    method = _payment_method(conn, order["user_id"], payment_method_id)
    history = order["payment_history"]
    original_id = history[0]["payment_method_id"] if history else None
    if method.source != "gift_card" and payment_method_id != original_id:
        raise ShopError(
            422,
            "refund_method_not_allowed",
            "Error: payment method should be either the original payment method or a gift card",
        )
    _check_items_in_order(order, item_ids, "Error: some item not found")
    _set_order(
        conn,
        order_id,
        status="return requested",
        return_items=sorted(item_ids),
        return_payment_method_id=payment_method_id,
    )
    return _order(conn, order_id)


def exchange_delivered_order_items(
    conn: Connection, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_method_id: str
) -> Record:
    order = _order(conn, order_id)
    _require_status(order, "delivered", "exchanged")
    _check_items_in_order(order, item_ids)
    difference = _price_difference_cents(conn, order, item_ids, new_item_ids)
    method = _payment_method(conn, order["user_id"], payment_method_id)
    if method.source == "gift_card" and method.balance_cents < difference:
        raise ShopError(
            409, "insufficient_balance", "Error: insufficient gift card balance to pay for the price difference"
        )
    # Nothing is charged or refunded yet: that happens when the returned items arrive.
    _set_order(
        conn,
        order_id,
        status="exchange requested",
        exchange_items=sorted(item_ids),
        exchange_new_items=sorted(new_item_ids),
        exchange_payment_method_id=payment_method_id,
        exchange_price_difference_cents=difference,
    )
    return _order(conn, order_id)
