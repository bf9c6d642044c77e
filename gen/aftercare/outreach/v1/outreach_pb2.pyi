import datetime

from aftercare.type.v1 import answer_pb2 as _answer_pb2
from aftercare.type.v1 import customer_pb2 as _customer_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RiskKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RISK_KIND_UNSPECIFIED: _ClassVar[RiskKind]
    RISK_KIND_ACTIVITY_DROP: _ClassVar[RiskKind]
    RISK_KIND_ERROR_SPIKE: _ClassVar[RiskKind]
    RISK_KIND_RELEASE_CLUSTER: _ClassVar[RiskKind]
    RISK_KIND_CHURN_TREND: _ClassVar[RiskKind]

class DraftState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DRAFT_STATE_UNSPECIFIED: _ClassVar[DraftState]
    DRAFT_STATE_PENDING_REVIEW: _ClassVar[DraftState]
    DRAFT_STATE_APPROVED: _ClassVar[DraftState]
    DRAFT_STATE_REJECTED: _ClassVar[DraftState]
    DRAFT_STATE_SENT: _ClassVar[DraftState]

class ReviewAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_ACTION_UNSPECIFIED: _ClassVar[ReviewAction]
    REVIEW_ACTION_APPROVE: _ClassVar[ReviewAction]
    REVIEW_ACTION_EDIT: _ClassVar[ReviewAction]
    REVIEW_ACTION_REJECT: _ClassVar[ReviewAction]
RISK_KIND_UNSPECIFIED: RiskKind
RISK_KIND_ACTIVITY_DROP: RiskKind
RISK_KIND_ERROR_SPIKE: RiskKind
RISK_KIND_RELEASE_CLUSTER: RiskKind
RISK_KIND_CHURN_TREND: RiskKind
DRAFT_STATE_UNSPECIFIED: DraftState
DRAFT_STATE_PENDING_REVIEW: DraftState
DRAFT_STATE_APPROVED: DraftState
DRAFT_STATE_REJECTED: DraftState
DRAFT_STATE_SENT: DraftState
REVIEW_ACTION_UNSPECIFIED: ReviewAction
REVIEW_ACTION_APPROVE: ReviewAction
REVIEW_ACTION_EDIT: ReviewAction
REVIEW_ACTION_REJECT: ReviewAction

class UsageEvent(_message.Message):
    __slots__ = ("event_id", "tenant_id", "account_id", "occurred_at", "feature", "endpoint", "status_code", "error_code", "count", "client_version")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    tenant_id: str
    account_id: str
    occurred_at: _timestamp_pb2.Timestamp
    feature: str
    endpoint: str
    status_code: int
    error_code: str
    count: int
    client_version: str
    def __init__(self, event_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., account_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., feature: _Optional[str] = ..., endpoint: _Optional[str] = ..., status_code: _Optional[int] = ..., error_code: _Optional[str] = ..., count: _Optional[int] = ..., client_version: _Optional[str] = ...) -> None: ...

class RecordUsageRequest(_message.Message):
    __slots__ = ("event", "events")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    event: UsageEvent
    events: _containers.RepeatedCompositeFieldContainer[UsageEvent]
    def __init__(self, event: _Optional[_Union[UsageEvent, _Mapping]] = ..., events: _Optional[_Iterable[_Union[UsageEvent, _Mapping]]] = ...) -> None: ...

class RejectedEvent(_message.Message):
    __slots__ = ("event_id", "reason")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    reason: str
    def __init__(self, event_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RecordUsageResponse(_message.Message):
    __slots__ = ("accepted", "duplicates", "rejected", "late")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedEvent]
    late: int
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[RejectedEvent, _Mapping]]] = ..., late: _Optional[int] = ...) -> None: ...

