"""The actions service through gRPC against a real HTTP back office: every
adversarial case of the issue is refused, and what is allowed runs once, audited."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from aftercare.actions.v1 import actions_pb2
from servicekit.errors import details_from_rpc_error
from services.actions.errors import precondition_failures
from tests.services.actions.conftest import (
    ASSISTANT,
    TENANT,
    TOKEN,
    RunningOffice,
    Stub,
    acme_catalog,
    confirm,
    customer,
    events,
    kinds,
    propose,
    running_stub,
    settings_for,
    state,
    verify,
    write_catalog,
)

AGENT = actions_pb2.Actor(kind=actions_pb2.ACTOR_KIND_AGENT, id="agent-7")


@pytest.fixture(params=["sqlite", "postgresql"])
async def stub(
    request: pytest.FixtureRequest, tmp_path: Path, back_office: RunningOffice, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stub]:
    """The service on a fresh SQLite file (the embedded default), then on a fresh PostgreSQL database."""
    monkeypatch.setenv("ACME_TOKEN", TOKEN)
    catalogs = write_catalog(tmp_path / "catalogs", acme_catalog(back_office.url))
    url = "" if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))
    async with running_stub(settings_for(tmp_path, catalogs, database_url=url)) as running:
        yield running


async def _read(stub: Stub, conversation: str, tool: str, arguments: dict[str, str], customer_id: str = ""):  # type: ignore[no-untyped-def]
    return await stub.ExecuteRead(
        actions_pb2.ExecuteReadRequest(
            customer=customer(customer_id), conversation_id=conversation, tool=tool,
            arguments_json=json.dumps(arguments), actor=ASSISTANT,
        )
    )


async def _refused(call) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_catalog_lists_tools_with_schemas_and_version(stub: Stub) -> None:
    response = await stub.ListTools(actions_pb2.ListToolsRequest(tenant_id=TENANT))
    tools = {tool.name: tool for tool in response.tools}
    assert response.catalog_version.startswith("test-1+")
    assert tools["find_customer"].verifies_identity and not tools["find_customer"].requires_verification
    assert tools["refund_order"].kind == actions_pb2.TOOL_KIND_WRITE
    assert json.loads(tools["refund_order"].arguments_schema_json)["required"] == ["order_id", "reason"]
    assert tools["refund_order"].approval_rules == [
        "Refunds above 500 need an agent's approval.", "Enterprise accounts need an agent's approval."
    ]
    writes = await stub.ListTools(actions_pb2.ListToolsRequest(tenant_id=TENANT, kind=actions_pb2.TOOL_KIND_WRITE))
    assert [tool.name for tool in writes.tools] == ["refund_order"]
    error = await _refused(stub.ListTools(actions_pb2.ListToolsRequest(tenant_id="nobody")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_a_confirmed_write_runs_once_and_every_step_is_audited(stub: Stub, back_office: RunningOffice) -> None:
    assert await verify(stub, "conv-1") == "c-ann"
    action = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "damaged"})
    assert state(action) == "PROPOSED" and not action.approval.required
    assert action.summary == "Refund order O-1 ($120.00) because it was damaged."
    assert back_office.office.writes() == []
    done = await confirm(stub, action)
    assert state(done) == "SUCCEEDED" and done.attempts == 1
    # Only the kept fields of the answer.
    assert json.loads(done.result_json) == {"order_id": "O-1", "status": "refunded", "amount": 120.0}
    assert back_office.office.effects == ["O-1"]
    assert back_office.office.writes() == [("POST", "/orders/O-1/refund", done.idempotency_key)]
    # A replayed yes gets the stored outcome; nothing is sent again.
    again = await confirm(stub, action)
    assert again.result_json == done.result_json and len(back_office.office.writes()) == 1
    trail = await events(stub, action_id=action.action_id)
    assert kinds(trail) == ["PROPOSED", "CONFIRMED", "EXECUTING", "EXECUTED"]
    confirmed = trail[1]
    assert confirmed.actor.kind == actions_pb2.ACTOR_KIND_CUSTOMER and confirmed.detail == "yes, go ahead"
    assert all(e.catalog_version == done.catalog_version and e.customer_id == "c-ann" for e in trail)
    assert json.loads(trail[-1].result_json)["status"] == "refunded"


async def test_a_write_without_yes_never_runs(stub: Stub, back_office: RunningOffice) -> None:
    await verify(stub, "conv-1")
    action = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "damaged"})
    # Reads, listing and time passing do not execute it; only ConfirmAction does.
    await _read(stub, "conv-1", "get_order", {"order_id": "O-1"})
    listed = await stub.ListActions(actions_pb2.ListActionsRequest(tenant_id=TENANT, conversation_id="conv-1"))
    assert [state(a) for a in listed.actions] == ["PROPOSED"]
    await asyncio.sleep(0.5)  # a reconciler pass
    assert back_office.office.writes() == []
    # The assistant cannot say yes for the customer.
    error = await _refused(confirm(stub, action, actor=ASSISTANT))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert back_office.office.writes() == []


async def test_a_yes_to_other_details_is_refused(stub: Stub, back_office: RunningOffice) -> None:
    await verify(stub, "conv-1")
    first = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "damaged"})
    second = await propose(stub, "conv-1", {"order_id": "O-5", "reason": "late"}, request_id="r2")
    # The customer said yes to the first one; the fingerprint does not confirm the second.
    error = await _refused(confirm(stub, second, fingerprint=first.fingerprint))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_from_rpc_error(error).reason == "CONFIRMATION_MISMATCH"
    # A revision (the customer changed their mind) cancels the old proposal: its yes is void.
    revised = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "late"}, request_id="r3",
                            replaces=first.action_id)
    assert revised.replaces_action_id == first.action_id and revised.fingerprint != first.fingerprint
    error = await _refused(confirm(stub, first))
    assert details_from_rpc_error(error).reason == "ACTION_CANCELLED"
    # A yes from another conversation does not count either.
    error = await _refused(confirm(stub, revised, conversation="conv-other"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert back_office.office.writes() == []
    assert "REFUSED" in kinds(await events(stub, conversation_id="conv-1"))
    done = await confirm(stub, revised)
    assert state(done) == "SUCCEEDED" and back_office.office.orders["O-1"]["refund_reason"] == "late"


async def test_another_customers_records_are_never_read_or_changed(stub: Stub, back_office: RunningOffice) -> None:
    await verify(stub, "conv-1")
    error = await _refused(_read(stub, "conv-1", "get_order", {"order_id": "O-2"}))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details_from_rpc_error(error).reason == "NOT_CUSTOMERS_RECORD"
    assert "c-bob" not in (error.details() or "") and "80" not in (error.details() or "")
    # A profile whose owner is told by the arguments is refused before any call.
    before = len(back_office.office.requests)
    error = await _refused(_read(stub, "conv-1", "get_customer", {"customer_id": "c-bob"}))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED and len(back_office.office.requests) == before
    error = await _refused(propose(stub, "conv-1", {"order_id": "O-2", "reason": "late"}))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    # Naming the other customer as the one acted for does not help.
    error = await _refused(propose(stub, "conv-1", {"order_id": "O-2", "reason": "late"}, customer_id="c-bob"))
    assert details_from_rpc_error(error).reason == "ANOTHER_CUSTOMER"
    assert back_office.office.writes() == [] and back_office.office.orders["O-2"]["status"] == "paid"
    trail = await events(stub, conversation_id="conv-1")
    refused = [e for e in trail if e.kind == actions_pb2.AUDIT_EVENT_KIND_REFUSED]
    assert len(refused) == 4 and all(e.customer_id == "c-ann" for e in refused)


async def test_private_data_needs_verification_and_one_customer_per_conversation(
    stub: Stub, back_office: RunningOffice
) -> None:
    error = await _refused(_read(stub, "conv-1", "get_order", {"order_id": "O-1"}))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_from_rpc_error(error).reason == "IDENTITY_NOT_VERIFIED"
    error = await _refused(propose(stub, "conv-1", {"order_id": "O-1", "reason": "late"}))
    assert details_from_rpc_error(error).reason == "IDENTITY_NOT_VERIFIED"
    assert back_office.office.requests == []
    assert await verify(stub, "conv-1") == "c-ann"
    assert await verify(stub, "conv-1") == "c-ann"  # the same customer again is fine
    error = await _refused(verify(stub, "conv-1", "bob@example.com"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details_from_rpc_error(error).reason == "ANOTHER_CUSTOMER"
    # Still Ann's conversation: Bob's verification did not replace her.
    record = await _read(stub, "conv-1", "get_order", {"order_id": "O-1"}, customer_id="c-ann")
    assert json.loads(record.record_json) == {"order_id": "O-1", "status": "paid", "amount": 120.0, "note": ""}
    assert record.source.record_id == "O-1" and record.source.tool == "get_order"
    # Bob verified in his own conversation sees his order.
    assert await verify(stub, "conv-2", "bob@example.com") == "c-bob"
    assert json.loads((await _read(stub, "conv-2", "get_order", {"order_id": "O-2"})).record_json)["amount"] == 80.0
    trail = kinds(await events(stub, conversation_id="conv-1"))
    assert trail.count("IDENTITY_VERIFIED") == 2 and trail.count("REFUSED") == 3


async def test_preconditions_refuse_with_the_rule_named(stub: Stub, back_office: RunningOffice) -> None:
    await verify(stub, "conv-1")
    error = await _refused(propose(stub, "conv-1", {"order_id": "O-4", "reason": "late"}))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_from_rpc_error(error).reason == "PRECONDITION_FAILED"
    assert precondition_failures(error) == [
        ("order_is_paid", "Order O-4 is refunded; only paid orders can be refunded.")
    ]
    error = await _refused(propose(stub, "conv-1", {"order_id": "O-99", "reason": "late"}))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert back_office.office.writes() == []


async def test_arguments_are_checked_against_the_schema(stub: Stub, back_office: RunningOffice) -> None:
    await verify(stub, "conv-1")
    error = await _refused(propose(stub, "conv-1", {"order_id": "../admin", "reason": "because", "extra": 1}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = [name for name, _ in details_from_rpc_error(error).field_violations]
    assert fields == ["arguments_json", "arguments_json.order_id", "arguments_json.reason"]
    error = await _refused(_read(stub, "conv-1", "refund_order", {"order_id": "O-1", "reason": "late"}))
    assert details_from_rpc_error(error).reason == "WRONG_TOOL_KIND"
    assert back_office.office.requests[-1][1] == "/customers"  # only the verification reached it


async def test_a_change_of_heart_cancels_before_it_runs(stub: Stub, back_office: RunningOffice) -> None:
    await verify(stub, "conv-1")
    action = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "late"})
    cancelled = await stub.CancelAction(
        actions_pb2.CancelActionRequest(tenant_id=TENANT, action_id=action.action_id, reason="changed my mind",
                                        actor=actions_pb2.Actor(kind=actions_pb2.ACTOR_KIND_CUSTOMER))
    )
    assert state(cancelled.action) == "CANCELLED"
    error = await _refused(confirm(stub, action))
    assert details_from_rpc_error(error).reason == "ACTION_CANCELLED"
    assert back_office.office.writes() == []
    done = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "damaged"}, request_id="r2")
    await confirm(stub, done)
    error = await _refused(
        stub.CancelAction(actions_pb2.CancelActionRequest(tenant_id=TENANT, action_id=done.action_id,
                                                          actor=ASSISTANT))
    )
    assert details_from_rpc_error(error).reason == "NOT_CANCELLABLE"


async def test_approval_cannot_be_bypassed(stub: Stub, back_office: RunningOffice) -> None:
    await verify(stub, "conv-1")
    action = await propose(stub, "conv-1", {"order_id": "O-3", "reason": "damaged"})
    assert action.approval.required and action.approval.reasons == ["Refunds above 500 need an agent's approval."]

    async def decide(decision: int, agent: str = "agent-7") -> actions_pb2.Action:
        response = await stub.DecideApproval(
            actions_pb2.DecideApprovalRequest(tenant_id=TENANT, action_id=action.action_id, decision=decision,
                                              agent_id=agent, note="checked the photos")
        )
        return response.action

    # An agent cannot approve what the customer has not said yes to.
    error = await _refused(decide(actions_pb2.APPROVAL_DECISION_APPROVE))
    assert details_from_rpc_error(error).reason == "NOT_AWAITING_APPROVAL"
    waiting = await confirm(stub, action)
    assert state(waiting) == "AWAITING_APPROVAL"
    # More yeses, retries, reconciler passes: nothing runs without the approval.
    assert state(await confirm(stub, action)) == "AWAITING_APPROVAL"
    await asyncio.sleep(0.5)
    assert back_office.office.writes() == []
    # An agent who confirmed on the customer's behalf may not approve it too.
    other = await propose(stub, "conv-1", {"order_id": "O-3", "reason": "late"}, request_id="r2",
                          replaces=action.action_id)
    await confirm(stub, other, actor=AGENT)
    error = await _refused(stub.DecideApproval(actions_pb2.DecideApprovalRequest(
        tenant_id=TENANT, action_id=other.action_id, decision=actions_pb2.APPROVAL_DECISION_APPROVE,
        agent_id="agent-7")))
    assert details_from_rpc_error(error).reason == "SELF_APPROVAL"
    approved = await stub.DecideApproval(actions_pb2.DecideApprovalRequest(
        tenant_id=TENANT, action_id=other.action_id, decision=actions_pb2.APPROVAL_DECISION_APPROVE,
        agent_id="agent-9", note="ok"))
    assert state(approved.action) == "SUCCEEDED" and approved.action.approval.decided_by == "agent-9"
    assert back_office.office.effects == ["O-3"]
    # The same decision again returns the outcome; nothing runs twice.
    again = await stub.DecideApproval(actions_pb2.DecideApprovalRequest(
        tenant_id=TENANT, action_id=other.action_id, decision=actions_pb2.APPROVAL_DECISION_APPROVE,
        agent_id="agent-9"))
    assert state(again.action) == "SUCCEEDED" and len(back_office.office.writes()) == 1
    trail = kinds(await events(stub, action_id=other.action_id))
    assert trail == ["PROPOSED", "CONFIRMED", "APPROVAL_REQUESTED", "REFUSED", "APPROVED", "EXECUTING", "EXECUTED"]


async def test_an_enterprise_account_needs_approval_and_a_rejection_ends_it(
    stub: Stub, back_office: RunningOffice
) -> None:
    await verify(stub, "conv-2", "bob@example.com")
    action = await propose(stub, "conv-2", {"order_id": "O-2", "reason": "late"}, customer_id="c-bob")
    assert action.approval.reasons == ["Enterprise accounts need an agent's approval."]
    await confirm(stub, action)
    rejected = await stub.DecideApproval(actions_pb2.DecideApprovalRequest(
        tenant_id=TENANT, action_id=action.action_id, decision=actions_pb2.APPROVAL_DECISION_REJECT,
        agent_id="agent-7", note="not eligible"))
    assert state(rejected.action) == "REJECTED" and rejected.action.approval.note == "not eligible"
    error = await _refused(confirm(stub, action))
    assert details_from_rpc_error(error).reason == "ACTION_REJECTED"
    assert back_office.office.writes() == []


async def test_an_instruction_planted_in_a_record_does_nothing(stub: Stub, back_office: RunningOffice) -> None:
    await verify(stub, "conv-1")
    record = await _read(stub, "conv-1", "get_order", {"order_id": "O-5"})
    assert "refund this order" in json.loads(record.record_json)["note"]  # data, handed over as data
    await asyncio.sleep(0.5)
    listed = await stub.ListActions(actions_pb2.ListActionsRequest(tenant_id=TENANT))
    assert list(listed.actions) == [] and back_office.office.writes() == []
    assert back_office.office.orders["O-1"]["status"] == "paid" and back_office.office.orders["O-5"]["status"] == "paid"


async def test_fifty_concurrent_confirmations_execute_once(stub: Stub, back_office: RunningOffice) -> None:
    back_office.office.mode, back_office.office.delay_s = "slow", 0.3
    await verify(stub, "conv-1")
    action = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "damaged"})
    outcomes = await asyncio.gather(*(confirm(stub, action) for _ in range(50)))
    assert back_office.office.effects == ["O-1"]
    assert len(back_office.office.writes()) == 1
    assert {state(o) for o in outcomes} == {"SUCCEEDED"}
    assert len({o.result_json for o in outcomes}) == 1
    trail = kinds(await events(stub, action_id=action.action_id))
    assert trail.count("EXECUTED") == 1 and trail.count("CONFIRMED") == 1


async def test_a_proposal_retried_with_its_request_id_is_the_same_action(stub: Stub) -> None:
    await verify(stub, "conv-1")
    first, second = await asyncio.gather(
        propose(stub, "conv-1", {"order_id": "O-1", "reason": "late"}),
        propose(stub, "conv-1", {"order_id": "O-1", "reason": "late"}),
    )
    assert first.action_id == second.action_id
    error = await _refused(propose(stub, "conv-1", {"order_id": "O-5", "reason": "late"}))
    assert details_from_rpc_error(error).reason == "REQUEST_ID_REUSED"


async def test_an_action_names_the_release_that_proposed_it(stub: Stub, back_office: RunningOffice) -> None:
    await verify(stub, "conv-1")
    action = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "late"}, release_id="r4")
    retried = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "late"}, release_id="r4")
    done = await confirm(stub, action)
    fetched = await stub.GetAction(actions_pb2.GetActionRequest(tenant_id=TENANT, action_id=action.action_id))
    listed = await stub.ListActions(actions_pb2.ListActionsRequest(tenant_id=TENANT, conversation_id="conv-1"))
    unnamed = await propose(stub, "conv-1", {"order_id": "O-3", "reason": "late"}, request_id="r2")

    assert action.release_id == retried.release_id == done.release_id == fetched.action.release_id == "r4"
    assert [a.release_id for a in listed.actions] == ["r4"] and unnamed.release_id == ""
    # Lineage, not part of what the customer says yes to: the audit trail mentions it.
    proposed = (await events(stub, action_id=action.action_id))[0]
    assert proposed.detail.endswith(", release r4")
    error = await _refused(propose(stub, "conv-1", {"order_id": "O-1", "reason": "late"}, release_id="r/1"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_records_that_changed_since_the_proposal_are_checked_again(
    stub: Stub, back_office: RunningOffice
) -> None:
    await verify(stub, "conv-1")
    action = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "late"})
    back_office.office.orders["O-1"]["status"] = "refunded"  # e.g. an agent refunded it meanwhile
    failed = await confirm(stub, action)
    assert state(failed) == "FAILED" and failed.error.reason == "PRECONDITION_FAILED"
    assert "only paid orders" in failed.error.message and not failed.error.may_have_executed
    assert back_office.office.writes() == []


async def test_audit_trail_is_paged_and_exported_masked(stub: Stub) -> None:
    await verify(stub, "conv-1")
    replaces = ""
    for number in range(3):
        action = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "late"}, request_id=f"r{number}",
                               replaces=replaces)
        replaces = action.action_id
    page = await stub.ListAuditEvents(actions_pb2.ListAuditEventsRequest(tenant_id=TENANT, page_size=2))
    assert len(page.events) == 2 and page.next_page_token
    everything = await events(stub)
    assert [e.sequence for e in everything] == sorted(e.sequence for e in everything)
    assert kinds(everything)[0] == "IDENTITY_VERIFIED"
    assert json.loads(everything[0].arguments_json) == {"email": "[masked]"}
    chunks = [chunk async for chunk in stub.ExportAudit(actions_pb2.ExportAuditRequest(tenant_id=TENANT))]
    lines = [json.loads(line) for chunk in chunks for line in chunk.jsonl.splitlines()]
    assert len(lines) == len(everything) == sum(chunk.event_count for chunk in chunks)
    assert lines[0]["kind"] == "AUDIT_EVENT_KIND_IDENTITY_VERIFIED" and "trace_id" in lines[0]
    assert all("ann@example.com" not in json.dumps(line) for line in lines)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    request = actions_pb2.ExportAuditRequest(tenant_id=TENANT)
    request.since.FromDatetime(later)
    assert [chunk async for chunk in stub.ExportAudit(request)] == []
    bad = await _refused(stub.ListAuditEvents(actions_pb2.ListAuditEventsRequest(tenant_id=TENANT, page_token="x")))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
