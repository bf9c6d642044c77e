"""The HTTP gateway: JSON/OpenAPI at the edge, one gRPC call per request behind it.

No business logic lives here. Each handler opens the request's deadline
budget, translates JSON to the backend's proto, makes one call, and
translates the answer back; failures become problem+json in gateway.problems.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import structlog
import uvicorn
from fastapi import Depends, FastAPI, Path, Request
from fastapi.openapi.utils import get_openapi
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from pydantic import ValidationError
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aftercare.escalation.v1 import escalation_pb2
from gateway.backends import Backends
from gateway.models import (
    ID_PATTERN,
    HandoffReply,
    Liveness,
    MessageReply,
    PostMessageRequest,
    Readiness,
    SearchReply,
    SearchRequest,
    TriageReply,
    TriageRequest,
)
from gateway.problems import (
    PROBLEM_MEDIA_TYPE,
    BodyTooLarge,
    ProblemResponse,
    install_problem_handlers,
    problem,
    problem_responses,
)
from gateway.settings import GatewaySettings
from servicekit.deadlines import budget
from servicekit.logging import configure_logging
from servicekit.metrics import configure_metrics, shutdown_metrics
from servicekit.tracing import configure_tracing, current_trace_id, shutdown_tracing

log = structlog.get_logger("gateway")

# Probes are polled every few seconds: no access log lines, no spans.
_PROBE_PATHS = frozenset({"/healthz", "/readyz"})
# A client's X-Request-ID is kept only if it is a plain token (it lands in logs).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


# --- middleware (pure ASGI, so they do not buffer or re-wrap responses) ----


class RequestIdMiddleware:
    """Takes X-Request-ID from the client or makes one, binds it to every log
    line of the request, and returns it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get("x-request-id", "")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        # Also in the request state: the 500 handler runs outside this middleware.
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)


class AccessLogMiddleware:
    """One line per request: method, path, status, milliseconds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before responding

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # The path only, never the query string or body: they may hold personal data.
            log.info(
                "http_request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )


class BodySizeLimitMiddleware:
    """Refuses bodies over the limit with 413: at once when Content-Length says
    so, and while reading when the body is streamed without one."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            too_large = BodyTooLarge(self.max_bytes)
            response = problem(413, str(too_large.detail), too_large.reason)
            await response(scope, receive, send)
            return
        received = 0

        async def receive_with_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises HTTPExceptions from body reading; the handler makes it a 413.
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, receive_with_limit, send)


# --- dependencies ------------------------------------------------------------


def _backends(request: Request) -> Backends:
    backends: Backends = request.app.state.backends
    return backends


def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


BackendsDep = Annotated[Backends, Depends(_backends)]
SettingsDep = Annotated[GatewaySettings, Depends(_settings)]
ConversationId = Annotated[str, Path(pattern=ID_PATTERN, description="Stable conversation id chosen by the channel.")]
TenantId = Annotated[str, Path(pattern=ID_PATTERN, description="Tenant (the company using aftercare).")]
HandoffId = Annotated[str, Path(pattern=ID_PATTERN, description="Handoff id from a message reply.")]


# --- the app ---------------------------------------------------------------


