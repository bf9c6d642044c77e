"""Errors as RFC 9457 problem details (application/problem+json).

The one table from gRPC status codes to HTTP statuses lives here, with the
exception handlers that use it. Backend messages reach the client only when a
service raised them on purpose (they carry google.rpc details) and the status
is not a 500; anything else gets a generic detail, so no internal address,
exception text or stack trace ever leaves the gateway.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import grpc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.disconnect import ClientGone
from gateway.schemas.common import FieldError, Problem
from servicekit.errors import details_from_rpc_error
from servicekit.tracing import current_trace_id

PROBLEM_MEDIA_TYPE = "application/problem+json"
_DETAILS_KEY = "grpc-status-details-bin"

log = structlog.get_logger("gateway.problems")

# gRPC status -> HTTP status, after Google's AIP-193 / google.rpc.Code table.
# Codes not listed (UNKNOWN, INTERNAL, DATA_LOSS, CANCELLED, OK) become 500.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    # AIP-193 allows 400; we answer 409 because FAILED_PRECONDITION means the
    # request was well-formed but the resource's current state forbids it
    # (e.g. resolving a handoff that is already resolved): the client must not
    # "fix the payload" as for a 400, but re-read the state first, which is
    # what 409 Conflict tells it.
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}

# What the client reads when the backend's own message must not be shown.
_GENERIC_DETAIL: dict[int, str] = {
    503: "A backend service is unavailable; retry later.",
    504: "A backend service did not answer in time.",
    500: "Internal error; quote the trace id when reporting it.",
}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


class BodyTooLarge(StarletteHTTPException):
    """Raised while reading a request body that outgrows the limit."""

    reason = "BODY_TOO_LARGE"

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes.")


class NotFoundProblem(StarletteHTTPException):
    """A 404 the gateway itself decides from a backend's answer (e.g. a delete
    that found nothing), with a stable reason."""

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(404, detail)
        self.reason = reason


def problem(
    status: int,
    detail: str,
    reason: str,
    *,
    errors: list[tuple[str, str]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> ProblemResponse:
    """A problem+json response; `extra` adds members (RFC 9457 extension members)."""
    body = Problem(
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        reason=reason,
        trace_id=current_trace_id(),
        errors=[FieldError(field=name, description=text) for name, text in errors] if errors else None,
    ).model_dump(exclude_none=True)
    return ProblemResponse(body | (extra or {}), status_code=status, headers=headers)


def http_status(code: grpc.StatusCode) -> int:
    return HTTP_STATUS.get(code, 500)


# Seconds a client should wait before retrying a backend's 429 or 503.
_RETRY_AFTER_S = {429: 2, 503: 5}


def rpc_error_problem(error: grpc.aio.AioRpcError) -> ProblemResponse:
    """The problem a failed backend call becomes."""
    details = details_from_rpc_error(error)
    status = http_status(details.code)
    # Only errors a service raised on purpose carry status details; a transport
    # failure's message names internal addresses and is not for clients.
    deliberate = any(key == _DETAILS_KEY for key, _ in error.trailing_metadata() or ())
    if status == 500:
        return problem(500, _GENERIC_DETAIL[500], "INTERNAL")
    detail = details.message if deliberate else _GENERIC_DETAIL.get(status, details.message)
    # A backend shedding load (429) or down (503) is worth a retry: say when.
    retry = {"Retry-After": str(_RETRY_AFTER_S[status])} if status in _RETRY_AFTER_S else None
    return problem(status, detail, details.reason, errors=details.field_violations or None, headers=retry)


# --- exception handlers ----------------------------------------------------


async def _on_rpc_error(request: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, grpc.aio.AioRpcError)
    response = rpc_error_problem(error)
    # Server-side only: the backend's own words, for whoever reads the logs.
    # A client's mistake is routine (info); a backend failing us is not (warning).
    emit = log.warning if response.status_code >= 500 else log.info
    emit(
        "backend_error",
        path=request.url.path,
        code=error.code().name,
        backend_detail=error.details(),
        status=response.status_code,
    )
    return response


async def _on_validation_error(_: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, RequestValidationError)
    violations = [(".".join(str(part) for part in item["loc"]), str(item["msg"])) for item in error.errors()]
    return problem(400, "The request is invalid; see errors.", "INVALID_ARGUMENT", errors=violations)


async def _on_http_exception(_: Request, error: Exception) -> ProblemResponse:
    # Routing's 404/405 and the body limit's 413 arrive here.
    assert isinstance(error, StarletteHTTPException)
    status = error.status_code
    reason = getattr(error, "reason", HTTPStatus(status).name)
    detail = error.detail if isinstance(error.detail, str) else HTTPStatus(status).description
    return problem(status, detail, reason, headers=dict(error.headers or {}))


async def _on_unhandled(request: Request, error: Exception) -> ProblemResponse:
    # Runs in Starlette's outermost error middleware, after the request-id
    # middleware has returned: the request id comes from the request state.
    request_id = getattr(request.state, "request_id", "")
    log.error(
        "unhandled_error",
        path=request.url.path,
        request_id=request_id,
        error_type=type(error).__name__,
        exc_info=error,
    )
    headers = {"X-Request-ID": request_id} if request_id else None
    return problem(500, _GENERIC_DETAIL[500], "INTERNAL", headers=headers)


async def _on_client_gone(request: Request, _: Exception) -> Response:
    # Nobody reads this response; 499 ("client closed request", as nginx logs it) is for the access log.
    log.info("client_gone", path=request.url.path)
    return Response(status_code=499)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ClientGone, _on_client_gone)
    app.add_exception_handler(grpc.aio.AioRpcError, _on_rpc_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unhandled)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of a route's error responses (all problem+json).

    "default" also stops FastAPI from documenting a 422 we never send.
    """
    documented: dict[int | str, dict[str, Any]] = {
        status: {"model": Problem, "description": HTTPStatus(status).phrase} for status in statuses
    }
    documented["default"] = {"model": Problem, "description": "Any other error."}
    return documented
