"""A database that goes away is UNAVAILABLE (retryable, with a stable reason) in every
service, mapped once by the runtime, never INTERNAL.

Each service is started on a real PostgreSQL database reached through a TCP relay in
this process; the relay is then shut (its connections cut, its port closed), as when
the database server goes down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.outreach.v1 import outreach_pb2, outreach_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import customer_pb2
from servicekit.errors import database_unavailable, details_from_rpc_error
from servicekit.server import serving
from services.escalation import app as escalation_app
from services.escalation.settings import EscalationSettings
from services.outreach import app as outreach_app
from services.outreach.settings import OutreachSettings
from services.triage import app as triage_app
from services.triage.settings import TriageSettings
from tests.conftest import free_port


class Relay:
    """Forwards TCP connections to the database until `cut()`."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers += [writer, upstream_writer]
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def relayed(postgres_url: str) -> AsyncIterator[tuple[Relay, str]]:
    url = make_url(postgres_url)
    relay = Relay(url.port or 5432)
    await relay.start()
    try:
        yield relay, url.set(port=relay.port).render_as_string(hide_password=False)
    finally:
        with contextlib.suppress(Exception):
            await relay.cut()


Call = Callable[[grpc.aio.Channel], Any]


def _escalation(channel: grpc.aio.Channel) -> Any:
    return escalation_pb2_grpc.EscalationServiceStub(channel).ListHandoffs(
        escalation_pb2.ListHandoffsRequest(tenant_id="acme:eu"), timeout=30)


def _outreach(channel: grpc.aio.Channel) -> Any:
    return outreach_pb2_grpc.OutreachServiceStub(channel).ListDrafts(
        outreach_pb2.ListDraftsRequest(tenant_id="acme:eu"), timeout=30)


def _triage(channel: grpc.aio.Channel) -> Any:
    return triage_pb2_grpc.TriageServiceStub(channel).DismissSuggestion(
        triage_pb2.DismissSuggestionRequest(
            customer=customer_pb2.CustomerRef(tenant_id="acme:eu", customer_id="web-1"), doc_id="guide.setup"),
        timeout=30)


SERVICES: dict[str, tuple[type[Any], Callable[..., Any], Call]] = {
    "escalation": (EscalationSettings, escalation_app.servicers, _escalation),
    "outreach": (OutreachSettings, outreach_app.servicers, _outreach),
    "triage": (TriageSettings, triage_app.servicers, _triage),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("service", list(SERVICES))
async def test_a_service_whose_database_goes_away_answers_unavailable(
    service: str, postgres_url: str, tmp_path: Path
) -> None:
    settings_class, factory, call = SERVICES[service]
    async with relayed(postgres_url) as (relay, url):
        settings = settings_class(
            port=0, data_dir=tmp_path, database_url=url, llm_base_url=f"http://127.0.0.1:{free_port()}/v1",
            **{f"{name}_addr": f"127.0.0.1:{free_port()}" for name in ("retrieval", "triage", "escalation")},
        )
        async with serving(settings, factory) as running:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                await call(channel)  # the database is up: answered
                await relay.cut()
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
    assert details_from_rpc_error(caught.value).reason == "DATABASE_UNAVAILABLE"


def _wrapped(error: Exception) -> Sequence[BaseException]:
    try:
        try:
            raise error
        except Exception as inner:
            raise RuntimeError("store failed") from inner
    except RuntimeError as outer:
        return [error, outer]


def test_only_errors_that_say_the_database_is_down_are_unavailable() -> None:
    down = OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
    assert all(database_unavailable(error) is not None for error in _wrapped(down))
    broken_constraint = IntegrityError("INSERT", {}, ValueError("duplicate key"))
    assert database_unavailable(broken_constraint) is None
    assert database_unavailable(ValueError("a bug")) is None
