"""Errors as gRPC status codes with google.rpc details.

Handlers raise an ApiError subclass; the server runtime turns it into the
status code, a clear message, an ErrorInfo with a stable reason, and (for
bad input) a BadRequest listing every field violation. Clients (the gateway)
read the same details back with `details_from_rpc_error`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from sqlalchemy import exc as sqlalchemy_errors

ERROR_DOMAIN = "aftercare.dev"
_DETAILS_KEY = "grpc-status-details-bin"


class ApiError(Exception):
    """An error a caller can act on. Never carries a stack trace to the client."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    default_reason: str = "UNKNOWN"

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = metadata or {}

    def to_status_proto(self) -> status_pb2.Status:
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata)
        detail = any_pb2.Any()
        detail.Pack(info)
        status.details.append(detail)
        return status

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return ((_DETAILS_KEY, self.to_status_proto().SerializeToString()),)


class InvalidArgument(ApiError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[tuple[str, str]], *, reason: str | None = None):
        self.violations = violations
        summary = "; ".join(f"{name}: {description}" for name, description in violations)
        super().__init__(f"invalid request: {summary}", reason=reason)

    def to_status_proto(self) -> status_pb2.Status:
        status = super().to_status_proto()
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=name, description=description)
                for name, description in self.violations
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad_request)
        status.details.append(detail)
        return status


class NotFound(ApiError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class FailedPrecondition(ApiError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Aborted(ApiError):
    code = grpc.StatusCode.ABORTED
    default_reason = "ABORTED"


class ResourceExhausted(ApiError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class Unavailable(ApiError):
    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


# Errors that say the database cannot be reached now (connection refused or lost, file not
# readable, pool exhausted), as against a bad statement or a broken constraint (a bug: INTERNAL).
_DATABASE_DOWN = (
    sqlalchemy_errors.OperationalError,
    sqlalchemy_errors.InterfaceError,
    sqlalchemy_errors.DisconnectionError,
    sqlalchemy_errors.TimeoutError,
)


def database_unavailable(error: BaseException) -> Unavailable | None:
    """UNAVAILABLE (the client retries) when `error`, or what it was raised from, says
    the database is down; None otherwise."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        down = isinstance(current, _DATABASE_DOWN) or (
            isinstance(current, sqlalchemy_errors.DBAPIError) and current.connection_invalidated
        )
        if down:
            return Unavailable("the database is unavailable; retry shortly", reason="DATABASE_UNAVAILABLE")
        current = current.__cause__ or current.__context__
    return None


@dataclass
class Violations:
    """Collects every problem with a request, so the caller hears about all of them at once."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, field_path: str, description: str) -> None:
        self.items.append((field_path, description))

    def check(self, ok: bool, field_path: str, description: str) -> None:
        if not ok:
            self.add(field_path, description)

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(list(self.items))


@dataclass
class ErrorDetails:
    """What a client can read from a failed call."""

    code: grpc.StatusCode
    message: str
    reason: str
    field_violations: list[tuple[str, str]]


def details_from_rpc_error(error: grpc.aio.AioRpcError | grpc.RpcError) -> ErrorDetails:
    code: grpc.StatusCode = error.code()
    message: str = error.details() or code.name
    reason = code.name
    violations: list[tuple[str, str]] = []
    # Entries are (key, value) pairs at runtime; grpc's stubs type the sync ones as a non-iterable class.
    for key, value in error.trailing_metadata() or ():  # type: ignore[misc]
        if key != _DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value if isinstance(value, bytes) else value.encode())
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violations = [(v.field, v.description) for v in bad_request.field_violations]
    return ErrorDetails(code=code, message=message, reason=reason, field_violations=violations)


__all__ = [
    "Aborted",
    "ApiError",
    "ErrorDetails",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "ResourceExhausted",
    "Unavailable",
    "Violations",
    "code_pb2",
    "database_unavailable",
    "details_from_rpc_error",
]
