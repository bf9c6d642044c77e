"""The gRPC server runtime: `run_service(...)` for a process's main(), and
`start_server(...)` for tests (port 0, returns the bound port).

Every server gets the library health service (SERVING per service once the
servicers are built, NOT_SERVING on shutdown), reflection, tracing by
instrumentation, request-scoped log context and deadline, and one place where
errors become status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import metrics

from servicekit import attributes, deadlines, meshauth
from servicekit.errors import ApiError, Unavailable, database_unavailable
from servicekit.logging import configure_logging
from servicekit.metrics import configure_metrics, shutdown_metrics
from servicekit.settings import ServiceSettings
from servicekit.tracing import configure_tracing, shutdown_tracing

log = structlog.get_logger("servicekit.server")

# Health and reflection: neither traced nor logged, and open without a mesh token.
_QUIET_METHODS = meshauth.OPEN_METHODS
_DEPENDENCY_DOWN = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# The exit status of a service that could not listen on its port (EX_UNAVAILABLE).
EXIT_CANNOT_BIND = 69


class CannotBind(RuntimeError):
    """The server could not listen on its address: another process holds the port."""

@dataclass(frozen=True)
class Mount:
    """One servicer and how to add it to a server."""

    servicer: Any
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    service_name: str

def mount(servicer: Any, pb2: ModuleType, pb2_grpc: ModuleType) -> Mount:
    """Mount the single service declared in a generated proto module."""
    (service,) = pb2.DESCRIPTOR.services_by_name.values()
    add = getattr(pb2_grpc, f"add_{service.name}Servicer_to_server")
    return Mount(servicer=servicer, add_to_server=add, service_name=service.full_name)

async def _reject(error: Exception, context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    """Turn a handler's exception into a status for the client (always raises AbortError)."""
    if isinstance(error, ApiError):
        log.info("rpc_rejected", code=error.code.name, reason=error.reason, detail=error.message)
        await context.abort(error.code, error.message, trailing_metadata=error.trailing_metadata())
    if isinstance(error, grpc.aio.AioRpcError) and error.code() in _DEPENDENCY_DOWN:
        # A backend we depend on is down or too slow: say so, retryable, not INTERNAL.
        log.warning("dependency_unavailable", code=error.code().name, detail=error.details())
        backend_down = Unavailable("a backend service is unavailable; retry later", reason="DEPENDENCY_UNAVAILABLE")
        await context.abort(backend_down.code, backend_down.message, trailing_metadata=backend_down.trailing_metadata())
    if (unavailable := database_unavailable(error)) is not None:
        # Mapped here once for every service: a database that is down is retryable, not INTERNAL.
        log.error("database_unavailable", error=type(error).__name__, reason=unavailable.reason)
        await context.abort(unavailable.code, unavailable.message, trailing_metadata=unavailable.trailing_metadata())
    if isinstance(error, NotImplementedError):
        # The generated base class raises this for RPCs a later release implements.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this RPC is not implemented yet")
    log.exception("rpc_failed")
    await context.abort(grpc.StatusCode.INTERNAL, "internal error; see server logs for this trace id")
    raise AssertionError("unreachable: abort raises")


class _RequestContextInterceptor(grpc.aio.ServerInterceptor):
    """Around every RPC: the request's deadline and log context, ApiError turned
    into a status with details, unexpected failures hidden behind INTERNAL
    (logged with the trace id, never sent to the client), and the duration metric."""

    def __init__(self, mesh_secret: bytes | None = None) -> None:
        self._mesh_secret = mesh_secret
        self._duration = metrics.get_meter("aftercare.rpc").create_histogram(
            attributes.RPC_SERVER_DURATION, unit="ms", description="gRPC server call duration"
        )

    @contextlib.asynccontextmanager
    async def _scope(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        deadlines.set_remaining(context.time_remaining())
        structlog.contextvars.bind_contextvars(rpc=method)
        started = time.perf_counter()
        status = "OK"
        try:
            yield
        except (grpc.aio.AbortError, asyncio.CancelledError):
            status = "ABORTED_BY_HANDLER"
            raise
        except Exception as error:
            status = "ERROR"
            await _reject(error, context)
        finally:
            service, _, rpc = method.lstrip("/").partition("/")
            self._duration.record(
                (time.perf_counter() - started) * 1000,
                {"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc, attributes.RPC_OUTCOME: status},
            )

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_QUIET_METHODS):
            return handler
        if self._mesh_secret is not None:
            header = dict(handler_call_details.invocation_metadata or ()).get(meshauth.HEADER)
            if meshauth.verify(self._mesh_secret, header if isinstance(header, str) else None) is None:
                return _unauthenticated(handler)
        scope = self._scope
        codec = (handler.request_deserializer, handler.response_serializer)

        if not handler.request_streaming and not handler.response_streaming:
            async def unary_unary(request, context):  # type: ignore[no-untyped-def]
                async with scope(method, context):
                    return await handler.unary_unary(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, *codec)
        if not handler.request_streaming:
            async def unary_stream(request, context):  # type: ignore[no-untyped-def]
                async with scope(method, context):
                    async for response in handler.unary_stream(request, context):
                        yield response

            return grpc.unary_stream_rpc_method_handler(unary_stream, *codec)
        if not handler.response_streaming:
            async def stream_unary(request_iterator, context):  # type: ignore[no-untyped-def]
                async with scope(method, context):
                    return await handler.stream_unary(request_iterator, context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, *codec)

        async def stream_stream(request_iterator, context):  # type: ignore[no-untyped-def]
            async with scope(method, context):
                async for response in handler.stream_stream(request_iterator, context):
                    yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, *codec)


