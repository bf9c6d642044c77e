"""OpenTelemetry tracing, configured only by the standard OTEL_* variables.

Spans always exist (so trace ids reach logs and responses); they are exported
over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT (or the traces-specific variable) is
set. gRPC servers and clients are traced by instrumentation; health checks and
reflection are left out of traces.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.instrumentation.grpc import (
    GrpcAioInstrumentorClient,
    GrpcAioInstrumentorServer,
    filters,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

_NOT_TRACED = filters.negate(
    filters.any_of(filters.health_check(), filters.service_prefix("grpc.reflection"))
)

_configured = False


def _otlp_exporter() -> SpanExporter:
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    )
    if protocol.startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    return GrpcExporter()


def configure_tracing(service_name: str, *extra_processors: SpanProcessor) -> TracerProvider:
    """Install the process's tracer provider and gRPC instrumentation (once)."""
    global _configured
    if _configured:
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        for processor in extra_processors:
            provider.add_span_processor(processor)
        return provider
    # Resource.create also reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    attributes = {"service.name": service_name, "service.namespace": "aftercare"}
    resource = Resource.create(attributes)
    if "OTEL_SERVICE_NAME" not in os.environ:
        resource = resource.merge(Resource({"service.name": service_name}))
    provider = TracerProvider(resource=resource)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter()))
    for processor in extra_processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    GrpcAioInstrumentorServer(filter_=_NOT_TRACED).instrument()
    GrpcAioInstrumentorClient(filter_=_NOT_TRACED).instrument()
    _configured = True
    return provider


def current_trace_id() -> str:
    """The current W3C trace id as 32 hex digits, or "" outside a span."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
