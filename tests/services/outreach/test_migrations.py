"""Outreach's migrations on SQLite and PostgreSQL: a database made before
migrations existed keeps its data and gets the new aggregates; one that
Alembic migrated is adopted at its revision. (The migrator itself:
tests/servicekit/test_migrations.py; the migrated schema against the models:
tests/services/test_schemas.py.)"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.outreach.migrations import SCHEMA


def test_a_database_from_before_migrations_keeps_its_data_and_gets_new_aggregates(engine: Engine) -> None:
    SCHEMA.migrate(engine, target=1)
    with engine.begin() as connection:
        # What create_all left behind: the first tables, no version table.
        connection.execute(sa.text(f"DROP TABLE {SCHEMA.version_table}"))
        when = dt.datetime(2026, 11, 20, 10, 30)
        connection.execute(
            sa.text(
                "INSERT INTO usage_events (tenant_id, event_id, account_id, occurred_at, feature, endpoint, "
                "status_code, error_code, count, client_version, received_at) VALUES "
                "('demo', :id, 'acct-1', :when, 'ingestion', 'POST /v2/events/batch', :status, :code, :count, "
                "'js-3.7.2', :when)"
            ),
            [
                {"id": "e1", "when": when, "status": 200, "code": "", "count": 10},
                {"id": "e2", "when": when, "status": 429, "code": "E-1042", "count": 4},
            ],
        )
    assert SCHEMA.migrate(engine) == [1, 2, 3]

    with engine.connect() as connection:
        errors = connection.execute(
            sa.text("SELECT day, error_code, error_count FROM usage_daily_errors")
        ).all()
        versions = connection.execute(
            sa.text("SELECT client_version, event_count, error_count FROM usage_daily_versions")
        ).all()
        accounts = connection.execute(sa.text("SELECT tenant_id, account_id FROM accounts")).all()
    assert [(str(day), code, count) for day, code, count in errors] == [("2026-11-20", "E-1042", 4)]
    assert [tuple(v) for v in versions] == [("js-3.7.2", 14, 4)]
    assert [tuple(a) for a in accounts] == [("demo", "acct-1")]


def test_a_database_alembic_migrated_is_adopted_at_its_revision(engine: Engine) -> None:
    # Outreach's migrations were Alembic revisions "0001" and "0002" before the shared migrator.
    SCHEMA.migrate(engine, target=1)
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE {SCHEMA.version_table}"))
        connection.execute(sa.text("CREATE TABLE outreach_schema_version (version_num VARCHAR(32) NOT NULL)"))
        connection.execute(sa.text("INSERT INTO outreach_schema_version VALUES ('0001')"))

    assert SCHEMA.migrate(engine) == [2, 3]
    assert SCHEMA.migrate(engine) == []
    assert "accounts" in sa.inspect(engine).get_table_names()
