"""The actions database's migrations make exactly the tables the models describe, on
SQLite and PostgreSQL, and running them again changes nothing."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

from services.actions.migrations import SCHEMA
from services.actions.models import Base


def test_migrations_match_the_models(engine: Engine) -> None:
    assert SCHEMA.migrate(engine) == [1]
    assert SCHEMA.migrate(engine) == []
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    # The version table is the migrator's own.
    differences = [d for d in differences if not (d[0] == "remove_table" and d[1].name == SCHEMA.version_table)]
    assert differences == []
    names = set(sa.inspect(engine).get_table_names())
    assert {"actions", "action_audit_events", "action_verifications"} <= names
