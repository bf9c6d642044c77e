"""Schema migrations on SQLite and PostgreSQL: the migrated schema is the ORM's,
old databases upgrade with their data, a failing migration changes nothing,
and replicas starting together migrate once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from sqlalchemy.engine import Engine

from aftercare.escalation.v1 import escalation_pb2
from servicekit.database import database_url, make_engine
from services.escalation import migrations
from services.escalation.models import Base
from services.escalation.store import HandoffStore, NewHandoff
from tests.services.escalation.conftest import handoff_request


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = database_url("", tmp_path, "escalation")
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _schema(engine: Engine) -> dict[str, dict[str, bool]]:
    """table -> column -> nullable, for the service's tables."""
    inspector = sa.inspect(engine)
    return {
        table: {column["name"]: bool(column["nullable"]) for column in inspector.get_columns(table)}
        for table in inspector.get_table_names()
        if table != migrations.VERSION_TABLE
    }


def _versions(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return migrations.applied_versions(connection)


def test_migrating_an_empty_database_gives_the_orm_schema(engine: Engine) -> None:
    assert migrations.migrate(engine) == [1, 2, 3, 4, 5]
    expected = {
        table.name: {column.name: bool(column.nullable) for column in table.columns}
        for table in Base.metadata.sorted_tables
    }
    assert _schema(engine) == expected
    assert _versions(engine) == [1, 2, 3, 4, 5]
    indexes = {index["name"] for index in sa.inspect(engine).get_indexes("handoffs")}
    assert {"ix_handoffs_queue_order", "ix_handoffs_tenant_created", "ix_handoffs_customer"} <= indexes
    judgement_indexes = {index["name"] for index in sa.inspect(engine).get_indexes("answer_judgements")}
    assert "ix_answer_judgements_tenant_answered" in judgement_indexes
    unique = sa.inspect(engine).get_unique_constraints("answer_judgements")
    assert [sorted(u["column_names"]) for u in unique] == [["idempotency_key", "tenant_id"]]
    # Applied at every start: the second time there is nothing to do.
    assert migrations.migrate(engine) == []


def test_a_database_from_before_migrations_upgrades_with_its_handoffs(engine: Engine) -> None:
    # What the service made before migrations existed: create_all of the first handoffs table.
    assert migrations.migrate(engine, target=1) == [1]
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE {migrations.VERSION_TABLE}"))
    store = HandoffStore(engine)
    legacy = handoff_request(key="legacy")
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO handoffs VALUES ('h-1', 'demo', 'c', 'legacy', 'conv', '{}', 'HANDOFF_REASON_POLICY', "
                "'{}', '{}', '{\"summary\": \"old\"}', 'general', 40, 'HANDOFF_STATE_WAITING', '', "
                "'2026-01-01 10:00:00', '2026-01-01 10:00:00')"
            )
        )

    assert migrations.migrate(engine) == [1, 2, 3, 4, 5]
    old = store.get("demo", "h-1")
    assert old is not None
    assert old.version == 1 and old.tier == 0 and old.context.summary == "old"
    assert old.state == escalation_pb2.HANDOFF_STATE_WAITING and not old.HasField("resolved_at")
    # The upgraded database takes new handoffs and the idempotency key still holds.
    assert store.find_by_key("demo", legacy.idempotency_key) is not None


def test_a_database_at_version_4_gains_the_judgements_table_and_keeps_its_data(engine: Engine) -> None:
    assert migrations.migrate(engine, target=4) == [1, 2, 3, 4]
    assert "answer_judgements" not in sa.inspect(engine).get_table_names()
    store = HandoffStore(engine)
    handoff, _ = store.create(handoff_request(key="before-5"), NewHandoff("general", escalation_pb2.ContextPackage()))

    assert migrations.migrate(engine) == [5]

    assert _versions(engine) == [1, 2, 3, 4, 5]
    assert store.get("demo", handoff.handoff_id) is not None
    customer = escalation_pb2.JudgementSource.Name(escalation_pb2.JUDGEMENT_SOURCE_CUSTOMER)
    assert store.record_judgement("demo", "turn-1", customer, "refunds", 0.7, True, None)
    assert not store.record_judgement("demo", "turn-1", customer, "refunds", 0.7, True, None)


def test_a_failing_migration_leaves_the_schema_as_it_was(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    migrations.migrate(engine)

    def half_done(op: Operations) -> None:
        op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))
        op.add_column("handoffs", sa.Column("half_done", sa.Integer, nullable=True))
        raise RuntimeError("crash in the middle of a migration")

    monkeypatch.setattr(
        migrations, "MIGRATIONS", (*migrations.MIGRATIONS, migrations.Migration(6, "broken", half_done))
    )
    with pytest.raises(RuntimeError):
        migrations.migrate(engine, target=6)

    assert _versions(engine) == [1, 2, 3, 4, 5]
    assert "half_done" not in sa.inspect(engine).get_table_names()
    assert "half_done" not in {c["name"] for c in sa.inspect(engine).get_columns("handoffs")}


def test_replicas_starting_together_migrate_once(engine: Engine) -> None:
    applied: list[list[int]] = []
    errors: list[BaseException] = []

    def start() -> None:
        # Each replica has its own engine (its own connections), as separate processes would.
        own = make_engine(engine.url.render_as_string(hide_password=False))
        try:
            applied.append(migrations.migrate(own))
        except BaseException as error:
            errors.append(error)
        finally:
            own.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert sorted(applied, key=len) == [[], [], [], [1, 2, 3, 4, 5]]
    assert _versions(engine) == [1, 2, 3, 4, 5]
