"""The back office's store: transactions, idempotent writes, reset, state digest and ground-truth replay."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from demoshop import loader, records
from demoshop.operations import ShopError
from demoshop.schema import idempotency_keys, make_engine
from demoshop.tools import AGENT_SIDE_TOOLS, TOOLS

Operation = Callable[[Connection], Any]


@dataclass(frozen=True)
class WriteResult:
    status: int
    body: Any
    # The stored response of an earlier request with the same Idempotency-Key: nothing was done now.
    replayed: bool = False


@dataclass
class ReplayResult:
    digest: str
    # One entry per action: name, ok, and the record or the error.
    results: list[dict[str, Any]] = field(default_factory=list)
    # The users and orders after the actions (when asked for).
    state: dict[str, Any] | None = None

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [result for result in self.results if not result["ok"]]


def request_fingerprint(method: str, path: str, body: Any) -> str:
    return hashlib.sha256(f"{method} {path}\n{records.canonical_json(body)}".encode()).hexdigest()


class Shop:
    """The store on one SQLite file, loaded from one data folder."""

    def __init__(self, db_path: Path, data_dir: Path):
        self.db_path = db_path
        self.data_dir = data_dir
        self.engine = make_engine(db_path)
        self._source: tuple[tuple[tuple[int, int], ...], loader.SourceData] | None = None

    def prepare(self, reset: bool = False) -> bool:
        """Create and load the database unless already loaded; `reset` reloads it. Returns whether it loaded."""
        return loader.prepare(self.engine, self.data_dir, reset=reset)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction: one consistent snapshot, never waiting for a writer (WAL)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction holding the database's write lock from its start (BEGIN IMMEDIATE)."""
        with self.engine.connect().execution_options(write=True) as conn, conn.begin():
            yield conn

    def write(self, operation: Operation, idempotency_key: str | None = None, fingerprint: str = "") -> WriteResult:
        """Run `operation` in one transaction. With an idempotency key, the outcome (a record or a refusal) is
        stored in that same transaction, and the same key again gets it back without running anything; the same
        key with another request (fingerprint) is refused with 422."""
        with self.writing() as conn:
            if idempotency_key is not None:
                stored = conn.execute(
                    sa.select(idempotency_keys).where(idempotency_keys.c.key == idempotency_key)
                ).one_or_none()
                if stored is not None:
                    if stored.fingerprint != fingerprint:
                        error = ShopError(
                            422,
                            "idempotency_key_reused",
                            "Error: this Idempotency-Key was used for a different request",
                        )
                        return WriteResult(error.status, error.body())
                    return WriteResult(stored.status_code, stored.body, replayed=True)
            savepoint = conn.begin_nested()
            try:
                result = WriteResult(200, operation(conn))
                savepoint.commit()
            except ShopError as error:
                savepoint.rollback()  # a refusal changes nothing, even if a check came late
                result = WriteResult(error.status, error.body())
            if idempotency_key is not None:
                conn.execute(
                    sa.insert(idempotency_keys).values(
                        key=idempotency_key,
                        fingerprint=fingerprint,
                        status_code=result.status,
                        body=result.body,
                        created_at=time.time(),
                    )
                )
            return result

    def read(self, operation: Operation) -> Any:
        with self.reading() as conn:
            return operation(conn)

    def source(self) -> loader.SourceData:
        """The data folder, parsed again only when one of its files changed (reset and replay use it often)."""
        stamp = tuple(_file_stamp(self.data_dir / name) for name in loader.DATA_FILES)
        if self._source is None or self._source[0] != stamp:
            self._source = (stamp, loader.read_source(self.data_dir))
        return self._source[1]

    def reset(self) -> str:
        """Reload the data folder (every write and stored key is gone); returns the state digest."""
        source = self.source()
        with self.writing() as conn:
            loader.replace_data(conn, source)
            return records.state_digest(records.export_state(conn))

    def export(self) -> dict[str, Any]:
        state: dict[str, Any] = self.read(records.export_state)
        return state

    def digest(self) -> str:
        return records.state_digest(self.export())

    def replay(self, actions: list[dict[str, Any]], keep_state: bool = False) -> ReplayResult:
        """The state digest after running `actions` ({"name", "kwargs"}: τ-bench's ground truth) on freshly
        loaded data, and each action's outcome. Runs in a transaction that is rolled back: the live state is
        left as it was."""
        source = self.source()
        with self.engine.connect().execution_options(write=True) as conn:
            transaction = conn.begin()
            try:
                loader.replace_data(conn, source)
                outcomes = [_run_action(conn, action) for action in actions]
                state = records.export_state(conn)
                return ReplayResult(records.state_digest(state), outcomes, state if keep_state else None)
            finally:
                transaction.rollback()


def _file_stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (0, -1)  # read_source says what is missing
    return (stat.st_mtime_ns, stat.st_size)


def _run_action(conn: Connection, action: dict[str, Any]) -> dict[str, Any]:
    name = str(action.get("name", ""))
    kwargs = action.get("kwargs") or {}
    if name in AGENT_SIDE_TOOLS:
        return {"name": name, "ok": True, "skipped": "not a back-office tool"}
    tool = TOOLS.get(name)
    if tool is None:
        return {"name": name, "ok": False, "error": f"Error: unknown tool {name}", "code": "unknown_tool"}
    savepoint = conn.begin_nested()
    try:
        output = tool(conn, **kwargs)
        savepoint.commit()
    except ShopError as error:
        savepoint.rollback()
        return {"name": name, "ok": False, **error.body()}
    except ValidationError as error:  # arguments that do not fit the tool
        savepoint.rollback()
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        message = f"Error: invalid arguments ({problems})"
        return {"name": name, "ok": False, "error": message, "code": "invalid_arguments"}
    return {"name": name, "ok": True, "output": output}
