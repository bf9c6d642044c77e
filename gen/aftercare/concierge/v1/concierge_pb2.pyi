import datetime

from aftercare.type.v1 import answer_pb2 as _answer_pb2
from aftercare.type.v1 import conversation_pb2 as _conversation_pb2
from aftercare.type.v1 import customer_pb2 as _customer_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_ANSWERED: _ClassVar[Decision]
    DECISION_ESCALATED: _ClassVar[Decision]
    DECISION_CLARIFY: _ClassVar[Decision]
    DECISION_FORWARDED: _ClassVar[Decision]
    DECISION_CONFIRM_ACTION: _ClassVar[Decision]
    DECISION_ACTED: _ClassVar[Decision]

class DecisionReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_REASON_UNSPECIFIED: _ClassVar[DecisionReason]
    DECISION_REASON_CONFIDENT: _ClassVar[DecisionReason]
    DECISION_REASON_LOW_CONFIDENCE: _ClassVar[DecisionReason]
    DECISION_REASON_NO_KNOWLEDGE: _ClassVar[DecisionReason]
    DECISION_REASON_LLM_UNAVAILABLE: _ClassVar[DecisionReason]
    DECISION_REASON_RETRIEVAL_UNAVAILABLE: _ClassVar[DecisionReason]
    DECISION_REASON_HUMAN_REQUESTED: _ClassVar[DecisionReason]
    DECISION_REASON_POLICY_ROUTE: _ClassVar[DecisionReason]
    DECISION_REASON_UNSAFE_PROMISE: _ClassVar[DecisionReason]
    DECISION_REASON_PROMPT_INJECTION: _ClassVar[DecisionReason]
    DECISION_REASON_OFF_TOPIC: _ClassVar[DecisionReason]
    DECISION_REASON_NEEDS_DETAIL: _ClassVar[DecisionReason]
    DECISION_REASON_MODEL_DOES_NOT_KNOW: _ClassVar[DecisionReason]
    DECISION_REASON_WITH_AGENT: _ClassVar[DecisionReason]
    DECISION_REASON_NEEDS_IDENTITY: _ClassVar[DecisionReason]
    DECISION_REASON_NEEDS_ARGUMENT: _ClassVar[DecisionReason]
    DECISION_REASON_FROM_RECORDS: _ClassVar[DecisionReason]
    DECISION_REASON_ACTION_PROPOSED: _ClassVar[DecisionReason]
    DECISION_REASON_ACTION_EXECUTED: _ClassVar[DecisionReason]
    DECISION_REASON_ACTION_AWAITING_APPROVAL: _ClassVar[DecisionReason]
    DECISION_REASON_ACTION_CANCELLED: _ClassVar[DecisionReason]
    DECISION_REASON_ACTION_NOT_ALLOWED: _ClassVar[DecisionReason]
    DECISION_REASON_ACTIONS_UNAVAILABLE: _ClassVar[DecisionReason]

class ActionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_STATE_UNSPECIFIED: _ClassVar[ActionState]
    ACTION_STATE_PROPOSED: _ClassVar[ActionState]
    ACTION_STATE_AWAITING_APPROVAL: _ClassVar[ActionState]
    ACTION_STATE_EXECUTED: _ClassVar[ActionState]
    ACTION_STATE_CANCELLED: _ClassVar[ActionState]
    ACTION_STATE_REJECTED: _ClassVar[ActionState]
    ACTION_STATE_FAILED: _ClassVar[ActionState]
    ACTION_STATE_DRY_RUN: _ClassVar[ActionState]

