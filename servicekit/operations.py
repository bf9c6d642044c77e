"""Long-running operations (the google.longrunning pattern, AIP-151), stored in
the service's relational database so that every replica answers for every
operation and none is lost with the replica that ran it.

- `OperationStore`: the `operations` table (its own migration Schema, so any
  service's database can hold it): name "tenants/{tenant}/operations/{id}",
  kind, state, the request bytes (any replica can run it again from them),
  kind-specific metadata bytes, progress, the response (an Any) or the error,
  owner replica, heartbeat, cancel flag, attempts, times. At most one operation
  of a kind per tenant is not done: a partial unique index refuses a second one
  (`AlreadyRunning`, naming the first).
- `OperationRunner` (servicekit/operation_runner.py): one per replica. It claims queued operations with a
  compare-and-set UPDATE (several replicas never run one at once), heartbeats
  while one runs, records progress (at most every `progress_interval`), passes
  a cancel request on to the work at its next checkpoint, and records the result
  or the error. A RUNNING operation whose heartbeat stopped is taken over and
  run again from its stored request (attempts + 1): at once-ish when the owner
  was this host (the process restarted: `restart_after`), after `stale_after`
  when it was another replica (it died). After `max_attempts` starts it is
  reported FAILED instead of run again. A replica that stops releases its
  operation to QUEUED, so another one takes it over without waiting.
  Every write of a runner is fenced by (owner, attempts): a replica that lost
  its operation to another can no longer record anything for it.
- `OperationsServicer`: aftercare.operations.v1.OperationsService over the store.

Resumed means restarted from the stored request: work done before a takeover is
not kept (a retrain trains again from the start).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import enum
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import grpc
import sqlalchemy as sa
import structlog
from alembic.operations import Operations
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from aftercare.operations.v1 import operations_pb2, operations_pb2_grpc
from servicekit.database import UtcDateTime, utcnow
from servicekit.errors import ApiError, NotFound, Violations
from servicekit.ids import ID_CHARACTERS, MAX_ID_CHARS, check_id
from servicekit.migrations import Migration, Schema

log = structlog.get_logger("servicekit.operations")

TABLE = "operations"
_OPERATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NAME = re.compile(rf"tenants/([{ID_CHARACTERS}]{{1,{MAX_ID_CHARS}}})/operations/([A-Za-z0-9_-]{{1,64}})")
NAME_FORMAT = "tenants/{tenant_id}/operations/{operation_id}"
MAX_STEP_CHARS = 200
MAX_ERROR_CHARS = 2000
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class State(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def done(self) -> bool:
        return self not in (State.QUEUED, State.RUNNING)


# --- the table -------------------------------------------------------------------

_metadata = sa.MetaData()


def _columns() -> list[sa.schema.SchemaItem]:
    return [
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(MAX_ID_CHARS), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        # False while queued or running: the partial unique index below holds one such row per (tenant, kind).
        sa.Column("done", sa.Boolean, nullable=False, default=False),
        sa.Column("request", sa.LargeBinary, nullable=False),
        # The kind's own metadata message (what it knows at the start, e.g. how many examples).
        sa.Column("metadata", sa.LargeBinary, nullable=False),
        sa.Column("progress_percent", sa.Integer, nullable=False, default=0),
        sa.Column("step", sa.String(MAX_STEP_CHARS), nullable=False, default="queued"),
        # A google.protobuf.Any, once succeeded.
        sa.Column("response", sa.LargeBinary, nullable=True),
        sa.Column("error_code", sa.Integer, nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("heartbeat_at", UtcDateTime(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
    ]


_ops = sa.Table(TABLE, _metadata, *_columns())
_NOT_DONE = sa.column("done") == sa.false()


def _v1_operations(op: Operations) -> None:
    op.create_table(TABLE, *_columns())
    # "Two of one kind for one tenant at once are refused": the database holds it, across replicas.
    op.create_index(
        "ux_operations_one_running",
        TABLE,
        ["tenant_id", "kind"],
        unique=True,
        sqlite_where=_NOT_DONE,
        postgresql_where=_NOT_DONE,
    )
    op.create_index("ix_operations_tenant_created", TABLE, ["tenant_id", "created_at"])
    op.create_index("ix_operations_done_created", TABLE, ["done", "created_at"])


SCHEMA = Schema("operations", (Migration(1, "long-running operations", _v1_operations),))


# --- names ----------------------------------------------------------------------


def operation_name(tenant_id: str, operation_id: str) -> str:
    return NAME_FORMAT.format(tenant_id=tenant_id, operation_id=operation_id)


def parse_name(name: str) -> tuple[str, str] | None:
    """(tenant_id, operation_id) of a well-formed name, else None."""
    match = _NAME.fullmatch(name)
    return (match.group(1), match.group(2)) if match else None


def check_name(violations: Violations, name: str, field_path: str = "name") -> tuple[str, str]:
    parsed = parse_name(name)
    if parsed is None:
        violations.add(field_path, f"must look like {NAME_FORMAT} (tenant: an id; operation: letters, digits, _ or -)")
        return "", ""
    return parsed


# --- errors ---------------------------------------------------------------------


class OperationCancelled(Exception):
    """Raised by an operation's work at a checkpoint once it is asked to stop."""


