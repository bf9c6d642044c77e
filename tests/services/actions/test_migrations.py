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
    assert SCHEMA.migrate(engine) == [1, 2]
    assert SCHEMA.migrate(engine) == []
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    # The version table is the migrator's own.
    differences = [d for d in differences if not (d[0] == "remove_table" and d[1].name == SCHEMA.version_table)]
    assert differences == []
    names = set(sa.inspect(engine).get_table_names())
    assert {"actions", "action_audit_events", "action_verifications"} <= names


def test_a_version_1_database_gains_the_release_column_and_keeps_its_actions(engine: Engine) -> None:
    assert SCHEMA.migrate(engine, target=1) == [1]
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO actions (action_id, tenant_id, conversation_id, customer_id, request_id, tool, "
                "arguments_json, summary, fingerprint, state, needs_approval, approval_reasons, decided_by, "
                "decision_note, dry_run, result_json, error_reason, error_message, may_have_executed, "
                "catalog_version, idempotency_key, attempts, replaces_action_id, trace_id, created_at, updated_at, "
                "expires_at) VALUES ('a-1', 'acme', 'conv', 'c-ann', 'req', 'refund_order', '{}', 'Refund', 'f', "
                "'PROPOSED', false, '[]', '', '', false, '', '', '', false, 'v1', 'k-1', 0, '', '', "
                "'2026-01-01 10:00:00', '2026-01-01 10:00:00', '2026-01-01 11:00:00')"
            )
        )

    assert SCHEMA.migrate(engine) == [2]

    with engine.connect() as connection:
        row = connection.execute(sa.text("SELECT action_id, release_id FROM actions")).one()
    assert tuple(row) == ("a-1", "")
