"""The runner of long-running operations in each replica (the store and the API:
servicekit/operations.py, which says how claiming, heartbeats, takeover and
fencing work).

A handler is `async def run(context) -> response message`: it reads its request
from `context.record.request`, reports `context.progress(percent, step)` as
often as it likes (the runner writes the newest at most every
`progress_interval`), checks `context.cancelled()` at its checkpoints and raises
`OperationCancelled` there, and raises `OperationFailed(code, message)` for a
failure the caller can act on. Anything else it raises is recorded as INTERNAL
(the details only in this replica's log).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import secrets
import socket
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import grpc
import structlog
from google.protobuf.message import Message
from sqlalchemy.exc import SQLAlchemyError

from servicekit.errors import NotFound
from servicekit.operations import (
    Beat,
    OperationCancelled,
    OperationFailed,
    OperationRecord,
    OperationStore,
    State,
    Takeover,
)

log = structlog.get_logger("servicekit.operations")


class OperationContext:
    """What an operation's work sees: its record, a progress reporter and a cancel check (both thread-safe)."""

    def __init__(self, record: OperationRecord) -> None:
        self.record = record
        self._lock = threading.Lock()
        self._progress: tuple[int, str] | None = None
        self._stop = threading.Event()
        # Why it should stop: "cancelled" (CancelOperation), "lost" (another replica took it), "stopping".
        self.stop_reason = ""

    def progress(self, percent: int, step: str) -> None:
        with self._lock:
            self._progress = (percent, step)

    def take_progress(self) -> tuple[int, str] | None:
        """The newest progress since the last call, if any."""
        with self._lock:
            latest, self._progress = self._progress, None
            return latest

    def cancelled(self) -> bool:
        return self._stop.is_set()

    def stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()


Handler = Callable[[OperationContext], Coroutine[Any, Any, Message]]


def replica_id() -> str:
    """This process among the replicas: "host/pid-random" (the host part finds its own operations after a restart)."""
    return f"{socket.gethostname()}/{os.getpid()}-{secrets.token_hex(2)}"


class OperationRunner:
    """Runs the operations of the kinds it has handlers for, one at a time (each may take every core)."""

    def __init__(
        self,
        store: OperationStore,
        handlers: Mapping[str, Handler],
        *,
        replica: str | None = None,
        poll_interval: float = 1.0,
        progress_interval: float = 0.5,
        stale_after: float = 30.0,
        restart_after: float = 5.0,
        max_attempts: int = 5,
        stop_grace: float = 5.0,
    ) -> None:
        self._store = store
        self._handlers = dict(handlers)
        self.replica = replica or replica_id()
        self._poll_interval = poll_interval
        self._progress_interval = progress_interval
        self._takeover = Takeover(
            host_prefix=self.replica.split("/", 1)[0] + "/",
            restart_after=dt.timedelta(seconds=restart_after),
            stale_after=dt.timedelta(seconds=stale_after),
            max_attempts=max_attempts,
        )
        self._stop_grace = stop_grace
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="operation-runner")

    def wake(self) -> None:
        """An operation was just created: look for it now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                record = await asyncio.to_thread(self._store.claim, self.replica, list(self._handlers), self._takeover)
                failures = 0
            except SQLAlchemyError as error:
                # The database is down: try again later, ever more slowly (at most 30 s).
                failures += 1
                log.warning("operation_claim_failed", error=type(error).__name__, failures=failures)
                record = None
            except Exception:
                failures += 1
                log.exception("operation_claim_failed", failures=failures)
                record = None
            if record is not None:
                await self._execute(record)
                continue
            delay = min(30.0, self._poll_interval * 2**failures) if failures else self._poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _execute(self, record: OperationRecord) -> None:
        context = OperationContext(record)
        log.info("operation_started", operation=record.name, kind=record.kind, attempt=record.attempts)
        work = asyncio.create_task(self._handlers[record.kind](context), name=f"operation-{record.id}")
        stop_deadline: float | None = None
        loop = asyncio.get_running_loop()
        while not work.done():
            await asyncio.wait({work}, timeout=self._progress_interval)
            if work.done():
                break
            if self._stopping.is_set() and stop_deadline is None:
                # Hand it back first, so that another replica can start it without waiting for us.
                released = await self._quietly(self._store.release, record)
                context.stop("stopping")
                log.info("operation_released", operation=record.name, released=released)
                stop_deadline = loop.time() + self._stop_grace
            if stop_deadline is not None:
                if loop.time() > stop_deadline:
                    work.cancel()  # its thread ends at its next checkpoint; nothing of it is recorded
                    return
                continue
            beat = await self._quietly(self._store.heartbeat, record, context.take_progress())
            if isinstance(beat, Beat) and not beat.owned:
                context.stop("lost")
                log.warning("operation_lost", operation=record.name)
            elif isinstance(beat, Beat) and beat.cancel_requested:
                context.stop("cancelled")
        await self._record(record, context, work)

    async def _record(self, record: OperationRecord, context: OperationContext, work: asyncio.Task[Message]) -> None:
        state: State
        response: Message | None = None
        error: tuple[grpc.StatusCode, str] | None = None
        try:
            response = work.result()
            state = State.SUCCEEDED
        except (OperationCancelled, asyncio.CancelledError):
            if context.stop_reason != "cancelled":
                return  # lost or stopping: not ours to record any more
            state, error = State.CANCELLED, (grpc.StatusCode.CANCELLED, "cancelled")
        except OperationFailed as failure:
            state, error = State.FAILED, (failure.code, failure.message)
        except Exception:
            log.exception("operation_failed", operation=record.name)
            state, error = (
                State.FAILED,
                (grpc.StatusCode.INTERNAL, f"internal error; see the logs of replica {self.replica}"),
            )
        recorded = await self._quietly(self._store.finish, record, state, response=response, error=error)
        log.info(
            "operation_ended",
            operation=record.name,
            state=state.value,
            recorded=recorded,
            code=error[0].name if error else "OK",
        )

    async def _quietly(self, call: Callable[..., object], *args: object, **kwargs: object) -> object:
        """A store call that may fail while the database is down (None then): the operation is
        not lost, its heartbeat stops and it is taken over once the database is back."""
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except SQLAlchemyError as error:
            log.warning("operation_store_failed", call=getattr(call, "__name__", "?"), error=type(error).__name__)
            return None


async def wait_until_done(
    store: OperationStore, record: OperationRecord, *, poll_interval: float = 0.25
) -> OperationRecord:
    """Poll until the operation is done (an RPC that waits for its own operation)."""
    current: OperationRecord | None = record
    while current is not None and not current.done:
        await asyncio.sleep(poll_interval)
        current = await asyncio.to_thread(store.get, record.tenant_id, record.id)
    if current is None:
        raise NotFound(f"operation {record.name} vanished", reason="OPERATION_NOT_FOUND")
    return current


__all__ = ["Handler", "OperationContext", "OperationRunner", "replica_id", "wait_until_done"]
