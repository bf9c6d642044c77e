"""Picking records of the τ-bench retail data that fit a test (found, not hard-coded, so that a test
says what it needs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Source = dict[str, Any]
Order = dict[str, Any]


def first_order(source: Source, fits: Callable[[Order], bool]) -> Order:
    return next(order for _, order in sorted(source["orders"].items()) if fits(order))


def paid_with(order: Order, kind: str) -> bool:
    history = order["payment_history"]
    return len(history) == 1 and history[0]["payment_method_id"].startswith(kind)


def methods(source: Source, order: Order) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = source["users"][order["user_id"]]["payment_methods"]
    return found


def other_variant(source: Source, item: dict[str, Any], available: bool = True) -> dict[str, Any] | None:
    """Another variant of the item's product, available or not."""
    variants = source["products"][item["product_id"]]["variants"]
    return next(
        (
            variant
            for item_id, variant in sorted(variants.items())
            if item_id != item["item_id"] and variant["available"] is available
        ),
        None,
    )


def swappable(source: Source, status: str, fits: Callable[[Order], bool] = lambda _: True) -> tuple[Order, str, str]:
    """An order in `status`, one of its items and an available other variant of that item's product."""
    for _, order in sorted(source["orders"].items()):
        if order["status"] != status or not fits(order):
            continue
        for item in order["items"]:
            variant = other_variant(source, item)
            if variant is not None:
                return order, item["item_id"], variant["item_id"]
    raise LookupError(f"no {status} order with a swappable item")


def method_of_kind(source: Source, order: Order, kind: str, exclude: str = "") -> str | None:
    return next((mid for mid in sorted(methods(source, order)) if mid.startswith(kind) and mid != exclude), None)


def order_of_another_user(source: Source, order: Order, status: str) -> Order:
    return first_order(source, lambda other: other["status"] == status and other["user_id"] != order["user_id"])
