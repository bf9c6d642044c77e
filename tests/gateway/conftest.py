"""A real gRPC server hosting test doubles of the five backends, and a
gateway app wired to it through real channels, with API keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from google.protobuf.message import Message as ProtoMessage

from aftercare.actions.v1 import actions_pb2, actions_pb2_grpc
from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc, releases_pb2, releases_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.operations.v1 import operations_pb2, operations_pb2_grpc
from aftercare.outreach.v1 import outreach_pb2, outreach_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from gateway.app import create_app
from gateway.backends import Backends
from gateway.keys import Role, create_key
from gateway.settings import GatewaySettings
from servicekit.server import RunningServer, mount, start_server
from servicekit.settings import ServiceSettings

TENANT = "demo"
OTHER_TENANT = "acme"


@dataclass
class Script:
    """What a test double answers: a message (a list of them for a server
    stream) or an exception, after an optional delay. Client-streamed
    requests are recorded as one list per call."""

    outcome: ProtoMessage | list[ProtoMessage | float | BaseException] | BaseException | None = None
    delay_s: float = 0.0
    requests: list[Any] = field(default_factory=list)
    # Set when the caller cancelled the call while it ran.
    cancelled: bool = False

    async def play(self, request: Any) -> Any:
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


class Fake:
    """A servicer for every RPC of one service; `fake.<rpc_in_snake_case>` is
    its Script, answering the response type's empty message by default."""

    def __init__(self, pb2: ModuleType, pb2_grpc: ModuleType) -> None:
        (service,) = pb2.DESCRIPTOR.services_by_name.values()
        self.scripts: dict[str, Script] = {}
        for method in service.methods:
            script = Script(getattr(pb2, method.output_type.name)())
            if method.server_streaming:
                script.outcome = []
            self.scripts[_snake(method.name)] = script
            setattr(self, method.name, self._handler(method, script))

    def __getattr__(self, name: str) -> Script:
        try:
            return self.__dict__["scripts"][name]
        except KeyError:
            raise AttributeError(name) from None

    @staticmethod
    def _handler(method: Any, script: Script) -> Any:
        if method.server_streaming:
            async def stream(request, context):  # type: ignore[no-untyped-def]
                try:
                    messages = await script.play(request)
                    for message in messages:
                        if isinstance(message, BaseException):
                            raise message
                        if isinstance(message, float):  # a pause in the stream
                            await asyncio.sleep(message)
                            continue
                        yield message
                        await asyncio.sleep(0)
                except asyncio.CancelledError:
                    script.cancelled = True
                    raise
            return stream
        if method.client_streaming:
            async def collect(request_iterator, context):  # type: ignore[no-untyped-def]
                return await script.play([r async for r in request_iterator])
            return collect

        async def unary(request, context):  # type: ignore[no-untyped-def]
            try:
                return await script.play(request)
            except asyncio.CancelledError:
                script.cancelled = True
                raise
        return unary


_SERVICES: dict[str, tuple[ModuleType, ModuleType]] = {
    "concierge": (concierge_pb2, concierge_pb2_grpc),
    # The concierge process serves it too (the gateway calls it on the concierge's address).
    "releases": (releases_pb2, releases_pb2_grpc),
    "escalation": (escalation_pb2, escalation_pb2_grpc),
    "retrieval": (retrieval_pb2, retrieval_pb2_grpc),
    "triage": (triage_pb2, triage_pb2_grpc),
    "outreach": (outreach_pb2, outreach_pb2_grpc),
    "actions": (actions_pb2, actions_pb2_grpc),
    # Served next to triage in the real mesh (its retrains); GatewaySettings ignores operations_addr.
    "operations": (operations_pb2, operations_pb2_grpc),
}


@dataclass
class Mesh:
    server: RunningServer
    fakes: dict[str, Fake]
    keys_path: Path
    _keys: dict[tuple[str, Role], str] = field(default_factory=dict)

    @property
    def concierge(self) -> Any:
        return self.fakes["concierge"]

    @property
    def releases(self) -> Any:
        return self.fakes["releases"]

    @property
    def escalation(self) -> Any:
        return self.fakes["escalation"]

    @property
    def retrieval(self) -> Any:
        return self.fakes["retrieval"]

    @property
    def triage(self) -> Any:
        return self.fakes["triage"]

    @property
    def outreach(self) -> Any:
        return self.fakes["outreach"]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def key(self, role: Role = Role.ADMIN, tenant: str = TENANT) -> str:
        """An API key for (tenant, role), made once per test."""
        if (tenant, role) not in self._keys:
            self._keys[tenant, role] = create_key(self.keys_path, tenant, role, f"{role.label}-{tenant}")[0]
        return self._keys[tenant, role]

    def settings(self, **overrides: Any) -> GatewaySettings:
        addresses = {f"{name}_addr": self.address for name in _SERVICES}
        return GatewaySettings(**(addresses | {"api_keys_file": self.keys_path} | overrides))


@asynccontextmanager
async def start_mesh(keys_path: Path) -> AsyncIterator[Mesh]:
    fakes = {name: Fake(pb2, pb2_grpc) for name, (pb2, pb2_grpc) in _SERVICES.items()}
    mounts = [mount(fakes[name], pb2, pb2_grpc) for name, (pb2, pb2_grpc) in _SERVICES.items()]
    server = await start_server(ServiceSettings(port=0), mounts)
    try:
        yield Mesh(server=server, fakes=fakes, keys_path=keys_path)
    finally:
        await server.stop(0)


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    async with start_mesh(tmp_path / "api_keys.json") as started:
        yield started


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def open_gateway(
    settings: GatewaySettings, *, key: str | None = None, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app on real Backends, driven in-process over ASGI; every
    request carries `key` when one is given."""
    backends = Backends.connect(settings)
    app = create_app(settings, backends)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", headers=bearer(key) if key else None
        ) as client:
            yield client
    finally:
        await backends.close()


@pytest.fixture
async def gateway(mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway, as an admin of tenant demo (every route allowed)."""
    async with open_gateway(mesh.settings(), key=mesh.key(Role.ADMIN)) as client:
        yield client


def one(requests: Iterable[Any]) -> Any:
    (request,) = requests
    return request
