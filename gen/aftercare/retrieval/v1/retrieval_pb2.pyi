import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DocumentFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOCUMENT_FORMAT_UNSPECIFIED: _ClassVar[DocumentFormat]
    DOCUMENT_FORMAT_MARKDOWN: _ClassVar[DocumentFormat]
    DOCUMENT_FORMAT_HTML: _ClassVar[DocumentFormat]
    DOCUMENT_FORMAT_TEXT: _ClassVar[DocumentFormat]

class DocumentType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOCUMENT_TYPE_UNSPECIFIED: _ClassVar[DocumentType]
    DOCUMENT_TYPE_ARTICLE: _ClassVar[DocumentType]
    DOCUMENT_TYPE_FAQ: _ClassVar[DocumentType]
    DOCUMENT_TYPE_CHANGELOG: _ClassVar[DocumentType]
    DOCUMENT_TYPE_POLICY: _ClassVar[DocumentType]
    DOCUMENT_TYPE_RESOLVED_TICKET: _ClassVar[DocumentType]

class IngestOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INGEST_OUTCOME_UNSPECIFIED: _ClassVar[IngestOutcome]
    INGEST_OUTCOME_CREATED: _ClassVar[IngestOutcome]
    INGEST_OUTCOME_UPDATED: _ClassVar[IngestOutcome]
    INGEST_OUTCOME_UNCHANGED: _ClassVar[IngestOutcome]

class SearchMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEARCH_MODE_UNSPECIFIED: _ClassVar[SearchMode]
    SEARCH_MODE_HYBRID: _ClassVar[SearchMode]
    SEARCH_MODE_DENSE: _ClassVar[SearchMode]
    SEARCH_MODE_KEYWORD: _ClassVar[SearchMode]
DOCUMENT_FORMAT_UNSPECIFIED: DocumentFormat
DOCUMENT_FORMAT_MARKDOWN: DocumentFormat
DOCUMENT_FORMAT_HTML: DocumentFormat
DOCUMENT_FORMAT_TEXT: DocumentFormat
DOCUMENT_TYPE_UNSPECIFIED: DocumentType
DOCUMENT_TYPE_ARTICLE: DocumentType
DOCUMENT_TYPE_FAQ: DocumentType
DOCUMENT_TYPE_CHANGELOG: DocumentType
DOCUMENT_TYPE_POLICY: DocumentType
DOCUMENT_TYPE_RESOLVED_TICKET: DocumentType
INGEST_OUTCOME_UNSPECIFIED: IngestOutcome
INGEST_OUTCOME_CREATED: IngestOutcome
INGEST_OUTCOME_UPDATED: IngestOutcome
INGEST_OUTCOME_UNCHANGED: IngestOutcome
SEARCH_MODE_UNSPECIFIED: SearchMode
SEARCH_MODE_HYBRID: SearchMode
SEARCH_MODE_DENSE: SearchMode
SEARCH_MODE_KEYWORD: SearchMode

