"""Escalation's migrations on SQLite and PostgreSQL: old databases upgrade with
their data. (The migrator itself: tests/servicekit/test_migrations.py; the
migrated schema against the models: tests/services/test_schemas.py.)"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from aftercare.escalation.v1 import escalation_pb2
from services.escalation.feedback_store import FeedbackStore
from services.escalation.migrations import SCHEMA
from services.escalation.store import HandoffStore
from tests.services.escalation.conftest import handoff_request


def _versions(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return SCHEMA.applied_versions(connection)


def test_a_database_from_before_migrations_upgrades_with_its_handoffs(engine: Engine) -> None:
    # What the service made before migrations existed: create_all of the first handoffs table.
    assert SCHEMA.migrate(engine, target=1) == [1]
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE {SCHEMA.version_table}"))
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

    assert SCHEMA.migrate(engine) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    old = store.get("demo", "h-1")
    assert old is not None
    assert old.version == 1 and old.tier == 0 and old.context.summary == "old"
    assert old.state == escalation_pb2.HANDOFF_STATE_WAITING and not old.HasField("resolved_at")
    # The upgraded database takes new handoffs and the idempotency key still holds.
    assert store.find_by_key("demo", legacy.idempotency_key) is not None


def test_a_database_at_version_4_gains_the_judgements_table_and_keeps_its_data(engine: Engine) -> None:
    assert SCHEMA.migrate(engine, target=4) == [1, 2, 3, 4]
    assert "answer_judgements" not in sa.inspect(engine).get_table_names()
    store = HandoffStore(engine)
    # Written as the version-4 service wrote it (today's model has later columns).
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO handoffs (handoff_id, tenant_id, customer_id, idempotency_key, conversation_id, "
                "conversation, reason, ai_attempt, account, context, queue, priority, state, assigned_agent_id, "
                "created_at, updated_at) VALUES ('h-4', 'demo', 'c', 'before-5', 'conv', '{}', "
                "'HANDOFF_REASON_POLICY', '{}', '{}', '{}', 'general', 40, 'HANDOFF_STATE_WAITING', '', "
                "'2026-01-01 10:00:00', '2026-01-01 10:00:00')"
            )
        )

    assert SCHEMA.migrate(engine) == [5, 6, 7, 8, 9, 10]

    assert _versions(engine) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert store.get("demo", "h-4") is not None
    customer = escalation_pb2.JudgementSource.Name(escalation_pb2.JUDGEMENT_SOURCE_CUSTOMER)
    judgements = FeedbackStore(engine)
    assert judgements.record_judgement("demo", "turn-1", customer, "refunds", 0.7, True, None)
    assert not judgements.record_judgement("demo", "turn-1", customer, "refunds", 0.7, True, None)


def test_a_database_at_version_7_gains_the_release_column_and_keeps_its_handoffs(engine: Engine) -> None:
    assert SCHEMA.migrate(engine, target=7) == [1, 2, 3, 4, 5, 6, 7]
    store = HandoffStore(engine)
    # Written as the version-7 service wrote it: no release column yet.
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO handoffs (handoff_id, tenant_id, customer_id, idempotency_key, conversation_id, "
                "conversation, reason, ai_attempt, account, context, queue, priority, state, assigned_agent_id, "
                "created_at, updated_at, reference) VALUES ('h-7', 'demo', 'c', 'before-8', 'conv-7', '{}', "
                "'HANDOFF_REASON_POLICY', '{}', '{}', '{}', 'general', 40, 'HANDOFF_STATE_WAITING', '', "
                "'2026-01-01 10:00:00', '2026-01-01 10:00:00', 'HO-OLD777')"
            )
        )

    assert SCHEMA.migrate(engine) == [8, 9, 10]

    old = store.get("demo", "h-7")
    assert old is not None and old.release_id == "" and old.reference == "HO-OLD777"
