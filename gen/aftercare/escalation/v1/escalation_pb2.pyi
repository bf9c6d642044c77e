import datetime

from aftercare.type.v1 import answer_pb2 as _answer_pb2
from aftercare.type.v1 import conversation_pb2 as _conversation_pb2
from aftercare.type.v1 import customer_pb2 as _customer_pb2
from aftercare.type.v1 import search_pb2 as _search_pb2
from aftercare.type.v1 import verdict_pb2 as _verdict_pb2
from aftercare.retrieval.v1 import retrieval_pb2 as _retrieval_pb2
from aftercare.triage.v1 import triage_pb2 as _triage_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HandoffState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HANDOFF_STATE_UNSPECIFIED: _ClassVar[HandoffState]
    HANDOFF_STATE_WAITING: _ClassVar[HandoffState]
    HANDOFF_STATE_ASSIGNED: _ClassVar[HandoffState]
    HANDOFF_STATE_RESOLVED: _ClassVar[HandoffState]
    HANDOFF_STATE_WAITING_ON_CUSTOMER: _ClassVar[HandoffState]
    HANDOFF_STATE_REOPENED: _ClassVar[HandoffState]

class HandoffEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HANDOFF_EVENT_KIND_UNSPECIFIED: _ClassVar[HandoffEventKind]
    HANDOFF_EVENT_KIND_CREATED: _ClassVar[HandoffEventKind]
    HANDOFF_EVENT_KIND_ASSIGNED: _ClassVar[HandoffEventKind]
    HANDOFF_EVENT_KIND_AGENT_REPLIED: _ClassVar[HandoffEventKind]
    HANDOFF_EVENT_KIND_CUSTOMER_WROTE: _ClassVar[HandoffEventKind]
    HANDOFF_EVENT_KIND_ESCALATED_AGAIN: _ClassVar[HandoffEventKind]
    HANDOFF_EVENT_KIND_RESOLVED: _ClassVar[HandoffEventKind]
    HANDOFF_EVENT_KIND_REOPENED: _ClassVar[HandoffEventKind]
    HANDOFF_EVENT_KIND_RATED: _ClassVar[HandoffEventKind]

class HandoffReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HANDOFF_REASON_UNSPECIFIED: _ClassVar[HandoffReason]
    HANDOFF_REASON_LOW_CONFIDENCE: _ClassVar[HandoffReason]
    HANDOFF_REASON_CUSTOMER_REQUEST: _ClassVar[HandoffReason]
    HANDOFF_REASON_POLICY: _ClassVar[HandoffReason]
    HANDOFF_REASON_NO_KNOWLEDGE: _ClassVar[HandoffReason]
    HANDOFF_REASON_SYSTEM_UNAVAILABLE: _ClassVar[HandoffReason]
    HANDOFF_REASON_APPROVAL_REQUIRED: _ClassVar[HandoffReason]

class AccountActionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_ACTION_STATE_UNSPECIFIED: _ClassVar[AccountActionState]
    ACCOUNT_ACTION_STATE_PROPOSED: _ClassVar[AccountActionState]
    ACCOUNT_ACTION_STATE_AWAITING_APPROVAL: _ClassVar[AccountActionState]
    ACCOUNT_ACTION_STATE_EXECUTING: _ClassVar[AccountActionState]
    ACCOUNT_ACTION_STATE_SUCCEEDED: _ClassVar[AccountActionState]
    ACCOUNT_ACTION_STATE_FAILED: _ClassVar[AccountActionState]
    ACCOUNT_ACTION_STATE_CANCELLED: _ClassVar[AccountActionState]
    ACCOUNT_ACTION_STATE_REJECTED: _ClassVar[AccountActionState]

class SummaryOrigin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUMMARY_ORIGIN_UNSPECIFIED: _ClassVar[SummaryOrigin]
    SUMMARY_ORIGIN_LLM: _ClassVar[SummaryOrigin]
    SUMMARY_ORIGIN_EXTRACTIVE: _ClassVar[SummaryOrigin]
    SUMMARY_ORIGIN_PENDING: _ClassVar[SummaryOrigin]

class DraftOrigin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DRAFT_ORIGIN_UNSPECIFIED: _ClassVar[DraftOrigin]
    DRAFT_ORIGIN_LLM: _ClassVar[DraftOrigin]
    DRAFT_ORIGIN_TEMPLATE: _ClassVar[DraftOrigin]
    DRAFT_ORIGIN_PENDING: _ClassVar[DraftOrigin]