class Evidence(_message.Message):
    __slots__ = ("statement", "metric", "before", "after")
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    statement: str
    metric: str
    before: float
    after: float
    def __init__(self, statement: _Optional[str] = ..., metric: _Optional[str] = ..., before: _Optional[float] = ..., after: _Optional[float] = ...) -> None: ...

class RiskFinding(_message.Message):
    __slots__ = ("finding_id", "tenant_id", "account_ids", "kind", "feature", "endpoint", "error_code", "release", "evidence", "detected_at", "sources", "cause", "severity", "knowledge_unavailable", "suggested_fix")
    FINDING_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_IDS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    DETECTED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    SUGGESTED_FIX_FIELD_NUMBER: _ClassVar[int]
    finding_id: str
    tenant_id: str
    account_ids: _containers.RepeatedScalarFieldContainer[str]
    kind: RiskKind
    feature: str
    endpoint: str
    error_code: str
    release: str
    evidence: _containers.RepeatedCompositeFieldContainer[Evidence]
    detected_at: _timestamp_pb2.Timestamp
    sources: _containers.RepeatedCompositeFieldContainer[_answer_pb2.Citation]
    cause: str
    severity: float
    knowledge_unavailable: bool
    suggested_fix: str
    def __init__(self, finding_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., account_ids: _Optional[_Iterable[str]] = ..., kind: _Optional[_Union[RiskKind, str]] = ..., feature: _Optional[str] = ..., endpoint: _Optional[str] = ..., error_code: _Optional[str] = ..., release: _Optional[str] = ..., evidence: _Optional[_Iterable[_Union[Evidence, _Mapping]]] = ..., detected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sources: _Optional[_Iterable[_Union[_answer_pb2.Citation, _Mapping]]] = ..., cause: _Optional[str] = ..., severity: _Optional[float] = ..., knowledge_unavailable: _Optional[bool] = ..., suggested_fix: _Optional[str] = ...) -> None: ...

class DetectRisksRequest(_message.Message):
    __slots__ = ("tenant_id", "as_of")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DetectRisksResponse(_message.Message):
    __slots__ = ("findings",)
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    findings: _containers.RepeatedCompositeFieldContainer[RiskFinding]
    def __init__(self, findings: _Optional[_Iterable[_Union[RiskFinding, _Mapping]]] = ...) -> None: ...

