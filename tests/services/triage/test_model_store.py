"""Intent models in the triage database (services/triage/intent_store.py) and the
engine's follower (services/triage/intent_service.py): versions round-trip on SQLite
and PostgreSQL, models an older release left on disk are imported once, a second
engine on the same database follows promotions and rollbacks, requests keep the old
version while a new one loads, and a version that cannot load never replaces one
that serves."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from servicekit.database import database_url, make_engine
from servicekit.ids import file_name
from services.triage.encoder import Encoder
from services.triage.intent_model import IntentModel
from services.triage.intent_service import IntentEngine
from services.triage.intent_store import ModelStore, PointerConflict, new_version
from services.triage.intent_training import train_intent_model
from tests.services.triage.test_intent_model import INTENTS

TENANT = "acme:eu"
TEXT = "I was charged twice this month"


def _train(encoder: Encoder, version: str, drop: str | None = None) -> IntentModel:
    texts = [t for label, ts in INTENTS.items() if label != drop for t in ts]
    labels = [label for label, ts in INTENTS.items() if label != drop for _ in ts]
    return train_intent_model(
        texts, labels, encoder.encode, version=version, encoder_name=encoder.name, dimensions=encoder.dimensions
    )


@pytest.fixture(scope="module")
def models(encoder: Encoder) -> tuple[IntentModel, IntentModel]:
    """Two versions, the second without the webhooks label (so they predict apart)."""
    first = _train(encoder, new_version())
    time.sleep(1.1)  # version names sort by the second they were made in
    return first, _train(encoder, new_version(), drop="webhooks")


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[str]:
    """One SQLite database two replicas share (the embedded default, as a file)."""
    yield database_url("", tmp_path, "triage")


def _engine_on(url: str, encoder: Encoder) -> IntentEngine:
    return IntentEngine(ModelStore(make_engine(url)), lambda: encoder)


def _serving(engine: IntentEngine, tenant: str = TENANT) -> str | None:
    model = engine.current_model(tenant)
    return None if model is None else model.version


# --- the store ------------------------------------------------------------------------


def test_a_version_round_trips_through_the_database(
    engine: Engine, models: tuple[IntentModel, IntentModel], encoder: Encoder, tmp_path: Path
) -> None:
    store = ModelStore(engine)
    first, second = models
    assert store.pointer(TENANT) is None and store.versions(TENANT) == []
    assert store.save(TENANT, first) == first.version
    store.save(TENANT, second)
    assert store.versions(TENANT) == [first.version, second.version]
    assert store.trained_with(TENANT, first.version) == encoder.name

    # Read back exactly as the files it was packed from load.
    first.save(tmp_path / "files")
    from_files = IntentModel.load(tmp_path / "files")
    loaded = store.load(TENANT, first.version, encoder=encoder.name)
    vectors = encoder.encode([TEXT])
    assert loaded.predict(vectors, [TEXT]) == from_files.predict(vectors, [TEXT])
    assert loaded.version == first.version and loaded.labels == first.labels

    with pytest.raises(FileExistsError):
        store.save(TENANT, first)
    with pytest.raises(FileNotFoundError):
        store.load(TENANT, "v20200101T000000Z-abcdef")
    with pytest.raises(FileNotFoundError):
        store.set_current(TENANT, "v20200101T000000Z-abcdef", ())

    promoted = store.promote(TENANT, first.version)
    assert (promoted.version, promoted.history, promoted.generation) == (first.version, (), 1)
    again = store.promote(TENANT, second.version, expected_generation=1)
    assert (again.version, again.history, again.generation) == (second.version, (first.version,), 2)
    with pytest.raises(PointerConflict):
        store.set_current(TENANT, first.version, (), expected_generation=1)
    assert store.pointer(TENANT) == again
    assert store.pointers() == {TENANT: again}
    # Another tenant has nothing; ids that cannot be tenants have nothing either.
    assert store.pointer("globex") is None and store.versions("globex") == []
    assert store.pointer("../etc") is None and store.versions("../etc") == []


def test_models_an_older_release_left_on_disk_are_imported_once(
    tmp_path: Path, models: tuple[IntentModel, IntentModel]
) -> None:
    first, second = models
    tenant_dir = tmp_path / "triage" / file_name(TENANT)
    first.save(tenant_dir / first.version)
    second.save(tenant_dir / second.version)
    (tenant_dir / "current").write_text(json.dumps({"version": second.version, "history": [first.version]}))
    (tenant_dir / ".tmp-v20261124T101500Z-3fa2c1-0a0b").mkdir()  # a save that crashed: not a version
    (tenant_dir / "notes").mkdir()
    before = sorted((str(p.relative_to(tmp_path)), p.stat().st_mtime_ns) for p in tenant_dir.rglob("*"))

    store = ModelStore.open("", tmp_path)
    assert store.versions(TENANT) == [first.version, second.version]
    pointer = store.pointer(TENANT)
    assert pointer is not None and (pointer.version, pointer.history) == (second.version, (first.version,))
    assert store.load(TENANT, second.version).labels == second.labels
    # The folder is left as it was.
    assert sorted((str(p.relative_to(tmp_path)), p.stat().st_mtime_ns) for p in tenant_dir.rglob("*")) == before

    # Once: what changed in the database afterwards stays changed at the next start.
    store.set_current(TENANT, first.version, ())
    store.close()
    reopened = ModelStore.open("", tmp_path)
    assert reopened.versions(TENANT) == [first.version, second.version]
    pointer = reopened.pointer(TENANT)
    assert pointer is not None and (pointer.version, pointer.history) == (first.version, ())
    reopened.close()


# --- replicas: two engines on one database --------------------------------------------


async def test_a_second_engine_follows_promotions_and_rollbacks(
    shared: str, encoder: Encoder, models: tuple[IntentModel, IntentModel]
) -> None:
    first, second = models
    a, b = _engine_on(shared, encoder), _engine_on(shared, encoder)
    await a.load_current()
    await b.load_current()
    assert _serving(b) is None

    a.store.save(TENANT, first)
    a.store.promote(TENANT, first.version)
    b.follow_once()
    assert _serving(b) == first.version

    a.store.save(TENANT, second)
    a.store.promote(TENANT, second.version)
    a.follow_once()
    b.follow_once()
    assert _serving(a) == _serving(b) == second.version
    assert a.predict(TENANT, TEXT) == b.predict(TENANT, TEXT)

    # Rolled back through b: b serves it before the call returns, a follows.
    assert await b.rollback(TENANT, "") == (first.version, second.version)
    assert _serving(b) == first.version
    assert _serving(a) == second.version
    a.follow_once()
    assert _serving(a) == first.version
    await a.close()
    await b.close()


async def test_the_follower_serves_a_change_within_its_interval(
    shared: str, encoder: Encoder, models: tuple[IntentModel, IntentModel]
) -> None:
    first, second = models
    a, b = _engine_on(shared, encoder), _engine_on(shared, encoder)
    a.store.save(TENANT, first)
    a.store.save(TENANT, second)
    a.store.promote(TENANT, first.version)
    await b.load_current()
    b.start_following(0.2)
    try:
        for version in (second.version, first.version):
            started = time.monotonic()
            await asyncio.to_thread(a.store.promote, TENANT, version)
            while _serving(b) != version and time.monotonic() - started < 15:  # noqa: ASYNC110 - polls a thread's result
                await asyncio.sleep(0.02)
            assert _serving(b) == version
            assert time.monotonic() - started < 10  # 0.2 s + a load in practice; lenient on a busy machine
    finally:
        await b.close()
        await a.close()


async def test_requests_keep_the_old_version_while_the_new_one_loads(
    shared: str, encoder: Encoder, models: tuple[IntentModel, IntentModel]
) -> None:
    first, second = models
    a, b = _engine_on(shared, encoder), _engine_on(shared, encoder)
    a.store.save(TENANT, first)
    a.store.save(TENANT, second)
    a.store.promote(TENANT, first.version)
    await b.load_current()

    loading, release = threading.Event(), threading.Event()
    real_load = b.store.load

    def slow_load(tenant_id: str, version: str, *, encoder: str | None = None) -> IntentModel:
        loading.set()
        assert release.wait(30)
        return real_load(tenant_id, version, encoder=encoder)

    b.store.load = slow_load  # type: ignore[method-assign]
    a.store.promote(TENANT, second.version)
    follower = threading.Thread(target=b.follow_once)
    follower.start()
    try:
        assert loading.wait(30)
        started = time.monotonic()
        for _ in range(20):
            assert b.predict(TENANT, TEXT).model_version == first.version
        assert time.monotonic() - started < 10  # never waited for the load
    finally:
        release.set()
        follower.join(30)
    assert b.predict(TENANT, TEXT).model_version == second.version
    await a.close()
    await b.close()


async def test_a_version_that_cannot_load_leaves_the_old_one_serving(
    shared: str, encoder: Encoder, models: tuple[IntentModel, IntentModel]
) -> None:
    first, second = models
    a, b = _engine_on(shared, encoder), _engine_on(shared, encoder)
    a.store.save(TENANT, first)
    a.store.save(TENANT, second)
    a.store.promote(TENANT, first.version)
    await b.load_current()
    with a.store.artifacts.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE artifact_versions SET payload = :p WHERE version = :v"),
            {"p": b"not a model", "v": second.version},
        )
    a.store.promote(TENANT, second.version)  # a pointer written by hand, say: it names a broken version
    b.follow_once()
    b.follow_once()
    assert _serving(b) == first.version
    info = await b.serving_info(TENANT)
    assert (info.serving_version, info.current_version) == (first.version, second.version)
    assert info.versions == [first.version, second.version]
    assert info.replica.endswith(f"/{os.getpid()}") and info.loaded_at is not None
    # A fresh replica starts anyway (that tenant serves nothing until a good version is promoted).
    c = _engine_on(shared, encoder)
    await c.load_current()
    assert _serving(c) is None
    assert (await c.serving_info(TENANT)).serving_version == ""
    for engine in (a, b, c):
        await engine.close()


async def test_a_starting_replica_loads_every_tenant_before_it_serves(
    shared: str, encoder: Encoder, models: tuple[IntentModel, IntentModel]
) -> None:
    first, second = models
    writer = _engine_on(shared, encoder)
    for tenant, model in ((TENANT, first), ("globex", second)):
        writer.store.save(tenant, model)
        writer.store.promote(tenant, model.version)
    replica = _engine_on(shared, encoder)
    await replica.load_current()

    def no_loads(*args: object, **kwargs: object) -> IntentModel:
        raise AssertionError("a request waited for a model load")

    replica.store.load = no_loads  # type: ignore[method-assign]
    assert _serving(replica) == first.version
    assert _serving(replica, "globex") == second.version
    assert _serving(replica, "initech") is None
    await writer.close()
    await replica.close()


async def test_a_retrain_promotes_in_the_store_and_serves_what_was_stored(
    shared: str, encoder: Encoder, models: tuple[IntentModel, IntentModel]
) -> None:
    a, b = _engine_on(shared, encoder), _engine_on(shared, encoder)
    texts = [t for ts in INTENTS.values() for t in ts]
    labels = [label for label, ts in INTENTS.items() for _ in ts]
    steps: list[tuple[int, str]] = []
    outcome = await a.retrain(TENANT, texts, labels, progress=lambda p, s: steps.append((p, s)))
    assert outcome.promoted and steps
    pointer = a.store.pointer(TENANT)
    assert pointer is not None and pointer.version == outcome.version
    b.follow_once()
    # Both serve the version as stored (float16 arrays and all), so they answer alike.
    assert a.predict(TENANT, TEXT) == b.predict(TENANT, TEXT)
    assert a.predict(TENANT, TEXT).model_version == outcome.version
    await a.close()
    await b.close()