class DraftUse(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DRAFT_USE_UNSPECIFIED: _ClassVar[DraftUse]
    DRAFT_USE_ACCEPTED: _ClassVar[DraftUse]
    DRAFT_USE_EDITED: _ClassVar[DraftUse]
    DRAFT_USE_REWRITTEN: _ClassVar[DraftUse]
    DRAFT_USE_DISCARDED: _ClassVar[DraftUse]

class JudgementSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JUDGEMENT_SOURCE_UNSPECIFIED: _ClassVar[JudgementSource]
    JUDGEMENT_SOURCE_AGENT: _ClassVar[JudgementSource]
    JUDGEMENT_SOURCE_CUSTOMER: _ClassVar[JudgementSource]

class OutcomeDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_DECISION_UNSPECIFIED: _ClassVar[OutcomeDecision]
    OUTCOME_DECISION_ANSWERED: _ClassVar[OutcomeDecision]
    OUTCOME_DECISION_CLARIFIED: _ClassVar[OutcomeDecision]

class ApprovalChoice(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPROVAL_CHOICE_UNSPECIFIED: _ClassVar[ApprovalChoice]
    APPROVAL_CHOICE_APPROVE: _ClassVar[ApprovalChoice]
    APPROVAL_CHOICE_REJECT: _ClassVar[ApprovalChoice]
HANDOFF_STATE_UNSPECIFIED: HandoffState
HANDOFF_STATE_WAITING: HandoffState
HANDOFF_STATE_ASSIGNED: HandoffState
HANDOFF_STATE_RESOLVED: HandoffState
HANDOFF_STATE_WAITING_ON_CUSTOMER: HandoffState
HANDOFF_STATE_REOPENED: HandoffState
HANDOFF_EVENT_KIND_UNSPECIFIED: HandoffEventKind
HANDOFF_EVENT_KIND_CREATED: HandoffEventKind
HANDOFF_EVENT_KIND_ASSIGNED: HandoffEventKind
HANDOFF_EVENT_KIND_AGENT_REPLIED: HandoffEventKind
HANDOFF_EVENT_KIND_CUSTOMER_WROTE: HandoffEventKind
HANDOFF_EVENT_KIND_ESCALATED_AGAIN: HandoffEventKind
HANDOFF_EVENT_KIND_RESOLVED: HandoffEventKind
HANDOFF_EVENT_KIND_REOPENED: HandoffEventKind
HANDOFF_EVENT_KIND_RATED: HandoffEventKind
HANDOFF_REASON_UNSPECIFIED: HandoffReason
HANDOFF_REASON_LOW_CONFIDENCE: HandoffReason
HANDOFF_REASON_CUSTOMER_REQUEST: HandoffReason
HANDOFF_REASON_POLICY: HandoffReason
HANDOFF_REASON_NO_KNOWLEDGE: HandoffReason
HANDOFF_REASON_SYSTEM_UNAVAILABLE: HandoffReason
HANDOFF_REASON_APPROVAL_REQUIRED: HandoffReason
ACCOUNT_ACTION_STATE_UNSPECIFIED: AccountActionState
ACCOUNT_ACTION_STATE_PROPOSED: AccountActionState
ACCOUNT_ACTION_STATE_AWAITING_APPROVAL: AccountActionState
ACCOUNT_ACTION_STATE_EXECUTING: AccountActionState
ACCOUNT_ACTION_STATE_SUCCEEDED: AccountActionState
ACCOUNT_ACTION_STATE_FAILED: AccountActionState
ACCOUNT_ACTION_STATE_CANCELLED: AccountActionState
ACCOUNT_ACTION_STATE_REJECTED: AccountActionState
SUMMARY_ORIGIN_UNSPECIFIED: SummaryOrigin
SUMMARY_ORIGIN_LLM: SummaryOrigin
SUMMARY_ORIGIN_EXTRACTIVE: SummaryOrigin
SUMMARY_ORIGIN_PENDING: SummaryOrigin
DRAFT_ORIGIN_UNSPECIFIED: DraftOrigin
DRAFT_ORIGIN_LLM: DraftOrigin
DRAFT_ORIGIN_TEMPLATE: DraftOrigin
DRAFT_ORIGIN_PENDING: DraftOrigin
DRAFT_USE_UNSPECIFIED: DraftUse
DRAFT_USE_ACCEPTED: DraftUse
DRAFT_USE_EDITED: DraftUse
DRAFT_USE_REWRITTEN: DraftUse
DRAFT_USE_DISCARDED: DraftUse
JUDGEMENT_SOURCE_UNSPECIFIED: JudgementSource
JUDGEMENT_SOURCE_AGENT: JudgementSource
JUDGEMENT_SOURCE_CUSTOMER: JudgementSource
OUTCOME_DECISION_UNSPECIFIED: OutcomeDecision
OUTCOME_DECISION_ANSWERED: OutcomeDecision
OUTCOME_DECISION_CLARIFIED: OutcomeDecision
APPROVAL_CHOICE_UNSPECIFIED: ApprovalChoice
APPROVAL_CHOICE_APPROVE: ApprovalChoice
APPROVAL_CHOICE_REJECT: ApprovalChoice

class HandoffEvent(_message.Message):
    __slots__ = ("kind", "at", "actor", "state")
    KIND_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    kind: HandoffEventKind
    at: _timestamp_pb2.Timestamp
    actor: str
    state: HandoffState
    def __init__(self, kind: _Optional[_Union[HandoffEventKind, str]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., state: _Optional[_Union[HandoffState, str]] = ...) -> None: ...

class ThreadMessage(_message.Message):
    __slots__ = ("message_id", "sequence", "handoff_id", "message", "author_id", "author_name", "channel", "conversation_id")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_NAME_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    sequence: int
    handoff_id: str
    message: _conversation_pb2.Message
    author_id: str
    author_name: str
    channel: _conversation_pb2.Channel
    conversation_id: str
    def __init__(self, message_id: _Optional[str] = ..., sequence: _Optional[int] = ..., handoff_id: _Optional[str] = ..., message: _Optional[_Union[_conversation_pb2.Message, _Mapping]] = ..., author_id: _Optional[str] = ..., author_name: _Optional[str] = ..., channel: _Optional[_Union[_conversation_pb2.Channel, str]] = ..., conversation_id: _Optional[str] = ...) -> None: ...

class AiAttempt(_message.Message):
    __slots__ = ("candidate_answer", "confidence", "citations", "explanation")
    CANDIDATE_ANSWER_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    candidate_answer: str
    confidence: _answer_pb2.Confidence
    citations: _containers.RepeatedCompositeFieldContainer[_answer_pb2.Citation]
    explanation: str
    def __init__(self, candidate_answer: _Optional[str] = ..., confidence: _Optional[_Union[_answer_pb2.Confidence, _Mapping]] = ..., citations: _Optional[_Iterable[_Union[_answer_pb2.Citation, _Mapping]]] = ..., explanation: _Optional[str] = ...) -> None: ...

class SuggestedResolution(_message.Message):
    __slots__ = ("text", "sources")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    text: str
    sources: _containers.RepeatedCompositeFieldContainer[_answer_pb2.Citation]
    def __init__(self, text: _Optional[str] = ..., sources: _Optional[_Iterable[_Union[_answer_pb2.Citation, _Mapping]]] = ...) -> None: ...

class ContextPackage(_message.Message):
    __slots__ = ("summary", "detail", "account", "intent", "intent_confidence", "sentiment_score", "ai_attempt", "suggested_resolutions", "draft_reply", "customer_summary", "ai_attempt_summary", "summary_method", "draft_method", "sentiment_label", "lineage", "summary_origin", "draft_origin", "sentiment", "account_activity")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    INTENT_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SENTIMENT_SCORE_FIELD_NUMBER: _ClassVar[int]
    AI_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SUGGESTED_RESOLUTIONS_FIELD_NUMBER: _ClassVar[int]
    DRAFT_REPLY_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    AI_ATTEMPT_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_METHOD_FIELD_NUMBER: _ClassVar[int]
    DRAFT_METHOD_FIELD_NUMBER: _ClassVar[int]
    SENTIMENT_LABEL_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    DRAFT_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    SENTIMENT_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    summary: str
    detail: str
    account: _customer_pb2.AccountSignals
    intent: str
    intent_confidence: float
    sentiment_score: float
    ai_attempt: AiAttempt
    suggested_resolutions: _containers.RepeatedCompositeFieldContainer[SuggestedResolution]
    draft_reply: str
    customer_summary: str
    ai_attempt_summary: str
    summary_method: str
    draft_method: str
    sentiment_label: str
    lineage: _answer_pb2.Lineage
    summary_origin: SummaryOrigin
    draft_origin: DraftOrigin
    sentiment: _verdict_pb2.SentimentLabel
    account_activity: AccountActivity
    def __init__(self, summary: _Optional[str] = ..., detail: _Optional[str] = ..., account: _Optional[_Union[_customer_pb2.AccountSignals, _Mapping]] = ..., intent: _Optional[str] = ..., intent_confidence: _Optional[float] = ..., sentiment_score: _Optional[float] = ..., ai_attempt: _Optional[_Union[AiAttempt, _Mapping]] = ..., suggested_resolutions: _Optional[_Iterable[_Union[SuggestedResolution, _Mapping]]] = ..., draft_reply: _Optional[str] = ..., customer_summary: _Optional[str] = ..., ai_attempt_summary: _Optional[str] = ..., summary_method: _Optional[str] = ..., draft_method: _Optional[str] = ..., sentiment_label: _Optional[str] = ..., lineage: _Optional[_Union[_answer_pb2.Lineage, _Mapping]] = ..., summary_origin: _Optional[_Union[SummaryOrigin, str]] = ..., draft_origin: _Optional[_Union[DraftOrigin, str]] = ..., sentiment: _Optional[_Union[_verdict_pb2.SentimentLabel, str]] = ..., account_activity: _Optional[_Union[AccountActivity, _Mapping]] = ...) -> None: ...

class AccountActivity(_message.Message):
    __slots__ = ("verified_customer_id", "records", "actions", "complete")
    VERIFIED_CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    verified_customer_id: str
    records: _containers.RepeatedCompositeFieldContainer[RecordRead]
    actions: _containers.RepeatedCompositeFieldContainer[AccountAction]
    complete: bool
    def __init__(self, verified_customer_id: _Optional[str] = ..., records: _Optional[_Iterable[_Union[RecordRead, _Mapping]]] = ..., actions: _Optional[_Iterable[_Union[AccountAction, _Mapping]]] = ..., complete: _Optional[bool] = ...) -> None: ...

class RecordRead(_message.Message):
    __slots__ = ("tool", "record_id", "masked_arguments_json", "read_at")
    TOOL_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    MASKED_ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    READ_AT_FIELD_NUMBER: _ClassVar[int]
    tool: str
    record_id: str
    masked_arguments_json: str
    read_at: _timestamp_pb2.Timestamp
    def __init__(self, tool: _Optional[str] = ..., record_id: _Optional[str] = ..., masked_arguments_json: _Optional[str] = ..., read_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AccountAction(_message.Message):
    __slots__ = ("action_id", "tool", "summary", "state", "approval_reasons", "decided_by", "dry_run", "error_message", "masked_arguments_json", "updated_at", "fingerprint")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_REASONS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MASKED_ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    tool: str
    summary: str
    state: AccountActionState
    approval_reasons: _containers.RepeatedScalarFieldContainer[str]
    decided_by: str
    dry_run: bool
    error_message: str
    masked_arguments_json: str
    updated_at: _timestamp_pb2.Timestamp
    fingerprint: str
    def __init__(self, action_id: _Optional[str] = ..., tool: _Optional[str] = ..., summary: _Optional[str] = ..., state: _Optional[_Union[AccountActionState, str]] = ..., approval_reasons: _Optional[_Iterable[str]] = ..., decided_by: _Optional[str] = ..., dry_run: _Optional[bool] = ..., error_message: _Optional[str] = ..., masked_arguments_json: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fingerprint: _Optional[str] = ...) -> None: ...

class Handoff(_message.Message):
    __slots__ = ("handoff_id", "customer", "conversation", "reason", "queue", "priority", "state", "assigned_agent_id", "context", "created_at", "updated_at", "tier", "version", "assigned_at", "resolved_by_agent_id", "resolved_at", "resolution", "reference", "conversation_id", "history", "first_replied_at", "expected_wait", "queue_position", "csat_rating", "thread_messages", "routing_tier", "release_id")
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_BY_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    FIRST_REPLIED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_WAIT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    CSAT_RATING_FIELD_NUMBER: _ClassVar[int]
    THREAD_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    ROUTING_TIER_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    handoff_id: str
    customer: _customer_pb2.CustomerRef
    conversation: _conversation_pb2.Conversation
    reason: HandoffReason
    queue: str
    priority: int
    state: HandoffState
    assigned_agent_id: str
    context: ContextPackage
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    tier: _triage_pb2.Tier
    version: int
    assigned_at: _timestamp_pb2.Timestamp
    resolved_by_agent_id: str
    resolved_at: _timestamp_pb2.Timestamp
    resolution: str
    reference: str
    conversation_id: str
    history: _containers.RepeatedCompositeFieldContainer[HandoffEvent]
    first_replied_at: _timestamp_pb2.Timestamp
    expected_wait: _duration_pb2.Duration
    queue_position: int
    csat_rating: int
    thread_messages: int
    routing_tier: _verdict_pb2.Tier
    release_id: str
    def __init__(self, handoff_id: _Optional[str] = ..., customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., conversation: _Optional[_Union[_conversation_pb2.Conversation, _Mapping]] = ..., reason: _Optional[_Union[HandoffReason, str]] = ..., queue: _Optional[str] = ..., priority: _Optional[int] = ..., state: _Optional[_Union[HandoffState, str]] = ..., assigned_agent_id: _Optional[str] = ..., context: _Optional[_Union[ContextPackage, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tier: _Optional[_Union[_triage_pb2.Tier, str]] = ..., version: _Optional[int] = ..., assigned_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_by_agent_id: _Optional[str] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolution: _Optional[str] = ..., reference: _Optional[str] = ..., conversation_id: _Optional[str] = ..., history: _Optional[_Iterable[_Union[HandoffEvent, _Mapping]]] = ..., first_replied_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expected_wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., queue_position: _Optional[int] = ..., csat_rating: _Optional[int] = ..., thread_messages: _Optional[int] = ..., routing_tier: _Optional[_Union[_verdict_pb2.Tier, str]] = ..., release_id: _Optional[str] = ...) -> None: ...

class CreateHandoffRequest(_message.Message):
    __slots__ = ("idempotency_key", "customer", "conversation", "reason", "ai_attempt", "queue", "priority", "account", "intent", "intent_confidence", "sentiment_score", "tier", "retrieved", "triage", "search", "release_id")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AI_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    INTENT_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SENTIMENT_SCORE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    RETRIEVED_FIELD_NUMBER: _ClassVar[int]
    TRIAGE_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    customer: _customer_pb2.CustomerRef
    conversation: _conversation_pb2.Conversation
    reason: HandoffReason
    ai_attempt: AiAttempt
    queue: str
    priority: int
    account: _customer_pb2.AccountSignals
    intent: str
    intent_confidence: float
    sentiment_score: float
    tier: _triage_pb2.Tier
    retrieved: _containers.RepeatedCompositeFieldContainer[_retrieval_pb2.SearchHit]
    triage: _verdict_pb2.TriageVerdict
    search: _search_pb2.SearchResult
    release_id: str
    def __init__(self, idempotency_key: _Optional[str] = ..., customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., conversation: _Optional[_Union[_conversation_pb2.Conversation, _Mapping]] = ..., reason: _Optional[_Union[HandoffReason, str]] = ..., ai_attempt: _Optional[_Union[AiAttempt, _Mapping]] = ..., queue: _Optional[str] = ..., priority: _Optional[int] = ..., account: _Optional[_Union[_customer_pb2.AccountSignals, _Mapping]] = ..., intent: _Optional[str] = ..., intent_confidence: _Optional[float] = ..., sentiment_score: _Optional[float] = ..., tier: _Optional[_Union[_triage_pb2.Tier, str]] = ..., retrieved: _Optional[_Iterable[_Union[_retrieval_pb2.SearchHit, _Mapping]]] = ..., triage: _Optional[_Union[_verdict_pb2.TriageVerdict, _Mapping]] = ..., search: _Optional[_Union[_search_pb2.SearchResult, _Mapping]] = ..., release_id: _Optional[str] = ...) -> None: ...

class CreateHandoffResponse(_message.Message):
    __slots__ = ("handoff", "created", "appended")
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    APPENDED_FIELD_NUMBER: _ClassVar[int]
    handoff: Handoff
    created: bool
    appended: bool
    def __init__(self, handoff: _Optional[_Union[Handoff, _Mapping]] = ..., created: _Optional[bool] = ..., appended: _Optional[bool] = ...) -> None: ...

class ListHandoffsRequest(_message.Message):
    __slots__ = ("tenant_id", "queue", "state", "page_size", "page_token", "tier", "routing_tier")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    ROUTING_TIER_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    queue: str
    state: HandoffState
    page_size: int
    page_token: str
    tier: _triage_pb2.Tier
    routing_tier: _verdict_pb2.Tier
    def __init__(self, tenant_id: _Optional[str] = ..., queue: _Optional[str] = ..., state: _Optional[_Union[HandoffState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., tier: _Optional[_Union[_triage_pb2.Tier, str]] = ..., routing_tier: _Optional[_Union[_verdict_pb2.Tier, str]] = ...) -> None: ...

class ListHandoffsResponse(_message.Message):
    __slots__ = ("handoffs", "next_page_token")
    HANDOFFS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    handoffs: _containers.RepeatedCompositeFieldContainer[Handoff]
    next_page_token: str
    def __init__(self, handoffs: _Optional[_Iterable[_Union[Handoff, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetHandoffRequest(_message.Message):
    __slots__ = ("tenant_id", "handoff_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    handoff_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., handoff_id: _Optional[str] = ...) -> None: ...

class GetHandoffResponse(_message.Message):
    __slots__ = ("handoff", "thread")
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    THREAD_FIELD_NUMBER: _ClassVar[int]
    handoff: Handoff
    thread: _containers.RepeatedCompositeFieldContainer[ThreadMessage]
    def __init__(self, handoff: _Optional[_Union[Handoff, _Mapping]] = ..., thread: _Optional[_Iterable[_Union[ThreadMessage, _Mapping]]] = ...) -> None: ...

class IntentCorrection(_message.Message):
    __slots__ = ("original_label", "corrected_label")
    ORIGINAL_LABEL_FIELD_NUMBER: _ClassVar[int]
    CORRECTED_LABEL_FIELD_NUMBER: _ClassVar[int]
    original_label: str
    corrected_label: str
    def __init__(self, original_label: _Optional[str] = ..., corrected_label: _Optional[str] = ...) -> None: ...

class SubmitAgentReplyRequest(_message.Message):
    __slots__ = ("tenant_id", "handoff_id", "agent_id", "final_text", "intent_correction", "expected_version", "client_message_id", "agent_name")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    FINAL_TEXT_FIELD_NUMBER: _ClassVar[int]
    INTENT_CORRECTION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_NAME_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    handoff_id: str
    agent_id: str
    final_text: str
    intent_correction: IntentCorrection
    expected_version: int
    client_message_id: str
    agent_name: str
    def __init__(self, tenant_id: _Optional[str] = ..., handoff_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., final_text: _Optional[str] = ..., intent_correction: _Optional[_Union[IntentCorrection, _Mapping]] = ..., expected_version: _Optional[int] = ..., client_message_id: _Optional[str] = ..., agent_name: _Optional[str] = ...) -> None: ...

class SubmitAgentReplyResponse(_message.Message):
    __slots__ = ("draft_use", "edit_ratio", "handoff", "message")
    DRAFT_USE_FIELD_NUMBER: _ClassVar[int]
    EDIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    draft_use: DraftUse
    edit_ratio: float
    handoff: Handoff
    message: ThreadMessage
    def __init__(self, draft_use: _Optional[_Union[DraftUse, str]] = ..., edit_ratio: _Optional[float] = ..., handoff: _Optional[_Union[Handoff, _Mapping]] = ..., message: _Optional[_Union[ThreadMessage, _Mapping]] = ...) -> None: ...

class ResolveHandoffRequest(_message.Message):
    __slots__ = ("tenant_id", "handoff_id", "agent_id", "resolution", "expected_version")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    handoff_id: str
    agent_id: str
    resolution: str
    expected_version: int
    def __init__(self, tenant_id: _Optional[str] = ..., handoff_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., resolution: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class ResolveHandoffResponse(_message.Message):
    __slots__ = ("handoff",)
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    handoff: Handoff
    def __init__(self, handoff: _Optional[_Union[Handoff, _Mapping]] = ...) -> None: ...

class GetTopicInsightsRequest(_message.Message):
    __slots__ = ("tenant_id", "start_time", "end_time")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TopicPoint(_message.Message):
    __slots__ = ("day", "contacts", "mean_confidence", "automation_rate", "escalation_rate", "edit_rate", "mean_csat", "csat_ratings")
    DAY_FIELD_NUMBER: _ClassVar[int]
    CONTACTS_FIELD_NUMBER: _ClassVar[int]
    MEAN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    AUTOMATION_RATE_FIELD_NUMBER: _ClassVar[int]
    ESCALATION_RATE_FIELD_NUMBER: _ClassVar[int]
    EDIT_RATE_FIELD_NUMBER: _ClassVar[int]
    MEAN_CSAT_FIELD_NUMBER: _ClassVar[int]
    CSAT_RATINGS_FIELD_NUMBER: _ClassVar[int]
    day: _timestamp_pb2.Timestamp
    contacts: int
    mean_confidence: float
    automation_rate: float
    escalation_rate: float
    edit_rate: float
    mean_csat: float
    csat_ratings: int
    def __init__(self, day: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., contacts: _Optional[int] = ..., mean_confidence: _Optional[float] = ..., automation_rate: _Optional[float] = ..., escalation_rate: _Optional[float] = ..., edit_rate: _Optional[float] = ..., mean_csat: _Optional[float] = ..., csat_ratings: _Optional[int] = ...) -> None: ...

class TopicSeries(_message.Message):
    __slots__ = ("topic", "points", "confidence_drop_flagged", "confidence_drop_detail")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_DROP_FLAGGED_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_DROP_DETAIL_FIELD_NUMBER: _ClassVar[int]
    topic: str
    points: _containers.RepeatedCompositeFieldContainer[TopicPoint]
    confidence_drop_flagged: bool
    confidence_drop_detail: str
    def __init__(self, topic: _Optional[str] = ..., points: _Optional[_Iterable[_Union[TopicPoint, _Mapping]]] = ..., confidence_drop_flagged: _Optional[bool] = ..., confidence_drop_detail: _Optional[str] = ...) -> None: ...

class GetTopicInsightsResponse(_message.Message):
    __slots__ = ("topics", "reliability")
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    RELIABILITY_FIELD_NUMBER: _ClassVar[int]
    topics: _containers.RepeatedCompositeFieldContainer[TopicSeries]
    reliability: Reliability
    def __init__(self, topics: _Optional[_Iterable[_Union[TopicSeries, _Mapping]]] = ..., reliability: _Optional[_Union[Reliability, _Mapping]] = ...) -> None: ...

class ReliabilityBin(_message.Message):
    __slots__ = ("lower", "upper", "count", "mean_confidence", "accuracy")
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    lower: float
    upper: float
    count: int
    mean_confidence: float
    accuracy: float
    def __init__(self, lower: _Optional[float] = ..., upper: _Optional[float] = ..., count: _Optional[int] = ..., mean_confidence: _Optional[float] = ..., accuracy: _Optional[float] = ...) -> None: ...

class Reliability(_message.Message):
    __slots__ = ("bins", "judged", "judged_by_agents", "judged_by_customers", "ece")
    BINS_FIELD_NUMBER: _ClassVar[int]
    JUDGED_FIELD_NUMBER: _ClassVar[int]
    JUDGED_BY_AGENTS_FIELD_NUMBER: _ClassVar[int]
    JUDGED_BY_CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    ECE_FIELD_NUMBER: _ClassVar[int]
    bins: _containers.RepeatedCompositeFieldContainer[ReliabilityBin]
    judged: int
    judged_by_agents: int
    judged_by_customers: int
    ece: float
    def __init__(self, bins: _Optional[_Iterable[_Union[ReliabilityBin, _Mapping]]] = ..., judged: _Optional[int] = ..., judged_by_agents: _Optional[int] = ..., judged_by_customers: _Optional[int] = ..., ece: _Optional[float] = ...) -> None: ...

class ListKnowledgeGapsRequest(_message.Message):
    __slots__ = ("tenant_id", "limit")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    limit: int
    def __init__(self, tenant_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class KnowledgeGap(_message.Message):
    __slots__ = ("gap_id", "suggested_title", "question_count", "examples", "last_seen")
    GAP_ID_FIELD_NUMBER: _ClassVar[int]
    SUGGESTED_TITLE_FIELD_NUMBER: _ClassVar[int]
    QUESTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    gap_id: str
    suggested_title: str
    question_count: int
    examples: _containers.RepeatedScalarFieldContainer[str]
    last_seen: _timestamp_pb2.Timestamp
    def __init__(self, gap_id: _Optional[str] = ..., suggested_title: _Optional[str] = ..., question_count: _Optional[int] = ..., examples: _Optional[_Iterable[str]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListKnowledgeGapsResponse(_message.Message):
    __slots__ = ("gaps",)
    GAPS_FIELD_NUMBER: _ClassVar[int]
    gaps: _containers.RepeatedCompositeFieldContainer[KnowledgeGap]
    def __init__(self, gaps: _Optional[_Iterable[_Union[KnowledgeGap, _Mapping]]] = ...) -> None: ...

class ExportFeedbackRequest(_message.Message):
    __slots__ = ("tenant_id", "since")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    since: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExportFeedbackResponse(_message.Message):
    __slots__ = ("jsonl", "record_count", "resume_since")
    JSONL_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    RESUME_SINCE_FIELD_NUMBER: _ClassVar[int]
    jsonl: str
    record_count: int
    resume_since: _timestamp_pb2.Timestamp
    def __init__(self, jsonl: _Optional[str] = ..., record_count: _Optional[int] = ..., resume_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AssignHandoffRequest(_message.Message):
    __slots__ = ("tenant_id", "handoff_id", "agent_id", "expected_version")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    handoff_id: str
    agent_id: str
    expected_version: int
    def __init__(self, tenant_id: _Optional[str] = ..., handoff_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class AssignHandoffResponse(_message.Message):
    __slots__ = ("handoff",)
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    handoff: Handoff
    def __init__(self, handoff: _Optional[_Union[Handoff, _Mapping]] = ...) -> None: ...

class RecordOutcomeRequest(_message.Message):
    __slots__ = ("idempotency_key", "customer", "decision", "intent", "confidence", "question", "occurred_at")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    customer: _customer_pb2.CustomerRef
    decision: OutcomeDecision
    intent: str
    confidence: float
    question: str
    occurred_at: _timestamp_pb2.Timestamp
    def __init__(self, idempotency_key: _Optional[str] = ..., customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., decision: _Optional[_Union[OutcomeDecision, str]] = ..., intent: _Optional[str] = ..., confidence: _Optional[float] = ..., question: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecordOutcomeResponse(_message.Message):
    __slots__ = ("recorded",)
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    recorded: bool
    def __init__(self, recorded: _Optional[bool] = ...) -> None: ...

class ExportIntentCorrectionsRequest(_message.Message):
    __slots__ = ("tenant_id", "since")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    since: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExportIntentCorrectionsResponse(_message.Message):
    __slots__ = ("jsonl", "example_count", "examples")
    JSONL_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    jsonl: str
    example_count: int
    examples: _containers.RepeatedCompositeFieldContainer[_triage_pb2.LabeledExample]
    def __init__(self, jsonl: _Optional[str] = ..., example_count: _Optional[int] = ..., examples: _Optional[_Iterable[_Union[_triage_pb2.LabeledExample, _Mapping]]] = ...) -> None: ...

class RecordJudgementRequest(_message.Message):
    __slots__ = ("idempotency_key", "customer", "source", "intent", "confidence", "correct", "answered_at")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_AT_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    customer: _customer_pb2.CustomerRef
    source: JudgementSource
    intent: str
    confidence: float
    correct: bool
    answered_at: _timestamp_pb2.Timestamp
    def __init__(self, idempotency_key: _Optional[str] = ..., customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., source: _Optional[_Union[JudgementSource, str]] = ..., intent: _Optional[str] = ..., confidence: _Optional[float] = ..., correct: _Optional[bool] = ..., answered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecordJudgementResponse(_message.Message):
    __slots__ = ("changed",)
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    def __init__(self, changed: _Optional[bool] = ...) -> None: ...

class AppendCustomerMessageRequest(_message.Message):
    __slots__ = ("customer", "conversation_id", "text", "client_message_id", "channel")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    customer: _customer_pb2.CustomerRef
    conversation_id: str
    text: str
    client_message_id: str
    channel: _conversation_pb2.Channel
    def __init__(self, customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., conversation_id: _Optional[str] = ..., text: _Optional[str] = ..., client_message_id: _Optional[str] = ..., channel: _Optional[_Union[_conversation_pb2.Channel, str]] = ...) -> None: ...

class AppendCustomerMessageResponse(_message.Message):
    __slots__ = ("appended", "handoff", "message", "reopened")
    APPENDED_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REOPENED_FIELD_NUMBER: _ClassVar[int]
    appended: bool
    handoff: Handoff
    message: ThreadMessage
    reopened: bool
    def __init__(self, appended: _Optional[bool] = ..., handoff: _Optional[_Union[Handoff, _Mapping]] = ..., message: _Optional[_Union[ThreadMessage, _Mapping]] = ..., reopened: _Optional[bool] = ...) -> None: ...

class ListConversationMessagesRequest(_message.Message):
    __slots__ = ("tenant_id", "conversation_id", "after_sequence", "customer_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    conversation_id: str
    after_sequence: int
    customer_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., after_sequence: _Optional[int] = ..., customer_id: _Optional[str] = ...) -> None: ...

class ListConversationMessagesResponse(_message.Message):
    __slots__ = ("messages", "handoff")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ThreadMessage]
    handoff: Handoff
    def __init__(self, messages: _Optional[_Iterable[_Union[ThreadMessage, _Mapping]]] = ..., handoff: _Optional[_Union[Handoff, _Mapping]] = ...) -> None: ...

class WatchConversationRequest(_message.Message):
    __slots__ = ("tenant_id", "conversation_id", "after_sequence", "customer_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    conversation_id: str
    after_sequence: int
    customer_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., after_sequence: _Optional[int] = ..., customer_id: _Optional[str] = ...) -> None: ...

class WatchConversationResponse(_message.Message):
    __slots__ = ("message", "handoff")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    message: ThreadMessage
    handoff: Handoff
    def __init__(self, message: _Optional[_Union[ThreadMessage, _Mapping]] = ..., handoff: _Optional[_Union[Handoff, _Mapping]] = ...) -> None: ...

class ListDeliveriesRequest(_message.Message):
    __slots__ = ("tenant_id", "channel", "after_cursor", "page_size")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    AFTER_CURSOR_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    channel: _conversation_pb2.Channel
    after_cursor: str
    page_size: int
    def __init__(self, tenant_id: _Optional[str] = ..., channel: _Optional[_Union[_conversation_pb2.Channel, str]] = ..., after_cursor: _Optional[str] = ..., page_size: _Optional[int] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("message", "customer", "reference", "cursor")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    message: ThreadMessage
    customer: _customer_pb2.CustomerRef
    reference: str
    cursor: str
    def __init__(self, message: _Optional[_Union[ThreadMessage, _Mapping]] = ..., customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., reference: _Optional[str] = ..., cursor: _Optional[str] = ...) -> None: ...

class ListDeliveriesResponse(_message.Message):
    __slots__ = ("deliveries", "next_cursor")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    next_cursor: str
    def __init__(self, deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class RateHandoffRequest(_message.Message):
    __slots__ = ("customer", "handoff_id", "rating", "comment")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    customer: _customer_pb2.CustomerRef
    handoff_id: str
    rating: int
    comment: str
    def __init__(self, customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., handoff_id: _Optional[str] = ..., rating: _Optional[int] = ..., comment: _Optional[str] = ...) -> None: ...

class RateHandoffResponse(_message.Message):
    __slots__ = ("handoff", "changed")
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    handoff: Handoff
    changed: bool
    def __init__(self, handoff: _Optional[_Union[Handoff, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class HandoffSettings(_message.Message):
    __slots__ = ("reopen_window",)
    REOPEN_WINDOW_FIELD_NUMBER: _ClassVar[int]
    reopen_window: _duration_pb2.Duration
    def __init__(self, reopen_window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetHandoffSettingsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetHandoffSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: HandoffSettings
    def __init__(self, settings: _Optional[_Union[HandoffSettings, _Mapping]] = ...) -> None: ...

class UpdateHandoffSettingsRequest(_message.Message):
    __slots__ = ("tenant_id", "settings")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    settings: HandoffSettings
    def __init__(self, tenant_id: _Optional[str] = ..., settings: _Optional[_Union[HandoffSettings, _Mapping]] = ...) -> None: ...

class UpdateHandoffSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: HandoffSettings
    def __init__(self, settings: _Optional[_Union[HandoffSettings, _Mapping]] = ...) -> None: ...

class DecideActionApprovalRequest(_message.Message):
    __slots__ = ("tenant_id", "handoff_id", "action_id", "choice", "agent_id", "agent_name", "note")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CHOICE_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_NAME_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    handoff_id: str
    action_id: str
    choice: ApprovalChoice
    agent_id: str
    agent_name: str
    note: str
    def __init__(self, tenant_id: _Optional[str] = ..., handoff_id: _Optional[str] = ..., action_id: _Optional[str] = ..., choice: _Optional[_Union[ApprovalChoice, str]] = ..., agent_id: _Optional[str] = ..., agent_name: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class DecideActionApprovalResponse(_message.Message):
    __slots__ = ("action", "message", "handoff")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    action: AccountAction
    message: ThreadMessage
    handoff: Handoff
    def __init__(self, action: _Optional[_Union[AccountAction, _Mapping]] = ..., message: _Optional[_Union[ThreadMessage, _Mapping]] = ..., handoff: _Optional[_Union[Handoff, _Mapping]] = ...) -> None: ...

class ListJudgementsRequest(_message.Message):
    __slots__ = ("tenant_id", "since", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    since: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class JudgementRecord(_message.Message):
    __slots__ = ("key", "source", "correct", "confidence", "intent", "handoff_id", "final_intent", "release_id", "answered_at", "judged_at")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    FINAL_INTENT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_AT_FIELD_NUMBER: _ClassVar[int]
    JUDGED_AT_FIELD_NUMBER: _ClassVar[int]
    key: str
    source: JudgementSource
    correct: bool
    confidence: float
    intent: str
    handoff_id: str
    final_intent: str
    release_id: str
    answered_at: _timestamp_pb2.Timestamp
    judged_at: _timestamp_pb2.Timestamp
    def __init__(self, key: _Optional[str] = ..., source: _Optional[_Union[JudgementSource, str]] = ..., correct: _Optional[bool] = ..., confidence: _Optional[float] = ..., intent: _Optional[str] = ..., handoff_id: _Optional[str] = ..., final_intent: _Optional[str] = ..., release_id: _Optional[str] = ..., answered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., judged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListJudgementsResponse(_message.Message):
    __slots__ = ("judgements", "next_page_token")
    JUDGEMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    judgements: _containers.RepeatedCompositeFieldContainer[JudgementRecord]
    next_page_token: str
    def __init__(self, judgements: _Optional[_Iterable[_Union[JudgementRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
