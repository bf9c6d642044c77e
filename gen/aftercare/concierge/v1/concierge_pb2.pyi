from aftercare.type.v1 import answer_pb2 as _answer_pb2
from aftercare.type.v1 import conversation_pb2 as _conversation_pb2
from aftercare.type.v1 import customer_pb2 as _customer_pb2
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
DECISION_UNSPECIFIED: Decision
DECISION_ANSWERED: Decision
DECISION_ESCALATED: Decision
DECISION_CLARIFY: Decision

class ConverseRequest(_message.Message):
    __slots__ = ("conversation_id", "customer", "text", "channel", "account")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    customer: _customer_pb2.CustomerRef
    text: str
    channel: _conversation_pb2.Channel
    account: _customer_pb2.AccountSignals
    def __init__(self, conversation_id: _Optional[str] = ..., customer: _Optional[_Union[_customer_pb2.CustomerRef, _Mapping]] = ..., text: _Optional[str] = ..., channel: _Optional[_Union[_conversation_pb2.Channel, str]] = ..., account: _Optional[_Union[_customer_pb2.AccountSignals, _Mapping]] = ...) -> None: ...

class ConverseResponse(_message.Message):
    __slots__ = ("reply", "citations", "confidence", "decision", "decision_reason", "handoff_id", "lineage")
    REPLY_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DECISION_REASON_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    reply: str
    citations: _containers.RepeatedCompositeFieldContainer[_answer_pb2.Citation]
    confidence: _answer_pb2.Confidence
    decision: Decision
    decision_reason: str
    handoff_id: str
    lineage: _answer_pb2.Lineage
    def __init__(self, reply: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[_answer_pb2.Citation, _Mapping]]] = ..., confidence: _Optional[_Union[_answer_pb2.Confidence, _Mapping]] = ..., decision: _Optional[_Union[Decision, str]] = ..., decision_reason: _Optional[str] = ..., handoff_id: _Optional[str] = ..., lineage: _Optional[_Union[_answer_pb2.Lineage, _Mapping]] = ...) -> None: ...

class StreamConverseRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: ConverseRequest
    def __init__(self, request: _Optional[_Union[ConverseRequest, _Mapping]] = ...) -> None: ...

class StreamConverseResponse(_message.Message):
    __slots__ = ("delta", "outcome")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    delta: str
    outcome: ConverseResponse
    def __init__(self, delta: _Optional[str] = ..., outcome: _Optional[_Union[ConverseResponse, _Mapping]] = ...) -> None: ...
