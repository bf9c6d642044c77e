"""An agent's decision on an action awaiting approval: made through the actions service
(which runs an approved action, exactly once), its errors told as escalation's own, and
the words the customer gets for its outcome.

A retried decision is the same decision: the actions service returns its stored outcome
(or, should it refuse it as no longer awaiting approval, the action read back shows the
same decision), and the outcome message has a fixed client id per action, so the thread
stores it once."""

from __future__ import annotations

import grpc

from aftercare.actions.v1 import actions_pb2, actions_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2
from servicekit.errors import (
    ApiError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    details_from_rpc_error,
)
from services.escalation.lifecycle import DEFAULT_AGENT_NAME
from services.escalation.store import AgentMessage

_DECISIONS = {
    escalation_pb2.APPROVAL_CHOICE_APPROVE: actions_pb2.APPROVAL_DECISION_APPROVE,
    escalation_pb2.APPROVAL_CHOICE_REJECT: actions_pb2.APPROVAL_DECISION_REJECT,
}
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


# Outcome messages' client ids; reserved (an agent's own reply may not use it).
OUTCOME_MESSAGE_PREFIX = "action-outcome:"


def outcome_message_id(action_id: str) -> str:
    """The outcome message's client id: one message per action, however often it is decided."""
    return f"{OUTCOME_MESSAGE_PREFIX}{action_id}"


def outcome_text(action: actions_pb2.Action, note: str) -> str | None:
    """What the customer is told of a decided action; None while it is still running
    (EXECUTING or RETRYABLE: nothing final to say yet, see late_outcomes.py)."""
    summary = " ".join(action.summary.split())
    if action.state == actions_pb2.ACTION_STATE_SUCCEEDED:
        done = "done (a dry run: nothing was sent)" if action.dry_run else "done"
        return f"Good news: your request was approved and {done}: {summary}"
    if action.state == actions_pb2.ACTION_STATE_FAILED:
        why = " ".join(action.error.message.split()) or "it was refused"
        return f"Your request was approved, but our order system could not do it, so nothing was changed: {why}"
    if action.state == actions_pb2.ACTION_STATE_REJECTED:
        text = f"Your request was not approved, so nothing was changed: {summary.rstrip('.')}."
        said = " ".join(note.split())
        return f"{text} {said}" if said else text
    if action.state == actions_pb2.ACTION_STATE_CANCELLED:
        # Only a late outcome: an approved attempt that surely never reached the company's system was withdrawn.
        return f"Your request was approved, but it was withdrawn before it ran, so nothing was changed: {summary}"
    return None


def outcome_message(action_id: str, agent_name: str) -> AgentMessage:
    """The outcome message, in the deciding agent's name; its fixed client id stores it once per action."""
    return AgentMessage(
        client_message_id=outcome_message_id(action_id), author_name=" ".join(agent_name.split()) or DEFAULT_AGENT_NAME
    )


def decided_the_same_way(action: actions_pb2.Action, choice: int) -> bool:
    """The action already carries this decision (a retried call)."""
    if not action.approval.decided_by:
        return False
    rejected = action.state == actions_pb2.ACTION_STATE_REJECTED
    return rejected == (choice == escalation_pb2.APPROVAL_CHOICE_REJECT)


def from_actions_error(error: grpc.aio.AioRpcError, action_id: str) -> ApiError | grpc.aio.AioRpcError:
    """The actions service's refusal as escalation's (its reason kept); any other failure as it came."""
    details = details_from_rpc_error(error)
    code = error.code()
    metadata = {"action_id": action_id}
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(details.message, reason=_reason(details.reason, code, "ACTION_NOT_FOUND"), metadata=metadata)
    if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED):
        # PERMISSION_DENIED: the agent may not decide this action (e.g. one they proposed themselves).
        return FailedPrecondition(details.message, reason=_reason(details.reason, code, "ACTION_NOT_DECIDABLE"),
                                  metadata=metadata)
    if code in _UNREACHABLE:
        # The company's system (the actions service's reason says so) or the actions service itself.
        message = details.message if details.reason != code.name else "the actions service is unavailable"
        return Unavailable(
            f"{message}; nothing was changed, or the decision is settled by retrying it (never twice)",
            reason=_reason(details.reason, code, "ACTIONS_UNAVAILABLE"),
            metadata=metadata,
        )
    if code == grpc.StatusCode.INVALID_ARGUMENT and details.field_violations:
        return InvalidArgument(details.field_violations)
    return error


def _reason(reason: str, code: grpc.StatusCode, fallback: str) -> str:
    # Without an ErrorInfo the reason is the bare code's name: say which call failed instead.
    return fallback if reason == code.name else reason


class Approvals:
    """Agents' approval decisions through the actions service."""

    def __init__(self, actions: actions_pb2_grpc.ActionsServiceStub) -> None:
        self._actions = actions

    async def action(self, tenant_id: str, action_id: str) -> actions_pb2.Action:
        try:
            response: actions_pb2.GetActionResponse = await self._actions.GetAction(
                actions_pb2.GetActionRequest(tenant_id=tenant_id, action_id=action_id)
            )
        except grpc.aio.AioRpcError as error:
            raise from_actions_error(error, action_id) from None
        return response.action

    async def decide(self, request: escalation_pb2.DecideActionApprovalRequest) -> actions_pb2.Action:
        """The action after the agent's decision: SUCCEEDED, FAILED, REJECTED, or EXECUTING
        when the company's system has not answered within the actions service's wait."""
        try:
            response: actions_pb2.DecideApprovalResponse = await self._actions.DecideApproval(
                actions_pb2.DecideApprovalRequest(
                    tenant_id=request.tenant_id,
                    action_id=request.action_id,
                    decision=_DECISIONS[request.choice],
                    agent_id=request.agent_id,
                    note=request.note,
                )
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                current = await self.action(request.tenant_id, request.action_id)
                if decided_the_same_way(current, request.choice):
                    return current
            raise from_actions_error(error, request.action_id) from None
        return response.action