class OperationFailed(Exception):
    """Raised by an operation's work for a failure the caller can act on (recorded with its code)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AlreadyRunning(ApiError):
    """A second operation of a kind for a tenant while one is queued or running."""

    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "OPERATION_ALREADY_RUNNING"

    def __init__(self, running: str) -> None:
        super().__init__(
            f"operation {running} is already running for this tenant; poll it or cancel it",
            metadata={"operation": running},
        )
        self.running = running


class OperationError(ApiError):
    """How a failed operation is reported by an RPC that waited for it (any status code)."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str) -> None:
        super().__init__(message, reason=reason)
        self.code = code


def status_code(number: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    return grpc.StatusCode.UNKNOWN


# --- the store ------------------------------------------------------------------


@dataclass(frozen=True)
class OperationRecord:
    id: str
    tenant_id: str
    kind: str
    state: State
    request: bytes
    metadata: bytes
    progress_percent: int
    step: str
    response: bytes | None
    error_code: int | None
    error_message: str | None
    owner: str | None
    heartbeat_at: dt.datetime | None
    cancel_requested: bool
    attempts: int
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    @property
    def name(self) -> str:
        return operation_name(self.tenant_id, self.id)

    @property
    def done(self) -> bool:
        return self.state.done

    @classmethod
    def of(cls, row: sa.Row[tuple[object, ...]]) -> OperationRecord:
        values = dict(row._mapping)
        values["state"] = State(values["state"])
        del values["done"]  # the state says it
        return cls(**values)


@dataclass(frozen=True)
class Beat:
    """What a heartbeat learnt: whether the runner still owns the operation and whether it was asked to stop."""

    owned: bool
    cancel_requested: bool


@dataclass(frozen=True)
class Takeover:
    """When a RUNNING operation counts as abandoned: its owner on this host (a restart) or elsewhere (a death)."""

    host_prefix: str
    restart_after: dt.timedelta
    stale_after: dt.timedelta
    max_attempts: int


class OperationStore:
    """Blocking; callers in an event loop run it through asyncio.to_thread."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def migrate(self) -> None:
        SCHEMA.migrate(self._engine)

    # -- callers ------------------------------------------------------------------

    def create(self, tenant_id: str, kind: str, request: bytes, metadata: bytes) -> OperationRecord:
        """A new QUEUED operation; AlreadyRunning when the tenant has one of this kind not done."""
        for _ in range(3):
            now = utcnow()
            operation_id = uuid.uuid4().hex
            values = {
                "id": operation_id,
                "tenant_id": tenant_id,
                "kind": kind,
                "state": State.QUEUED.value,
                "request": request,
                "metadata": metadata,
                "created_at": now,
                "updated_at": now,
            }
            try:
                with self._engine.begin() as connection:
                    connection.execute(_ops.insert().values(**values))
            except IntegrityError:
                running = self._running_id(tenant_id, kind)
                if running is not None:
                    raise AlreadyRunning(operation_name(tenant_id, running)) from None
                continue  # it ended in between: try again
            created = self.get(tenant_id, operation_id)
            if created is None:
                raise RuntimeError(f"operation {operation_id} vanished right after it was written")
            return created
        raise RuntimeError("could not create the operation: another one kept starting and ending")

    def _running_id(self, tenant_id: str, kind: str) -> str | None:
        with self._engine.connect() as connection:
            found: str | None = connection.scalar(
                sa.select(_ops.c.id).where(
                    _ops.c.tenant_id == tenant_id, _ops.c.kind == kind, _ops.c.done == sa.false()
                )
            )
            return found

    def _one(self, tenant_id: str, operation_id: str) -> sa.Row[tuple[object, ...]] | None:
        with self._engine.connect() as connection:
            return connection.execute(
                sa.select(_ops).where(_ops.c.tenant_id == tenant_id, _ops.c.id == operation_id)
            ).first()

    def get(self, tenant_id: str, operation_id: str) -> OperationRecord | None:
        row = self._one(tenant_id, operation_id)
        return None if row is None else OperationRecord.of(row)

    def list(
        self,
        tenant_id: str,
        kinds: Sequence[str],
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        after: tuple[dt.datetime, str] | None = None,
        only_running: bool = False,
    ) -> tuple[list[OperationRecord], tuple[dt.datetime, str] | None]:
        """A page of the tenant's operations, newest first, and the cursor of the next page (None at the end)."""
        query = sa.select(_ops).where(_ops.c.tenant_id == tenant_id, _ops.c.kind.in_(kinds))
        if only_running:
            query = query.where(_ops.c.done == sa.false())
        if after is not None:
            created, last_id = after
            query = query.where(
                sa.or_(_ops.c.created_at < created, sa.and_(_ops.c.created_at == created, _ops.c.id < last_id))
            )
        query = query.order_by(_ops.c.created_at.desc(), _ops.c.id.desc()).limit(page_size + 1)
        with self._engine.connect() as connection:
            records = [OperationRecord.of(row) for row in connection.execute(query)]
        if len(records) <= page_size:
            return records, None
        last = records[page_size - 1]
        return records[:page_size], (last.created_at, last.id)

    def request_cancel(self, tenant_id: str, operation_id: str) -> OperationRecord | None:
        """A queued operation ends CANCELLED now; a running one is flagged (its runner stops it); a done one stays."""
        now = utcnow()
        with self._engine.begin() as connection:
            connection.execute(
                _ops.update()
                .where(_ops.c.tenant_id == tenant_id, _ops.c.id == operation_id, _ops.c.state == State.QUEUED.value)
                .values(
                    **_ended(State.CANCELLED, now),
                    error_code=grpc.StatusCode.CANCELLED.value[0],
                    error_message="cancelled before it started",
                )
            )
            connection.execute(
                _ops.update()
                .where(_ops.c.tenant_id == tenant_id, _ops.c.id == operation_id, _ops.c.state == State.RUNNING.value)
                .values(cancel_requested=True, step="cancelling", updated_at=now)
            )
        return self.get(tenant_id, operation_id)

    # -- runners ------------------------------------------------------------------

    def claim(self, owner: str, kinds: Sequence[str], takeover: Takeover) -> OperationRecord | None:
        """The oldest operation this replica may run, now RUNNING under `owner` with attempts + 1; None if none.

        Queued ones, and RUNNING ones whose owner stopped heartbeating. Several replicas may race for one:
        the UPDATE only succeeds while state and attempts are what was read (compare-and-set)."""
        now = utcnow()
        abandoned = sa.and_(
            _ops.c.state == State.RUNNING.value,
            sa.or_(
                _ops.c.heartbeat_at < now - takeover.stale_after,
                sa.and_(
                    _ops.c.owner.startswith(takeover.host_prefix, autoescape=True),
                    _ops.c.heartbeat_at < now - takeover.restart_after,
                ),
            ),
        )
        query = (
            sa.select(_ops)
            .where(
                _ops.c.done == sa.false(), _ops.c.kind.in_(kinds), sa.or_(_ops.c.state == State.QUEUED.value, abandoned)
            )
            .order_by(_ops.c.created_at)
            .limit(8)
        )
        with self._engine.connect() as connection:
            candidates = [OperationRecord.of(row) for row in connection.execute(query)]
        for candidate in candidates:
            same = (
                _ops.c.id == candidate.id,
                _ops.c.state == candidate.state.value,
                _ops.c.attempts == candidate.attempts,
            )
            with self._engine.begin() as connection:
                if candidate.cancel_requested or candidate.attempts >= takeover.max_attempts:
                    # Its runner died while it was being cancelled, or it keeps killing its runners.
                    ending = (
                        (State.CANCELLED, grpc.StatusCode.CANCELLED, "cancelled")
                        if candidate.cancel_requested
                        else (
                            State.FAILED,
                            grpc.StatusCode.ABORTED,
                            f"abandoned after {candidate.attempts} attempts: the replica running it stopped each time",
                        )
                    )
                    connection.execute(
                        _ops.update()
                        .where(*same)
                        .values(**_ended(ending[0], now), error_code=ending[1].value[0], error_message=ending[2])
                    )
                    log.warning(
                        "operation_ended_unrun",
                        operation=candidate.name,
                        state=ending[0].value,
                        attempts=candidate.attempts,
                    )
                    continue
                claimed = connection.execute(
                    _ops.update()
                    .where(*same)
                    .values(
                        state=State.RUNNING.value,
                        owner=owner,
                        attempts=candidate.attempts + 1,
                        heartbeat_at=now,
                        started_at=now,
                        updated_at=now,
                        progress_percent=0,
                        step="starting",
                    )
                ).rowcount
            if claimed == 1:
                if candidate.state is State.RUNNING:
                    log.warning(
                        "operation_taken_over",
                        operation=candidate.name,
                        previous_owner=candidate.owner,
                        attempt=candidate.attempts + 1,
                    )
                return self.get(candidate.tenant_id, candidate.id)
        return None

    def _fenced(self, record: OperationRecord) -> tuple[sa.ColumnElement[bool], ...]:
        return (
            _ops.c.id == record.id,
            _ops.c.owner == record.owner,
            _ops.c.attempts == record.attempts,
            _ops.c.state == State.RUNNING.value,
        )

    def heartbeat(self, record: OperationRecord, progress: tuple[int, str] | None) -> Beat:
        """Say the runner is alive (and where it stands, when that changed)."""
        now = utcnow()
        values: dict[str, object] = {"heartbeat_at": now}
        if progress is not None:
            values |= {
                "progress_percent": max(0, min(100, progress[0])),
                "step": progress[1][:MAX_STEP_CHARS],
                "updated_at": now,
            }
        with self._engine.begin() as connection:
            owned = connection.execute(_ops.update().where(*self._fenced(record)).values(**values)).rowcount == 1
            cancel = bool(connection.scalar(sa.select(_ops.c.cancel_requested).where(_ops.c.id == record.id)))
        return Beat(owned=owned, cancel_requested=cancel)

    def finish(
        self,
        record: OperationRecord,
        state: State,
        *,
        response: Message | None = None,
        error: tuple[grpc.StatusCode, str] | None = None,
    ) -> bool:
        """Record how it ended; False when this runner no longer owned it (nothing recorded)."""
        now = utcnow()
        values: dict[str, object] = _ended(state, now)
        if response is not None:
            packed = any_pb2.Any()
            packed.Pack(response)
            values |= {"response": packed.SerializeToString(), "progress_percent": 100}
        if error is not None:
            values |= {"error_code": error[0].value[0], "error_message": error[1][:MAX_ERROR_CHARS]}
        with self._engine.begin() as connection:
            return connection.execute(_ops.update().where(*self._fenced(record)).values(**values)).rowcount == 1

    def release(self, record: OperationRecord) -> bool:
        """Back to QUEUED (this replica stops): another one runs it from the start without waiting."""
        with self._engine.begin() as connection:
            return (
                connection.execute(
                    _ops.update()
                    .where(*self._fenced(record))
                    .values(
                        state=State.QUEUED.value,
                        owner=None,
                        heartbeat_at=None,
                        step="queued (replica stopped)",
                        progress_percent=0,
                        updated_at=utcnow(),
                    )
                ).rowcount
                == 1
            )


def _ended(state: State, now: dt.datetime) -> dict[str, object]:
    return {
        "state": state.value,
        "done": True,
        "finished_at": now,
        "updated_at": now,
        "step": state.value,
        "heartbeat_at": None,
    }


# --- the API --------------------------------------------------------------------


def _timestamp(moment: dt.datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


Describe = Callable[[OperationRecord], Message]


def to_proto(record: OperationRecord, describe: Describe | None = None) -> operations_pb2.Operation:
    """The Operation message; `describe` makes the kind's metadata message from the record."""
    operation = operations_pb2.Operation(
        name=record.name,
        done=record.done,
        create_time=_timestamp(record.created_at),
        update_time=_timestamp(record.updated_at),
    )
    if describe is not None:
        operation.metadata.Pack(describe(record))
    if record.response is not None:
        operation.response.ParseFromString(record.response)
    elif record.done:
        operation.error.code = record.error_code or grpc.StatusCode.UNKNOWN.value[0]
        operation.error.message = record.error_message or ""
    return operation


def _page_token(cursor: tuple[dt.datetime, str]) -> str:
    return base64.urlsafe_b64encode(f"{cursor[0].isoformat()}|{cursor[1]}".encode()).decode()


def _cursor(token: str) -> tuple[dt.datetime, str] | None:
    try:
        moment, _, last_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        created = dt.datetime.fromisoformat(moment)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if created.tzinfo is None or not _OPERATION_ID.fullmatch(last_id):
        return None
    return created, last_id


class OperationsServicer(operations_pb2_grpc.OperationsServiceServicer):
    """aftercare.operations.v1.OperationsService for the kinds a service runs (`describe`: kind -> metadata)."""

    def __init__(self, store: OperationStore, describe: Mapping[str, Describe]) -> None:
        self._store = store
        self._describe = dict(describe)

    def proto(self, record: OperationRecord) -> operations_pb2.Operation:
        return to_proto(record, self._describe.get(record.kind))

    async def _find(self, name: str) -> OperationRecord:
        problems = Violations()
        tenant_id, operation_id = check_name(problems, name)
        problems.raise_if_any()
        record = await asyncio.to_thread(self._store.get, tenant_id, operation_id)
        if record is None or record.kind not in self._describe:
            raise NotFound(f"no operation {name}", reason="OPERATION_NOT_FOUND")
        return record

    async def GetOperation(
        self, request: operations_pb2.GetOperationRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> operations_pb2.GetOperationResponse:
        return operations_pb2.GetOperationResponse(operation=self.proto(await self._find(request.name)))

    async def ListOperations(
        self, request: operations_pb2.ListOperationsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> operations_pb2.ListOperationsResponse:
        problems = Violations()
        check_id(problems, request.tenant_id, "tenant_id")
        problems.check(request.page_size >= 0, "page_size", "must not be negative")
        cursor = _cursor(request.page_token) if request.page_token else None
        problems.check(not request.page_token or cursor is not None, "page_token", "not a token this service gave")
        problems.raise_if_any()
        records, following = await asyncio.to_thread(
            self._store.list,
            request.tenant_id,
            list(self._describe),
            page_size=min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
            after=cursor,
            only_running=request.only_running,
        )
        return operations_pb2.ListOperationsResponse(
            operations=[self.proto(record) for record in records],
            next_page_token=_page_token(following) if following else "",
        )

    async def CancelOperation(
        self, request: operations_pb2.CancelOperationRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> operations_pb2.CancelOperationResponse:
        record = await self._find(request.name)
        if not record.done:
            updated = await asyncio.to_thread(self._store.request_cancel, record.tenant_id, record.id)
            record = updated or record
            log.info("operation_cancel_requested", operation=record.name, state=record.state.value)
        return operations_pb2.CancelOperationResponse(operation=self.proto(record))


__all__ = [
    "SCHEMA",
    "AlreadyRunning",
    "OperationCancelled",
    "OperationError",
    "OperationFailed",
    "OperationRecord",
    "OperationStore",
    "OperationsServicer",
    "State",
    "check_name",
    "operation_name",
    "parse_name",
    "status_code",
    "to_proto",
]
