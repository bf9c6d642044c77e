"""Request and response bodies of the HTTP API, and their translation to and
from the protobuf messages of the backends: one module per router of
gateway/routes/ (conversations, handoffs, deliveries, knowledge, insights, models, releases,
outreach), the health endpoints' bodies in health, and the types they share
(ids, time and enum conversions, citations, the problem body) in common.

This is the only place payloads are pydantic models; between services they
are protobuf. Enum values are exposed in lowercase without their prefix
(DECISION_ANSWERED -> "answered").
"""
