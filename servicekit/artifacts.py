"""Versioned artifacts (what a service learns at run time: intent models,
confidence fits, ...) in the service's relational database, so every replica
of a service serves the same version and nothing learned lives on a pod's disk.

Two tables, shared by every service on one database and keyed by
(tenant_id, kind), e.g. kind="intent_model":

- `artifact_versions`: one row per version: its bytes (BYTEA on PostgreSQL,
  BLOB on SQLite), their SHA-256, metadata JSON, created_at. A version is
  written in its own transaction and never changed afterwards.
- `artifact_pointers`: which version serves, per (tenant, kind): the version,
  the history of versions that served before it (newest last), a generation
  counter incremented by every change, updated_at. A foreign key to
  `artifact_versions` means a pointer can only name a version whose bytes are
  committed: nothing half-written can ever be served.

Changing a pointer is a compare-and-set on its generation (`set_pointer`), so
two replicas promoting at once cannot interleave: the loser gets
`PointerConflict` and re-reads (`update_pointer` does that for a caller).
Followers poll the pointers' generations (`pointers`); on PostgreSQL every
change also sends a NOTIFY on channel `CHANNEL` (payload: the kind) in the
same transaction, which `ChangeWaiter` listens for to wake a poller at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
import structlog
from alembic.operations import Operations
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from servicekit.database import UtcDateTime, utcnow
from servicekit.migrations import Migration, Schema

log = structlog.get_logger("servicekit.artifacts")

# Ids as servicekit.ids bounds tenant ids; kinds and versions are the service's own names.
MAX_TENANT_CHARS = 200
MAX_KIND_CHARS = 100
MAX_VERSION_CHARS = 100
# How many earlier versions a pointer remembers (rollback goes back through them).
MAX_HISTORY = 100
# PostgreSQL NOTIFY channel for pointer changes.
CHANNEL = "aftercare_artifacts"


class ArtifactExists(Exception):
    """A version of that name is stored already (versions are immutable)."""


class ArtifactNotFound(LookupError):
    """No such version is stored."""


class ArtifactCorrupt(Exception):
    """A stored payload does not match its recorded SHA-256."""


class PointerConflict(Exception):
    """The pointer changed since it was read (another replica won the compare-and-set)."""


@dataclass(frozen=True)
class ArtifactVersion:
    tenant_id: str
    kind: str
    version: str
    created_at: dt.datetime
    metadata: Mapping[str, Any]
    size: int
    sha256: str


@dataclass(frozen=True)
class Pointer:
    tenant_id: str
    kind: str
    version: str
    # Versions that served before, oldest first; the last one is what a plain rollback restores.
    history: tuple[str, ...]
    # 1 for a new pointer, +1 on every change; 0 stands for "no pointer yet" in set_pointer.
    generation: int
    updated_at: dt.datetime


# --- schema --------------------------------------------------------------------------


def _v1_tables(op: Operations) -> None:
    op.create_table(
        "artifact_versions",
        sa.Column("tenant_id", sa.String(MAX_TENANT_CHARS), primary_key=True),
        sa.Column("kind", sa.String(MAX_KIND_CHARS), primary_key=True),
        sa.Column("version", sa.String(MAX_VERSION_CHARS), primary_key=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "artifact_pointers",
        sa.Column("tenant_id", sa.String(MAX_TENANT_CHARS), primary_key=True),
        sa.Column("kind", sa.String(MAX_KIND_CHARS), primary_key=True),
        sa.Column("version", sa.String(MAX_VERSION_CHARS), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "kind", "version"],
            ["artifact_versions.tenant_id", "artifact_versions.kind", "artifact_versions.version"],
            name="fk_artifact_pointers_version",
        ),
    )


# A Schema of its own (version table artifacts_schema_migrations): services sharing a
# database share the tables, told apart by kind.
SCHEMA = Schema("artifacts", (Migration(1, "artifact versions and pointers", _v1_tables),))

_metadata = sa.MetaData()
_versions = sa.Table(
    "artifact_versions",
    _metadata,
    sa.Column("tenant_id", sa.String(MAX_TENANT_CHARS), primary_key=True),
    sa.Column("kind", sa.String(MAX_KIND_CHARS), primary_key=True),
    sa.Column("version", sa.String(MAX_VERSION_CHARS), primary_key=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("meta", sa.JSON(), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("payload", sa.LargeBinary(), nullable=False),
)
_pointers = sa.Table(
    "artifact_pointers",
    _metadata,
    sa.Column("tenant_id", sa.String(MAX_TENANT_CHARS), primary_key=True),
    sa.Column("kind", sa.String(MAX_KIND_CHARS), primary_key=True),
    sa.Column("version", sa.String(MAX_VERSION_CHARS), nullable=False),
    sa.Column("history", sa.JSON(), nullable=False),
    sa.Column("generation", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)
# Everything about a version but its bytes.
_VERSION_INFO = (
    _versions.c.tenant_id,
    _versions.c.kind,
    _versions.c.version,
    _versions.c.created_at,
    _versions.c.meta,
    _versions.c.size,
    _versions.c.sha256,
)


def _version_of(row: sa.Row[Any]) -> ArtifactVersion:
    return ArtifactVersion(
        tenant_id=row.tenant_id,
        kind=row.kind,
        version=row.version,
        created_at=row.created_at,
        metadata=dict(row.meta),
        size=int(row.size),
        sha256=row.sha256,
    )


def _pointer_of(row: sa.Row[Any]) -> Pointer:
    return Pointer(
        tenant_id=row.tenant_id,
        kind=row.kind,
        version=row.version,
        history=tuple(str(v) for v in row.history),
        generation=int(row.generation),
        updated_at=row.updated_at,
    )


def _check_names(tenant_id: str, kind: str, version: str | None = None) -> None:
    for what, value, limit in (
        ("tenant_id", tenant_id, MAX_TENANT_CHARS),
        ("kind", kind, MAX_KIND_CHARS),
        ("version", version, MAX_VERSION_CHARS),
    ):
        if value is not None and not 0 < len(value) <= limit:
            raise ValueError(f"{what} must have 1-{limit} characters, got {len(value)}")


# --- the store -----------------------------------------------------------------------


class ArtifactStore:
    """Blocking (sync SQLAlchemy): services call it through asyncio.to_thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgresql = engine.dialect.name == "postgresql"

    def migrate(self) -> None:
        SCHEMA.migrate(self.engine)

    # --- versions ---------------------------------------------------------------------

    def put(
        self, tenant_id: str, kind: str, version: str, payload: bytes, metadata: Mapping[str, Any]
    ) -> ArtifactVersion:
        """Store a new version's bytes in a transaction of their own (before any pointer can name
        them); raises ArtifactExists for a name already taken."""
        _check_names(tenant_id, kind, version)
        stored = ArtifactVersion(
            tenant_id=tenant_id,
            kind=kind,
            version=version,
            created_at=utcnow(),
            metadata=dict(metadata),
            size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
        )
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    _versions.insert().values(
                        tenant_id=tenant_id,
                        kind=kind,
                        version=version,
                        created_at=stored.created_at,
                        meta=stored.metadata,
                        size=stored.size,
                        sha256=stored.sha256,
                        payload=payload,
                    )
                )
        except IntegrityError:
            raise ArtifactExists(f"{kind} version {version} exists for tenant {tenant_id}") from None
        return stored

    def versions(self, tenant_id: str, kind: str) -> list[ArtifactVersion]:
        """Every stored version of (tenant, kind), oldest first (without their bytes)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(*_VERSION_INFO)
                .where(_versions.c.tenant_id == tenant_id, _versions.c.kind == kind)
                .order_by(_versions.c.created_at, _versions.c.version)
            )
            return [_version_of(row) for row in rows]

    def version(self, tenant_id: str, kind: str, version: str) -> ArtifactVersion | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(*_VERSION_INFO).where(
                    _versions.c.tenant_id == tenant_id, _versions.c.kind == kind, _versions.c.version == version
                )
            ).one_or_none()
        return None if row is None else _version_of(row)

    def payload(self, tenant_id: str, kind: str, version: str) -> bytes:
        """A version's bytes, checked against their SHA-256 (ArtifactNotFound, ArtifactCorrupt)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(_versions.c.payload, _versions.c.sha256).where(
                    _versions.c.tenant_id == tenant_id, _versions.c.kind == kind, _versions.c.version == version
                )
            ).one_or_none()
        if row is None:
            raise ArtifactNotFound(f"no {kind} version {version} for tenant {tenant_id}")
        payload = bytes(row.payload)
        if hashlib.sha256(payload).hexdigest() != row.sha256:
            raise ArtifactCorrupt(f"{kind} version {version} of tenant {tenant_id} does not match its checksum")
        return payload

    # --- pointers ---------------------------------------------------------------------

    def pointer(self, tenant_id: str, kind: str) -> Pointer | None:
        with self.engine.connect() as connection:
            return self._pointer(connection, tenant_id, kind)

    @staticmethod
    def _pointer(connection: Connection, tenant_id: str, kind: str) -> Pointer | None:
        row = connection.execute(
            sa.select(_pointers).where(_pointers.c.tenant_id == tenant_id, _pointers.c.kind == kind)
        ).one_or_none()
        return None if row is None else _pointer_of(row)

    def pointers(self, kind: str) -> list[Pointer]:
        """Every tenant's pointer of `kind` (what a follower polls)."""
        with self.engine.connect() as connection:
            query = sa.select(_pointers).where(_pointers.c.kind == kind).order_by(_pointers.c.tenant_id)
            rows = connection.execute(query)
            return [_pointer_of(row) for row in rows]

    def set_pointer(
        self,
        tenant_id: str,
        kind: str,
        version: str,
        history: Sequence[str],
        *,
        expected_generation: int,
    ) -> Pointer:
        """Point (tenant, kind) at `version` if its generation is still `expected_generation`
        (0: there is no pointer yet). One transaction; raises PointerConflict when another
        change came first and ArtifactNotFound when `version` is not stored."""
        _check_names(tenant_id, kind, version)
        kept = [str(v) for v in history][-MAX_HISTORY:]
        now = utcnow()
        try:
            with self.engine.begin() as connection:
                stored = connection.execute(
                    sa.select(_versions.c.version).where(
                        _versions.c.tenant_id == tenant_id, _versions.c.kind == kind, _versions.c.version == version
                    )
                ).one_or_none()
                if stored is None:
                    raise ArtifactNotFound(f"no {kind} version {version} for tenant {tenant_id}")
                if expected_generation == 0:
                    # A concurrent first pointer makes this insert fail on the primary key.
                    connection.execute(
                        _pointers.insert().values(
                            tenant_id=tenant_id, kind=kind, version=version, history=kept, generation=1, updated_at=now
                        )
                    )
                else:
                    changed = connection.execute(
                        _pointers.update()
                        .where(
                            _pointers.c.tenant_id == tenant_id,
                            _pointers.c.kind == kind,
                            _pointers.c.generation == expected_generation,
                        )
                        .values(version=version, history=kept, generation=expected_generation + 1, updated_at=now)
                    )
                    if changed.rowcount != 1:
                        raise PointerConflict(
                            f"{kind} pointer of tenant {tenant_id} is no longer at generation {expected_generation}"
                        )
                if self._postgresql:
                    # Delivered at commit, to every listener (ChangeWaiter).
                    connection.execute(sa.select(sa.func.pg_notify(CHANNEL, kind)))
        except IntegrityError:
            raise PointerConflict(f"{kind} pointer of tenant {tenant_id} was created meanwhile") from None
        return Pointer(tenant_id, kind, version, tuple(kept), expected_generation + 1, now)

    def update_pointer(
        self,
        tenant_id: str,
        kind: str,
        change: Callable[[Pointer | None], tuple[str, Sequence[str]]],
        *,
        attempts: int = 5,
    ) -> Pointer:
        """Read the pointer, let `change` say the new (version, history), compare-and-set;
        re-read and try again when another replica changed it meanwhile. `change` may raise
        to give up (its exception propagates)."""
        for _ in range(attempts - 1):
            current = self.pointer(tenant_id, kind)
            version, history = change(current)
            try:
                return self.set_pointer(
                    tenant_id, kind, version, history, expected_generation=0 if current is None else current.generation
                )
            except PointerConflict:
                log.info("artifact_pointer_conflict", tenant_id=tenant_id, kind=kind)
        current = self.pointer(tenant_id, kind)
        version, history = change(current)
        return self.set_pointer(
            tenant_id, kind, version, history, expected_generation=0 if current is None else current.generation
        )

    def promote(self, tenant_id: str, kind: str, version: str) -> Pointer:
        """Make `version` serve; the version serving before goes on the history."""

        def promoted(current: Pointer | None) -> tuple[str, Sequence[str]]:
            if current is None:
                return version, ()
            if current.version == version:
                return version, current.history
            return version, (*current.history, current.version)

        return self.update_pointer(tenant_id, kind, promoted)

    def waiter(self, kind: str) -> ChangeWaiter:
        """Something that blocks until a pointer of `kind` may have changed, or a timeout."""
        return ChangeWaiter(self.engine, kind) if self._postgresql else ChangeWaiter(None, kind)

    def close(self) -> None:
        self.engine.dispose()


