"""Bodies of the actions router (gateway/routes/actions.py): the actions the assistant proposed
for customers (with their approval), an agent's decision, and the audit trail."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from aftercare.actions.v1 import actions_pb2
from gateway.schemas.common import RequestBody, enum_name, time_field

ActionStateName = Literal[
    "proposed", "awaiting_approval", "executing", "succeeded", "failed", "retryable", "cancelled", "rejected"
]
ActionStateLabel = Literal["unspecified"] | ActionStateName
AuditEventKindLabel = Literal[
    "unspecified", "read", "refused", "identity_verified", "proposed", "confirmed", "approval_requested", "approved",
    "rejected", "executing", "executed", "failed", "cancelled", "reconciled",
]
ActorKindLabel = Literal["unspecified", "customer", "assistant", "agent", "system"]
# An agent's note travels to the audit trail; the actions service holds it to this length.
MAX_NOTE_CHARS = 2_000


def _json_or_none(text: str) -> Any:
    """A JSON document a service wrote, parsed; None when empty. Text that is not JSON (never
    expected) is shown as the string it is rather than failing the whole response."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


class Approval(BaseModel):
    required: bool = Field(description="An approval rule of the catalog matched: an agent must approve.")
    reasons: list[str] = Field(description="The rules that matched, in words: why it needs approval.")
    decided_by: str = Field(description="The agent who approved or rejected it; empty until then.")
    note: str = Field(description="The agent's note.")
    decided_at: datetime | None

    @classmethod
    def from_proto(cls, approval: actions_pb2.Approval) -> Approval:
        return cls(
            required=approval.required,
            reasons=list(approval.reasons),
            decided_by=approval.decided_by,
            note=approval.note,
            decided_at=time_field(approval, "decided_at"),
        )


class ActionError(BaseModel):
    reason: str = Field(description="Stable reason, e.g. 'CONNECTOR_REFUSED', 'CONNECTOR_UNAVAILABLE'.")
    message: str
    may_have_executed: bool = Field(description="The request may have reached the company's system.")


class Action(BaseModel):
    """One write the assistant (or an agent) proposed for a verified customer, and what became of it."""

    action_id: str
    customer_id: str = Field(description="The verified customer, as the company's system names them.")
    conversation_id: str
    tool: str = Field(description="The catalog's write tool, e.g. 'cancel_pending_order'.")
    arguments: Any = Field(description="The tool's arguments (a JSON object).")
    masked_arguments: Any = Field(
        description="The arguments with the catalog's personal-data fields masked, as the audit trail records them: "
        "what a console shows."
    )
    summary: str = Field(description="Every detail in words, as the customer was asked to say yes to it.")
    state: ActionStateLabel
    approval: Approval
    dry_run: bool = Field(description="Executed without the write (the tenant or tool is in dry-run).")
    result: Any = Field(description="The company system's answer, kept to the catalog's fields; null before.")
    error: ActionError | None
    catalog_version: str
    idempotency_key: str = Field(description="Sent as Idempotency-Key with every attempt.")
    attempts: int
    replaces_action_id: str
    created_at: datetime | None
    updated_at: datetime | None
    expires_at: datetime | None

    @classmethod
    def from_proto(cls, action: actions_pb2.Action) -> Action:
        error = action.error if action.HasField("error") else None
        return cls(
            action_id=action.action_id,
            customer_id=action.customer_id,
            conversation_id=action.conversation_id,
            tool=action.tool,
            arguments=_json_or_none(action.arguments_json),
            masked_arguments=_json_or_none(action.masked_arguments_json),
            summary=action.summary,
            state=enum_name(actions_pb2.ActionState, action.state),
            approval=Approval.from_proto(action.approval),
            dry_run=action.dry_run,
            result=_json_or_none(action.result_json),
            error=ActionError(reason=error.reason, message=error.message, may_have_executed=error.may_have_executed)
            if error is not None
            else None,
            catalog_version=action.catalog_version,
            idempotency_key=action.idempotency_key,
            attempts=action.attempts,
            replaces_action_id=action.replaces_action_id,
            created_at=time_field(action, "created_at"),
            updated_at=time_field(action, "updated_at"),
            expires_at=time_field(action, "expires_at"),
        )


class ActionListReply(BaseModel):
    actions: list[Action] = Field(description="Newest first.")
    next_page_token: str = Field(description="Pass as page_token for the next page; empty on the last.")

    @classmethod
    def from_proto(cls, response: actions_pb2.ListActionsResponse) -> ActionListReply:
        return cls(
            actions=[Action.from_proto(action) for action in response.actions],
            next_page_token=response.next_page_token,
        )


class DecisionRequest(RequestBody):
    note: str = Field(default="", max_length=MAX_NOTE_CHARS, description="Why, in words (kept in the audit trail).")


class Actor(BaseModel):
    kind: ActorKindLabel
    id: str = Field(description="The agent's id for an agent; may be empty otherwise.")


class AuditEvent(BaseModel):
    """One step of an action's life, or one read, with personal data masked."""

    sequence: int
    action_id: str = Field(description="Empty for reads and verifications.")
    conversation_id: str
    customer_id: str = Field(description="The verified customer; empty before verification.")
    kind: AuditEventKindLabel
    actor: Actor
    tool: str
    arguments: Any = Field(description="The arguments, personal data masked; null when none.")
    result: Any = Field(description="The result or error, personal data masked; null when none.")
    detail: str = Field(description="In words: the refusal's reason, the agent's note...")
    trace_id: str
    catalog_version: str
    dry_run: bool
    occurred_at: datetime | None

    @classmethod
    def from_proto(cls, event: actions_pb2.AuditEvent) -> AuditEvent:
        return cls(
            sequence=event.sequence,
            action_id=event.action_id,
            conversation_id=event.conversation_id,
            customer_id=event.customer_id,
            kind=enum_name(actions_pb2.AuditEventKind, event.kind),
            actor=Actor(kind=enum_name(actions_pb2.ActorKind, event.actor.kind), id=event.actor.id),
            tool=event.tool,
            arguments=_json_or_none(event.arguments_json),
            result=_json_or_none(event.result_json),
            detail=event.detail,
            trace_id=event.trace_id,
            catalog_version=event.catalog_version,
            dry_run=event.dry_run,
            occurred_at=time_field(event, "occurred_at"),
        )


class AuditListReply(BaseModel):
    events: list[AuditEvent] = Field(description="Oldest first.")
    next_page_token: str = Field(description="Pass as page_token for the next page; empty on the last.")

    @classmethod
    def from_proto(cls, response: actions_pb2.ListAuditEventsResponse) -> AuditListReply:
        return cls(
            events=[AuditEvent.from_proto(event) for event in response.events],
            next_page_token=response.next_page_token,
        )
