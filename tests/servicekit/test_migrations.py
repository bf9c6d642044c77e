"""The shared migrator on SQLite and PostgreSQL: pending migrations apply once and
in order, a failing one changes nothing, replicas starting together migrate
once, versions an older mechanism applied are adopted, and a first migration
leaves what create_all made alone."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from sqlalchemy.engine import Connection, Engine

from servicekit.database import make_engine
from servicekit.migrations import Migration, Schema, create_table_once


def _v1_notes(op: Operations) -> None:
    if create_table_once(op, "notes", sa.Column("id", sa.Integer, primary_key=True)):
        op.create_index("ix_notes_id", "notes", ["id"])


def _v2_note_text(op: Operations) -> None:
    op.add_column("notes", sa.Column("text", sa.Text, nullable=False, server_default=""))


def _v3_tags(op: Operations) -> None:
    op.create_table("tags", sa.Column("name", sa.String(50), primary_key=True))


MIGRATIONS = (
    Migration(1, "notes", _v1_notes),
    Migration(2, "note text", _v2_note_text),
    Migration(3, "tags", _v3_tags),
)


def _versions(schema: Schema, engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return schema.applied_versions(connection)


def test_pending_migrations_apply_once_in_order(engine: Engine) -> None:
    schema = Schema("demo", MIGRATIONS)
    assert schema.migrate(engine, target=2) == [1, 2]
    assert "tags" not in sa.inspect(engine).get_table_names()

    assert schema.migrate(engine) == [3]
    assert schema.migrate(engine) == []

    assert _versions(schema, engine) == [1, 2, 3]
    assert {c["name"] for c in sa.inspect(engine).get_columns("notes")} == {"id", "text"}
    assert schema.version_table == "demo_schema_migrations"
    # Services sharing a database keep their versions apart.
    other = Schema("other", MIGRATIONS[:1])
    assert _versions(other, engine) == []


def test_a_failing_migration_leaves_the_schema_as_it_was(engine: Engine) -> None:
    Schema("demo", MIGRATIONS[:2]).migrate(engine)

    def half_done(op: Operations) -> None:
        op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))
        op.add_column("notes", sa.Column("half_done", sa.Integer, nullable=True))
        raise RuntimeError("crash in the middle of a migration")

    broken = Schema("demo", (*MIGRATIONS[:2], Migration(3, "tags", _v3_tags), Migration(4, "broken", half_done)))
    with pytest.raises(RuntimeError):
        broken.migrate(engine)

    # Not even the good migration 3 that ran in the same transaction.
    assert _versions(broken, engine) == [1, 2]
    tables = sa.inspect(engine).get_table_names()
    assert "half_done" not in tables and "tags" not in tables
    assert "half_done" not in {c["name"] for c in sa.inspect(engine).get_columns("notes")}


def test_replicas_starting_together_migrate_once(engine: Engine) -> None:
    schema = Schema("demo", MIGRATIONS)
    applied: list[list[int]] = []
    errors: list[BaseException] = []

    def start() -> None:
        # Each replica has its own engine (its own connections), as separate processes would.
        own = make_engine(engine.url.render_as_string(hide_password=False))
        try:
            applied.append(schema.migrate(own))
        except BaseException as error:
            errors.append(error)
        finally:
            own.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(applied, key=len) == [[], [], [], [1, 2, 3]]
    assert _versions(schema, engine) == [1, 2, 3]


def test_a_database_from_create_all_keeps_its_tables_and_rows(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY)"))
        connection.execute(sa.text("INSERT INTO notes (id) VALUES (7)"))

    assert Schema("demo", MIGRATIONS).migrate(engine) == [1, 2, 3]

    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT id, text FROM notes")).all() == [(7, "")]


def test_versions_an_older_mechanism_applied_are_adopted_once(engine: Engine) -> None:
    asked: list[int] = []

    def adopted(connection: Connection) -> list[int]:
        asked.append(1)
        return [1, 2] if sa.inspect(connection).has_table("notes") else []

    Schema("legacy", MIGRATIONS[:2]).migrate(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE legacy_schema_migrations"))

    schema = Schema("demo", MIGRATIONS, adopted=adopted)
    assert schema.migrate(engine) == [3]
    assert schema.migrate(engine) == []
    assert asked == [1]
    with engine.connect() as connection:
        names = connection.execute(sa.text("SELECT version, name FROM demo_schema_migrations ORDER BY version")).all()
    assert [tuple(row) for row in names] == [(1, "notes"), (2, "note text"), (3, "tags")]


def test_migrations_must_be_numbered_from_one_in_order() -> None:
    with pytest.raises(ValueError, match="numbered"):
        Schema("demo", (MIGRATIONS[0], MIGRATIONS[2]))