class TurnRating(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TURN_RATING_UNSPECIFIED: _ClassVar[TurnRating]
    TURN_RATING_HELPFUL: _ClassVar[TurnRating]
    TURN_RATING_NOT_HELPFUL: _ClassVar[TurnRating]
DECISION_UNSPECIFIED: Decision
DECISION_ANSWERED: Decision
DECISION_ESCALATED: Decision
DECISION_CLARIFY: Decision
DECISION_FORWARDED: Decision
DECISION_CONFIRM_ACTION: Decision
DECISION_ACTED: Decision
DECISION_REASON_UNSPECIFIED: DecisionReason
DECISION_REASON_CONFIDENT: DecisionReason
DECISION_REASON_LOW_CONFIDENCE: DecisionReason
DECISION_REASON_NO_KNOWLEDGE: DecisionReason
DECISION_REASON_LLM_UNAVAILABLE: DecisionReason
DECISION_REASON_RETRIEVAL_UNAVAILABLE: DecisionReason
DECISION_REASON_HUMAN_REQUESTED: DecisionReason
DECISION_REASON_POLICY_ROUTE: DecisionReason
DECISION_REASON_UNSAFE_PROMISE: DecisionReason
DECISION_REASON_PROMPT_INJECTION: DecisionReason
DECISION_REASON_OFF_TOPIC: DecisionReason
DECISION_REASON_NEEDS_DETAIL: DecisionReason
DECISION_REASON_MODEL_DOES_NOT_KNOW: DecisionReason
DECISION_REASON_WITH_AGENT: DecisionReason
DECISION_REASON_NEEDS_IDENTITY: DecisionReason
DECISION_REASON_NEEDS_ARGUMENT: DecisionReason
DECISION_REASON_FROM_RECORDS: DecisionReason
DECISION_REASON_ACTION_PROPOSED: DecisionReason
DECISION_REASON_ACTION_EXECUTED: DecisionReason
DECISION_REASON_ACTION_AWAITING_APPROVAL: DecisionReason
DECISION_REASON_ACTION_CANCELLED: DecisionReason
DECISION_REASON_ACTION_NOT_ALLOWED: DecisionReason
DECISION_REASON_ACTIONS_UNAVAILABLE: DecisionReason
ACTION_STATE_UNSPECIFIED: ActionState
ACTION_STATE_PROPOSED: ActionState
ACTION_STATE_AWAITING_APPROVAL: ActionState
ACTION_STATE_EXECUTED: ActionState
ACTION_STATE_CANCELLED: ActionState
ACTION_STATE_REJECTED: ActionState
ACTION_STATE_FAILED: ActionState
ACTION_STATE_DRY_RUN: ActionState
TURN_RATING_UNSPECIFIED: TurnRating
TURN_RATING_HELPFUL: TurnRating
TURN_RATING_NOT_HELPFUL: TurnRating

class PendingAction(_message.Message):
    __slots__ = ("action_id", "tool", "summary", "fingerprint", "state", "approval_reasons")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_REASONS_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    tool: str
    summary: str
    fingerprint: str
    state: ActionState
    approval_reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, action_id: _Optional[str] = ..., tool: _Optional[str] = ..., summary: _Optional[str] = ..., fingerprint: _Optional[str] = ..., state: _Optional[_Union[ActionState, str]] = ..., approval_reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class ActionReply(_message.Message):
    __slots__ = ("action_id", "fingerprint", "confirmed")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    fingerprint: str
    confirmed: bool
    def __init__(self, action_id: _Optional[str] = ..., fingerprint: _Optional[str] = ..., confirmed: _Optional[bool] = ...) -> None: ...

class ConverseRequest(_message.Message):
    __slots__ = ("conversation_id", "customer", "text", "channel", "account", "client_message_id", "action_reply", "release_id")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_REPLY_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    customer: _customer_pb2.CustomerRef
    text: str
    channel: _conversation_pb2.Channel
    account: _customer_pb2.AccountSignals
    client_message_id: str
    action_reply: ActionReply
    release_id: str
    def __init__(self, conversation_id: _Optional[str] = ..., customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., text: _Optional[str] = ..., channel: _Optional[_Union[_conversation_pb2.Channel, str]] = ..., account: _Optional[_Union[_customer_pb2.AccountSignals, _Mapping]] = ..., client_message_id: _Optional[str] = ..., action_reply: _Optional[_Union[ActionReply, _Mapping]] = ..., release_id: _Optional[str] = ...) -> None: ...

class ConverseResponse(_message.Message):
    __slots__ = ("reply", "citations", "confidence", "decision", "decision_reason", "handoff_id", "lineage", "reason", "standalone_query", "turn_index", "handoff_reference", "expected_wait", "pending_action", "verified_customer_id")
    REPLY_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DECISION_REASON_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STANDALONE_QUERY_FIELD_NUMBER: _ClassVar[int]
    TURN_INDEX_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_WAIT_FIELD_NUMBER: _ClassVar[int]
    PENDING_ACTION_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    reply: str
    citations: _containers.RepeatedCompositeFieldContainer[_answer_pb2.Citation]
    confidence: _answer_pb2.Confidence
    decision: Decision
    decision_reason: str
    handoff_id: str
    lineage: _answer_pb2.Lineage
    reason: DecisionReason
    standalone_query: str
    turn_index: int
    handoff_reference: str
    expected_wait: _duration_pb2.Duration
    pending_action: PendingAction
    verified_customer_id: str
    def __init__(self, reply: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[_answer_pb2.Citation, _Mapping]]] = ..., confidence: _Optional[_Union[_answer_pb2.Confidence, _Mapping]] = ..., decision: _Optional[_Union[Decision, str]] = ..., decision_reason: _Optional[str] = ..., handoff_id: _Optional[str] = ..., lineage: _Optional[_Union[_answer_pb2.Lineage, _Mapping]] = ..., reason: _Optional[_Union[DecisionReason, str]] = ..., standalone_query: _Optional[str] = ..., turn_index: _Optional[int] = ..., handoff_reference: _Optional[str] = ..., expected_wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., pending_action: _Optional[_Union[PendingAction, _Mapping]] = ..., verified_customer_id: _Optional[str] = ...) -> None: ...

class StreamConverseRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: ConverseRequest
    def __init__(self, request: _Optional[_Union[ConverseRequest, _Mapping]] = ...) -> None: ...

class StreamConverseResponse(_message.Message):
    __slots__ = ("delta", "outcome", "retraction")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    RETRACTION_FIELD_NUMBER: _ClassVar[int]
    delta: str
    outcome: ConverseResponse
    retraction: Retraction
    def __init__(self, delta: _Optional[str] = ..., outcome: _Optional[_Union[ConverseResponse, _Mapping]] = ..., retraction: _Optional[_Union[Retraction, _Mapping]] = ...) -> None: ...

class Retraction(_message.Message):
    __slots__ = ("reason", "replacement")
    REASON_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENT_FIELD_NUMBER: _ClassVar[int]
    reason: DecisionReason
    replacement: str
    def __init__(self, reason: _Optional[_Union[DecisionReason, str]] = ..., replacement: _Optional[str] = ...) -> None: ...

class GetConversationRequest(_message.Message):
    __slots__ = ("customer", "conversation_id")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    customer: _customer_pb2.CustomerRef
    conversation_id: str
    def __init__(self, customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., conversation_id: _Optional[str] = ...) -> None: ...

class ConversationTurn(_message.Message):
    __slots__ = ("customer_text", "outcome", "created_at", "rating")
    CUSTOMER_TEXT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    customer_text: str
    outcome: ConverseResponse
    created_at: _timestamp_pb2.Timestamp
    rating: TurnRating
    def __init__(self, customer_text: _Optional[str] = ..., outcome: _Optional[_Union[ConverseResponse, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rating: _Optional[_Union[TurnRating, str]] = ...) -> None: ...

class GetConversationResponse(_message.Message):
    __slots__ = ("conversation", "turns")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    conversation: _conversation_pb2.Conversation
    turns: _containers.RepeatedCompositeFieldContainer[ConversationTurn]
    def __init__(self, conversation: _Optional[_Union[_conversation_pb2.Conversation, _Mapping]] = ..., turns: _Optional[_Iterable[_Union[ConversationTurn, _Mapping]]] = ...) -> None: ...

class RateTurnRequest(_message.Message):
    __slots__ = ("customer", "conversation_id", "turn_index", "rating")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_INDEX_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    customer: _customer_pb2.CustomerRef
    conversation_id: str
    turn_index: int
    rating: TurnRating
    def __init__(self, customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., conversation_id: _Optional[str] = ..., turn_index: _Optional[int] = ..., rating: _Optional[_Union[TurnRating, str]] = ...) -> None: ...

class RateTurnResponse(_message.Message):
    __slots__ = ("changed",)
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    def __init__(self, changed: _Optional[bool] = ...) -> None: ...
