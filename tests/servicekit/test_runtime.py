"""The shared runtime: health and reflection, errors with details, deadline
propagation, graceful shutdown, tracing across a hop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from servicekit.clients import connect, service_config
from servicekit.errors import InvalidArgument, NotFound, details_from_rpc_error
from servicekit.server import Mount, mount, serving
from servicekit.settings import ServiceSettings

RETRIEVAL = "aftercare.retrieval.v1.RetrievalService"


class SlowRetrieval(retrieval_pb2_grpc.RetrievalServiceServicer):
    """Search sleeps, reports the deadline it was given, and fails on request."""

    def __init__(self) -> None:
        self.seen_time_remaining: list[float | None] = []
        self.started = asyncio.Event()

    async def Search(self, request: retrieval_pb2.SearchRequest, context: grpc.aio.ServicerContext):
        self.seen_time_remaining.append(context.time_remaining())
        if request.query == "bad":
            raise InvalidArgument([("query", "is bad"), ("top_k", "is out of range")])
        if request.query == "missing":
            raise NotFound("no such thing", reason="DOC_NOT_FOUND")
        if request.query == "crash":
            raise RuntimeError("secret internal detail")
        self.started.set()
        await asyncio.sleep(float(request.query or 0))
        return retrieval_pb2.SearchResponse(embedding_model="slow")


class ForwardingTriage(triage_pb2_grpc.TriageServiceServicer):
    """Calls retrieval while serving, so the deadline must propagate."""

    def __init__(self, retrieval: retrieval_pb2_grpc.RetrievalServiceStub):
        self.retrieval = retrieval

    async def TriageContact(self, request, context):  # type: ignore[no-untyped-def]
        await self.retrieval.Search(retrieval_pb2.SearchRequest(tenant_id="t", query="0"))
        return triage_pb2.TriageContactResponse()


def factory(*mounts: Mount):  # type: ignore[no-untyped-def]
    @contextlib.asynccontextmanager
    async def servicers(settings: ServiceSettings) -> AsyncIterator[Sequence[Mount]]:
        yield list(mounts)

    return servicers


@pytest.fixture
async def retrieval() -> AsyncIterator[tuple[SlowRetrieval, int]]:
    servicer = SlowRetrieval()
    async with serving(ServiceSettings(port=0), factory(mount(servicer, retrieval_pb2, retrieval_pb2_grpc))) as srv:
        yield servicer, srv.port


async def test_health_and_reflection_are_served(retrieval: tuple[SlowRetrieval, int]) -> None:
    _, port = retrieval
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in (RETRIEVAL, ""):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name async for r in responses for s in r.list_services_response.service}
        assert {RETRIEVAL, "grpc.health.v1.Health"} <= names


async def test_errors_carry_status_reason_and_every_field_violation(retrieval: tuple[SlowRetrieval, int]) -> None:
    _, port = retrieval
    async with connect(f"127.0.0.1:{port}", RETRIEVAL) as channel:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.Search(retrieval_pb2.SearchRequest(query="bad"))
        details = details_from_rpc_error(bad.value)
        assert details.code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.field_violations == [("query", "is bad"), ("top_k", "is out of range")]
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.Search(retrieval_pb2.SearchRequest(query="missing"))
        assert details_from_rpc_error(missing.value).reason == "DOC_NOT_FOUND"
        with pytest.raises(grpc.aio.AioRpcError) as crash:
            await stub.Search(retrieval_pb2.SearchRequest(query="crash"))
        assert crash.value.code() == grpc.StatusCode.INTERNAL
        assert "secret" not in (crash.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as unimplemented:
            await stub.GetStats(retrieval_pb2.GetStatsRequest(tenant_id="t"))
        assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_service_config_deadline_applies_and_remaining_deadline_propagates(
    retrieval: tuple[SlowRetrieval, int],
) -> None:
    servicer, port = retrieval
    async with connect(f"127.0.0.1:{port}", RETRIEVAL) as channel:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
        await stub.Search(retrieval_pb2.SearchRequest(query="0"))
        # Default deadline of the service, from the one table in servicekit.clients.
        assert servicer.seen_time_remaining[-1] is not None and servicer.seen_time_remaining[-1] <= 5.05
        triage = ForwardingTriage(stub)
        async with serving(ServiceSettings(port=0), factory(mount(triage, triage_pb2, triage_pb2_grpc))) as srv:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as front:
                await triage_pb2_grpc.TriageServiceStub(front).TriageContact(
                    triage_pb2.TriageContactRequest(), timeout=0.8
                )
        # The inner call got what was left of the outer 0.8 s, not its own 5 s.
        assert servicer.seen_time_remaining[-1] is not None and servicer.seen_time_remaining[-1] <= 0.85


async def test_graceful_shutdown_drains_in_flight_calls_and_reports_not_serving() -> None:
    servicer = SlowRetrieval()
    settings = ServiceSettings(port=0)
    async with factory(mount(servicer, retrieval_pb2, retrieval_pb2_grpc))(settings) as mounts:
        from servicekit.server import start_server

        running = await start_server(settings, mounts)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
            in_flight = asyncio.ensure_future(stub.Search(retrieval_pb2.SearchRequest(query="0.5"), timeout=5))
            await servicer.started.wait()
            stopping = asyncio.ensure_future(running.stop(grace=3))
            await asyncio.sleep(0.05)
            status = await running.health.Check(health_pb2.HealthCheckRequest(service=RETRIEVAL), None)
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert (await in_flight).embedding_model == "slow"
            await stopping


def test_service_config_retries_only_unavailable() -> None:
    config = service_config(RETRIEVAL)
    (method,) = [m for m in config["methodConfig"] if m["name"] == [{"service": RETRIEVAL}]]
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert method["timeout"] == "5.000s"


async def test_trace_continues_across_a_grpc_hop(retrieval: tuple[SlowRetrieval, int], spans) -> None:  # type: ignore[no-untyped-def]
    _, port = retrieval
    async with connect(f"127.0.0.1:{port}", RETRIEVAL) as channel:
        await retrieval_pb2_grpc.RetrievalServiceStub(channel).Search(retrieval_pb2.SearchRequest(query="0"))
    finished = [s for s in spans.get_finished_spans() if s.name.endswith("RetrievalService/Search")]
    client = next(s for s in finished if s.kind.name == "CLIENT")
    server = next(s for s in finished if s.kind.name == "SERVER")
    assert server.context.trace_id == client.context.trace_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id


async def test_with_a_mesh_secret_only_signed_calls_get_through(monkeypatch: pytest.MonkeyPatch) -> None:
    servicer = SlowRetrieval()
    settings = ServiceSettings(port=0, mesh_secret="s3cret")
    async with serving(settings, factory(mount(servicer, retrieval_pb2, retrieval_pb2_grpc))) as srv:
        target = f"127.0.0.1:{srv.port}"
        async with grpc.aio.insecure_channel(target) as channel:
            # No token: refused. Health stays open for the kubelet's probes.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await retrieval_pb2_grpc.RetrievalServiceStub(channel).Search(retrieval_pb2.SearchRequest(query="0"))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        # A token signed with another secret: refused; with the mesh's: served.
        for secret, served in (("other", False), ("s3cret", True)):
            monkeypatch.setenv("MESH_SECRET", secret)
            async with connect(target, RETRIEVAL) as channel:
                call = retrieval_pb2_grpc.RetrievalServiceStub(channel).Search(retrieval_pb2.SearchRequest(query="0"))
                if served:
                    assert (await call).embedding_model == "slow"
                else:
                    with pytest.raises(grpc.aio.AioRpcError) as wrong:
                        await call
                    assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_mesh_tokens_expire_and_cannot_be_altered() -> None:
    from servicekit import meshauth

    token = meshauth.mint(b"k", "concierge", now=1000.0)
    assert meshauth.verify(b"k", f"Mesh {token}", now=1000.0) == "concierge"
    assert meshauth.verify(b"k", f"Mesh {token}", now=1000.0 + meshauth.TOKEN_TTL_S + 60) is None
    assert meshauth.verify(b"k", f"Mesh {token.replace('concierge', 'gateway')}", now=1000.0) is None
    assert meshauth.verify(b"k", f"Bearer {token}", now=1000.0) is None
    assert meshauth.verify(b"k", "Mesh garbage", now=1000.0) is None


async def test_calls_beyond_the_concurrency_limit_are_shed_with_resource_exhausted() -> None:
    servicer = SlowRetrieval()
    settings = ServiceSettings(port=0, max_concurrent_rpcs=2)
    async with serving(settings, factory(mount(servicer, retrieval_pb2, retrieval_pb2_grpc))) as srv:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
            stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
            calls = [stub.Search(retrieval_pb2.SearchRequest(query="0.5"), timeout=5) for _ in range(5)]
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
    codes = [o.code() if isinstance(o, grpc.aio.AioRpcError) else grpc.StatusCode.OK for o in outcomes]
    assert codes.count(grpc.StatusCode.OK) == 2
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 3
