"""The support lead's view: per-topic series, knowledge gaps, feedback export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from aftercare.escalation.v1 import escalation_pb2
from gateway.auth import AdminKey, AgentKey
from gateway.deps import BackendsDep, TenantId
from gateway.problems import problem_responses
from gateway.schemas.common import IsoDateTime, to_timestamp
from gateway.schemas.insights import (
    FeedbackExportReply,
    IntentCorrectionsReply,
    KnowledgeGapsReply,
    TopicInsightsReply,
)

router = APIRouter(tags=["insights"])


@router.get(
    "/v1/tenants/{tenant_id}/insights/topics",
    response_model=TopicInsightsReply,
    summary="Per-topic confidence, automation, escalation and edit rates per day; sudden drops flagged.",
    responses=problem_responses(400, 401, 403, 429, 503, 504),
)
async def topic_insights(
    tenant_id: TenantId,
    key: AgentKey,
    backends: BackendsDep,
    start: Annotated[IsoDateTime | None, Query(description="Start of the period (ISO 8601).")] = None,
    end: Annotated[IsoDateTime | None, Query(description="End of the period (ISO 8601).")] = None,
) -> TopicInsightsReply:
    request = escalation_pb2.GetTopicInsightsRequest(
        tenant_id=key.tenant_id, start_time=to_timestamp(start), end_time=to_timestamp(end)
    )
    response = await backends.escalation.stub.GetTopicInsights(request)
    return TopicInsightsReply.from_proto(response)


@router.get(
    "/v1/tenants/{tenant_id}/insights/knowledge-gaps",
    response_model=KnowledgeGapsReply,
    summary="Clusters of questions the AI could not answer, most important first.",
    responses=problem_responses(400, 401, 403, 429, 503, 504),
)
async def knowledge_gaps(
    tenant_id: TenantId,
    key: AgentKey,
    backends: BackendsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> KnowledgeGapsReply:
    request = escalation_pb2.ListKnowledgeGapsRequest(tenant_id=key.tenant_id, limit=limit)
    response = await backends.escalation.stub.ListKnowledgeGaps(request)
    return KnowledgeGapsReply.from_proto(response)


@router.get(
    "/v1/tenants/{tenant_id}/feedback/export",
    response_model=FeedbackExportReply,
    summary="Agent edits of AI drafts as a preference-tuning data set (personal data masked).",
    responses=problem_responses(400, 401, 403, 429, 503, 504),
)
async def export_feedback(
    tenant_id: TenantId,
    key: AdminKey,
    backends: BackendsDep,
    since: Annotated[IsoDateTime | None, Query(description="Only feedback at or after this time.")] = None,
) -> FeedbackExportReply:
    request = escalation_pb2.ExportFeedbackRequest(tenant_id=key.tenant_id, since=to_timestamp(since))
    response = await backends.escalation.stub.ExportFeedback(request)
    return FeedbackExportReply.from_proto(response)


@router.get(
    "/v1/tenants/{tenant_id}/feedback/intent-corrections",
    response_model=IntentCorrectionsReply,
    summary="Agents' intent corrections as labelled examples for triage's Retrain (personal data masked).",
    responses=problem_responses(400, 401, 403, 429, 503, 504),
)
async def export_intent_corrections(
    tenant_id: TenantId,
    key: AdminKey,
    backends: BackendsDep,
    since: Annotated[IsoDateTime | None, Query(description="Only corrections at or after this time.")] = None,
) -> IntentCorrectionsReply:
    request = escalation_pb2.ExportIntentCorrectionsRequest(tenant_id=key.tenant_id, since=to_timestamp(since))
    response = await backends.escalation.stub.ExportIntentCorrections(request)
    return IntentCorrectionsReply(example_count=response.example_count, jsonl=response.jsonl)
