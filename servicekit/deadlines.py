"""The remaining deadline of the request being served, carried in a contextvar.

The server runtime records the incoming call's deadline; every outbound call
made while serving it gets at most the time that is left (client interceptor
in servicekit.clients). The gateway opens a budget per HTTP request.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("aftercare_deadline", default=None)


def remaining() -> float | None:
    """Seconds left before the current request's deadline, or None if it has none."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def set_remaining(seconds: float | None) -> None:
    _deadline.set(None if seconds is None else time.monotonic() + seconds)


@contextlib.contextmanager
def budget(seconds: float) -> Iterator[None]:
    """Run a block with a deadline `seconds` from now (never later than an outer one)."""
    outer = _deadline.get()
    deadline = time.monotonic() + seconds
    token = _deadline.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _deadline.reset(token)
