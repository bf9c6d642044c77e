"""When the store flushes: once writes pause, not after each one.

A flush seals what was written: sealed segments get the dense index (growing ones are
searched row by row), so few large segments search faster than many small ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

# Writes are flushed (sealed into a segment) once no write has run for this long,
# or once this many rows wait, or at the latest this long after the first one.
# Bounded by rows rather than time, segment sizes do not depend on how busy the CPU
# is; 2,000 unflushed rows cost a search ~50 ms on Milvus Lite while they wait.
FLUSH_QUIET_S = 1.0
FLUSH_MAX_ROWS = 2000
FLUSH_MAX_DELAY_S = 60.0


class FlushBatcher:
    """Counts unflushed writes and runs `flush` once they pause (in a task of its own)."""

    def __init__(self, flush: Callable[[], Awaitable[None]]) -> None:
        self._flush = flush
        self._last_write = 0.0
        self._writers = 0
        self._first_unflushed: float | None = None
        self._unflushed_rows = 0
        self._flusher: asyncio.Task[None] | None = None

    @property
    def unflushed(self) -> bool:
        """Whether anything was written since the last flush started."""
        return self._first_unflushed is not None

    def flushing(self) -> None:
        """A flush starts: it takes everything written so far."""
        self._first_unflushed = None
        self._unflushed_rows = 0

    def cancel(self) -> None:
        if self._flusher:
            self._flusher.cancel()

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """Hold off flushing while a batch of writes runs (embedding between two writes can
        take seconds on a busy CPU): bulk ingestion then makes few, large segments."""
        self._writers += 1
        try:
            yield
        finally:
            self._writers -= 1
            self._last_write = time.monotonic()

    def written(self, rows: int) -> None:
        """Flush once writes pause, not after each one."""
        now = time.monotonic()
        self._last_write = now
        self._unflushed_rows += rows
        if self._first_unflushed is None:
            self._first_unflushed = now
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_when_quiet())

    async def _flush_when_quiet(self) -> None:
        while self._first_unflushed is not None:
            now = time.monotonic()
            quiet_since = now if self._writers else self._last_write
            due = min(quiet_since + FLUSH_QUIET_S, self._first_unflushed + FLUSH_MAX_DELAY_S)
            if due > now and self._unflushed_rows < FLUSH_MAX_ROWS:
                await asyncio.sleep(due - now)
                continue
            try:
                await self._flush()
            except Exception:
                # Unflushed rows stay searchable, only slower; the next write retries.
                log.exception("flush_failed")
                return
