import datetime

from aftercare.type.v1 import customer_pb2 as _customer_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ToolKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_KIND_UNSPECIFIED: _ClassVar[ToolKind]
    TOOL_KIND_READ: _ClassVar[ToolKind]
    TOOL_KIND_WRITE: _ClassVar[ToolKind]

class ActorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTOR_KIND_UNSPECIFIED: _ClassVar[ActorKind]
    ACTOR_KIND_CUSTOMER: _ClassVar[ActorKind]
    ACTOR_KIND_ASSISTANT: _ClassVar[ActorKind]
    ACTOR_KIND_AGENT: _ClassVar[ActorKind]
    ACTOR_KIND_SYSTEM: _ClassVar[ActorKind]

class ActionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_STATE_UNSPECIFIED: _ClassVar[ActionState]
    ACTION_STATE_PROPOSED: _ClassVar[ActionState]
    ACTION_STATE_AWAITING_APPROVAL: _ClassVar[ActionState]
    ACTION_STATE_EXECUTING: _ClassVar[ActionState]
    ACTION_STATE_SUCCEEDED: _ClassVar[ActionState]
    ACTION_STATE_FAILED: _ClassVar[ActionState]
    ACTION_STATE_RETRYABLE: _ClassVar[ActionState]
    ACTION_STATE_CANCELLED: _ClassVar[ActionState]
    ACTION_STATE_REJECTED: _ClassVar[ActionState]

class ApprovalDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPROVAL_DECISION_UNSPECIFIED: _ClassVar[ApprovalDecision]
    APPROVAL_DECISION_APPROVE: _ClassVar[ApprovalDecision]
    APPROVAL_DECISION_REJECT: _ClassVar[ApprovalDecision]

class AuditEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIT_EVENT_KIND_UNSPECIFIED: _ClassVar[AuditEventKind]
    AUDIT_EVENT_KIND_READ: _ClassVar[AuditEventKind]
    AUDIT_EVENT_KIND_REFUSED: _ClassVar[AuditEventKind]
    AUDIT_EVENT_KIND_IDENTITY_VERIFIED: _ClassVar[AuditEventKind]
    AUDIT_EVENT_KIND_PROPOSED: _ClassVar[AuditEventKind]
    AUDIT_EVENT_KIND_CONFIRMED: _ClassVar[AuditEventKind]
    AUDIT_EVENT_KIND_APPROVAL_REQUESTED: _ClassVar[AuditEventKind]
    AUDIT_EVENT_KIND_APPROVED: _ClassVar[AuditEventKind]
    AUDIT_EVENT_KIND_REJECTED: _ClassVar[AuditEventKind]
    AUDIT_EVENT_KIND_EXECUTING: _ClassVar[AuditEventKind]
    AUDIT_EVENT_KIND_EXECUTED: _ClassVar[AuditEventKind]
    AUDIT_EVENT_KIND_FAILED: _ClassVar[AuditEventKind]
    AUDIT_EVENT_KIND_CANCELLED: _ClassVar[AuditEventKind]
    AUDIT_EVENT_KIND_RECONCILED: _ClassVar[AuditEventKind]
TOOL_KIND_UNSPECIFIED: ToolKind
TOOL_KIND_READ: ToolKind
TOOL_KIND_WRITE: ToolKind
ACTOR_KIND_UNSPECIFIED: ActorKind
ACTOR_KIND_CUSTOMER: ActorKind
ACTOR_KIND_ASSISTANT: ActorKind
ACTOR_KIND_AGENT: ActorKind
ACTOR_KIND_SYSTEM: ActorKind
ACTION_STATE_UNSPECIFIED: ActionState
ACTION_STATE_PROPOSED: ActionState
ACTION_STATE_AWAITING_APPROVAL: ActionState
ACTION_STATE_EXECUTING: ActionState
ACTION_STATE_SUCCEEDED: ActionState
ACTION_STATE_FAILED: ActionState
ACTION_STATE_RETRYABLE: ActionState
ACTION_STATE_CANCELLED: ActionState
ACTION_STATE_REJECTED: ActionState
APPROVAL_DECISION_UNSPECIFIED: ApprovalDecision
APPROVAL_DECISION_APPROVE: ApprovalDecision
APPROVAL_DECISION_REJECT: ApprovalDecision
AUDIT_EVENT_KIND_UNSPECIFIED: AuditEventKind
AUDIT_EVENT_KIND_READ: AuditEventKind
AUDIT_EVENT_KIND_REFUSED: AuditEventKind
AUDIT_EVENT_KIND_IDENTITY_VERIFIED: AuditEventKind
AUDIT_EVENT_KIND_PROPOSED: AuditEventKind
AUDIT_EVENT_KIND_CONFIRMED: AuditEventKind
AUDIT_EVENT_KIND_APPROVAL_REQUESTED: AuditEventKind
AUDIT_EVENT_KIND_APPROVED: AuditEventKind
AUDIT_EVENT_KIND_REJECTED: AuditEventKind
AUDIT_EVENT_KIND_EXECUTING: AuditEventKind
AUDIT_EVENT_KIND_EXECUTED: AuditEventKind
AUDIT_EVENT_KIND_FAILED: AuditEventKind
AUDIT_EVENT_KIND_CANCELLED: AuditEventKind
AUDIT_EVENT_KIND_RECONCILED: AuditEventKind

