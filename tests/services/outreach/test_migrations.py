"""Schema migrations on SQLite and PostgreSQL: a fresh database, a database made
before migrations existed (with data), re-runs and replicas starting together."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from servicekit.database import make_engine
from services.outreach import migrate
from services.outreach.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'outreach.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    made = make_engine(url)
    yield made
    made.dispose()


def test_a_fresh_database_is_migrated_to_the_models(engine: Engine) -> None:
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = [
            d for d in compare_metadata(context, Base.metadata)
            if not (d[0] == "remove_table" and d[1].name == migrate.VERSION_TABLE)
        ]
    assert differences == []


def test_upgrading_twice_is_a_no_op(engine: Engine) -> None:
    migrate.upgrade(engine)
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()


def test_a_database_from_before_migrations_keeps_its_data_and_gets_new_aggregates(engine: Engine) -> None:
    migrate.upgrade(engine, "0001")
    with engine.begin() as connection:
        # What create_all left behind: the 0001 tables, no version table.
        connection.execute(sa.text(f"DROP TABLE {migrate.VERSION_TABLE}"))
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
    migrate.upgrade(engine)

    assert migrate.current_revision(engine) == migrate.head_revision()
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


def test_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    engines = [make_engine(postgres_url) for _ in range(3)]
    failures: list[BaseException] = []

    def run(engine: Engine) -> None:
        try:
            migrate.upgrade(engine)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
        assert migrate.current_revision(engines[0]) == migrate.head_revision()
    finally:
        for engine in engines:
            engine.dispose()
