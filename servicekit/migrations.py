"""Versioned schema migrations, applied at a service's start: one way for every
service with a database.

A service declares its migrations as a `Schema`: a numbered list whose steps
are functions of alembic `Operations` (so ALTERs are portable between SQLite
and PostgreSQL). The applied versions are rows of `<service>_schema_migrations`,
so services can share one database, and every pending migration runs in ONE
transaction together with its version rows: a crash leaves the schema at the
old version, never half-changed. Replicas that start together serialize on a
lock (a PostgreSQL advisory lock; SQLite's write lock), so each migration runs
once.

Never edit a migration that has shipped: add a new one. A first migration
skips the tables that `metadata.create_all` made before migrations existed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
import structlog
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.engine import Connection, Engine

from servicekit.database import UtcDateTime, utcnow

log = structlog.get_logger("servicekit.migrations")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Operations], None]


def create_table_once(op: Operations, name: str, *columns: sa.schema.SchemaItem) -> bool:
    """Create `name` unless create_all made it before migrations existed; True when created."""
    if sa.inspect(op.get_bind()).has_table(name):
        return False
    op.create_table(name, *columns)
    return True


class Schema:
    """The migrations of one service's tables."""

    def __init__(
        self,
        service: str,
        migrations: Sequence[Migration],
        *,
        adopted: Callable[[Connection], Iterable[int]] | None = None,
    ) -> None:
        """`adopted`: the versions an older mechanism already applied to a database that
        has no version table yet (asked once, then recorded as applied)."""
        versions = [m.version for m in migrations]
        if versions != list(range(1, len(migrations) + 1)):
            raise ValueError(f"{service} migrations must be numbered 1, 2, ... in order; got {versions}")
        self.service = service
        self.migrations = tuple(migrations)
        self.latest = versions[-1]
        self.version_table = f"{service}_schema_migrations"
        self._adopted = adopted
        # The same in every replica of the service, different between services.
        self._lock_key = zlib.crc32(self.version_table.encode())
        self._versions = sa.Table(
            self.version_table,
            sa.MetaData(),
            sa.Column("version", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("applied_at", UtcDateTime(), nullable=False),
        )

    def applied_versions(self, connection: Connection) -> list[int]:
        if not sa.inspect(connection).has_table(self.version_table):
            return []
        return sorted(connection.scalars(sa.select(self._versions.c.version)))

    def migrate(self, engine: Engine, target: int | None = None) -> list[int]:
        """Apply every pending migration up to `target` (the latest by default), all in one
        transaction; returns the versions applied."""
        target = self.latest if target is None else target
        applied: list[int] = []
        with engine.connect() as connection:
            self._lock(connection)
            if sa.inspect(connection).has_table(self.version_table):
                done = set(connection.scalars(sa.select(self._versions.c.version)))
            else:
                # A database this migrator has not seen: record what an older mechanism applied.
                done = {v for v in (self._adopted(connection) if self._adopted else ()) if v <= self.latest}
                self._versions.create(connection)
                self._record(connection, [m for m in self.migrations if m.version in done])
            operations = Operations(MigrationContext.configure(connection))
            for migration in self.migrations:
                if migration.version in done or migration.version > target:
                    continue
                migration.apply(operations)
                self._record(connection, [migration])
                applied.append(migration.version)
            connection.commit()
        if applied:
            log.info("schema_migrated", service=self.service, applied=applied, version=max(applied))
        return applied

    def _lock(self, connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Held until the transaction ends: a second replica waits, then finds nothing to do.
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": self._lock_key})
        elif connection.dialect.name == "sqlite":
            # The write lock now, not at the first write: two processes cannot both read "version 0".
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    def _record(self, connection: Connection, migrations: Sequence[Migration]) -> None:
        for migration in migrations:
            connection.execute(
                self._versions.insert().values(version=migration.version, name=migration.name, applied_at=utcnow())
            )


__all__ = ["Migration", "Schema", "create_table_once"]