class ChangeWaiter:
    """Blocks in `wait(timeout)` until a pointer change of its kind is announced (PostgreSQL
    LISTEN on a connection of its own) or the timeout passes; on SQLite, or while the
    listening connection is down, it just sleeps: the caller polls after either way.

    One thread waits at a time; `close` may come from another thread (the connection is then
    closed by the waiting thread when its wait ends, within `timeout`)."""

    def __init__(self, engine: Engine | None, kind: str) -> None:
        self._engine = engine
        self._kind = kind
        self._connection: psycopg.Connection[Any] | None = None
        self._closed = threading.Event()
        self._waiting = threading.Lock()

    def _listen(self) -> psycopg.Connection[Any] | None:
        if self._connection is None and self._engine is not None:
            url = self._engine.url.set(drivername="postgresql")
            try:
                connection = psycopg.connect(
                    url.render_as_string(hide_password=False), autocommit=True, connect_timeout=5
                )
                connection.execute(f'LISTEN "{CHANNEL}"')
            except psycopg.Error as error:
                log.warning("artifact_listen_failed", error=type(error).__name__)
                return None
            self._connection = connection
        return self._connection

    def wait(self, timeout: float) -> bool:
        """True when a change of this kind was announced within `timeout` seconds."""
        with self._waiting:
            if self._closed.is_set():
                return False
            try:
                return self._wait(timeout)
            finally:
                if self._closed.is_set():
                    self._drop()

    def _wait(self, timeout: float) -> bool:
        connection = self._listen()
        if connection is None:
            self._closed.wait(timeout)
            return False
        try:
            for notice in connection.notifies(timeout=timeout):
                if notice.payload == self._kind:
                    return True
        except psycopg.Error as error:
            # The server went away: sleep this turn, listen on a new connection next time.
            log.warning("artifact_listen_lost", error=type(error).__name__)
            self._drop()
            self._closed.wait(timeout)
        return False

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                connection.close()

    def close(self) -> None:
        self._closed.set()
        if self._waiting.acquire(blocking=False):
            try:
                self._drop()
            finally:
                self._waiting.release()


__all__ = [
    "CHANNEL",
    "SCHEMA",
    "ArtifactCorrupt",
    "ArtifactExists",
    "ArtifactNotFound",
    "ArtifactStore",
    "ArtifactVersion",
    "ChangeWaiter",
    "Pointer",
    "PointerConflict",
]
