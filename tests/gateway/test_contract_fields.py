"""The HTTP API over the contracts' v2 fields: the JSON a client reads is the same whether a
backend fills the new enums, only the deprecated strings (a backend from before them), or
both; the queue's tier filter reaches an escalation of either kind."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import verdict_pb2
from tests.gateway.conftest import TENANT, Mesh, one

MESSAGE_URL = "/v1/conversations/conv-1/messages"
CUSTOMER = {"tenant_id": TENANT, "customer_id": "cust-42"}

NEW: dict[str, Any] = {
    "summary_origin": escalation_pb2.SUMMARY_ORIGIN_LLM,
    "draft_origin": escalation_pb2.DRAFT_ORIGIN_TEMPLATE,
    "sentiment": verdict_pb2.SENTIMENT_LABEL_NEGATIVE,
}
OLD: dict[str, Any] = {"summary_method": "llm", "draft_method": "template", "sentiment_label": "negative"}


@pytest.mark.parametrize(
    ("package", "tiers"),
    [
        ({**NEW}, {"routing_tier": verdict_pb2.TIER_SPECIALIST}),
        ({**OLD}, {"tier": triage_pb2.TIER_SPECIALIST}),
        ({**NEW, **OLD}, {"routing_tier": verdict_pb2.TIER_SPECIALIST, "tier": triage_pb2.TIER_SPECIALIST}),
    ],
    ids=["enums", "deprecated-strings", "both"],
)
async def test_a_handoff_reads_the_same_from_either_escalation(
    mesh: Mesh, gateway: httpx.AsyncClient, package: dict[str, Any], tiers: dict[str, int]
) -> None:
    mesh.escalation.get_handoff.outcome = escalation_pb2.GetHandoffResponse(
        handoff=escalation_pb2.Handoff(
            handoff_id="ho-7", context=escalation_pb2.ContextPackage(summary="s", **package), **tiers
        )
    )
    response = await gateway.get(f"/v1/tenants/{TENANT}/handoffs/ho-7")

    assert response.status_code == 200, response.text
    body = response.json()
    context = body["context"]
    assert (context["summary_method"], context["draft_method"], context["sentiment_label"]) == (
        "llm",
        "template",
        "negative",
    )
    assert body["tier"] == "specialist"


async def test_a_draft_being_written_still_reads_pending(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    # The enums alone say it (the deprecated strings are left empty here).
    mesh.escalation.get_handoff.outcome = escalation_pb2.GetHandoffResponse(
        handoff=escalation_pb2.Handoff(
            handoff_id="ho-7",
            context=escalation_pb2.ContextPackage(
                summary_origin=escalation_pb2.SUMMARY_ORIGIN_PENDING,
                draft_origin=escalation_pb2.DRAFT_ORIGIN_PENDING,
            ),
        )
    )
    context = (await gateway.get(f"/v1/tenants/{TENANT}/handoffs/ho-7")).json()["context"]
    assert (context["summary_method"], context["draft_method"]) == ("pending", "pending")


async def test_the_queue_filters_by_tier_on_either_escalation(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.list_handoffs.outcome = escalation_pb2.ListHandoffsResponse()
    response = await gateway.get(f"/v1/tenants/{TENANT}/handoffs", params={"tier": "manager_flagged"})

    assert response.status_code == 200, response.text
    sent = one(mesh.escalation.list_handoffs.requests)
    assert (sent.routing_tier, sent.tier) == (verdict_pb2.TIER_MANAGER_FLAGGED, triage_pb2.TIER_MANAGER_FLAGGED)


@pytest.mark.parametrize(
    "fields",
    [
        {"reason": concierge_pb2.DECISION_REASON_LOW_CONFIDENCE},
        {"decision_reason": "low_confidence"},
        {"reason": concierge_pb2.DECISION_REASON_LOW_CONFIDENCE, "decision_reason": "low_confidence"},
        # A reason newer than this gateway: the code the concierge still sends names it.
        {"reason": 999, "decision_reason": "low_confidence"},
    ],
    ids=["enum", "deprecated-string", "both", "unknown-enum"],
)
async def test_the_decision_reason_reads_the_same_from_either_concierge(
    mesh: Mesh, gateway: httpx.AsyncClient, fields: dict[str, Any]
) -> None:
    mesh.concierge.converse.outcome = concierge_pb2.ConverseResponse(
        decision=concierge_pb2.DECISION_ESCALATED, handoff_id="ho-7", **fields
    )
    response = await gateway.post(MESSAGE_URL, json={"text": "Refund?", "customer": CUSTOMER})

    assert response.status_code == 200, response.text
    assert response.json()["decision_reason"] == "low_confidence"