class Tool(_message.Message):
    __slots__ = ("name", "description", "kind", "arguments_schema_json", "requires_verification", "verifies_identity", "preconditions", "approval_rules", "dry_run")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_VERIFICATION_FIELD_NUMBER: _ClassVar[int]
    VERIFIES_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    PRECONDITIONS_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_RULES_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    kind: ToolKind
    arguments_schema_json: str
    requires_verification: bool
    verifies_identity: bool
    preconditions: _containers.RepeatedScalarFieldContainer[str]
    approval_rules: _containers.RepeatedScalarFieldContainer[str]
    dry_run: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., kind: _Optional[_Union[ToolKind, str]] = ..., arguments_schema_json: _Optional[str] = ..., requires_verification: _Optional[bool] = ..., verifies_identity: _Optional[bool] = ..., preconditions: _Optional[_Iterable[str]] = ..., approval_rules: _Optional[_Iterable[str]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ListToolsRequest(_message.Message):
    __slots__ = ("tenant_id", "kind")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    kind: ToolKind
    def __init__(self, tenant_id: _Optional[str] = ..., kind: _Optional[_Union[ToolKind, str]] = ...) -> None: ...

class ListToolsResponse(_message.Message):
    __slots__ = ("tools", "catalog_version")
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    catalog_version: str
    def __init__(self, tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ..., catalog_version: _Optional[str] = ...) -> None: ...

class Actor(_message.Message):
    __slots__ = ("kind", "id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    kind: ActorKind
    id: str
    def __init__(self, kind: _Optional[_Union[ActorKind, str]] = ..., id: _Optional[str] = ...) -> None: ...

class RecordSource(_message.Message):
    __slots__ = ("tool", "record_id", "catalog_version")
    TOOL_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    tool: str
    record_id: str
    catalog_version: str
    def __init__(self, tool: _Optional[str] = ..., record_id: _Optional[str] = ..., catalog_version: _Optional[str] = ...) -> None: ...

class ExecuteReadRequest(_message.Message):
    __slots__ = ("customer", "conversation_id", "tool", "arguments_json", "actor")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    customer: _customer_pb2.CustomerRef
    conversation_id: str
    tool: str
    arguments_json: str
    actor: Actor
    def __init__(self, customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., conversation_id: _Optional[str] = ..., tool: _Optional[str] = ..., arguments_json: _Optional[str] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ...) -> None: ...

class ExecuteReadResponse(_message.Message):
    __slots__ = ("record_json", "source", "verified_customer_id")
    RECORD_JSON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    record_json: str
    source: RecordSource
    verified_customer_id: str
    def __init__(self, record_json: _Optional[str] = ..., source: _Optional[_Union[RecordSource, _Mapping]] = ..., verified_customer_id: _Optional[str] = ...) -> None: ...

class ActionError(_message.Message):
    __slots__ = ("reason", "message", "may_have_executed")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MAY_HAVE_EXECUTED_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    may_have_executed: bool
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ..., may_have_executed: _Optional[bool] = ...) -> None: ...

class Approval(_message.Message):
    __slots__ = ("required", "reasons", "decided_by", "note", "decided_at")
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    required: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    decided_by: str
    note: str
    decided_at: _timestamp_pb2.Timestamp
    def __init__(self, required: _Optional[bool] = ..., reasons: _Optional[_Iterable[str]] = ..., decided_by: _Optional[str] = ..., note: _Optional[str] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ("action_id", "tenant_id", "customer_id", "conversation_id", "tool", "arguments_json", "summary", "fingerprint", "state", "approval", "dry_run", "result_json", "error", "catalog_version", "idempotency_key", "attempts", "created_at", "updated_at", "replaces_action_id", "expires_at", "masked_arguments_json", "release_id")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REPLACES_ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    MASKED_ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    tenant_id: str
    customer_id: str
    conversation_id: str
    tool: str
    arguments_json: str
    summary: str
    fingerprint: str
    state: ActionState
    approval: Approval
    dry_run: bool
    result_json: str
    error: ActionError
    catalog_version: str
    idempotency_key: str
    attempts: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    replaces_action_id: str
    expires_at: _timestamp_pb2.Timestamp
    masked_arguments_json: str
    release_id: str
    def __init__(self, action_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., tool: _Optional[str] = ..., arguments_json: _Optional[str] = ..., summary: _Optional[str] = ..., fingerprint: _Optional[str] = ..., state: _Optional[_Union[ActionState, str]] = ..., approval: _Optional[_Union[Approval, _Mapping]] = ..., dry_run: _Optional[bool] = ..., result_json: _Optional[str] = ..., error: _Optional[_Union[ActionError, _Mapping]] = ..., catalog_version: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., attempts: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replaces_action_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., masked_arguments_json: _Optional[str] = ..., release_id: _Optional[str] = ...) -> None: ...

class ProposeActionRequest(_message.Message):
    __slots__ = ("customer", "conversation_id", "tool", "arguments_json", "request_id", "actor", "replaces_action_id", "release_id")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REPLACES_ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    customer: _customer_pb2.CustomerRef
    conversation_id: str
    tool: str
    arguments_json: str
    request_id: str
    actor: Actor
    replaces_action_id: str
    release_id: str
    def __init__(self, customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., conversation_id: _Optional[str] = ..., tool: _Optional[str] = ..., arguments_json: _Optional[str] = ..., request_id: _Optional[str] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ..., replaces_action_id: _Optional[str] = ..., release_id: _Optional[str] = ...) -> None: ...

class ProposeActionResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: Action
    def __init__(self, action: _Optional[_Union[Action, _Mapping]] = ...) -> None: ...

class ConfirmActionRequest(_message.Message):
    __slots__ = ("tenant_id", "action_id", "fingerprint", "confirmation_text", "actor", "conversation_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATION_TEXT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    action_id: str
    fingerprint: str
    confirmation_text: str
    actor: Actor
    conversation_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., action_id: _Optional[str] = ..., fingerprint: _Optional[str] = ..., confirmation_text: _Optional[str] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ..., conversation_id: _Optional[str] = ...) -> None: ...

class ConfirmActionResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: Action
    def __init__(self, action: _Optional[_Union[Action, _Mapping]] = ...) -> None: ...

class CancelActionRequest(_message.Message):
    __slots__ = ("tenant_id", "action_id", "reason", "actor")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    action_id: str
    reason: str
    actor: Actor
    def __init__(self, tenant_id: _Optional[str] = ..., action_id: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ...) -> None: ...

class CancelActionResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: Action
    def __init__(self, action: _Optional[_Union[Action, _Mapping]] = ...) -> None: ...

class DecideApprovalRequest(_message.Message):
    __slots__ = ("tenant_id", "action_id", "decision", "agent_id", "note")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    action_id: str
    decision: ApprovalDecision
    agent_id: str
    note: str
    def __init__(self, tenant_id: _Optional[str] = ..., action_id: _Optional[str] = ..., decision: _Optional[_Union[ApprovalDecision, str]] = ..., agent_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class DecideApprovalResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: Action
    def __init__(self, action: _Optional[_Union[Action, _Mapping]] = ...) -> None: ...

class GetActionRequest(_message.Message):
    __slots__ = ("tenant_id", "action_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    action_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., action_id: _Optional[str] = ...) -> None: ...

class GetActionResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: Action
    def __init__(self, action: _Optional[_Union[Action, _Mapping]] = ...) -> None: ...

class ListActionsRequest(_message.Message):
    __slots__ = ("tenant_id", "conversation_id", "customer_id", "states", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    conversation_id: str
    customer_id: str
    states: _containers.RepeatedScalarFieldContainer[ActionState]
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., states: _Optional[_Iterable[_Union[ActionState, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListActionsResponse(_message.Message):
    __slots__ = ("actions", "next_page_token")
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[Action]
    next_page_token: str
    def __init__(self, actions: _Optional[_Iterable[_Union[Action, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("sequence", "tenant_id", "action_id", "conversation_id", "customer_id", "kind", "actor", "tool", "arguments_json", "result_json", "detail", "trace_id", "catalog_version", "dry_run", "occurred_at")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    tenant_id: str
    action_id: str
    conversation_id: str
    customer_id: str
    kind: AuditEventKind
    actor: Actor
    tool: str
    arguments_json: str
    result_json: str
    detail: str
    trace_id: str
    catalog_version: str
    dry_run: bool
    occurred_at: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., tenant_id: _Optional[str] = ..., action_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., kind: _Optional[_Union[AuditEventKind, str]] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ..., tool: _Optional[str] = ..., arguments_json: _Optional[str] = ..., result_json: _Optional[str] = ..., detail: _Optional[str] = ..., trace_id: _Optional[str] = ..., catalog_version: _Optional[str] = ..., dry_run: _Optional[bool] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("tenant_id", "conversation_id", "customer_id", "action_id", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    conversation_id: str
    customer_id: str
    action_id: str
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., action_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ExportAuditRequest(_message.Message):
    __slots__ = ("tenant_id", "conversation_id", "customer_id", "since", "until")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    conversation_id: str
    customer_id: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExportAuditResponse(_message.Message):
    __slots__ = ("jsonl", "event_count")
    JSONL_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    jsonl: str
    event_count: int
    def __init__(self, jsonl: _Optional[str] = ..., event_count: _Optional[int] = ...) -> None: ...
