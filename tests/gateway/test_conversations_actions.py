"""The gateway's side of the concierge acting: a message's `action_reply` reaches the
concierge, and a reply's `pending_action`, `verified_customer_id`, record citations
and the new decisions and reasons render (none of them a 500), over real gRPC to the
test doubles of tests/gateway/conftest.py."""

from __future__ import annotations

import httpx
import pytest

from aftercare.concierge.v1 import concierge_pb2
from aftercare.type.v1 import answer_pb2
from tests.gateway.conftest import Mesh

CUSTOMER = {"tenant_id": "demo", "customer_id": "cust-42"}
MESSAGE_URL = "/v1/conversations/conv-1/messages"
PENDING = concierge_pb2.PendingAction(
    action_id="act-1", tool="cancel_pending_order", summary="Cancel order #W4386313 (Skateboard).",
    fingerprint="f" * 64, state=concierge_pb2.ACTION_STATE_PROPOSED,
)


async def test_a_proposed_action_renders_with_its_summary_and_fingerprint(
    mesh: Mesh, gateway: httpx.AsyncClient
) -> None:
    mesh.concierge.converse.outcome = concierge_pb2.ConverseResponse(
        reply="Here is what I'll do: Cancel order #W4386313 (Skateboard). Shall I go ahead? (yes/no)",
        decision=concierge_pb2.DECISION_CONFIRM_ACTION,
        reason=concierge_pb2.DECISION_REASON_ACTION_PROPOSED,
        pending_action=PENDING,
        verified_customer_id="isabella_sanchez_2068",
    )
    response = await gateway.post(MESSAGE_URL, json={"text": "cancel it", "customer": CUSTOMER})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["decision"], body["decision_reason"]) == ("confirm_action", "action_proposed")
    assert body["pending_action"] == {
        "action_id": "act-1", "tool": "cancel_pending_order", "summary": "Cancel order #W4386313 (Skateboard).",
        "fingerprint": "f" * 64, "state": "proposed", "approval_reasons": [],
    }
    assert body["verified_customer_id"] == "isabella_sanchez_2068"


async def test_action_reply_reaches_the_concierge(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    done = concierge_pb2.PendingAction()
    done.CopyFrom(PENDING)
    done.state = concierge_pb2.ACTION_STATE_EXECUTED
    mesh.concierge.converse.outcome = concierge_pb2.ConverseResponse(
        reply="Done: Cancel order #W4386313 (Skateboard).", decision=concierge_pb2.DECISION_ACTED,
        reason=concierge_pb2.DECISION_REASON_ACTION_EXECUTED, pending_action=done,
    )
    reply = {"action_id": "act-1", "fingerprint": "f" * 64, "confirmed": True}
    response = await gateway.post(MESSAGE_URL, json={"text": "Yes", "customer": CUSTOMER, "action_reply": reply})
    assert response.status_code == 200, response.text
    assert response.json()["decision"] == "acted"
    assert response.json()["pending_action"]["state"] == "executed"
    (sent,) = mesh.concierge.converse.requests
    assert sent.HasField("action_reply")
    assert (sent.action_reply.action_id, sent.action_reply.fingerprint, sent.action_reply.confirmed) == (
        "act-1", "f" * 64, True,
    )


@pytest.mark.parametrize("reply", [
    {"action_id": "act-1", "confirmed": True},
    {"action_id": "", "fingerprint": "x", "confirmed": True},
    {"action_id": "act-1", "fingerprint": "x", "confirmed": "maybe"},
    {"action_id": "act-1", "fingerprint": "x", "confirmed": True, "extra": 1},
])
async def test_a_malformed_action_reply_is_a_400_problem(
    mesh: Mesh, gateway: httpx.AsyncClient, reply: dict[str, object]
) -> None:
    response = await gateway.post(MESSAGE_URL, json={"text": "Yes", "customer": CUSTOMER, "action_reply": reply})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert not mesh.concierge.converse.requests


async def test_a_record_citation_names_the_record(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    record = answer_pb2.RecordRef(kind="order", id="#W1713682", tool="get_order_details")
    mesh.concierge.converse.outcome = concierge_pb2.ConverseResponse(
        reply="Order #W1713682 is delivered.", decision=concierge_pb2.DECISION_ANSWERED,
        reason=concierge_pb2.DECISION_REASON_FROM_RECORDS,
        citations=[answer_pb2.Citation(title="order #W1713682", record=record)],
    )
    response = await gateway.post(MESSAGE_URL, json={"text": "where is it", "customer": CUSTOMER})
    body = response.json()
    assert body["decision_reason"] == "from_records"
    assert body["citations"][0]["record"] == {"kind": "order", "id": "#W1713682", "tool": "get_order_details"}
    # Nothing account-related: the fields are absent, as before they existed.
    assert "pending_action" not in body and "verified_customer_id" not in body


@pytest.mark.parametrize("decision", list(concierge_pb2.Decision.values()))
@pytest.mark.parametrize("state", list(concierge_pb2.ActionState.values()))
async def test_every_decision_and_action_state_renders(
    mesh: Mesh, gateway: httpx.AsyncClient, decision: int, state: int
) -> None:
    pending = concierge_pb2.PendingAction()
    pending.CopyFrom(PENDING)
    pending.state = state  # type: ignore[assignment]
    mesh.concierge.converse.outcome = concierge_pb2.ConverseResponse(
        reply="x", decision=decision, pending_action=pending,  # type: ignore[arg-type]
        reason=max(concierge_pb2.DecisionReason.values()),
    )
    response = await gateway.post(MESSAGE_URL, json={"text": "hi", "customer": CUSTOMER})
    assert response.status_code == 200, response.text
