"""Background LLM work (handoff summaries) yields to customers.

A CPU LLM server (the embedded llama.cpp one) serves one request at a time: a
summary started between two chats holds up the next customer's answer until it
is done (measured through the mesh: chat p50 1.27 s with 2.5 s between chats,
1.71 s back to back, against 0.78 s for the concierge alone). So background
jobs run one at a time, each once no customer contact (a handoff or an
outcome) has arrived for `quiet_s`, and never later than `max_wait_s` after it
was queued, so that a busy stretch delays summaries but never starves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator


class QuietTurns:
    def __init__(self, quiet_s: float, max_wait_s: float) -> None:
        self._quiet_s = quiet_s
        self._max_wait_s = max_wait_s
        self._last_contact = -math.inf
        self._slot = asyncio.Lock()

    def contact(self) -> None:
        """A customer contact just arrived: background work waits for quiet again."""
        self._last_contact = time.monotonic()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Held while one background job runs; entered once it is quiet (or waited long enough)."""
        queued = time.monotonic()
        async with self._slot:
            while True:
                now = time.monotonic()
                wait = min(self._last_contact + self._quiet_s - now, queued + self._max_wait_s - now)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            yield
