"""Relational state (handoffs, feedback, usage aggregates, outbox): one place
that turns a setting into a SQLAlchemy engine.

The embedded default is a SQLite file under the service's data_dir; at scale
DATABASE_URL names any SQLAlchemy URL (PostgreSQL). Services use the sync
2.0-style ORM and run their store calls via `asyncio.to_thread`, so the event
loop never blocks on the database.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

log = structlog.get_logger("servicekit.database")

# How long a SQLite writer waits for another one before failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5_000


def database_url(settings_value: str, data_dir: Path, name: str) -> str:
    """The URL to use: the configured one, or a SQLite file `<data_dir>/<name>.db`."""
    if settings_value.strip():
        return settings_value.strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(data_dir / f'{name}.db').resolve()}"


def _switch_to_wal(cursor: Any) -> None:
    """WAL lets readers run while one writer commits.

    Switching a new file to WAL takes an exclusive lock, and SQLite reports a
    race for it (replicas opening a new database together) as "database is
    locked" at once, without the busy timeout: retry until that timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _switch_to_wal(cursor)
        # Foreign keys are off by default in SQLite.
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite connections get WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(url)
        event.listen(engine, "connect", _configure_sqlite_connection)
    else:
        # Servers drop idle connections; pre-ping replaces them instead of failing a request.
        engine = sa.create_engine(url, pool_pre_ping=True)
    log.info("database_engine", backend=parsed.get_backend_name(), driver=parsed.get_driver_name())
    return engine


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UtcDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A timestamp stored as naive UTC and read back timezone-aware.

    SQLite keeps no time zone, so DateTime(timezone=True) would hand back naive
    values there and aware ones on PostgreSQL; this makes both behave alike.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs a timezone-aware datetime")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


__all__ = ["UtcDateTime", "database_url", "make_engine", "utcnow"]
