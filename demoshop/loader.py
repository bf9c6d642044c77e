"""Loading the τ-bench retail data folder (users.json, orders.json, products.json) into the database.

The data stays in its folder (it is never copied into the repository); the database is loaded from it
once, in one transaction, and `reset` loads it again (dropping every write and stored idempotency key).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from demoshop.records import ADDRESS_FIELDS, to_cents
from demoshop.schema import (
    DATA_TABLES,
    SCHEMA_VERSION,
    fulfillments,
    idempotency_keys,
    meta,
    metadata,
    order_items,
    orders,
    payment_methods,
    payments,
    products,
    users,
    variants,
)

log = logging.getLogger("demoshop.loader")
DATA_FILES = ("users.json", "orders.json", "products.json")


class DataError(RuntimeError):
    """The data folder is missing a file or holds something the store cannot take."""


@dataclass(frozen=True)
class SourceData:
    users: dict[str, Any]
    orders: dict[str, Any]
    products: dict[str, Any]
    # sha256 over the three files: which data a database was loaded from.
    fingerprint: str


def read_source(data_dir: Path) -> SourceData:
    digest = hashlib.sha256()
    parsed: dict[str, Any] = {}
    for name in DATA_FILES:
        path = data_dir / name
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise DataError(f"cannot read {path}: {error.strerror}") from error
        digest.update(raw)
        parsed[name] = json.loads(raw)
    return SourceData(parsed["users.json"], parsed["orders.json"], parsed["products.json"], digest.hexdigest())


def _rows(source: SourceData) -> dict[sa.Table, list[dict[str, Any]]]:
    """The source records as table rows."""
    rows: dict[sa.Table, list[dict[str, Any]]] = {table: [] for table in DATA_TABLES}
    for product_id, product in source.products.items():
        rows[products].append({"product_id": product_id, "name": product["name"]})
        for position, (item_id, variant) in enumerate(product["variants"].items()):
            rows[variants].append(
                {
                    "item_id": item_id,
                    "product_id": product_id,
                    "position": position,
                    "options": variant["options"],
                    "available": bool(variant["available"]),
                    "price_cents": to_cents(variant["price"]),
                }
            )
    order_position: dict[str, int] = {}
    for user_id, user in source.users.items():
        rows[users].append(
            {
                "user_id": user_id,
                "first_name": user["name"]["first_name"],
                "last_name": user["name"]["last_name"],
                "email": user["email"],
                **{name: user["address"][name] for name in ADDRESS_FIELDS},
            }
        )
        for position, (method_id, method) in enumerate(user["payment_methods"].items()):
            balance = method.get("balance")
            rows[payment_methods].append(
                {
                    "payment_method_id": method_id,
                    "user_id": user_id,
                    "position": position,
                    "source": method["source"],
                    "brand": method.get("brand"),
                    "last_four": method.get("last_four"),
                    "balance_cents": None if balance is None else to_cents(balance),
                }
            )
        for position, order_id in enumerate(user["orders"]):
            order_position[order_id] = position
    for order_id, order in source.orders.items():
        if order_id not in order_position:
            raise DataError(f"order {order_id} is in no user's list of orders")
        rows[orders].append(
            {
                "order_id": order_id,
                "user_id": order["user_id"],
                "user_position": order_position[order_id],
                **{name: order["address"][name] for name in ADDRESS_FIELDS},
                "status": order["status"],
                "cancel_reason": order.get("cancel_reason"),
            }
        )
        for position, item in enumerate(order["items"]):
            rows[order_items].append(
                {
                    "order_id": order_id,
                    "position": position,
                    "item_id": item["item_id"],
                    "product_id": item["product_id"],
                    "name": item["name"],
                    "price_cents": to_cents(item["price"]),
                    "options": item["options"],
                }
            )
        for position, fulfillment in enumerate(order["fulfillments"]):
            rows[fulfillments].append(
                {
                    "order_id": order_id,
                    "position": position,
                    "tracking_ids": fulfillment["tracking_id"],
                    "item_ids": fulfillment["item_ids"],
                }
            )
        for position, payment in enumerate(order["payment_history"]):
            rows[payments].append(
                {
                    "order_id": order_id,
                    "position": position,
                    "transaction_type": payment["transaction_type"],
                    "amount_cents": to_cents(payment["amount"]),
                    "payment_method_id": payment["payment_method_id"],
                }
            )
    return rows


def _meta_value(conn: Connection, key: str) -> str | None:
    return conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar_one_or_none()


def _set_meta(conn: Connection, key: str, value: str) -> None:
    conn.execute(sa.delete(meta).where(meta.c.key == key))
    conn.execute(sa.insert(meta).values(key=key, value=value))


def replace_data(conn: Connection, source: SourceData) -> None:
    """Delete every record and stored idempotency key, then insert the source data (in `conn`'s transaction)."""
    conn.execute(sa.delete(idempotency_keys))
    for table in DATA_TABLES:  # children first
        conn.execute(sa.delete(table))
    rows = _rows(source)
    for table in reversed(DATA_TABLES):  # parents first
        if rows[table]:
            conn.execute(sa.insert(table), rows[table])
    _set_meta(conn, "source_fingerprint", source.fingerprint)
    _set_meta(conn, "loaded_at", str(time.time()))


def prepare(engine: Engine, data_dir: Path, reset: bool = False) -> bool:
    """Create the tables and load the data folder unless it is already loaded (or `reset`).
    Returns whether it loaded. Concurrent starts are serialised by the write lock."""
    with engine.connect().execution_options(write=True) as conn, conn.begin():
        metadata.create_all(conn)
        version = _meta_value(conn, "schema_version")
        if version is not None and version != SCHEMA_VERSION:
            log.warning("rebuilding the database: schema %s, expected %s", version, SCHEMA_VERSION)
            metadata.drop_all(conn)
            metadata.create_all(conn)
        _set_meta(conn, "schema_version", SCHEMA_VERSION)
        if not reset and _meta_value(conn, "source_fingerprint") is not None:
            return False
        replace_data(conn, read_source(data_dir))
        log.info("loaded the store from %s", data_dir)
        return True
