"""Logging follows standard error as it is when a line is written: a stream that
was swapped in while logging was configured (a test capturing output) and has
been closed since takes no later log line, nor the code logging it, down. The
standard library's records (libraries' logs) come out through the same pipeline."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
import structlog
from opentelemetry import trace

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


def test_a_library_logging_through_the_standard_library_writes_json_with_the_trace_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pymilvus, grpc, uvicorn and the like log with `logging`: their lines go through the
    same processors as ours, so they are JSON with the service and the span's trace id."""
    try:
        configure_logging("logging-test", "json", "info")
        out = io.StringIO()
        monkeypatch.setattr(sys, "stderr", out)
        library = logging.getLogger("pymilvus.logging-test")
        with trace.get_tracer("logging-test").start_as_current_span("request") as span:
            library.warning("collection %s not loaded", "kb_demo")
            library.info("chatter below the libraries' threshold")
        (line,) = out.getvalue().splitlines()
        record = json.loads(line)
        context = span.get_span_context()
        assert record["event"] == "collection kb_demo not loaded"
        assert record["level"] == "warning"
        assert record["logger"] == "pymilvus.logging-test"
        assert record["service"] == "logging-test"
        assert record["trace_id"] == format(context.trace_id, "032x")
        assert record["span_id"] == format(context.span_id, "016x")
        assert "timestamp" in record
    finally:
        configure_logging("tests", "console", "warning")


def test_configuring_logging_again_replaces_the_standard_library_handler() -> None:
    try:
        configure_logging("logging-test", "json", "info")
        configure_logging("logging-test", "json", "info")
        ours = [h for h in logging.getLogger().handlers if h.get_name() == "servicekit.logging"]
        assert len(ours) == 1
    finally:
        configure_logging("tests", "console", "warning")
