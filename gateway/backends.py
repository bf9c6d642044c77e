"""The gateway's backends: one gRPC channel and stub per service, made once at
start-up and closed on shutdown (channels multiplex every request)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Generic, Literal, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aftercare.actions.v1 import actions_pb2, actions_pb2_grpc
from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc, releases_pb2, releases_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.operations.v1 import operations_pb2, operations_pb2_grpc
from aftercare.outreach.v1 import outreach_pb2, outreach_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from gateway.settings import GatewaySettings
from servicekit.clients import connect

StubT = TypeVar("StubT")
ReadyState = Literal["SERVING", "NOT_SERVING", "UNAVAILABLE"]

# A readiness probe must answer fast even when a backend hangs.
HEALTH_DEADLINE_S = 1.0


def _service_name(pb2: ModuleType) -> str:
    (service,) = pb2.DESCRIPTOR.services_by_name.values()
    name: str = service.full_name
    return name


@dataclass(frozen=True)
class Backend(Generic[StubT]):
    """One backend service: its channel and typed stub."""

    name: str  # short name, e.g. "concierge"
    service: str  # full name, e.g. "aftercare.concierge.v1.ConciergeService"
    channel: grpc.aio.Channel
    stub: StubT

    @classmethod
    def connect(cls, name: str, target: str, pb2: ModuleType, stub_type: type[StubT]) -> Backend[StubT]:
        service = _service_name(pb2)
        channel = connect(target, service)
        return cls(name=name, service=service, channel=channel, stub=stub_type(channel))  # type: ignore[call-arg]

    async def readiness(self) -> ReadyState:
        """The backend's own health check for this service (grpc.health.v1)."""
        # The stubs declare HealthStub without its generated methods.
        health: Any = health_pb2_grpc.HealthStub(self.channel)
        try:
            response = await health.Check(
                health_pb2.HealthCheckRequest(service=self.service), timeout=HEALTH_DEADLINE_S
            )
        except grpc.aio.AioRpcError as error:
            # NOT_FOUND: the process answers but does not serve this service.
            return "NOT_SERVING" if error.code() == grpc.StatusCode.NOT_FOUND else "UNAVAILABLE"
        serving = response.status == health_pb2.HealthCheckResponse.SERVING
        return "SERVING" if serving else "NOT_SERVING"


@dataclass(frozen=True)
class Backends:
    retrieval: Backend[retrieval_pb2_grpc.RetrievalServiceStub]
    triage: Backend[triage_pb2_grpc.TriageServiceStub]
    concierge: Backend[concierge_pb2_grpc.ConciergeServiceStub]
    escalation: Backend[escalation_pb2_grpc.EscalationServiceStub]
    outreach: Backend[outreach_pb2_grpc.OutreachServiceStub]
    # Triage's long-running operations (retrains): triage serves them, on a channel of their own
    # (their deadline and retries in servicekit.clients.MESH); not a backend of its own for /readyz.
    triage_operations: Backend[operations_pb2_grpc.OperationsServiceStub]
    # The tenants' releases: the concierge process serves them, on the concierge's own channel
    # (a release is what the concierge applies); not a backend of its own for /readyz.
    releases: Backend[releases_pb2_grpc.ReleaseServiceStub]
    # The actions service; None when this gateway has none (ACTIONS_ADDR empty): its routes answer 503.
    actions: Backend[actions_pb2_grpc.ActionsServiceStub] | None = None

    @classmethod
    def connect(cls, settings: GatewaySettings) -> Backends:
        """Make every channel; no I/O happens until the first call."""
        concierge = Backend.connect(
            "concierge", settings.concierge_addr, concierge_pb2, concierge_pb2_grpc.ConciergeServiceStub
        )
        return cls(
            retrieval=Backend.connect(
                "retrieval", settings.retrieval_addr, retrieval_pb2, retrieval_pb2_grpc.RetrievalServiceStub
            ),
            triage=Backend.connect("triage", settings.triage_addr, triage_pb2, triage_pb2_grpc.TriageServiceStub),
            concierge=concierge,
            escalation=Backend.connect(
                "escalation", settings.escalation_addr, escalation_pb2, escalation_pb2_grpc.EscalationServiceStub
            ),
            outreach=Backend.connect(
                "outreach", settings.outreach_addr, outreach_pb2, outreach_pb2_grpc.OutreachServiceStub
            ),
            triage_operations=Backend.connect(
                "triage", settings.triage_addr, operations_pb2, operations_pb2_grpc.OperationsServiceStub
            ),
            releases=Backend(
                name="concierge",
                service=_service_name(releases_pb2),
                channel=concierge.channel,
                stub=releases_pb2_grpc.ReleaseServiceStub(concierge.channel),
            ),
            actions=Backend.connect("actions", settings.actions_addr, actions_pb2, actions_pb2_grpc.ActionsServiceStub)
            if settings.actions_addr
            else None,
        )

    def all(self) -> tuple[Backend[Any], ...]:
        """The backends /readyz reports (triage_operations is triage's); actions only when there is one."""
        mesh: tuple[Backend[Any], ...] = (self.retrieval, self.triage, self.concierge, self.escalation, self.outreach)
        return mesh if self.actions is None else (*mesh, self.actions)

    async def readiness(self) -> dict[str, ReadyState]:
        """Backend name -> its health, all checked at once."""
        backends = self.all()
        states = await asyncio.gather(*(backend.readiness() for backend in backends))
        return {backend.name: state for backend, state in zip(backends, states, strict=True)}

    async def close(self, grace: float | None = None) -> None:
        channels = (*self.all(), self.triage_operations)
        await asyncio.gather(*(backend.channel.close(grace) for backend in channels))
