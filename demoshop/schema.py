"""The back office's tables (SQLAlchemy Core) and its SQLite engine.

Money is stored in integer cents, so that refunds, balances and price differences add up exactly;
the API shows it in dollars, as the source data does. Lists whose order matters (a user's orders,
an order's items, fulfillments and payments, a product's variants) keep their position.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

# Bumped when the tables change; a database of another version is rebuilt from the data folder.
SCHEMA_VERSION = "1"
# How long a writer waits for another writer's transaction before giving up ("database is locked").
BUSY_TIMEOUT_S = 30.0

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.String(64), primary_key=True),
    sa.Column("first_name", sa.String(100), nullable=False),
    sa.Column("last_name", sa.String(100), nullable=False),
    sa.Column("email", sa.String(200), nullable=False),
    sa.Column("address1", sa.String(200), nullable=False),
    sa.Column("address2", sa.String(200), nullable=False),
    sa.Column("city", sa.String(100), nullable=False),
    sa.Column("state", sa.String(100), nullable=False),
    sa.Column("country", sa.String(100), nullable=False),
    sa.Column("zip", sa.String(20), nullable=False),
)
sa.Index("ix_users_email", sa.func.lower(users.c.email), unique=True)
sa.Index("ix_users_zip", users.c.zip)

payment_methods = sa.Table(
    "payment_methods",
    metadata,
    sa.Column("payment_method_id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.ForeignKey("users.user_id"), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("source", sa.String(32), nullable=False),  # credit_card | paypal | gift_card
    sa.Column("brand", sa.String(32)),  # credit cards
    sa.Column("last_four", sa.String(4)),  # credit cards
    sa.Column("balance_cents", sa.Integer),  # gift cards
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.ForeignKey("users.user_id"), nullable=False, index=True),
    # Where the order is in its user's list of orders.
    sa.Column("user_position", sa.Integer, nullable=False),
    sa.Column("address1", sa.String(200), nullable=False),
    sa.Column("address2", sa.String(200), nullable=False),
    sa.Column("city", sa.String(100), nullable=False),
    sa.Column("state", sa.String(100), nullable=False),
    sa.Column("country", sa.String(100), nullable=False),
    sa.Column("zip", sa.String(20), nullable=False),
    sa.Column("status", sa.String(40), nullable=False),
    sa.Column("cancel_reason", sa.String(40)),
    sa.Column("return_items", sa.JSON),
    sa.Column("return_payment_method_id", sa.String(64)),
    sa.Column("exchange_items", sa.JSON),
    sa.Column("exchange_new_items", sa.JSON),
    sa.Column("exchange_payment_method_id", sa.String(64)),
    sa.Column("exchange_price_difference_cents", sa.Integer),
)

order_items = sa.Table(
    "order_items",
    metadata,
    sa.Column("order_id", sa.ForeignKey("orders.order_id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("item_id", sa.String(32), nullable=False),
    sa.Column("product_id", sa.ForeignKey("products.product_id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("price_cents", sa.Integer, nullable=False),
    sa.Column("options", sa.JSON, nullable=False),
)

fulfillments = sa.Table(
    "fulfillments",
    metadata,
    sa.Column("order_id", sa.ForeignKey("orders.order_id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("tracking_ids", sa.JSON, nullable=False),
    sa.Column("item_ids", sa.JSON, nullable=False),
)

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("order_id", sa.ForeignKey("orders.order_id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("transaction_type", sa.String(16), nullable=False),  # payment | refund
    sa.Column("amount_cents", sa.Integer, nullable=False),
    sa.Column("payment_method_id", sa.String(64), nullable=False),
)

products = sa.Table(
    "products",
    metadata,
    sa.Column("product_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
)

variants = sa.Table(
    "variants",
    metadata,
    sa.Column("item_id", sa.String(32), primary_key=True),
    sa.Column("product_id", sa.ForeignKey("products.product_id"), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("available", sa.Boolean, nullable=False),
    sa.Column("price_cents", sa.Integer, nullable=False),
)

# The stored outcome of each write sent with an Idempotency-Key, written in the write's transaction.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    # sha256 of method, path and canonical body: the same key with another request is refused.
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

meta = sa.Table(
    "shop_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Tables holding the store's data, children first (the order to delete them in).
DATA_TABLES = (payments, fulfillments, order_items, orders, payment_methods, users, variants, products)


def _configure_connection(dbapi_connection: Any, _record: Any) -> None:
    # Transactions are begun by hand (see _begin), so the driver must not begin its own.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _begin(connection: Connection) -> None:
    # A write takes the database's write lock when it begins, not at its first UPDATE: two writes on
    # one order then run one after the other, and the second one reads what the first one committed.
    mode = "IMMEDIATE" if connection.get_execution_options().get("write") else "DEFERRED"
    connection.exec_driver_sql(f"BEGIN {mode}")


def make_engine(db_path: Path) -> Engine:
    """The engine of the SQLite file at `db_path` (its folder is created)."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        f"sqlite:///{db_path.resolve()}",
        connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
    )
    event.listen(engine, "connect", _configure_connection)
    event.listen(engine, "begin", _begin)
    return engine
