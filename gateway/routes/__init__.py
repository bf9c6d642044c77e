"""The /v1 API, one router per area; each handler is one gRPC call."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.routes import (
    conversations,
    deliveries,
    events,
    handoffs,
    insights,
    knowledge,
    models,
    outreach,
    releases,
)

ROUTERS: tuple[APIRouter, ...] = (
    conversations.router,
    events.router,
    knowledge.router,
    handoffs.router,
    deliveries.router,
    insights.router,
    outreach.router,
    models.router,
    releases.router,
)
