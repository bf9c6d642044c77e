"""Shared fixtures: in-process tracing with an in-memory exporter, free ports."""

from __future__ import annotations

import socket

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from servicekit.tracing import configure_tracing

_EXPORTER = InMemorySpanExporter()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def _tracing() -> None:
    # One tracer provider per process: in-process servers and clients share it.
    configure_tracing("aftercare-tests", SimpleSpanProcessor(_EXPORTER))


@pytest.fixture
def spans() -> InMemorySpanExporter:
    _EXPORTER.clear()
    return _EXPORTER
