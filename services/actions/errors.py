"""The actions service's refusals, as gRPC status codes with google.rpc details
(servicekit.errors has the shared ones)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from servicekit.errors import ApiError, FailedPrecondition


class PermissionDenied(ApiError):
    """Another customer's record, another conversation's customer: never shown, never changed."""

    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class PreconditionsFailed(FailedPrecondition):
    """The catalog's policy rules that do not hold, each as a PreconditionFailure violation
    (type "POLICY", subject the rule's name, description its message)."""

    default_reason = "PRECONDITION_FAILED"

    def __init__(self, tool: str, failed: Sequence[tuple[str, str]]) -> None:
        self.failed = list(failed)
        words = "; ".join(message for _, message in failed)
        super().__init__(
            f"{tool} is not allowed now: {words}",
            metadata={"tool": tool, "preconditions": ",".join(name for name, _ in failed)},
        )

    def to_status_proto(self) -> status_pb2.Status:
        status = super().to_status_proto()
        failure = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(type="POLICY", subject=name, description=message)
                for name, message in self.failed
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(failure)
        status.details.append(detail)
        return status


def precondition_failures(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """(subject, description) of every PreconditionFailure violation in a failed call's details."""
    found: list[tuple[str, str]] = []
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value if isinstance(value, bytes) else value.encode())
        for detail in status.details:
            if detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
                failure = error_details_pb2.PreconditionFailure()
                detail.Unpack(failure)
                found += [(v.subject, v.description) for v in failure.violations]
    return found
