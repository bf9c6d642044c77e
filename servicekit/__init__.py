"""The one runtime every aftercare process uses.

It wires settings, structured logs, OpenTelemetry tracing, the gRPC server
(health, reflection, error mapping, deadlines, graceful shutdown) and gRPC
client channels (service config with deadlines and retries), so that no
service writes its own bootstrap.
"""