def create_app(settings: GatewaySettings, backends: Backends | None = None) -> FastAPI:
    """The gateway app. Without `backends` it connects them at start-up and
    closes them at shutdown; injected ones (tests) belong to the caller."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if backends is not None:
            yield
            return
        app.state.backends = Backends.connect(settings)
        log.info("backends_connected", services=[b.service for b in app.state.backends.all()])
        try:
            yield
        finally:
            await app.state.backends.close(grace=1.0)

    app = FastAPI(
        title="aftercare gateway",
        version="v1",
        description="HTTP/JSON edge of the aftercare gRPC services. Errors are RFC 9457 problem+json.",
        lifespan=lifespan,
        # Operation ids are the handler names (post_message, get_handoff...), for generated clients.
        generate_unique_id_function=lambda route: route.name,
        # Request flow, outermost first. OpenTelemetry instrumentation (below)
        # wraps all of these, so every log line of a request has its trace id.
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(AccessLogMiddleware),
            Middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes),
        ],
    )
    app.state.settings = settings
    app.state.backends = backends
    install_problem_handlers(app)
    _add_routes(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz")
    return app


def _add_routes(app: FastAPI) -> None:
    @app.get("/healthz", response_model=Liveness, tags=["health"], summary="Liveness; calls no backend.")
    async def healthz() -> Liveness:
        return Liveness()

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["health"],
        summary="Readiness: 200 only when every backend is SERVING.",
        responses=problem_responses(503),
    )
    async def readyz(backends: BackendsDep) -> Readiness | ProblemResponse:
        states = await backends.readiness()
        not_ready = {name: state for name, state in states.items() if state != "SERVING"}
        if not_ready:
            listed = ", ".join(f"{name} ({state})" for name, state in not_ready.items())
            return problem(503, f"Not ready: {listed}.", "NOT_READY", extra={"backends": states})
        return Readiness(backends=states)

    @app.post(
        "/v1/conversations/{conversation_id}/messages",
        response_model=MessageReply,
        tags=["conversations"],
        summary="Send a customer message; get the concierge's answer or handoff.",
        responses=problem_responses(400, 404, 409, 413, 429, 503, 504),
    )
    async def post_message(
        conversation_id: ConversationId,
        body: PostMessageRequest,
        backends: BackendsDep,
        settings: SettingsDep,
    ) -> MessageReply:
        with budget(settings.request_timeout_s):
            response = await backends.concierge.stub.Converse(body.to_proto(conversation_id))
        return MessageReply.from_proto(conversation_id, response, trace_id=current_trace_id())

    @app.get(
        "/v1/tenants/{tenant_id}/handoffs/{handoff_id}",
        response_model=HandoffReply,
        tags=["handoffs"],
        summary="One handoff with its context package.",
        responses=problem_responses(400, 404, 503, 504),
    )
    async def get_handoff(
        tenant_id: TenantId, handoff_id: HandoffId, backends: BackendsDep, settings: SettingsDep
    ) -> HandoffReply:
        request = escalation_pb2.GetHandoffRequest(tenant_id=tenant_id, handoff_id=handoff_id)
        with budget(settings.request_timeout_s):
            response = await backends.escalation.stub.GetHandoff(request)
        return HandoffReply.from_proto(response.handoff)

    @app.post(
        "/v1/tenants/{tenant_id}/kb/search",
        response_model=SearchReply,
        tags=["knowledge base"],
        summary="Search the tenant's knowledge base.",
        responses=problem_responses(400, 413, 429, 503, 504),
    )
    async def search_kb(
        tenant_id: TenantId, body: SearchRequest, backends: BackendsDep, settings: SettingsDep
    ) -> SearchReply:
        with budget(settings.request_timeout_s):
            response = await backends.retrieval.stub.Search(body.to_proto(tenant_id))
        return SearchReply.from_proto(response)

    @app.post(
        "/v1/tenants/{tenant_id}/triage",
        response_model=TriageReply,
        tags=["triage"],
        summary="Intent, sentiment, risk flags, priority and route of one message.",
        responses=problem_responses(400, 413, 429, 503, 504),
    )
    async def triage(
        tenant_id: TenantId, body: TriageRequest, backends: BackendsDep, settings: SettingsDep
    ) -> TriageReply:
        with budget(settings.request_timeout_s):
            response = await backends.triage.stub.TriageContact(body.to_proto(tenant_id))
        return TriageReply.from_proto(response)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with error responses under their real media type."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if (status == "default" or status[0] in "45") and "application/json" in content:
                        content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
        app.openapi_schema = schema
    return app.openapi_schema


def main() -> None:
    """The gateway process: settings, logging, tracing, then uvicorn."""
    try:
        settings = GatewaySettings()  # type: ignore[call-arg]
    except ValidationError as error:
        # A missing backend address must stop the deployment, loudly and readably.
        configure_logging("gateway")
        log.error("invalid_settings", errors=[f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()])
        raise SystemExit(2) from None
    configure_logging("gateway", settings.log_format, settings.log_level)
    configure_tracing("gateway")
    configure_metrics("gateway")
    log.info("starting", address=f"{settings.host}:{settings.port}")
    try:
        # access_log off and no log_config: we log requests ourselves, in structlog.
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            access_log=False,
            log_config=None,
            server_header=False,
        )
    finally:
        shutdown_tracing()
        shutdown_metrics()