def _unauthenticated(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as `handler` that refuses the call."""
    log.warning("mesh_call_unauthenticated")

    async def refuse(request_or_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid mesh token is required")

    codec = (handler.request_deserializer, handler.response_serializer)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse, *codec)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, *codec)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse, *codec)
    return grpc.unary_unary_rpc_method_handler(refuse, *codec)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    service_names: Sequence[str]

    async def stop(self, grace: float) -> None:
        """Flip health to NOT_SERVING first, so load balancers drain us, then stop."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)

async def start_server(settings: ServiceSettings, mounts: Sequence[Mount]) -> RunningServer:
    secret = settings.mesh_secret.get_secret_value().encode() or None
    server = grpc.aio.server(
        interceptors=[_RequestContextInterceptor(secret)],
        # Past this many calls in flight a call is refused at once with RESOURCE_EXHAUSTED
        # (clients retry or shed) instead of queueing until every deadline has passed.
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            # Clients reconnect every few minutes, so pods added by the autoscaler get a share.
            ("grpc.max_connection_age_ms", 5 * 60 * 1000),
            ("grpc.max_connection_age_grace_ms", 30 * 1000),
            # gRPC sets SO_REUSEPORT by default: a second server on our port (a stale process)
            # would bind beside us and take a share of the calls. Without it, it fails to start.
            ("grpc.so_reuseport", 0),
        ],
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for item in mounts:
        item.add_to_server(item.servicer, server)
    names = [item.service_name for item in mounts]
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    cause: RuntimeError | None
    try:
        port = server.add_insecure_port(settings.listen_address)
    except RuntimeError as error:  # grpcio >= 1.60 raises where older ones returned 0
        port, cause = 0, error
    else:
        cause = None
    if port == 0:
        raise CannotBind(
            f"cannot listen on {settings.listen_address}: the port is in use by another process "
            "(or the address is not this host's)"
        ) from cause
    await server.start()
    for name in [*names, ""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server=server, health=health_servicer, port=port, service_names=names)

ServicerFactory = Callable[[Any], AbstractAsyncContextManager[Sequence[Mount]]]

async def _serve_until_signalled(name: str, settings: ServiceSettings, factory: ServicerFactory) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with factory(settings) as mounts:
        running = await start_server(settings, mounts)
        log.info("serving", address=f"{settings.host}:{running.port}", services=list(running.service_names))
        await stop.wait()
        log.info("shutting_down", grace_s=settings.shutdown_grace_s)
        await running.stop(settings.shutdown_grace_s)
    log.info("stopped")

def run_service(name: str, settings: ServiceSettings, factory: ServicerFactory) -> None:
    """A service process's whole main(): logging, tracing, serve, graceful stop."""
    configure_logging(name, settings.log_format, settings.log_level)
    configure_tracing(name)
    configure_metrics(name)
    try:
        asyncio.run(_serve_until_signalled(name, settings, factory))
    except CannotBind as error:
        log.error("cannot_bind", address=settings.listen_address, detail=str(error))
        print(f"{name}: error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CANNOT_BIND) from None
    finally:
        shutdown_tracing()
        shutdown_metrics()

@contextlib.asynccontextmanager
async def serving(settings: ServiceSettings, factory: ServicerFactory) -> AsyncIterator[RunningServer]:
    """Start a service in this process (tests): yields the running server, stops it after."""
    async with factory(settings) as mounts:
        running = await start_server(settings, mounts)
        try:
            yield running
        finally:
            await running.stop(0)

