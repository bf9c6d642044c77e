import datetime

from aftercare.type.v1 import conversation_pb2 as _conversation_pb2
from aftercare.type.v1 import customer_pb2 as _customer_pb2
from aftercare.operations.v1 import operations_pb2 as _operations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SentimentLabel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SENTIMENT_LABEL_UNSPECIFIED: _ClassVar[SentimentLabel]
    SENTIMENT_LABEL_NEGATIVE: _ClassVar[SentimentLabel]
    SENTIMENT_LABEL_NEUTRAL: _ClassVar[SentimentLabel]
    SENTIMENT_LABEL_POSITIVE: _ClassVar[SentimentLabel]

class RiskFlag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RISK_FLAG_UNSPECIFIED: _ClassVar[RiskFlag]
    RISK_FLAG_CHURN: _ClassVar[RiskFlag]
    RISK_FLAG_LEGAL: _ClassVar[RiskFlag]
    RISK_FLAG_REPEATED_CONTACT: _ClassVar[RiskFlag]
    RISK_FLAG_HUMAN_REQUESTED: _ClassVar[RiskFlag]
    RISK_FLAG_HIGH_VALUE: _ClassVar[RiskFlag]
    RISK_FLAG_ESCALATING_ANGER: _ClassVar[RiskFlag]

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    TIER_AI_RESOLVED: _ClassVar[Tier]
    TIER_AI_ASSISTED: _ClassVar[Tier]
    TIER_SPECIALIST: _ClassVar[Tier]
    TIER_MANAGER_FLAGGED: _ClassVar[Tier]

class SuggestionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUGGESTION_KIND_UNSPECIFIED: _ClassVar[SuggestionKind]
    SUGGESTION_KIND_ARTICLE: _ClassVar[SuggestionKind]
    SUGGESTION_KIND_TIP: _ClassVar[SuggestionKind]

class RetrainState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RETRAIN_STATE_UNSPECIFIED: _ClassVar[RetrainState]
    RETRAIN_STATE_QUEUED: _ClassVar[RetrainState]
    RETRAIN_STATE_RUNNING: _ClassVar[RetrainState]
    RETRAIN_STATE_SUCCEEDED: _ClassVar[RetrainState]
    RETRAIN_STATE_FAILED: _ClassVar[RetrainState]
    RETRAIN_STATE_CANCELLED: _ClassVar[RetrainState]
SENTIMENT_LABEL_UNSPECIFIED: SentimentLabel
SENTIMENT_LABEL_NEGATIVE: SentimentLabel
SENTIMENT_LABEL_NEUTRAL: SentimentLabel
SENTIMENT_LABEL_POSITIVE: SentimentLabel
RISK_FLAG_UNSPECIFIED: RiskFlag
RISK_FLAG_CHURN: RiskFlag
RISK_FLAG_LEGAL: RiskFlag
RISK_FLAG_REPEATED_CONTACT: RiskFlag
RISK_FLAG_HUMAN_REQUESTED: RiskFlag
RISK_FLAG_HIGH_VALUE: RiskFlag
RISK_FLAG_ESCALATING_ANGER: RiskFlag
TIER_UNSPECIFIED: Tier
TIER_AI_RESOLVED: Tier
TIER_AI_ASSISTED: Tier
TIER_SPECIALIST: Tier
TIER_MANAGER_FLAGGED: Tier
SUGGESTION_KIND_UNSPECIFIED: SuggestionKind
SUGGESTION_KIND_ARTICLE: SuggestionKind
SUGGESTION_KIND_TIP: SuggestionKind
RETRAIN_STATE_UNSPECIFIED: RetrainState
RETRAIN_STATE_QUEUED: RetrainState
RETRAIN_STATE_RUNNING: RetrainState
RETRAIN_STATE_SUCCEEDED: RetrainState
RETRAIN_STATE_FAILED: RetrainState
RETRAIN_STATE_CANCELLED: RetrainState

class TriageContactRequest(_message.Message):
    __slots__ = ("customer", "conversation", "account")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    customer: _customer_pb2.CustomerRef
    conversation: _conversation_pb2.Conversation
    account: _customer_pb2.AccountSignals
    def __init__(self, customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., conversation: _Optional[_Union[_conversation_pb2.Conversation, _Mapping]] = ..., account: _Optional[_Union[_customer_pb2.AccountSignals, _Mapping]] = ...) -> None: ...

