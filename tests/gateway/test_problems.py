"""The gRPC -> HTTP status table and the problem+json bodies built from it."""

from __future__ import annotations

import json

import grpc
import pytest

from gateway.problems import HTTP_STATUS, PROBLEM_MEDIA_TYPE, http_status, problem, rpc_error_problem
from servicekit.errors import ApiError, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable


def _rpc_error(code: grpc.StatusCode, details: str, api_error: ApiError | None = None) -> grpc.aio.AioRpcError:
    trailing = grpc.aio.Metadata(*api_error.trailing_metadata()) if api_error else grpc.aio.Metadata()
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details)


def _body(response) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(response.body)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.OUT_OF_RANGE, 400),
        (grpc.StatusCode.FAILED_PRECONDITION, 409),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.ABORTED, 409),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.UNIMPLEMENTED, 501),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 500),
        (grpc.StatusCode.DATA_LOSS, 500),
        (grpc.StatusCode.CANCELLED, 500),
    ],
)
def test_status_table(code: grpc.StatusCode, status: int) -> None:
    assert http_status(code) == status


def test_the_table_has_no_500_entries() -> None:
    # 500 is the fallback; listing it would hide a code someone forgot to map.
    assert 500 not in HTTP_STATUS.values()


def test_problem_body_has_every_member() -> None:
    response = problem(404, "handoff ho-1 not found", "HANDOFF_NOT_FOUND", errors=[("handoff_id", "unknown")])

    assert response.media_type == PROBLEM_MEDIA_TYPE
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert _body(response) == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "handoff ho-1 not found",
        "reason": "HANDOFF_NOT_FOUND",
        "trace_id": "",  # outside a span
        "errors": [{"field": "handoff_id", "description": "unknown"}],
    }


def test_problem_without_errors_leaves_the_member_out() -> None:
    assert "errors" not in _body(problem(409, "already resolved", "FAILED_PRECONDITION"))


def test_field_violations_and_reason_are_kept() -> None:
    error = InvalidArgument([("text", "too long"), ("customer.tenant_id", "required")], reason="BAD_MESSAGE")
    body = _body(rpc_error_problem(_rpc_error(error.code, error.message, error)))

    assert (body["status"], body["reason"]) == (400, "BAD_MESSAGE")
    assert body["errors"] == [
        {"field": "text", "description": "too long"},
        {"field": "customer.tenant_id", "description": "required"},
    ]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFound("handoff ho-1 not found"), 404),
        (FailedPrecondition("handoff ho-1 is already resolved"), 409),
        (ResourceExhausted("too many messages; slow down"), 429),
    ],
)
def test_deliberate_backend_messages_reach_the_client(error: ApiError, status: int) -> None:
    body = _body(rpc_error_problem(_rpc_error(error.code, error.message, error)))

    assert (body["status"], body["detail"], body["reason"]) == (status, error.message, error.reason)


def test_transport_failures_get_a_generic_detail() -> None:
    raw = "failed to connect to all addresses; last error: ipv4:10.0.0.7:50051: Connection refused"
    body = _body(rpc_error_problem(_rpc_error(grpc.StatusCode.UNAVAILABLE, raw)))

    assert (body["status"], body["reason"]) == (503, "UNAVAILABLE")
    assert "10.0.0.7" not in body["detail"]


def test_deadline_exceeded_is_504_with_a_generic_detail() -> None:
    body = _body(rpc_error_problem(_rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")))

    assert (body["status"], body["reason"]) == (504, "DEADLINE_EXCEEDED")
    assert body["detail"] == "A backend service did not answer in time."


def test_internal_errors_never_show_the_backend_message() -> None:
    body = _body(rpc_error_problem(_rpc_error(grpc.StatusCode.INTERNAL, "KeyError: 'secret' at store.py:12")))

    assert (body["status"], body["reason"]) == (500, "INTERNAL")
    assert "secret" not in body["detail"]


@pytest.mark.parametrize(("error", "retry_after"), [
    (ResourceExhausted("the assistant is busy", reason="LLM_BUSY"), "2"),
    (Unavailable("down", reason="DEPENDENCY_UNAVAILABLE"), "5"),
])
def test_shed_or_unavailable_backends_say_when_to_retry(error: ApiError, retry_after: str) -> None:
    response = rpc_error_problem(_rpc_error(error.code, error.message, error))
    assert response.headers["retry-after"] == retry_after


def test_client_errors_carry_no_retry_after() -> None:
    error = InvalidArgument([("text", "is required")])
    assert "retry-after" not in rpc_error_problem(_rpc_error(error.code, error.message, error)).headers
