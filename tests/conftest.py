"""Shared fixtures: in-process tracing with an in-memory exporter, free ports,
a fresh database on each backend."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.engine import Engine

from servicekit.database import database_url, make_engine
from servicekit.logging import configure_logging
from servicekit.tracing import configure_tracing

_EXPORTER = InMemorySpanExporter()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def _tracing() -> None:
    # One tracer provider per process: in-process servers and clients share it.
    configure_logging("tests", "console", "warning")
    configure_tracing("aftercare-tests", SimpleSpanProcessor(_EXPORTER))


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    """One embedding model for the whole session: loading it is the slow part."""
    from services.retrieval.embedding import Embedder

    return Embedder()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    _EXPORTER.clear()
    return _EXPORTER


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the local server for one test, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    admin_url = os.environ.get("AFTERCARE_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"aftercare_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL not reachable at {admin_url}: {error}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a fresh database: a SQLite file (the embedded default), then PostgreSQL."""
    url = database_url("", tmp_path, "test") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    made = make_engine(url)
    try:
        yield made
    finally:
        made.dispose()
