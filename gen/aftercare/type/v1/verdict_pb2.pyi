from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    TIER_AI_RESOLVED: _ClassVar[Tier]
    TIER_AI_ASSISTED: _ClassVar[Tier]
    TIER_SPECIALIST: _ClassVar[Tier]
    TIER_MANAGER_FLAGGED: _ClassVar[Tier]

class SentimentLabel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SENTIMENT_LABEL_UNSPECIFIED: _ClassVar[SentimentLabel]
    SENTIMENT_LABEL_NEGATIVE: _ClassVar[SentimentLabel]
    SENTIMENT_LABEL_NEUTRAL: _ClassVar[SentimentLabel]
    SENTIMENT_LABEL_POSITIVE: _ClassVar[SentimentLabel]
TIER_UNSPECIFIED: Tier
TIER_AI_RESOLVED: Tier
TIER_AI_ASSISTED: Tier
TIER_SPECIALIST: Tier
TIER_MANAGER_FLAGGED: Tier
SENTIMENT_LABEL_UNSPECIFIED: SentimentLabel
SENTIMENT_LABEL_NEGATIVE: SentimentLabel
SENTIMENT_LABEL_NEUTRAL: SentimentLabel
SENTIMENT_LABEL_POSITIVE: SentimentLabel

class TriageVerdict(_message.Message):
    __slots__ = ("intent", "intent_confidence", "sentiment_score", "tier")
    INTENT_FIELD_NUMBER: _ClassVar[int]
    INTENT_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SENTIMENT_SCORE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    intent: str
    intent_confidence: float
    sentiment_score: float
    tier: Tier
    def __init__(self, intent: _Optional[str] = ..., intent_confidence: _Optional[float] = ..., sentiment_score: _Optional[float] = ..., tier: _Optional[_Union[Tier, str]] = ...) -> None: ...
