"""The agent's side of the customer's account, over real gRPC to the test doubles of
tests/gateway/conftest.py: approvals go to escalation (which tells the customer), the handoff
shows the account activity, and the copilot path (tools, a read, a proposal, its confirmation)
translates to the actions service with the key's holder as the acting agent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from aftercare.actions.v1 import actions_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import conversation_pb2, customer_pb2
from gateway.keys import Role
from servicekit.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from tests.gateway.conftest import Mesh, bearer, one, open_gateway

AGENT = "agent-demo"  # the name Mesh.key gives the demo tenant's agent key
FINGERPRINT = "f" * 64


def _at(hour: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime(2026, 12, 7, hour, 0, tzinfo=UTC))
    return stamp


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in response.text
    body: dict[str, Any] = response.json()
    return body


def _account_action(state: int = escalation_pb2.ACCOUNT_ACTION_STATE_SUCCEEDED, **fields: Any
                    ) -> escalation_pb2.AccountAction:
    return escalation_pb2.AccountAction(
        action_id="act-1", tool="cancel_pending_order", summary="Cancel order #W4386313 (refund $5,210.00).",
        state=state, approval_reasons=["A refund above $5,000 needs an agent's approval."],
        masked_arguments_json=json.dumps({"order_id": "#W4386313", "reason": "ordered by mistake"}),
        updated_at=_at(10), fingerprint=FINGERPRINT, **fields,
    )


@pytest.fixture
async def agent(mesh: Mesh) -> Any:
    async with open_gateway(mesh.settings(), key=mesh.key(Role.AGENT)) as client:
        yield client


# --- approvals, through escalation -------------------------------------------------------


async def test_approving_asks_escalation_as_the_keys_holder_and_returns_what_the_customer_was_told(
    mesh: Mesh, agent: httpx.AsyncClient
) -> None:
    mesh.escalation.decide_action_approval.outcome = escalation_pb2.DecideActionApprovalResponse(
        action=_account_action(decided_by=AGENT),
        message=escalation_pb2.ThreadMessage(
            message_id="m-9", sequence=4, author_name="Dana",
            message=conversation_pb2.Message(role=conversation_pb2.ROLE_AGENT, text="Good news: done.",
                                             sent_at=_at(10)),
        ),
        handoff=escalation_pb2.Handoff(handoff_id="ho-1"),
    )
    response = await agent.post("/v1/tenants/demo/actions/act-1:approve",
                                json={"note": "refund checked", "agent_name": "Dana"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["handoff_id"] == "ho-1"
    assert body["action"] == {
        "action_id": "act-1", "tool": "cancel_pending_order", "summary": "Cancel order #W4386313 (refund $5,210.00).",
        "state": "succeeded", "approval_reasons": ["A refund above $5,000 needs an agent's approval."],
        "decided_by": AGENT, "dry_run": False, "error_message": None,
        "masked_arguments": {"order_id": "#W4386313", "reason": "ordered by mistake"},
        "updated_at": "2026-12-07T10:00:00Z", "fingerprint": FINGERPRINT,
    }
    assert body["message"] == {
        "message_id": "m-9", "sequence": 4, "role": "agent", "author_name": "Dana", "text": "Good news: done.",
        "sent_at": "2026-12-07T10:00:00Z",
    }
    sent = one(mesh.escalation.decide_action_approval.requests)
    assert (sent.tenant_id, sent.action_id, sent.choice, sent.note) == (
        "demo", "act-1", escalation_pb2.APPROVAL_CHOICE_APPROVE, "refund checked"
    )
    # The agent is who holds the key; escalation finds the conversation's handoff itself.
    assert (sent.agent_id, sent.agent_name, sent.handoff_id) == (AGENT, "Dana", "")
    # One way of deciding: never straight to the actions service, which would tell the customer nothing.
    assert mesh.fakes["actions"].decide_approval.requests == []


async def test_rejecting_sends_the_rejection_and_an_executing_action_comes_back_without_a_message(
    mesh: Mesh, agent: httpx.AsyncClient
) -> None:
    mesh.escalation.decide_action_approval.outcome = escalation_pb2.DecideActionApprovalResponse(
        action=_account_action(escalation_pb2.ACCOUNT_ACTION_STATE_EXECUTING)
    )
    response = await agent.post("/v1/tenants/demo/actions/act-1:reject", json={})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["action"]["state"], body["message"], body["handoff_id"]) == ("executing", None, None)
    sent = one(mesh.escalation.decide_action_approval.requests)
    assert (sent.choice, sent.agent_id, sent.agent_name, sent.note) == (
        escalation_pb2.APPROVAL_CHOICE_REJECT, AGENT, "", ""
    )


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (FailedPrecondition("action act-1 is not awaiting approval", reason="NOT_AWAITING_APPROVAL"), 409,
         "NOT_AWAITING_APPROVAL"),
        (NotFound("action act-1 not found", reason="ACTION_NOT_FOUND"), 404, "ACTION_NOT_FOUND"),
        (Unavailable("the company's system cannot be reached", reason="CONNECTOR_UNAVAILABLE"), 503,
         "CONNECTOR_UNAVAILABLE"),
        (FailedPrecondition("no actions service", reason="ACTIONS_NOT_CONFIGURED"), 409, "ACTIONS_NOT_CONFIGURED"),
    ],
)
async def test_a_refused_decision_is_a_problem_with_the_backends_reason(
    mesh: Mesh, agent: httpx.AsyncClient, error: Exception, status: int, reason: str
) -> None:
    mesh.escalation.decide_action_approval.outcome = error
    problem = _problem(await agent.post("/v1/tenants/demo/actions/act-1:approve", json={}), status)
    assert problem["reason"] == reason
    assert problem["detail"] == str(error)


async def test_a_decision_body_names_no_agent_and_holds_the_note_to_escalations_length(
    mesh: Mesh, agent: httpx.AsyncClient
) -> None:
    assert _problem(await agent.post("/v1/tenants/demo/actions/act-1:approve", json={"agent_id": "someone"}),
                    400)["errors"][0]["field"] == "body.agent_id"
    _problem(await agent.post("/v1/tenants/demo/actions/act-1:reject", json={"note": "x" * 1001}), 400)
    _problem(await agent.post("/v1/tenants/demo/actions/act-1:reject", json={"agent_name": ""}), 400)
    assert mesh.escalation.decide_action_approval.requests == []


# --- the handoff's account activity ------------------------------------------------------


async def test_a_handoff_shows_the_customers_account_activity(mesh: Mesh, agent: httpx.AsyncClient) -> None:
    mesh.escalation.get_handoff.outcome = escalation_pb2.GetHandoffResponse(handoff=escalation_pb2.Handoff(
        handoff_id="ho-1", customer=customer_pb2.CustomerRef(tenant_id="demo", customer_id="web-1"),
        conversation_id="conv-1",
        context=escalation_pb2.ContextPackage(
            summary="Wants a big order cancelled.",
            account_activity=escalation_pb2.AccountActivity(
                verified_customer_id="isabella_sanchez_2068",
                records=[escalation_pb2.RecordRead(
                    tool="get_order_details", record_id="#W4386313",
                    masked_arguments_json=json.dumps({"order_id": "#W4386313"}), read_at=_at(9))],
                actions=[_account_action(escalation_pb2.ACCOUNT_ACTION_STATE_AWAITING_APPROVAL),
                         _account_action(escalation_pb2.ACCOUNT_ACTION_STATE_FAILED, error_message="refused")],
                complete=False,
            ),
        ),
    ))
    response = await agent.get("/v1/tenants/demo/handoffs/ho-1")
    assert response.status_code == 200, response.text
    activity = response.json()["context"]["account_activity"]
    assert activity["verified_customer_id"] == "isabella_sanchez_2068"
    assert activity["complete"] is False
    assert activity["records"] == [{"tool": "get_order_details", "record_id": "#W4386313",
                                    "masked_arguments": {"order_id": "#W4386313"},
                                    "read_at": "2026-12-07T09:00:00Z"}]
    assert [(a["state"], a["error_message"], a["decided_by"]) for a in activity["actions"]] == [
        ("awaiting_approval", None, None), ("failed", "refused", None)
    ]


async def test_a_handoff_without_account_activity_says_null(mesh: Mesh, agent: httpx.AsyncClient) -> None:
    mesh.escalation.get_handoff.outcome = escalation_pb2.GetHandoffResponse(handoff=escalation_pb2.Handoff(
        handoff_id="ho-2", context=escalation_pb2.ContextPackage(summary="A question.")))
    response = await agent.get("/v1/tenants/demo/handoffs/ho-2")
    assert response.json()["context"]["account_activity"] is None
    mesh.escalation.get_handoff.outcome = escalation_pb2.GetHandoffResponse(handoff=escalation_pb2.Handoff(
        handoff_id="ho-3", context=escalation_pb2.ContextPackage(
            summary="Nobody verified.", account_activity=escalation_pb2.AccountActivity(complete=True))))
    empty = (await agent.get("/v1/tenants/demo/handoffs/ho-3")).json()["context"]["account_activity"]
    assert empty == {"verified_customer_id": None, "records": [], "actions": [], "complete": True}


# --- the copilot path ---------------------------------------------------------------------

CANCEL_SCHEMA = {"type": "object", "properties": {"order_id": {"type": "string"},
                                                  "reason": {"type": "string", "enum": ["no longer needed"]}},
                 "required": ["order_id", "reason"]}


async def test_tools_list_the_catalog_with_parsed_argument_schemas(mesh: Mesh, agent: httpx.AsyncClient) -> None:
    mesh.fakes["actions"].list_tools.outcome = actions_pb2.ListToolsResponse(catalog_version="3+abc", tools=[
        actions_pb2.Tool(name="get_order_details", description="One order.", kind=actions_pb2.TOOL_KIND_READ,
                         arguments_schema_json=json.dumps({"type": "object"}), requires_verification=True),
        actions_pb2.Tool(name="cancel_pending_order", description="Cancel.", kind=actions_pb2.TOOL_KIND_WRITE,
                         arguments_schema_json=json.dumps(CANCEL_SCHEMA), requires_verification=True,
                         preconditions=["Only a pending order."], approval_rules=["Above $5,000."], dry_run=True),
    ])
    response = await agent.get("/v1/tenants/demo/tools", params={"kind": "write"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["catalog_version"] == "3+abc"
    read, write = body["tools"]
    assert (read["name"], read["kind"], read["arguments_schema"]) == ("get_order_details", "read", {"type": "object"})
    assert write == {
        "name": "cancel_pending_order", "description": "Cancel.", "kind": "write", "arguments_schema": CANCEL_SCHEMA,
        "requires_verification": True, "verifies_identity": False, "preconditions": ["Only a pending order."],
        "approval_rules": ["Above $5,000."], "dry_run": True,
    }
    sent = one(mesh.fakes["actions"].list_tools.requests)
    assert (sent.tenant_id, sent.kind) == ("demo", actions_pb2.TOOL_KIND_WRITE)
    _problem(await agent.get("/v1/tenants/demo/tools", params={"kind": "unspecified"}), 400)


async def test_a_tenant_without_a_catalog_gets_404_for_its_tools(mesh: Mesh, agent: httpx.AsyncClient) -> None:
    mesh.fakes["actions"].list_tools.outcome = NotFound("tenant 'demo' has no action catalog",
                                                        reason="CATALOG_NOT_FOUND")
    assert _problem(await agent.get("/v1/tenants/demo/tools"), 404)["reason"] == "CATALOG_NOT_FOUND"


async def test_a_copilot_read_is_the_agents_for_the_verified_customer(mesh: Mesh, agent: httpx.AsyncClient) -> None:
    mesh.fakes["actions"].execute_read.outcome = actions_pb2.ExecuteReadResponse(
        record_json=json.dumps({"order_id": "#W4386313", "status": "pending"}),
        source=actions_pb2.RecordSource(tool="get_order_details", record_id="#W4386313", catalog_version="3+abc"),
    )
    response = await agent.post("/v1/tenants/demo/conversations/conv-1/records:read", json={
        "tool": "get_order_details", "arguments": {"order_id": "#W4386313"}, "customer_id": "isabella_sanchez_2068"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "record": {"order_id": "#W4386313", "status": "pending"},
        "source": {"tool": "get_order_details", "record_id": "#W4386313", "catalog_version": "3+abc"},
        "verified_customer_id": None,
    }
    sent = one(mesh.fakes["actions"].execute_read.requests)
    assert (sent.customer.tenant_id, sent.customer.customer_id) == ("demo", "isabella_sanchez_2068")
    assert (sent.conversation_id, sent.tool, json.loads(sent.arguments_json)) == (
        "conv-1", "get_order_details", {"order_id": "#W4386313"}
    )
    assert (sent.actor.kind, sent.actor.id) == (actions_pb2.ACTOR_KIND_AGENT, AGENT)


async def test_an_identity_read_needs_no_customer_and_reports_whom_it_verified(
    mesh: Mesh, agent: httpx.AsyncClient
) -> None:
    mesh.fakes["actions"].execute_read.outcome = actions_pb2.ExecuteReadResponse(
        record_json=json.dumps("isabella_sanchez_2068"), verified_customer_id="isabella_sanchez_2068",
        source=actions_pb2.RecordSource(tool="find_user_id_by_email", record_id="isabella_sanchez_2068"))
    response = await agent.post("/v1/tenants/demo/conversations/conv-1/records:read", json={
        "tool": "find_user_id_by_email", "arguments": {"email": "isabella@example.com"}})
    assert response.json()["verified_customer_id"] == "isabella_sanchez_2068"
    assert one(mesh.fakes["actions"].execute_read.requests).customer.customer_id == ""


async def test_a_copilot_proposal_and_its_confirmation_carry_the_agent_and_the_fingerprint(
    mesh: Mesh, agent: httpx.AsyncClient
) -> None:
    proposed = actions_pb2.Action(
        action_id="act-7", tenant_id="demo", customer_id="isabella_sanchez_2068", conversation_id="conv-1",
        tool="cancel_pending_order", arguments_json=json.dumps({"order_id": "#W4386313", "reason": "no longer needed"}),
        summary="Cancel order #W4386313.", fingerprint=FINGERPRINT, state=actions_pb2.ACTION_STATE_PROPOSED,
        approval=actions_pb2.Approval(required=True, reasons=["Above $5,000."]),
    )
    mesh.fakes["actions"].propose_action.outcome = actions_pb2.ProposeActionResponse(action=proposed)
    response = await agent.post("/v1/tenants/demo/conversations/conv-1/actions", json={
        "tool": "cancel_pending_order", "arguments": {"order_id": "#W4386313", "reason": "no longer needed"},
        "customer_id": "isabella_sanchez_2068", "request_id": "cp-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["action_id"], body["state"], body["fingerprint"], body["summary"]) == (
        "act-7", "proposed", FINGERPRINT, "Cancel order #W4386313."
    )
    assert body["approval"]["reasons"] == ["Above $5,000."]
    sent = one(mesh.fakes["actions"].propose_action.requests)
    assert (sent.customer.tenant_id, sent.customer.customer_id, sent.conversation_id, sent.request_id) == (
        "demo", "isabella_sanchez_2068", "conv-1", "cp-1"
    )
    assert json.loads(sent.arguments_json) == {"order_id": "#W4386313", "reason": "no longer needed"}
    assert (sent.actor.kind, sent.actor.id) == (actions_pb2.ACTOR_KIND_AGENT, AGENT)

    awaiting = actions_pb2.Action()
    awaiting.CopyFrom(proposed)
    awaiting.state = actions_pb2.ACTION_STATE_AWAITING_APPROVAL
    mesh.fakes["actions"].confirm_action.outcome = actions_pb2.ConfirmActionResponse(action=awaiting)
    confirmed = await agent.post("/v1/tenants/demo/actions/act-7:confirm",
                                 json={"conversation_id": "conv-1", "fingerprint": FINGERPRINT})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["state"] == "awaiting_approval"
    sent_confirm = one(mesh.fakes["actions"].confirm_action.requests)
    assert (sent_confirm.tenant_id, sent_confirm.action_id, sent_confirm.conversation_id,
            sent_confirm.fingerprint) == ("demo", "act-7", "conv-1", FINGERPRINT)
    assert (sent_confirm.actor.kind, sent_confirm.actor.id) == (actions_pb2.ACTOR_KIND_AGENT, AGENT)
    assert AGENT in sent_confirm.confirmation_text


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidArgument([("arguments.order_id", "does not match the pattern")]), 400),
        (FailedPrecondition("order #W1 is delivered: only a pending order can be cancelled",
                            reason="PRECONDITION_FAILED"), 409),
        (FailedPrecondition("the conversation's customer is not verified", reason="IDENTITY_NOT_VERIFIED"), 409),
    ],
)
async def test_a_refused_proposal_is_the_problem_the_actions_service_gave(
    mesh: Mesh, agent: httpx.AsyncClient, error: Exception, status: int
) -> None:
    mesh.fakes["actions"].propose_action.outcome = error
    problem = _problem(await agent.post("/v1/tenants/demo/conversations/conv-1/actions", json={
        "tool": "cancel_pending_order", "arguments": {"order_id": "#W1"}, "customer_id": "c-1",
        "request_id": "cp-2"}), status)
    assert problem["detail"] == str(error)


async def test_copilot_bodies_are_checked_before_any_call(mesh: Mesh, agent: httpx.AsyncClient) -> None:
    actions = mesh.fakes["actions"]
    bad = [
        ("/conversations/conv-1/records:read", {"tool": "Get Order", "arguments": {}}),
        ("/conversations/conv-1/records:read", {"tool": "get_order_details", "arguments": []}),
        ("/conversations/conv-1/actions", {"tool": "cancel_pending_order", "arguments": {}, "customer_id": "c-1"}),
        ("/conversations/conv-1/actions", {"tool": "cancel_pending_order", "customer_id": "c 1", "request_id": "r"}),
        ("/conversations/conv-1/actions", {"tool": "cancel_pending_order", "customer_id": "c-1", "request_id": "r",
                                           "actor": {"kind": "agent", "id": "someone-else"}}),
        ("/actions/act-7:confirm", {"conversation_id": "conv-1"}),
        ("/actions/act-7:confirm", {"conversation_id": "conv-1", "fingerprint": "f" * 129}),
    ]
    for path, body in bad:
        _problem(await agent.post(f"/v1/tenants/demo{path}", json=body), 400)
    assert actions.execute_read.requests == actions.propose_action.requests == actions.confirm_action.requests == []


async def test_the_copilot_and_decisions_are_an_agents_and_the_keys_tenants(mesh: Mesh) -> None:
    calls = [
        ("GET", "/tools", None),
        ("POST", "/conversations/conv-1/records:read", {"tool": "get_order_details", "customer_id": "c-1"}),
        ("POST", "/conversations/conv-1/actions", {"tool": "cancel_pending_order", "customer_id": "c-1",
                                                   "request_id": "r-1"}),
        ("POST", "/actions/act-1:confirm", {"conversation_id": "conv-1", "fingerprint": FINGERPRINT}),
        ("POST", "/actions/act-1:approve", {}),
        ("POST", "/actions/act-1:reject", {}),
    ]
    async with open_gateway(mesh.settings()) as client:
        for method, path, body in calls:
            channel = await client.request(method, f"/v1/tenants/demo{path}", json=body,
                                           headers=bearer(mesh.key(Role.CHANNEL)))
            assert _problem(channel, 403)["reason"] == "ROLE_FORBIDDEN", path
            other = await client.request(method, f"/v1/tenants/acme{path}", json=body,
                                         headers=bearer(mesh.key(Role.AGENT)))
            assert _problem(other, 403)["reason"] == "TENANT_FORBIDDEN", path
    actions = mesh.fakes["actions"]
    assert actions.list_tools.requests == actions.execute_read.requests == actions.confirm_action.requests == []
    assert mesh.escalation.decide_action_approval.requests == []


async def test_without_an_actions_service_the_copilot_says_so(mesh: Mesh) -> None:
    async with open_gateway(mesh.settings(actions_addr=""), key=mesh.key(Role.AGENT)) as client:
        for response in (
            await client.get("/v1/tenants/demo/tools"),
            await client.post("/v1/tenants/demo/actions/act-1:confirm",
                              json={"conversation_id": "conv-1", "fingerprint": FINGERPRINT}),
        ):
            assert _problem(response, 503)["reason"] == "ACTIONS_NOT_CONFIGURED"