class Document(_message.Message):
    __slots__ = ("tenant_id", "doc_id", "title", "body", "format", "doc_type", "url", "product", "version", "updated_at")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DOC_TYPE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    doc_id: str
    title: str
    body: str
    format: DocumentFormat
    doc_type: DocumentType
    url: str
    product: str
    version: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., doc_id: _Optional[str] = ..., title: _Optional[str] = ..., body: _Optional[str] = ..., format: _Optional[_Union[DocumentFormat, str]] = ..., doc_type: _Optional[_Union[DocumentType, str]] = ..., url: _Optional[str] = ..., product: _Optional[str] = ..., version: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IngestDocumentsRequest(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: Document
    def __init__(self, document: _Optional[_Union[Document, _Mapping]] = ...) -> None: ...

class IngestResult(_message.Message):
    __slots__ = ("doc_id", "outcome", "chunk_count", "content_hash")
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    doc_id: str
    outcome: IngestOutcome
    chunk_count: int
    content_hash: str
    def __init__(self, doc_id: _Optional[str] = ..., outcome: _Optional[_Union[IngestOutcome, str]] = ..., chunk_count: _Optional[int] = ..., content_hash: _Optional[str] = ...) -> None: ...

class IngestDocumentsResponse(_message.Message):
    __slots__ = ("results", "chunks_written")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[IngestResult]
    chunks_written: int
    def __init__(self, results: _Optional[_Iterable[_Union[IngestResult, _Mapping]]] = ..., chunks_written: _Optional[int] = ...) -> None: ...

class DeleteDocumentsRequest(_message.Message):
    __slots__ = ("tenant_id", "doc_ids")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DOC_IDS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    doc_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant_id: _Optional[str] = ..., doc_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteDocumentsResponse(_message.Message):
    __slots__ = ("deleted_doc_ids", "missing_doc_ids")
    DELETED_DOC_IDS_FIELD_NUMBER: _ClassVar[int]
    MISSING_DOC_IDS_FIELD_NUMBER: _ClassVar[int]
    deleted_doc_ids: _containers.RepeatedScalarFieldContainer[str]
    missing_doc_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deleted_doc_ids: _Optional[_Iterable[str]] = ..., missing_doc_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchFilter(_message.Message):
    __slots__ = ("doc_types", "product", "version", "updated_after")
    DOC_TYPES_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    doc_types: _containers.RepeatedScalarFieldContainer[DocumentType]
    product: str
    version: str
    updated_after: _timestamp_pb2.Timestamp
    def __init__(self, doc_types: _Optional[_Iterable[_Union[DocumentType, str]]] = ..., product: _Optional[str] = ..., version: _Optional[str] = ..., updated_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("tenant_id", "query", "top_k", "mode", "filter", "answer_units")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ANSWER_UNITS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    query: str
    top_k: int
    mode: SearchMode
    filter: SearchFilter
    answer_units: bool
    def __init__(self, tenant_id: _Optional[str] = ..., query: _Optional[str] = ..., top_k: _Optional[int] = ..., mode: _Optional[_Union[SearchMode, str]] = ..., filter: _Optional[_Union[SearchFilter, _Mapping]] = ..., answer_units: _Optional[bool] = ...) -> None: ...

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

class SearchResponse(_message.Message):
    __slots__ = ("hits", "embedding_model", "corrected_query", "corrections")
    HITS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    CORRECTED_QUERY_FIELD_NUMBER: _ClassVar[int]
    CORRECTIONS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    embedding_model: str
    corrected_query: str
    corrections: _containers.RepeatedCompositeFieldContainer[SpellingCorrection]
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ..., embedding_model: _Optional[str] = ..., corrected_query: _Optional[str] = ..., corrections: _Optional[_Iterable[_Union[SpellingCorrection, _Mapping]]] = ...) -> None: ...

class SpellingCorrection(_message.Message):
    __slots__ = ("written", "corrected")
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    CORRECTED_FIELD_NUMBER: _ClassVar[int]
    written: str
    corrected: str
    def __init__(self, written: _Optional[str] = ..., corrected: _Optional[str] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("document_count", "chunk_count", "embedding_model")
    DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    document_count: int
    chunk_count: int
    embedding_model: str
    def __init__(self, document_count: _Optional[int] = ..., chunk_count: _Optional[int] = ..., embedding_model: _Optional[str] = ...) -> None: ...

class ListDocumentsRequest(_message.Message):
    __slots__ = ("tenant_id", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class DocumentSummary(_message.Message):
    __slots__ = ("doc_id", "title", "url", "doc_type", "product", "version", "updated_at", "content_hash", "chunk_count")
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    DOC_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    doc_id: str
    title: str
    url: str
    doc_type: DocumentType
    product: str
    version: str
    updated_at: _timestamp_pb2.Timestamp
    content_hash: str
    chunk_count: int
    def __init__(self, doc_id: _Optional[str] = ..., title: _Optional[str] = ..., url: _Optional[str] = ..., doc_type: _Optional[_Union[DocumentType, str]] = ..., product: _Optional[str] = ..., version: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., content_hash: _Optional[str] = ..., chunk_count: _Optional[int] = ...) -> None: ...

class ListDocumentsResponse(_message.Message):
    __slots__ = ("documents", "next_page_token")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[DocumentSummary]
    next_page_token: str
    def __init__(self, documents: _Optional[_Iterable[_Union[DocumentSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GlossaryEntry(_message.Message):
    __slots__ = ("term", "expansion")
    TERM_FIELD_NUMBER: _ClassVar[int]
    EXPANSION_FIELD_NUMBER: _ClassVar[int]
    term: str
    expansion: str
    def __init__(self, term: _Optional[str] = ..., expansion: _Optional[str] = ...) -> None: ...

class SetGlossaryRequest(_message.Message):
    __slots__ = ("tenant_id", "entries")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    entries: _containers.RepeatedCompositeFieldContainer[GlossaryEntry]
    def __init__(self, tenant_id: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[GlossaryEntry, _Mapping]]] = ...) -> None: ...

class SetGlossaryResponse(_message.Message):
    __slots__ = ("entry_count", "glossary_version", "reindex_document_count")
    ENTRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    GLOSSARY_VERSION_FIELD_NUMBER: _ClassVar[int]
    REINDEX_DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    entry_count: int
    glossary_version: str
    reindex_document_count: int
    def __init__(self, entry_count: _Optional[int] = ..., glossary_version: _Optional[str] = ..., reindex_document_count: _Optional[int] = ...) -> None: ...

class GetGlossaryRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetGlossaryResponse(_message.Message):
    __slots__ = ("entries", "glossary_version", "pending_document_count")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    GLOSSARY_VERSION_FIELD_NUMBER: _ClassVar[int]
    PENDING_DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[GlossaryEntry]
    glossary_version: str
    pending_document_count: int
    def __init__(self, entries: _Optional[_Iterable[_Union[GlossaryEntry, _Mapping]]] = ..., glossary_version: _Optional[str] = ..., pending_document_count: _Optional[int] = ...) -> None: ...