class IntentCandidate(_message.Message):
    __slots__ = ("label", "confidence")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    label: str
    confidence: float
    def __init__(self, label: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class IntentPrediction(_message.Message):
    __slots__ = ("label", "confidence", "alternatives", "out_of_scope", "model_version")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_SCOPE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    label: str
    confidence: float
    alternatives: _containers.RepeatedCompositeFieldContainer[IntentCandidate]
    out_of_scope: bool
    model_version: str
    def __init__(self, label: _Optional[str] = ..., confidence: _Optional[float] = ..., alternatives: _Optional[_Iterable[_Union[IntentCandidate, _Mapping]]] = ..., out_of_scope: _Optional[bool] = ..., model_version: _Optional[str] = ...) -> None: ...

class Sentiment(_message.Message):
    __slots__ = ("label", "score", "trajectory")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORY_FIELD_NUMBER: _ClassVar[int]
    label: SentimentLabel
    score: float
    trajectory: float
    def __init__(self, label: _Optional[_Union[SentimentLabel, str]] = ..., score: _Optional[float] = ..., trajectory: _Optional[float] = ...) -> None: ...

class PriorityReason(_message.Message):
    __slots__ = ("code", "points")
    CODE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    code: str
    points: float
    def __init__(self, code: _Optional[str] = ..., points: _Optional[float] = ...) -> None: ...

class Priority(_message.Message):
    __slots__ = ("score", "reasons")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    score: int
    reasons: _containers.RepeatedCompositeFieldContainer[PriorityReason]
    def __init__(self, score: _Optional[int] = ..., reasons: _Optional[_Iterable[_Union[PriorityReason, _Mapping]]] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("tier", "queue", "reason_codes")
    TIER_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    REASON_CODES_FIELD_NUMBER: _ClassVar[int]
    tier: Tier
    queue: str
    reason_codes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tier: _Optional[_Union[Tier, str]] = ..., queue: _Optional[str] = ..., reason_codes: _Optional[_Iterable[str]] = ...) -> None: ...

class TriageContactResponse(_message.Message):
    __slots__ = ("intent", "sentiment", "risk_flags", "priority", "route")
    INTENT_FIELD_NUMBER: _ClassVar[int]
    SENTIMENT_FIELD_NUMBER: _ClassVar[int]
    RISK_FLAGS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    intent: IntentPrediction
    sentiment: Sentiment
    risk_flags: _containers.RepeatedScalarFieldContainer[RiskFlag]
    priority: Priority
    route: Route
    def __init__(self, intent: _Optional[_Union[IntentPrediction, _Mapping]] = ..., sentiment: _Optional[_Union[Sentiment, _Mapping]] = ..., risk_flags: _Optional[_Iterable[_Union[RiskFlag, str]]] = ..., priority: _Optional[_Union[Priority, _Mapping]] = ..., route: _Optional[_Union[Route, _Mapping]] = ...) -> None: ...

class BrowsingContext(_message.Message):
    __slots__ = ("page", "feature", "dwell_seconds", "recent_errors", "search_query")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    DWELL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RECENT_ERRORS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_QUERY_FIELD_NUMBER: _ClassVar[int]
    page: str
    feature: str
    dwell_seconds: int
    recent_errors: _containers.RepeatedScalarFieldContainer[str]
    search_query: str
    def __init__(self, page: _Optional[str] = ..., feature: _Optional[str] = ..., dwell_seconds: _Optional[int] = ..., recent_errors: _Optional[_Iterable[str]] = ..., search_query: _Optional[str] = ...) -> None: ...

class SuggestForContextRequest(_message.Message):
    __slots__ = ("customer", "context", "dismissed_doc_ids")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    DISMISSED_DOC_IDS_FIELD_NUMBER: _ClassVar[int]
    customer: _customer_pb2.CustomerRef
    context: BrowsingContext
    dismissed_doc_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., context: _Optional[_Union[BrowsingContext, _Mapping]] = ..., dismissed_doc_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Suggestion(_message.Message):
    __slots__ = ("doc_id", "title", "snippet", "url", "relevance", "reason", "kind")
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    RELEVANCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    doc_id: str
    title: str
    snippet: str
    url: str
    relevance: float
    reason: str
    kind: SuggestionKind
    def __init__(self, doc_id: _Optional[str] = ..., title: _Optional[str] = ..., snippet: _Optional[str] = ..., url: _Optional[str] = ..., relevance: _Optional[float] = ..., reason: _Optional[str] = ..., kind: _Optional[_Union[SuggestionKind, str]] = ...) -> None: ...

class SuggestForContextResponse(_message.Message):
    __slots__ = ("suggestion", "no_suggestion_reason", "query", "retry_after_seconds")
    SUGGESTION_FIELD_NUMBER: _ClassVar[int]
    NO_SUGGESTION_REASON_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    suggestion: Suggestion
    no_suggestion_reason: str
    query: str
    retry_after_seconds: int
    def __init__(self, suggestion: _Optional[_Union[Suggestion, _Mapping]] = ..., no_suggestion_reason: _Optional[str] = ..., query: _Optional[str] = ..., retry_after_seconds: _Optional[int] = ...) -> None: ...

class DismissSuggestionRequest(_message.Message):
    __slots__ = ("customer", "doc_id")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    customer: _customer_pb2.CustomerRef
    doc_id: str
    def __init__(self, customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., doc_id: _Optional[str] = ...) -> None: ...

class DismissSuggestionResponse(_message.Message):
    __slots__ = ("newly_dismissed",)
    NEWLY_DISMISSED_FIELD_NUMBER: _ClassVar[int]
    newly_dismissed: bool
    def __init__(self, newly_dismissed: _Optional[bool] = ...) -> None: ...

class LabeledExample(_message.Message):
    __slots__ = ("text", "label")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    text: str
    label: str
    def __init__(self, text: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class RetrainRequest(_message.Message):
    __slots__ = ("tenant_id", "examples")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    examples: _containers.RepeatedCompositeFieldContainer[LabeledExample]
    def __init__(self, tenant_id: _Optional[str] = ..., examples: _Optional[_Iterable[_Union[LabeledExample, _Mapping]]] = ...) -> None: ...

class RetrainResponse(_message.Message):
    __slots__ = ("model_version", "promoted", "validation_accuracy", "validation_ece")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ECE_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    promoted: bool
    validation_accuracy: float
    validation_ece: float
    def __init__(self, model_version: _Optional[str] = ..., promoted: _Optional[bool] = ..., validation_accuracy: _Optional[float] = ..., validation_ece: _Optional[float] = ...) -> None: ...

class RollbackModelRequest(_message.Message):
    __slots__ = ("tenant_id", "model_version")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    model_version: str
    def __init__(self, tenant_id: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class RollbackModelResponse(_message.Message):
    __slots__ = ("model_version", "previous_version")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    previous_version: str
    def __init__(self, model_version: _Optional[str] = ..., previous_version: _Optional[str] = ...) -> None: ...

class StartRetrainRequest(_message.Message):
    __slots__ = ("tenant_id", "examples")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    examples: _containers.RepeatedCompositeFieldContainer[LabeledExample]
    def __init__(self, tenant_id: _Optional[str] = ..., examples: _Optional[_Iterable[_Union[LabeledExample, _Mapping]]] = ...) -> None: ...

class StartRetrainResponse(_message.Message):
    __slots__ = ("operation",)
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    operation: _operations_pb2.Operation
    def __init__(self, operation: _Optional[_Union[_operations_pb2.Operation, _Mapping]] = ...) -> None: ...

class RetrainMetadata(_message.Message):
    __slots__ = ("tenant_id", "state", "progress_percent", "step", "examples", "attempts", "replica", "start_time", "end_time")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    state: RetrainState
    progress_percent: int
    step: str
    examples: int
    attempts: int
    replica: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., state: _Optional[_Union[RetrainState, str]] = ..., progress_percent: _Optional[int] = ..., step: _Optional[str] = ..., examples: _Optional[int] = ..., attempts: _Optional[int] = ..., replica: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetIntentModelRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetIntentModelResponse(_message.Message):
    __slots__ = ("serving_version", "current_version", "versions", "replica", "loaded_at")
    SERVING_VERSION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    serving_version: str
    current_version: str
    versions: _containers.RepeatedScalarFieldContainer[str]
    replica: str
    loaded_at: _timestamp_pb2.Timestamp
    def __init__(self, serving_version: _Optional[str] = ..., current_version: _Optional[str] = ..., versions: _Optional[_Iterable[str]] = ..., replica: _Optional[str] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
