"""An approved action that finishes late is told to the customer once it settles
(services/escalation/late_outcomes.py): a real escalation server polls a fake actions
service (a real gRPC server on port 0) whose action stays EXECUTING until the test
settles it, as the actions service's reconciler would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from aftercare.actions.v1 import actions_pb2, actions_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2
from servicekit.database import database_url, make_engine
from services.escalation.models import PendingOutcomeRow
from services.escalation.settings import EscalationSettings
from tests.services.escalation.conftest import AGENT, Stub, handoff_request, running_stub, settings_for

A = actions_pb2
E = escalation_pb2
TENANT = "shop"
POLL_S = 0.05
# Long enough for many polls: what has not happened by then does not happen.
SETTLE_S = 0.6


class FakeActions(actions_pb2_grpc.ActionsServiceServicer):
    """One tenant's actions: an approval leaves the action EXECUTING (the company's system is
    slow) until `settle`; `down` answers UNAVAILABLE, as an actions service out of reach."""

    def __init__(self) -> None:
        self.actions: dict[str, A.Action] = {}
        self.down = False
        self.reads = 0

    def add(self, action_id: str, conversation_id: str) -> None:
        self.actions[action_id] = A.Action(
            action_id=action_id,
            tenant_id=TENANT,
            conversation_id=conversation_id,
            tool="cancel_pending_order",
            summary="Cancel order #W100 (refund $6,000.00)",
            state=A.ACTION_STATE_AWAITING_APPROVAL,
        )

    def settle(self, action_id: str, state: int, error: str = "") -> None:
        self.actions[action_id].state = state  # type: ignore[assignment]
        self.actions[action_id].error.message = error

    async def GetAction(
        self, request: A.GetActionRequest, context: grpc.aio.ServicerContext[A.GetActionRequest, A.GetActionResponse]
    ) -> A.GetActionResponse:
        self.reads += 1
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "actions down")
        if request.action_id not in self.actions:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such action")
        return A.GetActionResponse(action=self.actions[request.action_id])

    async def DecideApproval(
        self,
        request: A.DecideApprovalRequest,
        context: grpc.aio.ServicerContext[A.DecideApprovalRequest, A.DecideApprovalResponse],
    ) -> A.DecideApprovalResponse:
        action = self.actions[request.action_id]
        if action.state == A.ACTION_STATE_AWAITING_APPROVAL:
            action.approval.decided_by = request.agent_id
            action.state = A.ACTION_STATE_EXECUTING
        # Decided already: the stored outcome (the actions service's answer to a retried decision).
        return A.DecideApprovalResponse(action=action)


@dataclass
class Setup:
    escalation: Stub
    actions: FakeActions
    settings: EscalationSettings


@pytest.fixture(name="actions")
async def actions_fixture() -> AsyncIterator[tuple[FakeActions, str]]:
    fake = FakeActions()
    server = grpc.aio.server()
    actions_pb2_grpc.add_ActionsServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@pytest.fixture(name="setup", params=["sqlite", "postgresql"])
async def setup_fixture(
    request: pytest.FixtureRequest, tmp_path: Path, actions: tuple[FakeActions, str]
) -> AsyncIterator[Setup]:
    url = "" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    fake, addr = actions
    settings = settings_for(tmp_path, actions_addr=addr, database_url=url, late_outcome_poll_s=POLL_S)
    async with running_stub(settings) as escalation:
        yield Setup(escalation, fake, settings)


async def _handoff(escalation: Stub, conversation: str) -> E.Handoff:
    request = handoff_request(key=f"key-{conversation}", tenant=TENANT, conversation_id=conversation)
    handoff: E.Handoff = (await escalation.CreateHandoff(request)).handoff
    return handoff


def _approve(action_id: str) -> E.DecideActionApprovalRequest:
    return E.DecideActionApprovalRequest(
        tenant_id=TENANT, action_id=action_id, choice=E.APPROVAL_CHOICE_APPROVE, agent_id="ana", agent_name="Ana"
    )


async def _agent_messages(escalation: Stub, conversation: str) -> list[E.ThreadMessage]:
    listed = await escalation.ListConversationMessages(
        E.ListConversationMessagesRequest(tenant_id=TENANT, conversation_id=conversation)
    )
    return [m for m in listed.messages if m.message.role == AGENT]


async def _told(escalation: Stub, conversation: str) -> list[E.ThreadMessage]:
    """The conversation's agent messages once one came (or after 10 s), and a few polls later."""
    for _ in range(200):
        if await _agent_messages(escalation, conversation):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(SETTLE_S)
    return await _agent_messages(escalation, conversation)


