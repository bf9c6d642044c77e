"""OpenTelemetry metrics, configured like tracing by the standard OTEL_*
variables: exported over OTLP when an endpoint is set, otherwise the meters
are no-ops and cost nothing."""

from __future__ import annotations

import os

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource


def _otlp_metric_exporter() -> MetricExporter:
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    )
    if protocol.startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

        return HttpExporter()
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

    return GrpcExporter()


def configure_metrics(service_name: str) -> None:
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")):
        return
    if os.environ.get("OTEL_METRICS_EXPORTER", "otlp") == "none":  # e.g. a trace-only backend
        return
    resource = Resource.create({"service.name": service_name, "service.namespace": "aftercare"})
    if "OTEL_SERVICE_NAME" not in os.environ:
        resource = resource.merge(Resource({"service.name": service_name}))
    # OTEL_METRIC_EXPORT_INTERVAL (ms) is read by the reader itself.
    reader = PeriodicExportingMetricReader(_otlp_metric_exporter())
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


def shutdown_metrics() -> None:
    provider = metrics.get_meter_provider()
    if isinstance(provider, MeterProvider):
        provider.shutdown()
