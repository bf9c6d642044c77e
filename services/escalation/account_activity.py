"""A handoff's account activity, read live from the actions service: the customer's
records the AI (or an agent) read in the conversation, who was verified, and the
actions proposed with their current states. Nothing of it is stored here: the
actions service owns the audit trail, and an action's state changes after the
handoff was made (an approval, a retry settled by its reconciler).

The handoff view must load when the actions service is slow or down: each read
has a short deadline, and what could not be read leaves the activity marked
incomplete instead of failing GetHandoff."""

from __future__ import annotations

import asyncio

import grpc
import structlog

from aftercare.actions.v1 import actions_pb2, actions_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2

log = structlog.get_logger("services.escalation.account_activity")

# GetHandoff's wait for the activity unless the settings say otherwise.
DEFAULT_TIMEOUT_S = 2.0
# One page of each list: a conversation with more than this is shown incomplete.
AUDIT_PAGE = 500
ACTIONS_PAGE = 200

_STATES: dict[int, escalation_pb2.AccountActionState] = {
    actions_pb2.ACTION_STATE_PROPOSED: escalation_pb2.ACCOUNT_ACTION_STATE_PROPOSED,
    actions_pb2.ACTION_STATE_AWAITING_APPROVAL: escalation_pb2.ACCOUNT_ACTION_STATE_AWAITING_APPROVAL,
    actions_pb2.ACTION_STATE_EXECUTING: escalation_pb2.ACCOUNT_ACTION_STATE_EXECUTING,
    # Not reached yet; the actions service re-sends it with the same idempotency key.
    actions_pb2.ACTION_STATE_RETRYABLE: escalation_pb2.ACCOUNT_ACTION_STATE_EXECUTING,
    actions_pb2.ACTION_STATE_SUCCEEDED: escalation_pb2.ACCOUNT_ACTION_STATE_SUCCEEDED,
    actions_pb2.ACTION_STATE_FAILED: escalation_pb2.ACCOUNT_ACTION_STATE_FAILED,
    actions_pb2.ACTION_STATE_CANCELLED: escalation_pb2.ACCOUNT_ACTION_STATE_CANCELLED,
    actions_pb2.ACTION_STATE_REJECTED: escalation_pb2.ACCOUNT_ACTION_STATE_REJECTED,
}


def account_action(action: actions_pb2.Action) -> escalation_pb2.AccountAction:
    """An action as the handoff shows it."""
    shown = escalation_pb2.AccountAction(
        action_id=action.action_id,
        tool=action.tool,
        summary=action.summary,
        state=_STATES.get(action.state, escalation_pb2.ACCOUNT_ACTION_STATE_UNSPECIFIED),
        approval_reasons=action.approval.reasons,
        decided_by=action.approval.decided_by,
        dry_run=action.dry_run,
        # Only a failure's reason: a retryable attempt's or a cancellation's is not one.
        error_message=action.error.message if action.state == actions_pb2.ACTION_STATE_FAILED else "",
        masked_arguments_json=action.masked_arguments_json,
        fingerprint=action.fingerprint,
    )
    if action.HasField("updated_at"):
        shown.updated_at.CopyFrom(action.updated_at)
    return shown


def records_read(events: list[actions_pb2.AuditEvent]) -> list[escalation_pb2.RecordRead]:
    """Each record read once, at its first read, oldest first (the AI reads an order again
    on every question about it)."""
    records: list[escalation_pb2.RecordRead] = []
    seen: set[tuple[str, str, str]] = set()
    for event in events:
        if event.kind != actions_pb2.AUDIT_EVENT_KIND_READ:
            continue
        # The actions service writes a read's record id as the event's detail.
        key = (event.tool, event.detail, event.arguments_json)
        if key in seen:
            continue
        seen.add(key)
        record = escalation_pb2.RecordRead(
            tool=event.tool, record_id=event.detail, masked_arguments_json=event.arguments_json
        )
        if event.HasField("occurred_at"):
            record.read_at.CopyFrom(event.occurred_at)
        records.append(record)
    return records


def verified_customer(events: list[actions_pb2.AuditEvent], actions: list[actions_pb2.Action]) -> str:
    """The customer verified in the conversation (one per conversation); an action's
    customer when the verification is beyond the page read."""
    for event in events:
        if event.kind == actions_pb2.AUDIT_EVENT_KIND_IDENTITY_VERIFIED and event.customer_id:
            return event.customer_id
    return next((action.customer_id for action in actions if action.customer_id), "")


class AccountActivityReader:
    """Reads a conversation's account activity. Without an actions service (none
    configured) there is none to show: the handoff carries no activity at all."""

    def __init__(
        self, actions: actions_pb2_grpc.ActionsServiceStub | None, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self._actions = actions
        self._timeout_s = timeout_s

    async def read(self, tenant_id: str, conversation_id: str) -> escalation_pb2.AccountActivity | None:
        if self._actions is None:
            return None
        if not conversation_id:
            return escalation_pb2.AccountActivity(complete=True)
        events, actions = await asyncio.gather(
            self._audit_events(self._actions, tenant_id, conversation_id),
            self._conversation_actions(self._actions, tenant_id, conversation_id),
        )
        complete = events is not None and actions is not None and events[1] and actions[1]
        read_events = events[0] if events is not None else []
        read_actions = actions[0] if actions is not None else []
        return escalation_pb2.AccountActivity(
            verified_customer_id=verified_customer(read_events, read_actions),
            records=records_read(read_events),
            actions=[account_action(action) for action in read_actions],
            complete=bool(complete),
        )

    async def _audit_events(
        self, stub: actions_pb2_grpc.ActionsServiceStub, tenant_id: str, conversation_id: str
    ) -> tuple[list[actions_pb2.AuditEvent], bool] | None:
        """The conversation's audit events and whether that is all of them; None when unreadable."""
        request = actions_pb2.ListAuditEventsRequest(
            tenant_id=tenant_id, conversation_id=conversation_id, page_size=AUDIT_PAGE
        )
        try:
            page = await stub.ListAuditEvents(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as error:
            return ([], True) if _nothing_to_read(error, tenant_id, "ListAuditEvents") else None
        return list(page.events), not page.next_page_token

    async def _conversation_actions(
        self, stub: actions_pb2_grpc.ActionsServiceStub, tenant_id: str, conversation_id: str
    ) -> tuple[list[actions_pb2.Action], bool] | None:
        """The conversation's actions, newest first, and whether that is all of them; None when unreadable."""
        request = actions_pb2.ListActionsRequest(
            tenant_id=tenant_id, conversation_id=conversation_id, page_size=ACTIONS_PAGE
        )
        try:
            page = await stub.ListActions(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as error:
            return ([], True) if _nothing_to_read(error, tenant_id, "ListActions") else None
        return list(page.actions), not page.next_page_token


def _nothing_to_read(error: grpc.aio.AioRpcError, tenant_id: str, rpc: str) -> bool:
    """True when the error says there is no activity at all (a tenant without a catalog);
    False when the activity could not be read (logged)."""
    if error.code() == grpc.StatusCode.NOT_FOUND:
        return True
    log.warning("account_activity_unavailable", tenant_id=tenant_id, rpc=rpc, code=error.code().name)
    return False
