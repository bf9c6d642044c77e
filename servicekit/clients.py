"""gRPC client channels for calls inside the mesh.

Deadlines and retries are declared once, per service, in MESH below and
handed to gRPC as its service config: every call gets the service's default
deadline, UNAVAILABLE is retried with backoff, nothing else is. While serving
a request, an outbound call never gets more time than the request has left.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

import grpc

from servicekit import deadlines, meshauth

# Default deadline of each internal service. The concierge waits on the LLM,
# escalation builds context packages with it: they get more time.
MESH: dict[str, float] = {
    "aftercare.retrieval.v1.RetrievalService": 5.0,
    "aftercare.triage.v1.TriageService": 5.0,
    "aftercare.concierge.v1.ConciergeService": 60.0,
    # Creating a release asks triage and actions for their versions (2 s each).
    "aftercare.concierge.v1.ReleaseService": 10.0,
    "aftercare.escalation.v1.EscalationService": 30.0,
    "aftercare.outreach.v1.OutreachService": 30.0,
    # Long-running operations (triage's retrains) are read and cancelled quickly.
    "aftercare.operations.v1.OperationsService": 5.0,
    # An approval executes the write: the connector's timeout (5 s in the shop catalog) and its reads.
    "aftercare.actions.v1.ActionsService": 30.0,
    "grpc.health.v1.Health": 2.0,
    # One client stream carries a whole import: chunking and embedding take their time.
    "aftercare.retrieval.v1.RetrievalService/IngestDocuments": 600.0,
    "aftercare.outreach.v1.OutreachService/RecordUsage": 600.0,
    # A watch streams until the watcher leaves; the gateway re-opens it after this, from
    # the last event it relayed.
    "aftercare.escalation.v1.EscalationService/WatchConversation": 300.0,
    # The audit export streams the trail; a large tenant's takes its time.
    "aftercare.actions.v1.ActionsService/ExportAudit": 600.0,
    # The concierge reads judgements page by page for its shadow reports, canaries and refits:
    # a page that takes longer leaves them to the customers' ratings rather than waiting.
    "aftercare.escalation.v1.EscalationService/ListJudgements": 2.0,
    # Shadow reports and refits read all of a tenant's judgements (2 s a page) before computing.
    "aftercare.concierge.v1.ReleaseService/GetShadowReport": 30.0,
    "aftercare.concierge.v1.ReleaseService/RefitConfidence": 30.0,
}

_RETRY_POLICY = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def _name(key: str) -> dict[str, str]:
    service, _, method = key.partition("/")
    return {"service": service, "method": method} if method else {"service": service}


def service_config(service: str) -> dict[str, Any]:
    """The gRPC service config for calling `service` (and its health check)."""
    keys = [service, "grpc.health.v1.Health", *(k for k in MESH if k.startswith(f"{service}/"))]
    return {
        # Spread calls over every address the name resolves to (a headless Service
        # lists every pod); servers recycle connections so new pods get traffic too.
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [_name(key)],
                "timeout": f"{MESH[key]:.3f}s",
                # Client streams cannot be replayed safely once sent; only unary calls retry.
                **({} if "/" in key else {"retryPolicy": _RETRY_POLICY}),
            }
            for key in keys
        ]
    }


_C = TypeVar("_C", bound=grpc.aio.Call)


def _cancelled_with_chain(call: _C) -> _C:
    """Cancelling an intercepted unary call cancels its interceptor chain's task, but
    tracing's interceptor (outside this one) is still awaiting the call's status, so
    the RPC itself would run on until garbage collection. Tie the RPC to that task:
    a caller that gives up (a client gone, a deadline of its own) frees the server."""
    task = asyncio.current_task()
    if task is not None:
        task.add_done_callback(lambda done: call.cancel() if done.cancelled() else None)
    return call


class _MeshCall(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Every outbound call: the deadline it may have, and the mesh token when the mesh is authenticated."""

    def __init__(self, tokens: meshauth.TokenSource | None) -> None:
        self._tokens = tokens

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        # The service config's timeout is enforced by the client alone; an explicit
        # per-call timeout also travels as grpc-timeout, so the server knows its
        # deadline and can pass on what is left of it.
        method = (details.method.decode() if isinstance(details.method, bytes) else str(details.method)).lstrip("/")
        default = MESH.get(method, MESH.get(method.split("/", 1)[0]))
        candidates = [t for t in (details.timeout, default, deadlines.remaining()) if t is not None]
        timeout = max(min(candidates), 0.001) if candidates else details.timeout
        metadata = details.metadata
        if self._tokens is not None:
            metadata = grpc.aio.Metadata(*(metadata or ()), self._tokens.header())
        return grpc.aio.ClientCallDetails(
            details.method, timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return _cancelled_with_chain(await continuation(self._details(client_call_details), request))

    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request)

    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return _cancelled_with_chain(await continuation(self._details(client_call_details), request_iterator))

    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request_iterator)


def connect(target: str, service: str) -> grpc.aio.Channel:
    """One long-lived channel to `service` at `target` (host:port); make it once at start-up."""
    if service not in MESH:
        raise ValueError(f"unknown service {service!r}; declare its deadline in servicekit.clients.MESH")
    options = [
        ("grpc.service_config", json.dumps(service_config(service))),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ]
    return grpc.aio.insecure_channel(target, options=options, interceptors=[_MeshCall(meshauth.token_source())])