class OutreachDraft(_message.Message):
    __slots__ = ("draft_id", "tenant_id", "account_id", "finding_id", "subject", "body", "state", "created_at", "lineage", "generator", "reviewer_id", "original_body", "recipient_account_ids")
    DRAFT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    FINDING_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_BODY_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_ACCOUNT_IDS_FIELD_NUMBER: _ClassVar[int]
    draft_id: str
    tenant_id: str
    account_id: str
    finding_id: str
    subject: str
    body: str
    state: DraftState
    created_at: _timestamp_pb2.Timestamp
    lineage: _answer_pb2.Lineage
    generator: str
    reviewer_id: str
    original_body: str
    recipient_account_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, draft_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., account_id: _Optional[str] = ..., finding_id: _Optional[str] = ..., subject: _Optional[str] = ..., body: _Optional[str] = ..., state: _Optional[_Union[DraftState, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lineage: _Optional[_Union[_answer_pb2.Lineage, _Mapping]] = ..., generator: _Optional[str] = ..., reviewer_id: _Optional[str] = ..., original_body: _Optional[str] = ..., recipient_account_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DraftOutreachRequest(_message.Message):
    __slots__ = ("tenant_id", "finding_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    FINDING_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    finding_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., finding_id: _Optional[str] = ...) -> None: ...

class DraftOutreachResponse(_message.Message):
    __slots__ = ("drafts", "skipped")
    DRAFTS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    drafts: _containers.RepeatedCompositeFieldContainer[OutreachDraft]
    skipped: _containers.RepeatedCompositeFieldContainer[SkippedAccount]
    def __init__(self, drafts: _Optional[_Iterable[_Union[OutreachDraft, _Mapping]]] = ..., skipped: _Optional[_Iterable[_Union[SkippedAccount, _Mapping]]] = ...) -> None: ...

class SkippedAccount(_message.Message):
    __slots__ = ("account_id", "reason")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    reason: str
    def __init__(self, account_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("tenant_id", "account_id", "name", "contact_name", "contact_email", "csm_name", "csm_email", "timezone", "opted_out", "churned_at")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTACT_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTACT_EMAIL_FIELD_NUMBER: _ClassVar[int]
    CSM_NAME_FIELD_NUMBER: _ClassVar[int]
    CSM_EMAIL_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    OPTED_OUT_FIELD_NUMBER: _ClassVar[int]
    CHURNED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    account_id: str
    name: str
    contact_name: str
    contact_email: str
    csm_name: str
    csm_email: str
    timezone: str
    opted_out: bool
    churned_at: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., account_id: _Optional[str] = ..., name: _Optional[str] = ..., contact_name: _Optional[str] = ..., contact_email: _Optional[str] = ..., csm_name: _Optional[str] = ..., csm_email: _Optional[str] = ..., timezone: _Optional[str] = ..., opted_out: _Optional[bool] = ..., churned_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UpsertAccountsRequest(_message.Message):
    __slots__ = ("accounts",)
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[Account]
    def __init__(self, accounts: _Optional[_Iterable[_Union[Account, _Mapping]]] = ...) -> None: ...

class UpsertAccountsResponse(_message.Message):
    __slots__ = ("created", "updated")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    created: int
    updated: int
    def __init__(self, created: _Optional[int] = ..., updated: _Optional[int] = ...) -> None: ...

class ListDraftsRequest(_message.Message):
    __slots__ = ("tenant_id", "state")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    state: DraftState
    def __init__(self, tenant_id: _Optional[str] = ..., state: _Optional[_Union[DraftState, str]] = ...) -> None: ...

class ListDraftsResponse(_message.Message):
    __slots__ = ("drafts",)
    DRAFTS_FIELD_NUMBER: _ClassVar[int]
    drafts: _containers.RepeatedCompositeFieldContainer[OutreachDraft]
    def __init__(self, drafts: _Optional[_Iterable[_Union[OutreachDraft, _Mapping]]] = ...) -> None: ...

class ReviewDraftRequest(_message.Message):
    __slots__ = ("tenant_id", "draft_id", "action", "edited_body", "reviewer_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DRAFT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    EDITED_BODY_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    draft_id: str
    action: ReviewAction
    edited_body: str
    reviewer_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., draft_id: _Optional[str] = ..., action: _Optional[_Union[ReviewAction, str]] = ..., edited_body: _Optional[str] = ..., reviewer_id: _Optional[str] = ...) -> None: ...

class ReviewDraftResponse(_message.Message):
    __slots__ = ("draft",)
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    draft: OutreachDraft
    def __init__(self, draft: _Optional[_Union[OutreachDraft, _Mapping]] = ...) -> None: ...

class RecordReplyRouteRequest(_message.Message):
    __slots__ = ("customer", "conversation_id", "address", "subject", "message_id")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    customer: _customer_pb2.CustomerRef
    conversation_id: str
    address: str
    subject: str
    message_id: str
    def __init__(self, customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., conversation_id: _Optional[str] = ..., address: _Optional[str] = ..., subject: _Optional[str] = ..., message_id: _Optional[str] = ...) -> None: ...

class RecordReplyRouteResponse(_message.Message):
    __slots__ = ("created", "recorded")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    recorded: bool
    def __init__(self, created: _Optional[bool] = ..., recorded: _Optional[bool] = ...) -> None: ...

class DeleteReplyRoutesRequest(_message.Message):
    __slots__ = ("customer",)
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer: _customer_pb2.CustomerRef
    def __init__(self, customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ...) -> None: ...

class DeleteReplyRoutesResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...
