"""Logging follows standard error as it is when a line is written: a stream that
was swapped in while logging was configured (a test capturing output) and has
been closed since takes no later log line, nor the code logging it, down."""

from __future__ import annotations

import io
import sys

import pytest
import structlog

from servicekit.logging import configure_logging


def test_logging_configured_under_a_swapped_stream_still_writes_after_it_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    swapped = io.StringIO()
    try:
        with monkeypatch.context() as patched:
            patched.setattr(sys, "stderr", swapped)
            configure_logging("logging-test", "json", "info")
        swapped.close()
        now = io.StringIO()
        monkeypatch.setattr(sys, "stderr", now)
        structlog.get_logger("logging-test").error("engine_exited", exit_code=9)
        assert '"event": "engine_exited"' in now.getvalue()
    finally:
        configure_logging("tests", "console", "warning")
