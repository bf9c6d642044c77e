"""The τ-bench retail tools by name, over one connection: the reads here, the writes in operations.py.

The HTTP API serves them; the ground-truth replay calls them by τ-bench's names. The agent-side tools
(calculate, think, transfer_to_human_agents) are not the back office's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ConfigDict, validate_call
from sqlalchemy.engine import Connection

from demoshop import operations, records
from demoshop.operations import ShopError
from demoshop.records import Record

AGENT_SIDE_TOOLS = frozenset({"calculate", "think", "transfer_to_human_agents"})


def _user_not_found() -> ShopError:
    return ShopError(404, "user_not_found", "Error: user not found")


def find_user_id_by_email(conn: Connection, email: str) -> str:
    user_id = records.find_user_id_by_email(conn, email)
    if user_id is None:
        raise _user_not_found()
    return user_id


def find_user_id_by_name_zip(conn: Connection, first_name: str, last_name: str, zip: str) -> str:
    user_id = records.find_user_id_by_name_zip(conn, first_name, last_name, zip)
    if user_id is None:
        raise _user_not_found()
    return user_id


def get_user_details(conn: Connection, user_id: str) -> Record:
    user = records.user_record(conn, user_id)
    if user is None:
        raise _user_not_found()
    return user


def get_order_details(conn: Connection, order_id: str) -> Record:
    order = records.order_record(conn, order_id)
    if order is None:
        raise ShopError(404, "order_not_found", "Error: order not found")
    return order


def get_product_details(conn: Connection, product_id: str) -> Record:
    product = records.product_record(conn, product_id)
    if product is None:
        raise ShopError(404, "product_not_found", "Error: product not found")
    return product


def list_all_product_types(conn: Connection) -> dict[str, str]:
    return records.product_types(conn)


READS: tuple[Callable[..., Any], ...] = (
    find_user_id_by_email,
    find_user_id_by_name_zip,
    get_user_details,
    get_order_details,
    get_product_details,
    list_all_product_types,
)
WRITES: tuple[Callable[..., Any], ...] = (
    operations.cancel_pending_order,
    operations.modify_pending_order_address,
    operations.modify_pending_order_items,
    operations.modify_pending_order_payment,
    operations.modify_user_address,
    operations.return_delivered_order_items,
    operations.exchange_delivered_order_items,
)
# By name, with their arguments checked against the signature's types (strictly: no coercion).
_CHECKED = ConfigDict(arbitrary_types_allowed=True, strict=True)
TOOLS: dict[str, Callable[..., Any]] = {tool.__name__: validate_call(config=_CHECKED)(tool) for tool in READS + WRITES}
WRITE_TOOLS = frozenset(tool.__name__ for tool in WRITES)
