"""Fixtures of the back office's tests: the τ-bench retail data, a fresh store, a live server."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from demoshop.store import Shop
from tests.demoshop.live import TAU_RETAIL, LiveShop


@pytest.fixture(scope="session")
def source() -> dict[str, Any]:
    """The data folder as parsed JSON: users, orders, products."""
    return {name: json.loads((TAU_RETAIL / f"{name}.json").read_text()) for name in ("users", "orders", "products")}


@pytest.fixture(scope="session")
def loaded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database file loaded from the data folder once, closed (its WAL checkpointed into the file)."""
    path = tmp_path_factory.mktemp("loaded") / "shop.db"
    made = Shop(path, TAU_RETAIL)
    made.prepare()
    made.close()
    return path


@pytest.fixture
def shop(tmp_path: Path, loaded_db: Path) -> Iterator[Shop]:
    """A store freshly loaded from the data folder, in its own SQLite file (a copy of `loaded_db`)."""
    shutil.copyfile(loaded_db, tmp_path / "shop.db")
    made = Shop(tmp_path / "shop.db", TAU_RETAIL)
    assert made.prepare() is False  # already loaded
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def live_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveShop]:
    """One real back office process for a test module."""
    with LiveShop(tmp_path_factory.mktemp("demoshop")) as running:
        yield running


@pytest.fixture
def client(live_shop: LiveShop) -> Iterator[httpx.Client]:
    """A client of the live back office, its state reset to the data folder first."""
    with live_shop.client() as made:
        made.post("/admin/reset").raise_for_status()
        yield made
