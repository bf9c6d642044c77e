"""The HTTP gateway: JSON/OpenAPI at the edge, one gRPC call per request behind it.

No business logic lives here. Each request runs under one deadline budget
(DeadlineMiddleware); each handler translates JSON to the backend's proto,
makes one call, and translates the answer back; failures become problem+json
in gateway.problems.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
import structlog
import uvicorn
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from pydantic import ValidationError
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import AuthMiddleware, RateLimiter
from gateway.backends import Backends
from gateway.deps import BackendsDep
from gateway.keys import KeyStore
from gateway.problems import (
    PROBLEM_MEDIA_TYPE,
    BodyTooLarge,
    ProblemResponse,
    install_problem_handlers,
    problem,
    problem_responses,
)
from gateway.routes import ROUTERS
from gateway.routes import actions as actions_routes
from gateway.routes.conversations import RELEASE_HEADER
from gateway.schemas.health import Liveness, Readiness
from gateway.settings import GatewaySettings
from servicekit.deadlines import budget
from servicekit.logging import configure_logging
from servicekit.metrics import configure_metrics, shutdown_metrics
from servicekit.tracing import configure_tracing, shutdown_tracing

log = structlog.get_logger("gateway")

CONSOLE_DIR = Path(__file__).parent / "console"
# Swagger UI's and ReDoc's scripts and styles, from the fastapi-offline package: /docs and
# /redoc load nothing from a CDN, so they work on a machine without internet.
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
DOCS_ASSETS_URL = "/docs/assets"
# Bulk uploads (documents, usage events, accounts, a retrain's examples, a golden-conversation suite's
# results) get GatewaySettings.max_upload_bytes.
BULK_PATH_SUFFIXES = ("/kb/documents", "/usage-events", "/outreach/accounts", "/intent-model:retrain", "/suite-runs")
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


class DeadlineMiddleware:
    """Every request runs under one budget (`request_timeout_s`): each backend call it
    makes gets what is left of it as its gRPC deadline, so routes never set their own."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with budget(self.seconds):
            await self.app(scope, receive, send)


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
    so, and while reading when the body is streamed without one. Bulk uploads
    get their own, larger limit."""

    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int) -> None:
        self.app = app
        self.default_bytes = max_bytes
        self.upload_bytes = upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["method"] in ("POST", "PUT") and scope["path"].endswith(BULK_PATH_SUFFIXES)
        max_bytes = self.upload_bytes if upload else self.default_bytes
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            too_large = BodyTooLarge(max_bytes)
            response = problem(413, str(too_large.detail), too_large.reason)
            await response(scope, receive, send)
            return
        received = 0

        async def receive_with_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    # FastAPI re-raises HTTPExceptions from body reading; the handler makes it a 413.
                    raise BodyTooLarge(max_bytes)
            return message

        await self.app(scope, receive_with_limit, send)


class ConsoleHeadersMiddleware:
    """The console's pages may load scripts, styles and data from the gateway
    only: no inline script, no third party, no framing (XSS and clickjacking)."""

    POLICY = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/console"):
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = self.POLICY
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
            await send(message)

        await self.app(scope, receive, send_with_policy)


# --- the app ---------------------------------------------------------------


def key_store(settings: GatewaySettings) -> KeyStore:
    """The API keys: inline (API_KEYS) when given, else the key file."""
    if settings.api_keys:
        return KeyStore(document=settings.api_keys)
    return KeyStore(path=settings.keys_path)


def create_app(settings: GatewaySettings, backends: Backends | None = None) -> FastAPI:
    """The gateway app. Without `backends` it connects them at start-up and
    closes them at shutdown; injected ones (tests) belong to the caller."""
    limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)

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
        # /docs and /redoc are served by _add_docs, from local assets instead of a CDN.
        docs_url=None,
        redoc_url=None,
        # Operation ids are the handler names (post_message, get_handoff...), for generated clients.
        generate_unique_id_function=lambda route: route.name,
        # Request flow, outermost first. OpenTelemetry instrumentation (below)
        # wraps all of these, so every log line of a request has its trace id.
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(AccessLogMiddleware),
            Middleware(DeadlineMiddleware, seconds=settings.request_timeout_s),
            # Outside auth, so preflights and 401/429 answers carry CORS headers too.
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "X-Request-ID", RELEASE_HEADER],
                expose_headers=["X-Request-ID", "Retry-After"],
                max_age=600,
            ),
            Middleware(ConsoleHeadersMiddleware),
            Middleware(AuthMiddleware, keys=key_store(settings), limiter=limiter),
            Middleware(
                BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes, upload_bytes=settings.max_upload_bytes
            ),
        ],
    )
    app.state.settings = settings
    app.state.backends = backends
    install_problem_handlers(app)
    _add_routes(app, settings)
    _add_docs(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    # No spans for the ASGI send/receive events: one per SSE chunk would cost more than the answer.
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz", exclude_spans=["receive", "send"])
    return app


def _warming(gate: Path | None) -> str:
    """What the ready gate file says while it exists ("" once it is gone, or with no gate)."""
    if gate is None:
        return ""
    try:
        return gate.read_text().strip() or "warming up"
    except FileNotFoundError:
        return ""


def _add_routes(app: FastAPI, settings: GatewaySettings) -> None:
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
        warming = _warming(settings.ready_gate_file)
        if not_ready or warming:
            listed = [f"{name} ({state})" for name, state in not_ready.items()]
            extra: dict[str, Any] = {"backends": states}
            if warming:
                listed.append(warming)
                extra["warming"] = warming
            return problem(503, f"Not ready: {', '.join(listed)}.", "NOT_READY", extra=extra)
        return Readiness(backends=states)

    for router in ROUTERS:
        app.include_router(router)
    app.include_router(actions_routes.router)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console/")

    # The web console: static pages that call the API above with a key the user enters.
    # check_dir off: an install without the pages still serves the API (the pages then 404).
    app.mount("/console", StaticFiles(directory=CONSOLE_DIR, html=True, check_dir=False), name="console")


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc, as FastAPI serves them (under the
    proxy's root path, if any), but with their scripts, styles and icon served by the
    gateway itself: no CDN, no third-party host."""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            oauth2_redirect_url=root + oauth2_redirect_url,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")


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
        app = create_app(settings)
    except ValueError as error:
        # A malformed API key store (API_KEYS or the file) stops the boot, readably.
        log.error("invalid_api_keys", error=str(error))
        raise SystemExit(2) from None
    try:
        # access_log off and no log_config: we log requests ourselves, in structlog.
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            access_log=False,
            log_config=None,
            server_header=False,
            # Event streams stay open for as long as a customer watches: on stop, close them
            # within Kubernetes' grace period (15 s) instead of waiting to be killed.
            timeout_graceful_shutdown=10,
        )
    finally:
        shutdown_tracing()
        shutdown_metrics()
