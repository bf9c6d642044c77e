"""The versioned artifact store on SQLite and PostgreSQL: versions are immutable and
checksummed, a pointer can only name a stored version, changes are compare-and-set on
a generation (concurrent promotions never lose one), and PostgreSQL listeners hear of
a change at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from servicekit.artifacts import (
    SCHEMA,
    ArtifactCorrupt,
    ArtifactExists,
    ArtifactNotFound,
    ArtifactStore,
    Pointer,
    PointerConflict,
)
from servicekit.database import make_engine

KIND = "intent_model"


@pytest.fixture
def store(engine: Engine) -> Iterator[ArtifactStore]:
    made = ArtifactStore(engine)
    made.migrate()
    yield made


def test_versions_round_trip_and_are_immutable(store: ArtifactStore) -> None:
    payload = bytes(range(256)) * 4000  # ~1 MB, every byte value
    stored = store.put("acme", KIND, "v1", payload, {"encoder": "minilm", "labels": ["a", "b"]})
    assert stored.size == len(payload) and len(stored.sha256) == 64

    assert store.payload("acme", KIND, "v1") == payload
    info = store.version("acme", KIND, "v1")
    assert info is not None and info.metadata == {"encoder": "minilm", "labels": ["a", "b"]}
    assert info.sha256 == stored.sha256

    with pytest.raises(ArtifactExists):
        store.put("acme", KIND, "v1", b"other bytes", {})
    assert store.payload("acme", KIND, "v1") == payload

    store.put("acme", KIND, "v2", b"two", {})
    store.put("acme", "confidence_fit", "v1", b"fit", {})
    store.put("globex", KIND, "v9", b"nine", {})
    assert [v.version for v in store.versions("acme", KIND)] == ["v1", "v2"]
    assert [v.version for v in store.versions("acme", "confidence_fit")] == ["v1"]
    assert store.version("acme", KIND, "v3") is None
    with pytest.raises(ArtifactNotFound):
        store.payload("acme", KIND, "v3")


def test_a_payload_that_changed_under_its_checksum_is_refused(store: ArtifactStore) -> None:
    store.put("acme", KIND, "v1", b"the real bytes", {})
    with store.engine.begin() as connection:
        connection.execute(sa.text("UPDATE artifact_versions SET payload = :p"), {"p": b"tampered bytes"})
    with pytest.raises(ArtifactCorrupt):
        store.payload("acme", KIND, "v1")


def test_promotion_and_history(store: ArtifactStore) -> None:
    assert store.pointer("acme", KIND) is None
    for version in ("v1", "v2", "v3"):
        store.put("acme", KIND, version, version.encode(), {})

    first = store.promote("acme", KIND, "v1")
    assert (first.version, first.history, first.generation) == ("v1", (), 1)
    store.promote("acme", KIND, "v2")
    third = store.promote("acme", KIND, "v3")
    assert (third.version, third.history, third.generation) == ("v3", ("v1", "v2"), 3)
    assert store.pointer("acme", KIND) == Pointer(
        "acme", KIND, "v3", ("v1", "v2"), 3, store.pointer("acme", KIND).updated_at  # type: ignore[union-attr]
    )
    # Promoting what serves changes nothing but the generation (followers still see a change).
    again = store.promote("acme", KIND, "v3")
    assert (again.version, again.history, again.generation) == ("v3", ("v1", "v2"), 4)
    assert [p.tenant_id for p in store.pointers(KIND)] == ["acme"]
    assert store.pointers("confidence_fit") == []


def test_a_pointer_names_only_stored_versions(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactNotFound):
        store.set_pointer("acme", KIND, "v1", (), expected_generation=0)
    assert store.pointer("acme", KIND) is None
    # The database holds it too, whoever writes: the foreign key refuses a dangling pointer.
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO artifact_pointers (tenant_id, kind, version, history, generation, updated_at) "
                "VALUES ('acme', :kind, 'v404', '[]', 1, CURRENT_TIMESTAMP)"
            ),
            {"kind": KIND},
        )


def test_a_stale_generation_loses_the_compare_and_set(store: ArtifactStore) -> None:
    for version in ("v1", "v2", "v3"):
        store.put("acme", KIND, version, b"x", {})
    store.set_pointer("acme", KIND, "v1", (), expected_generation=0)
    with pytest.raises(PointerConflict):
        store.set_pointer("acme", KIND, "v2", (), expected_generation=0)  # created meanwhile
    read = store.pointer("acme", KIND)
    assert read is not None
    store.set_pointer("acme", KIND, "v2", ("v1",), expected_generation=read.generation)
    with pytest.raises(PointerConflict):
        store.set_pointer("acme", KIND, "v3", ("v1",), expected_generation=read.generation)
    now = store.pointer("acme", KIND)
    assert now is not None and (now.version, now.history, now.generation) == ("v2", ("v1",), 2)


def test_concurrent_promotions_serialise_and_lose_nothing(engine: Engine) -> None:
    """Eight threads with their own connections promote eight versions at once: each
    promotion lands exactly once, and the history holds every one that served."""
    setup = ArtifactStore(engine)
    setup.migrate()
    versions = [f"v{index}" for index in range(8)]
    for version in versions:
        setup.put("acme", KIND, version, version.encode(), {})
    start = threading.Barrier(len(versions))
    failures: list[BaseException] = []

    def promote(version: str) -> None:
        own = ArtifactStore(make_engine(engine.url.render_as_string(hide_password=False)))
        try:
            start.wait()
            own.update_pointer("acme", KIND, lambda p: _promoted(p, version), attempts=50)
        except BaseException as error:  # reported by the assertion below
            failures.append(error)
        finally:
            own.close()

    threads = [threading.Thread(target=promote, args=(version,)) for version in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    final = setup.pointer("acme", KIND)
    assert final is not None
    assert final.generation == len(versions)
    assert sorted([*final.history, final.version]) == versions


def _promoted(current: Pointer | None, version: str) -> tuple[str, tuple[str, ...]]:
    return version, () if current is None else (*current.history, current.version)


def test_update_pointer_lets_the_change_give_up(store: ArtifactStore) -> None:
    store.put("acme", KIND, "v1", b"x", {})

    def refuse(current: Pointer | None) -> tuple[str, tuple[str, ...]]:
        raise LookupError("nothing to roll back")

    with pytest.raises(LookupError):
        store.update_pointer("acme", KIND, refuse)
    assert store.pointer("acme", KIND) is None


def test_history_is_bounded(store: ArtifactStore) -> None:
    store.put("acme", KIND, "v1", b"x", {})
    pointer = store.set_pointer("acme", KIND, "v1", [f"old{i}" for i in range(150)], expected_generation=0)
    assert len(pointer.history) == 100 and pointer.history[-1] == "old149"


def test_migrating_twice_changes_nothing(store: ArtifactStore) -> None:
    assert SCHEMA.migrate(store.engine) == []
    tables = set(sa.inspect(store.engine).get_table_names())
    assert {"artifact_versions", "artifact_pointers", "artifacts_schema_migrations"} <= tables


def test_names_are_bounded(store: ArtifactStore) -> None:
    with pytest.raises(ValueError):
        store.put("", KIND, "v1", b"x", {})
    with pytest.raises(ValueError):
        store.put("acme", KIND, "v" * 101, b"x", {})


def test_a_listener_hears_a_change_at_once_on_postgresql(store: ArtifactStore) -> None:
    store.put("acme", KIND, "v1", b"x", {})
    waiter = store.waiter(KIND)
    try:
        if store.engine.dialect.name != "postgresql":
            started = time.monotonic()
            assert waiter.wait(0.2) is False  # SQLite: it only sleeps, the caller polls
            assert time.monotonic() - started >= 0.15
            return
        assert waiter.wait(0.1) is False  # listening now; nothing happened yet
        heard: list[tuple[bool, float]] = []

        def listen() -> None:
            started = time.monotonic()
            heard.append((waiter.wait(20.0), time.monotonic() - started))

        listener = threading.Thread(target=listen)
        listener.start()
        time.sleep(0.2)
        store.put("acme", "other_kind", "v1", b"x", {})
        store.promote("acme", "other_kind", "v1")  # another kind: no reason to wake
        store.promote("acme", KIND, "v1")
        listener.join(timeout=30)
        assert heard and heard[0][0] is True
        assert heard[0][1] < 10.0  # lenient: at once in practice, far below the 20 s timeout
    finally:
        waiter.close()
