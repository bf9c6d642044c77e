"""Bodies of the knowledge router (gateway/routes/knowledge.py): search, and the knowledge base's
documents.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, StrictInt

from aftercare.retrieval.v1 import retrieval_pb2
from gateway.schemas.common import Id, IsoDateTime, RequestBody, enum_name, proto_enum, time_field, to_timestamp

# --- knowledge base (retrieval) --------------------------------------------

DocType = Literal["unspecified", "article", "faq", "changelog", "policy", "resolved_ticket"]


class SearchRequest(RequestBody):
    query: str = Field(min_length=1, max_length=2000)
    top_k: StrictInt = Field(default=5, ge=1, le=50)
    mode: Literal["hybrid", "dense", "keyword"] = "hybrid"

    def to_proto(self, tenant_id: str) -> retrieval_pb2.SearchRequest:
        return retrieval_pb2.SearchRequest(
            tenant_id=tenant_id,
            query=self.query,
            top_k=self.top_k,
            mode=proto_enum(retrieval_pb2.SearchMode, self.mode),
        )


class SearchHit(BaseModel):
    doc_id: str
    chunk_id: str
    title: str
    heading_path: list[str]
    text: str
    url: str
    score: float = Field(description="Cosine for dense, BM25 for keyword, RRF for hybrid.")
    similarity: float = Field(description="Cosine similarity to the query, in every mode.")
    unit_question: str = Field(
        description="The question this chunk answers when it is an answer unit (an FAQ entry's question, a "
        "resolved ticket's problem, a how-to section's task); empty for chunks that answer no one question."
    )
    question_similarity: float = Field(description="Cosine similarity of the query to unit_question (0 without one).")
    doc_type: DocType
    version: str


class SearchReply(BaseModel):
    hits: list[SearchHit]
    embedding_model: str

    @classmethod
    def from_proto(cls, response: retrieval_pb2.SearchResponse) -> SearchReply:
        return cls(
            hits=[
                SearchHit(
                    doc_id=h.doc_id,
                    chunk_id=h.chunk_id,
                    title=h.title,
                    heading_path=list(h.heading_path),
                    text=h.text,
                    url=h.url,
                    score=h.score,
                    similarity=h.similarity,
                    unit_question=h.unit_question,
                    question_similarity=h.question_similarity,
                    doc_type=enum_name(retrieval_pb2.DocumentType, h.doc_type),
                    version=h.version,
                )
                for h in response.hits
            ],
            embedding_model=response.embedding_model,
        )


# --- knowledge-base documents (retrieval) ----------------------------------


class DocumentIn(RequestBody):
    doc_id: Id = Field(description="Your stable id; uploading the same id again replaces the document.")
    title: str = Field(min_length=1, max_length=512)
    body: str = Field(min_length=1, max_length=1_000_000)
    format: Literal["markdown", "html", "text"] = "markdown"
    doc_type: Literal["article", "faq", "changelog", "policy", "resolved_ticket"] = "article"
    url: str = Field(default="", max_length=2048)
    product: str = Field(default="", max_length=128)
    version: str = Field(default="", max_length=64)
    updated_at: IsoDateTime | None = None

    def to_proto(self, tenant_id: str) -> retrieval_pb2.Document:
        return retrieval_pb2.Document(
            tenant_id=tenant_id,
            doc_id=self.doc_id,
            title=self.title,
            body=self.body,
            format=proto_enum(retrieval_pb2.DocumentFormat, self.format),
            doc_type=proto_enum(retrieval_pb2.DocumentType, self.doc_type),
            url=self.url,
            product=self.product,
            version=self.version,
            updated_at=to_timestamp(self.updated_at),
        )


class UploadDocumentsRequest(RequestBody):
    documents: list[DocumentIn] = Field(min_length=1, max_length=200)


class IngestResult(BaseModel):
    doc_id: str
    outcome: Literal["unspecified", "created", "updated", "unchanged"]
    chunk_count: int
    content_hash: str


class UploadDocumentsReply(BaseModel):
    results: list[IngestResult]
    chunks_written: int

    @classmethod
    def from_proto(cls, response: retrieval_pb2.IngestDocumentsResponse) -> UploadDocumentsReply:
        return cls(
            results=[
                IngestResult(
                    doc_id=r.doc_id,
                    outcome=enum_name(retrieval_pb2.IngestOutcome, r.outcome),
                    chunk_count=r.chunk_count,
                    content_hash=r.content_hash,
                )
                for r in response.results
            ],
            chunks_written=response.chunks_written,
        )


class DocumentSummary(BaseModel):
    doc_id: str
    title: str
    url: str
    doc_type: DocType
    product: str
    version: str
    updated_at: datetime | None
    content_hash: str
    chunk_count: int


class DocumentListReply(BaseModel):
    documents: list[DocumentSummary]
    next_page_token: str | None

    @classmethod
    def from_proto(cls, response: retrieval_pb2.ListDocumentsResponse) -> DocumentListReply:
        return cls(
            documents=[
                DocumentSummary(
                    doc_id=d.doc_id,
                    title=d.title,
                    url=d.url,
                    doc_type=enum_name(retrieval_pb2.DocumentType, d.doc_type),
                    product=d.product,
                    version=d.version,
                    updated_at=time_field(d, "updated_at"),
                    content_hash=d.content_hash,
                    chunk_count=d.chunk_count,
                )
                for d in response.documents
            ],
            next_page_token=response.next_page_token or None,
        )


class DeleteDocumentReply(BaseModel):
    doc_id: str
    deleted: Literal[True] = True
