"""A minimal OTLP/gRPC trace receiver, used by the mesh tests and benchmarks:
the services export to it over the network exactly as they would to an
OpenTelemetry Collector, and it keeps the spans in memory for inspection."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, object]
    kind: int
    start_ns: int
    end_ns: int

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.metrics = _MetricsReceiver()
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self.metrics, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def Export(self, request, context):  # type: ignore[no-untyped-def]
        with self._lock:
            for resource_spans in request.resource_spans:
                service = next(
                    (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"), ""
                )
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self._spans.append(
                            ReceivedSpan(
                                service=service,
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_span_id=span.parent_span_id.hex(),
                                attributes={a.key: _value(a.value) for a in span.attributes},
                                kind=span.kind,
                                start_ns=span.start_time_unix_nano,
                                end_ns=span.end_time_unix_nano,
                            )
                        )
        return trace_service_pb2.ExportTraceServiceResponse()

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(0)

    def spans(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self._spans if span.trace_id == trace_id]

    def wait_for(
        self, trace_id: str, services: set[str], names: frozenset[str] = frozenset(), timeout_s: float = 15.0
    ) -> list[ReceivedSpan]:
        """The trace's spans once every service and span name has arrived (or what came by the timeout)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.spans(trace_id)
            root_done = any(not span.parent_span_id for span in found)
            if root_done and services <= {s.service for s in found} and names <= {s.name for s in found}:
                return found
            time.sleep(0.1)
        return self.spans(trace_id)

    def __iter__(self) -> Iterator[ReceivedSpan]:
        with self._lock:
            return iter(list(self._spans))


class _MetricsReceiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    """Keeps the names of metrics received per service, to check that they are exported."""

    def __init__(self) -> None:
        self.names: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def Export(self, request, context):  # type: ignore[no-untyped-def]
        with self._lock:
            for resource_metrics in request.resource_metrics:
                service = next(
                    (a.value.string_value for a in resource_metrics.resource.attributes if a.key == "service.name"), ""
                )
                for scope_metrics in resource_metrics.scope_metrics:
                    self.names.setdefault(service, set()).update(m.name for m in scope_metrics.metrics)
        return metrics_service_pb2.ExportMetricsServiceResponse()


def _value(value) -> object:  # type: ignore[no-untyped-def]
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None
