"""Reading the store back as records shaped like the τ-bench retail data (users.json, orders.json,
products.json), and the canonical state digest a benchmark compares."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from demoshop.schema import fulfillments, order_items, orders, payment_methods, payments, products, users, variants

Record = dict[str, Any]
ADDRESS_FIELDS = ("address1", "address2", "city", "country", "state", "zip")


def to_cents(dollars: float) -> int:
    return round(dollars * 100)


def to_dollars(cents: int) -> float:
    # int / int is correctly rounded: 4784 / 100 is the same float as the literal 47.84.
    return cents / 100


def _address(row: sa.Row[Any]) -> dict[str, str]:
    return {name: getattr(row, name) for name in ADDRESS_FIELDS}


def _payment_method(row: sa.Row[Any]) -> Record:
    method: Record = {"source": row.source}
    if row.brand is not None:
        method["brand"] = row.brand
    if row.last_four is not None:
        method["last_four"] = row.last_four
    if row.balance_cents is not None:
        method["balance"] = to_dollars(row.balance_cents)
    method["id"] = row.payment_method_id
    return method


def _in(column: sa.ColumnElement[Any], values: list[str] | None) -> sa.ColumnElement[bool]:
    return sa.true() if values is None else column.in_(values)


def load_users(conn: Connection, user_ids: list[str] | None = None) -> dict[str, Record]:
    """user_id -> profile, for `user_ids` (None: every user), as in users.json."""
    methods: dict[str, dict[str, Record]] = defaultdict(dict)
    for row in conn.execute(
        sa.select(payment_methods)
        .where(_in(payment_methods.c.user_id, user_ids))
        .order_by(payment_methods.c.user_id, payment_methods.c.position)
    ):
        methods[row.user_id][row.payment_method_id] = _payment_method(row)
    order_ids: dict[str, list[str]] = defaultdict(list)
    for row in conn.execute(
        sa.select(orders.c.user_id, orders.c.order_id)
        .where(_in(orders.c.user_id, user_ids))
        .order_by(orders.c.user_id, orders.c.user_position)
    ):
        order_ids[row.user_id].append(row.order_id)
    found: dict[str, Record] = {}
    for row in conn.execute(sa.select(users).where(_in(users.c.user_id, user_ids)).order_by(users.c.user_id)):
        found[row.user_id] = {
            "name": {"first_name": row.first_name, "last_name": row.last_name},
            "address": _address(row),
            "email": row.email,
            "payment_methods": methods[row.user_id],
            "orders": order_ids[row.user_id],
        }
    return found


def load_orders(conn: Connection, order_ids: list[str] | None = None) -> dict[str, Record]:
    """order_id -> order, for `order_ids` (None: every order), as in orders.json plus what writes added."""
    items: dict[str, list[Record]] = defaultdict(list)
    for row in conn.execute(
        sa.select(order_items)
        .where(_in(order_items.c.order_id, order_ids))
        .order_by(order_items.c.order_id, order_items.c.position)
    ):
        items[row.order_id].append(
            {
                "name": row.name,
                "product_id": row.product_id,
                "item_id": row.item_id,
                "price": to_dollars(row.price_cents),
                "options": row.options,
            }
        )
    shipped: dict[str, list[Record]] = defaultdict(list)
    for row in conn.execute(
        sa.select(fulfillments)
        .where(_in(fulfillments.c.order_id, order_ids))
        .order_by(fulfillments.c.order_id, fulfillments.c.position)
    ):
        shipped[row.order_id].append({"tracking_id": row.tracking_ids, "item_ids": row.item_ids})
    history: dict[str, list[Record]] = defaultdict(list)
    for row in conn.execute(
        sa.select(payments)
        .where(_in(payments.c.order_id, order_ids))
        .order_by(payments.c.order_id, payments.c.position)
    ):
        history[row.order_id].append(
            {
                "transaction_type": row.transaction_type,
                "amount": to_dollars(row.amount_cents),
                "payment_method_id": row.payment_method_id,
            }
        )
    found: dict[str, Record] = {}
    for row in conn.execute(sa.select(orders).where(_in(orders.c.order_id, order_ids)).order_by(orders.c.order_id)):
        order: Record = {
            "order_id": row.order_id,
            "user_id": row.user_id,
            "address": _address(row),
            "items": items[row.order_id],
            "fulfillments": shipped[row.order_id],
            "status": row.status,
            "payment_history": history[row.order_id],
        }
        # What the writes record, present only once a write set it (as in τ-bench).
        if row.cancel_reason is not None:
            order["cancel_reason"] = row.cancel_reason
        if row.return_items is not None:
            order["return_items"] = row.return_items
            order["return_payment_method_id"] = row.return_payment_method_id
        if row.exchange_items is not None:
            order["exchange_items"] = row.exchange_items
            order["exchange_new_items"] = row.exchange_new_items
            order["exchange_payment_method_id"] = row.exchange_payment_method_id
            order["exchange_price_difference"] = to_dollars(row.exchange_price_difference_cents)
        found[row.order_id] = order
    return found


def load_products(conn: Connection, product_ids: list[str] | None = None) -> dict[str, Record]:
    """product_id -> product with its variants, as in products.json."""
    found_variants: dict[str, dict[str, Record]] = defaultdict(dict)
    for row in conn.execute(
        sa.select(variants)
        .where(_in(variants.c.product_id, product_ids))
        .order_by(variants.c.product_id, variants.c.position)
    ):
        found_variants[row.product_id][row.item_id] = {
            "item_id": row.item_id,
            "options": row.options,
            "available": row.available,
            "price": to_dollars(row.price_cents),
        }
    return {
        row.product_id: {"name": row.name, "product_id": row.product_id, "variants": found_variants[row.product_id]}
        for row in conn.execute(
            sa.select(products).where(_in(products.c.product_id, product_ids)).order_by(products.c.product_id)
        )
    }


def user_record(conn: Connection, user_id: str) -> Record | None:
    return load_users(conn, [user_id]).get(user_id)


def order_record(conn: Connection, order_id: str) -> Record | None:
    return load_orders(conn, [order_id]).get(order_id)


def product_record(conn: Connection, product_id: str) -> Record | None:
    return load_products(conn, [product_id]).get(product_id)


def product_types(conn: Connection) -> dict[str, str]:
    """Product name -> product id, sorted by name."""
    rows = conn.execute(sa.select(products.c.name, products.c.product_id).order_by(products.c.name))
    return {row.name: row.product_id for row in rows}


def find_user_id_by_email(conn: Connection, email: str) -> str | None:
    return conn.execute(
        sa.select(users.c.user_id).where(sa.func.lower(users.c.email) == email.strip().lower())
    ).scalar_one_or_none()


def find_user_id_by_name_zip(conn: Connection, first_name: str, last_name: str, zip_code: str) -> str | None:
    return conn.execute(
        sa.select(users.c.user_id)
        .where(
            sa.func.lower(users.c.first_name) == first_name.strip().lower(),
            sa.func.lower(users.c.last_name) == last_name.strip().lower(),
            users.c.zip == zip_code.strip(),
        )
        .order_by(users.c.user_id)
        .limit(1)
    ).scalar_one_or_none()


def export_state(conn: Connection) -> Record:
    """Every user and order: what writes can change (products never change)."""
    return {"users": load_users(conn), "orders": load_orders(conn)}


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def state_digest(state: Record) -> str:
    """sha256 of the canonical JSON of `state`: equal digests, equal users and orders."""
    return hashlib.sha256(canonical_json(state).encode()).hexdigest()
