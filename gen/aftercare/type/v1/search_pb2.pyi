from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DocumentType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOCUMENT_TYPE_UNSPECIFIED: _ClassVar[DocumentType]
    DOCUMENT_TYPE_ARTICLE: _ClassVar[DocumentType]
    DOCUMENT_TYPE_FAQ: _ClassVar[DocumentType]
    DOCUMENT_TYPE_CHANGELOG: _ClassVar[DocumentType]
    DOCUMENT_TYPE_POLICY: _ClassVar[DocumentType]
    DOCUMENT_TYPE_RESOLVED_TICKET: _ClassVar[DocumentType]
DOCUMENT_TYPE_UNSPECIFIED: DocumentType
DOCUMENT_TYPE_ARTICLE: DocumentType
DOCUMENT_TYPE_FAQ: DocumentType
DOCUMENT_TYPE_CHANGELOG: DocumentType
DOCUMENT_TYPE_POLICY: DocumentType
DOCUMENT_TYPE_RESOLVED_TICKET: DocumentType

class SearchHit(_message.Message):
    __slots__ = ("doc_id", "chunk_id", "title", "heading_path", "text", "url", "score", "doc_type", "version", "similarity", "unit_question", "question_similarity")
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    HEADING_PATH_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    DOC_TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_QUESTION_FIELD_NUMBER: _ClassVar[int]
    QUESTION_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    doc_id: str
    chunk_id: str
    title: str
    heading_path: _containers.RepeatedScalarFieldContainer[str]
    text: str
    url: str
    score: float
    doc_type: DocumentType
    version: str
    similarity: float
    unit_question: str
    question_similarity: float
    def __init__(self, doc_id: _Optional[str] = ..., chunk_id: _Optional[str] = ..., title: _Optional[str] = ..., heading_path: _Optional[_Iterable[str]] = ..., text: _Optional[str] = ..., url: _Optional[str] = ..., score: _Optional[float] = ..., doc_type: _Optional[_Union[DocumentType, str]] = ..., version: _Optional[str] = ..., similarity: _Optional[float] = ..., unit_question: _Optional[str] = ..., question_similarity: _Optional[float] = ...) -> None: ...

class SearchResult(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ...) -> None: ...
