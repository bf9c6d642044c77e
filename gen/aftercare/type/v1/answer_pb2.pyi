from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Citation(_message.Message):
    __slots__ = ("doc_id", "chunk_id", "title", "url", "score", "doc_version", "record")
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    DOC_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    doc_id: str
    chunk_id: str
    title: str
    url: str
    score: float
    doc_version: str
    record: RecordRef
    def __init__(self, doc_id: _Optional[str] = ..., chunk_id: _Optional[str] = ..., title: _Optional[str] = ..., url: _Optional[str] = ..., score: _Optional[float] = ..., doc_version: _Optional[str] = ..., record: _Optional[_Union[RecordRef, _Mapping]] = ...) -> None: ...

class RecordRef(_message.Message):
    __slots__ = ("kind", "id", "tool")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    tool: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., tool: _Optional[str] = ...) -> None: ...

class ConfidenceSignal(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class Confidence(_message.Message):
    __slots__ = ("score", "threshold", "signals", "calibration_version", "calibrated", "configuration_id")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_VERSION_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_ID_FIELD_NUMBER: _ClassVar[int]
    score: float
    threshold: float
    signals: _containers.RepeatedCompositeFieldContainer[ConfidenceSignal]
    calibration_version: str
    calibrated: bool
    configuration_id: str
    def __init__(self, score: _Optional[float] = ..., threshold: _Optional[float] = ..., signals: _Optional[_Iterable[_Union[ConfidenceSignal, _Mapping]]] = ..., calibration_version: _Optional[str] = ..., calibrated: _Optional[bool] = ..., configuration_id: _Optional[str] = ...) -> None: ...

class Lineage(_message.Message):
    __slots__ = ("sources", "model", "prompt_template_version", "trace_id", "release_id")
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedCompositeFieldContainer[Citation]
    model: str
    prompt_template_version: str
    trace_id: str
    release_id: str
    def __init__(self, sources: _Optional[_Iterable[_Union[Citation, _Mapping]]] = ..., model: _Optional[str] = ..., prompt_template_version: _Optional[str] = ..., trace_id: _Optional[str] = ..., release_id: _Optional[str] = ...) -> None: ...