def _pending(settings: EscalationSettings) -> list[tuple[str, int]]:
    """The pending outcomes' (action id, attempts), read from the service's database."""
    engine = make_engine(database_url(settings.database_url, settings.data_dir, "escalation"))
    try:
        with Session(engine) as session:
            rows = session.execute(sa.select(PendingOutcomeRow.action_id, PendingOutcomeRow.attempts)).all()
    finally:
        engine.dispose()
    return [(action_id, attempts) for action_id, attempts in rows]


async def test_an_action_that_succeeds_late_is_told_once_and_its_row_goes(setup: Setup) -> None:
    handoff = await _handoff(setup.escalation, "conv-late")
    setup.actions.add("a-late", "conv-late")

    decided = await setup.escalation.DecideActionApproval(_approve("a-late"))
    again = await setup.escalation.DecideActionApproval(_approve("a-late"))  # a retry while it runs

    assert decided.action.state == A.ACTION_STATE_EXECUTING and not decided.HasField("message")
    assert again.action.state == A.ACTION_STATE_EXECUTING and not again.HasField("message")
    await asyncio.sleep(SETTLE_S)
    assert await _agent_messages(setup.escalation, "conv-late") == []  # nothing final to say yet
    [(action_id, attempts)] = _pending(setup.settings)
    assert action_id == "a-late" and attempts >= 1  # checked (still running) and backed off

    setup.actions.settle("a-late", A.ACTION_STATE_SUCCEEDED)
    [told] = await _told(setup.escalation, "conv-late")

    assert told.message.text == "Good news: your request was approved and done: Cancel order #W100 (refund $6,000.00)"
    assert told.author_id == "ana" and told.author_name == "Ana" and told.handoff_id == handoff.handoff_id
    assert _pending(setup.settings) == []
    # A decision retried after the outcome was told: the same message, not a second one.
    retried = await setup.escalation.DecideActionApproval(_approve("a-late"))
    assert retried.message.message_id == told.message_id
    assert [m.message_id for m in await _agent_messages(setup.escalation, "conv-late")] == [told.message_id]


async def test_an_action_that_fails_late_is_told_nothing_changed(setup: Setup) -> None:
    await _handoff(setup.escalation, "conv-fail")
    setup.actions.add("a-fail", "conv-fail")
    await setup.escalation.DecideActionApproval(_approve("a-fail"))

    setup.actions.settle("a-fail", A.ACTION_STATE_FAILED, error="order #W100 has already shipped")
    [told] = await _told(setup.escalation, "conv-fail")

    assert told.message.text == (
        "Your request was approved, but our order system could not do it, so nothing was changed: "
        "order #W100 has already shipped"
    )
    assert _pending(setup.settings) == []


async def test_while_the_actions_service_is_down_the_outcome_waits_and_is_told_after(setup: Setup) -> None:
    await _handoff(setup.escalation, "conv-down")
    setup.actions.add("a-down", "conv-down")
    await setup.escalation.DecideActionApproval(_approve("a-down"))
    setup.actions.down = True
    setup.actions.settle("a-down", A.ACTION_STATE_SUCCEEDED)
    reads = setup.actions.reads

    # Each check asks until its deadline or gRPC's retries of UNAVAILABLE run out (about a second).
    for _ in range(100):
        if _pending(setup.settings)[0][1] >= 2:
            break
        await asyncio.sleep(0.05)

    assert setup.actions.reads > reads  # it kept asking
    assert await _agent_messages(setup.escalation, "conv-down") == []
    [(action_id, attempts)] = _pending(setup.settings)
    assert action_id == "a-down" and attempts >= 2  # backed off, kept
    setup.actions.down = False
    [told] = await _told(setup.escalation, "conv-down")
    assert told.message.text.startswith("Good news: your request was approved and done")
    assert _pending(setup.settings) == []


async def test_two_replicas_on_one_database_tell_the_customer_once(
    tmp_path: Path, actions: tuple[FakeActions, str]
) -> None:
    fake, addr = actions
    settings = settings_for(tmp_path, actions_addr=addr, late_outcome_poll_s=0.01)
    async with running_stub(settings) as first, running_stub(settings) as second:
        await _handoff(first, "conv-two")
        fake.add("a-two", "conv-two")
        await first.DecideActionApproval(_approve("a-two"))
        await second.DecideActionApproval(_approve("a-two"))  # the agent's retry lands on the other replica

        fake.settle("a-two", A.ACTION_STATE_SUCCEEDED)
        told = await _told(second, "conv-two")

    assert len(told) == 1
    assert _pending(settings) == []
