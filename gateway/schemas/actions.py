"""Bodies of the actions router (gateway/routes/actions.py): the actions the assistant proposed
for customers (with their approval), an agent's decision and what the customer was told, the
tenant's catalog and the copilot path (an agent reads and acts for the customer), and the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from aftercare.actions.v1 import actions_pb2
from aftercare.escalation.v1 import escalation_pb2
from gateway.schemas.common import CustomerId, Id, RequestBody, enum_name, json_or_none, time_field
from gateway.schemas.handoffs import AccountAction, ThreadMessage

ActionStateName = Literal[
    "proposed", "awaiting_approval", "executing", "succeeded", "failed", "retryable", "cancelled", "rejected"
]
ActionStateLabel = Literal["unspecified"] | ActionStateName
AuditEventKindLabel = Literal[
    "unspecified", "read", "refused", "identity_verified", "proposed", "confirmed", "approval_requested", "approved",
    "rejected", "executing", "executed", "failed", "cancelled", "reconciled",
]
ActorKindLabel = Literal["unspecified", "customer", "assistant", "agent", "system"]
# An agent's note travels to the audit trail and, for a rejection, to the customer: escalation
# holds it to this length.
MAX_NOTE_CHARS = 1_000
# What the actions service allows as a tool name and a fingerprint.
TOOL_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
MAX_FINGERPRINT_CHARS = 128
ToolName = Annotated[str, Field(pattern=TOOL_NAME_PATTERN, description="A tool of the catalog (GET .../tools).",
                                examples=["get_order_details"])]


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
    fingerprint: str = Field(description="What a confirmation must name: the hash of exactly this proposal.")
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
    release_id: str | None = Field(
        default=None,
        description="The tenant's release (of the assistant) that proposed it, e.g. 'r3'; null for an agent's "
        "(copilot) action and before releases.",
    )

    @classmethod
    def from_proto(cls, action: actions_pb2.Action) -> Action:
        error = action.error if action.HasField("error") else None
        return cls(
            action_id=action.action_id,
            customer_id=action.customer_id,
            conversation_id=action.conversation_id,
            tool=action.tool,
            arguments=json_or_none(action.arguments_json),
            masked_arguments=json_or_none(action.masked_arguments_json),
            summary=action.summary,
            fingerprint=action.fingerprint,
            state=enum_name(actions_pb2.ActionState, action.state),
            approval=Approval.from_proto(action.approval),
            dry_run=action.dry_run,
            result=json_or_none(action.result_json),
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
            release_id=action.release_id or None,
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
    note: str = Field(
        default="",
        max_length=MAX_NOTE_CHARS,
        description="Why, in words: kept in the audit trail; a rejection's note is also told to the customer.",
    )
    agent_name: str | None = Field(
        default=None, min_length=1, max_length=128,
        description="Name shown to the customer with the outcome message; 'Support agent' when omitted.",
    )


class ApprovalOutcome(BaseModel):
    """An agent's decision carried out: the action after it, and the message the customer got."""

    action: AccountAction = Field(
        description="The action: succeeded, failed, rejected, or executing when the company's system has not "
        "answered yet."
    )
    message: ThreadMessage | None = Field(
        description="The outcome message added to the conversation and delivered to the customer; null while the "
        "action is still executing, or when the conversation has no handoff."
    )
    handoff_id: str | None = Field(description="The handoff whose conversation it is; null when there is none.")

    @classmethod
    def from_proto(cls, response: escalation_pb2.DecideActionApprovalResponse) -> ApprovalOutcome:
        return cls(
            action=AccountAction.from_proto(response.action),
            message=ThreadMessage.from_proto(response.message) if response.HasField("message") else None,
            handoff_id=response.handoff.handoff_id or None,
        )


# --- the catalog and the copilot path --------------------------------------

ToolKindName = Literal["read", "write"]
ToolKindLabel = Literal["unspecified"] | ToolKindName


class Tool(BaseModel):
    """One tool of the tenant's catalog: what an agent (or the assistant) can read or do."""

    name: str
    description: str = Field(description="What it does and when to use it.")
    kind: ToolKindLabel = Field(description="'read' (POST .../records:read) or 'write' (propose, then confirm).")
    arguments_schema: Any = Field(description="JSON Schema of the arguments object (draft 2020-12).")
    requires_verification: bool = Field(description="The conversation's customer must be verified first.")
    verifies_identity: bool = Field(description="An identity tool: a successful read verifies the customer.")
    preconditions: list[str] = Field(description="The policy rules checked before it runs, in words.")
    approval_rules: list[str] = Field(description="When an agent's approval is needed, in words.")
    dry_run: bool = Field(description="Its writes are not sent (dry-run).")

    @classmethod
    def from_proto(cls, tool: actions_pb2.Tool) -> Tool:
        return cls(
            name=tool.name,
            description=tool.description,
            kind=enum_name(actions_pb2.ToolKind, tool.kind),
            arguments_schema=json_or_none(tool.arguments_schema_json),
            requires_verification=tool.requires_verification,
            verifies_identity=tool.verifies_identity,
            preconditions=list(tool.preconditions),
            approval_rules=list(tool.approval_rules),
            dry_run=tool.dry_run,
        )


class ToolListReply(BaseModel):
    tools: list[Tool] = Field(description="In catalog order.")
    catalog_version: str = Field(description="Recorded with every action and audit event it decided.")

    @classmethod
    def from_proto(cls, response: actions_pb2.ListToolsResponse) -> ToolListReply:
        return cls(tools=[Tool.from_proto(tool) for tool in response.tools], catalog_version=response.catalog_version)


def _arguments() -> Any:
    return Field(default_factory=dict, description="The tool's arguments, a JSON object matching its schema.")


class ReadRecordRequest(RequestBody):
    tool: ToolName
    arguments: dict[str, Any] = _arguments()
    customer_id: CustomerId | None = Field(
        default=None,
        description="The conversation's verified customer (the handoff's account_activity.verified_customer_id); "
        "omitted only for an identity tool, which verifies one.",
    )


class RecordSource(BaseModel):
    tool: str
    record_id: str = Field(description="The record's id in the company's system, e.g. '#W2611340'.")
    catalog_version: str


class RecordReply(BaseModel):
    record: Any = Field(description="The record, with only the catalog's kept fields.")
    source: RecordSource
    verified_customer_id: str | None = Field(description="For an identity tool: the customer now verified.")

    @classmethod
    def from_proto(cls, response: actions_pb2.ExecuteReadResponse) -> RecordReply:
        source = response.source
        return cls(
            record=json_or_none(response.record_json),
            source=RecordSource(tool=source.tool, record_id=source.record_id, catalog_version=source.catalog_version),
            verified_customer_id=response.verified_customer_id or None,
        )


class ProposeRequest(RequestBody):
    tool: ToolName
    arguments: dict[str, Any] = _arguments()
    customer_id: CustomerId = Field(description="The conversation's verified customer.")
    request_id: Id = Field(description="Your id of this proposal: a retry with the same id returns the same action.")


class ConfirmRequest(RequestBody):
    conversation_id: Id = Field(description="The action's conversation.")
    fingerprint: str = Field(
        min_length=1, max_length=MAX_FINGERPRINT_CHARS, description="The proposal's fingerprint, as proposed."
    )


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
            arguments=json_or_none(event.arguments_json),
            result=json_or_none(event.result_json),
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
