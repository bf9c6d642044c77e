"""A real gRPC server hosting test doubles of the five backends, and a
gateway app wired to it through real channels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from google.protobuf.message import Message as ProtoMessage

from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.outreach.v1 import outreach_pb2, outreach_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from gateway.app import create_app
from gateway.backends import Backends
from gateway.settings import GatewaySettings
from servicekit.server import RunningServer, mount, start_server
from servicekit.settings import ServiceSettings


@dataclass
class Script:
    """What a test double answers: a message or an exception, after an optional delay."""

    outcome: ProtoMessage | BaseException | None = None
    delay_s: float = 0.0
    requests: list[Any] = field(default_factory=list)

    async def play(self, request: Any) -> Any:
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


class FakeConcierge(concierge_pb2_grpc.ConciergeServiceServicer):
    def __init__(self) -> None:
        self.converse = Script(concierge_pb2.ConverseResponse())

    async def Converse(self, request, context):  # type: ignore[no-untyped-def]
        return await self.converse.play(request)


class FakeEscalation(escalation_pb2_grpc.EscalationServiceServicer):
    def __init__(self) -> None:
        self.get_handoff = Script(escalation_pb2.GetHandoffResponse())

    async def GetHandoff(self, request, context):  # type: ignore[no-untyped-def]
        return await self.get_handoff.play(request)


class FakeRetrieval(retrieval_pb2_grpc.RetrievalServiceServicer):
    def __init__(self) -> None:
        self.search = Script(retrieval_pb2.SearchResponse())

    async def Search(self, request, context):  # type: ignore[no-untyped-def]
        return await self.search.play(request)


class FakeTriage(triage_pb2_grpc.TriageServiceServicer):
    def __init__(self) -> None:
        self.triage_contact = Script(triage_pb2.TriageContactResponse())

    async def TriageContact(self, request, context):  # type: ignore[no-untyped-def]
        return await self.triage_contact.play(request)


class FakeOutreach(outreach_pb2_grpc.OutreachServiceServicer):
    """No route calls outreach yet; it only has to be healthy."""


@dataclass
class Mesh:
    server: RunningServer
    concierge: FakeConcierge
    escalation: FakeEscalation
    retrieval: FakeRetrieval
    triage: FakeTriage
    outreach: FakeOutreach

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def settings(self, **overrides: Any) -> GatewaySettings:
        addresses = {
            f"{name}_addr": self.address for name in ("retrieval", "triage", "concierge", "escalation", "outreach")
        }
        return GatewaySettings(**(addresses | overrides))


@pytest.fixture
async def mesh() -> AsyncIterator[Mesh]:
    fakes = {
        "concierge": FakeConcierge(),
        "escalation": FakeEscalation(),
        "retrieval": FakeRetrieval(),
        "triage": FakeTriage(),
        "outreach": FakeOutreach(),
    }
    mounts = [
        mount(fakes["concierge"], concierge_pb2, concierge_pb2_grpc),
        mount(fakes["escalation"], escalation_pb2, escalation_pb2_grpc),
        mount(fakes["retrieval"], retrieval_pb2, retrieval_pb2_grpc),
        mount(fakes["triage"], triage_pb2, triage_pb2_grpc),
        mount(fakes["outreach"], outreach_pb2, outreach_pb2_grpc),
    ]
    server = await start_server(ServiceSettings(port=0), mounts)
    try:
        yield Mesh(server=server, **fakes)  # type: ignore[arg-type]
    finally:
        await server.stop(0)


@asynccontextmanager
async def open_gateway(
    settings: GatewaySettings, *, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app on real Backends, driven in-process over ASGI."""
    backends = Backends.connect(settings)
    app = create_app(settings, backends)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client
    finally:
        await backends.close()


@pytest.fixture
async def gateway(mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with open_gateway(mesh.settings()) as client:
        yield client
