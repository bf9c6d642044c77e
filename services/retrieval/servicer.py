"""The RetrievalService handlers: validate, chunk, embed, store, search."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence

import grpc
import structlog

from aftercare.retrieval.v1 import retrieval_pb2 as pb
from aftercare.retrieval.v1 import retrieval_pb2_grpc
from servicekit.errors import InvalidArgument, Violations
from services.retrieval.chunking import Chunk, Chunker, Format
from services.retrieval.embedding import Embedder
from services.retrieval.store import ChunkData, DocumentMeta, Mode, SearchFilter, Store

log = structlog.get_logger(__name__)

ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_BODY_BYTES = 1024 * 1024
MAX_TITLE_CHARS = 1000
MAX_URL_CHARS = 2048
MAX_LABEL_CHARS = 256  # product, version
MAX_QUERY_CHARS = 2000
MAX_TOP_K = 50
DEFAULT_TOP_K = 5
MAX_DELETE_IDS = 1000
# The whole stream is held in memory so that it can be validated before any write.
MAX_STREAM_DOCUMENTS = 10_000
MAX_STREAM_BYTES = 256 * 1024 * 1024
# Documents chunked, embedded and written together.
WRITE_BATCH = 32
# Bump when chunking changes: stored documents are then re-indexed on their next ingest.
CHUNKER_VERSION = "chunker-1"

_FORMATS: dict[int, Format] = {
    pb.DOCUMENT_FORMAT_UNSPECIFIED: "markdown",
    pb.DOCUMENT_FORMAT_MARKDOWN: "markdown",
    pb.DOCUMENT_FORMAT_HTML: "html",
    pb.DOCUMENT_FORMAT_TEXT: "text",
}
_MODES = {
    pb.SEARCH_MODE_UNSPECIFIED: Mode.HYBRID,
    pb.SEARCH_MODE_HYBRID: Mode.HYBRID,
    pb.SEARCH_MODE_DENSE: Mode.DENSE,
    pb.SEARCH_MODE_KEYWORD: Mode.KEYWORD,
}
_DOC_TYPES = frozenset(pb.DocumentType.values())


def _text_problem(value: str) -> str | None:
    """Why a string is not valid text, or None."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (no lone surrogates)"
    return None


def _check_id(violations: Violations, value: str, field_path: str, prefix: str = "") -> None:
    if not value:
        violations.add(field_path, f"{prefix}is required")
    elif not ID_PATTERN.match(value):
        violations.add(field_path, f"{prefix}must match {ID_PATTERN.pattern}")


def _check_text(
    violations: Violations, value: str, field_path: str, *, max_chars: int, required: bool, prefix: str = ""
) -> None:
    if required and not value.strip():
        violations.add(field_path, f"{prefix}is required")
    elif len(value) > max_chars:
        violations.add(field_path, f"{prefix}must be at most {max_chars} characters")
    elif problem := _text_problem(value):
        violations.add(field_path, f"{prefix}{problem}")


def _validate_document(document: pb.Document, prefix: str, violations: Violations) -> None:
    _check_id(violations, document.tenant_id, "document.tenant_id", prefix)
    _check_id(violations, document.doc_id, "document.doc_id", prefix)
    _check_text(violations, document.title, "document.title", max_chars=MAX_TITLE_CHARS, required=True, prefix=prefix)
    body = document.body
    if not body.strip():
        violations.add("document.body", f"{prefix}is required")
    elif problem := _text_problem(body):
        violations.add("document.body", f"{prefix}{problem}")
    elif len(body.encode("utf-8")) > MAX_BODY_BYTES:
        violations.add("document.body", f"{prefix}must be at most {MAX_BODY_BYTES} bytes of UTF-8")
    _check_text(violations, document.url, "document.url", max_chars=MAX_URL_CHARS, required=False, prefix=prefix)
    for name in ("product", "version"):
        _check_text(
            violations,
            getattr(document, name),
            f"document.{name}",
            max_chars=MAX_LABEL_CHARS,
            required=False,
            prefix=prefix,
        )
    if document.format not in _FORMATS:
        violations.add("document.format", f"{prefix}unknown document format {document.format}")
    if document.doc_type not in _DOC_TYPES:
        violations.add("document.doc_type", f"{prefix}unknown document type {document.doc_type}")


def content_hash(document: pb.Document) -> str:
    """SHA-256 of the normalised document: what, if unchanged, needs no re-indexing."""
    body = "\n".join(line.rstrip() for line in document.body.replace("\r\n", "\n").split("\n")).strip()
    normalised = {
        "title": document.title.strip(),
        "body": body,
        "format": _FORMATS[document.format],
        "doc_type": document.doc_type or pb.DOCUMENT_TYPE_ARTICLE,
        "url": document.url.strip(),
        "product": document.product.strip(),
        "version": document.version.strip(),
        "updated_at": document.updated_at.seconds if document.HasField("updated_at") else 0,
    }
    return hashlib.sha256(json.dumps(normalised, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class RetrievalServicer(retrieval_pb2_grpc.RetrievalServiceServicer):
    def __init__(self, store: Store, embedder: Embedder, chunker: Chunker) -> None:
        self._store = store
        self._embedder = embedder
        self._chunker = chunker
        self._pipeline = f"{embedder.name}|{CHUNKER_VERSION}|{chunker.max_tokens}/{chunker.overlap}"

    async def IngestDocuments(
        self, request_iterator: AsyncIterator[pb.IngestDocumentsRequest], context: grpc.aio.ServicerContext
    ) -> pb.IngestDocumentsResponse:
        started = time.perf_counter()
        documents = await self._receive(request_iterator)
        # Validate everything before writing anything: a bad document rejects the stream.
        violations = Violations()
        seen: dict[tuple[str, str], int] = {}
        for position, document in enumerate(documents):
            prefix = f"document #{position} (doc_id {document.doc_id!r}): "
            _validate_document(document, prefix, violations)
            key = (document.tenant_id, document.doc_id)
            if key in seen:
                violations.add("document.doc_id", f"{prefix}appears twice in the stream (also #{seen[key]})")
            seen.setdefault(key, position)
        violations.raise_if_any()

        hashes = [content_hash(document) for document in documents]
        by_tenant: dict[str, list[str]] = defaultdict(list)
        for document in documents:
            by_tenant[document.tenant_id].append(document.doc_id)
        stored = {
            (tenant, doc_id): version
            for tenant, doc_ids in by_tenant.items()
            for doc_id, version in (await self._store.stored_versions(tenant, doc_ids)).items()
        }

        results: list[pb.IngestResult | None] = [None] * len(documents)
        pending: list[int] = []
        for position, (document, digest) in enumerate(zip(documents, hashes, strict=True)):
            old = stored.get((document.tenant_id, document.doc_id))
            if old and old.content_hash == digest and old.pipeline == self._pipeline:
                results[position] = pb.IngestResult(
                    doc_id=document.doc_id,
                    outcome=pb.INGEST_OUTCOME_UNCHANGED,
                    chunk_count=old.chunk_count,
                    content_hash=digest,
                )
            else:
                pending.append(position)

        chunks_written = 0
        for start in range(0, len(pending), WRITE_BATCH):
            batch = pending[start : start + WRITE_BATCH]
            for position, result in zip(
                batch, await self._index([(documents[i], hashes[i]) for i in batch]), strict=True
            ):
                results[position] = result
                chunks_written += result.chunk_count

        if pending:
            await self._store.flush()
        response = pb.IngestDocumentsResponse(results=[r for r in results if r], chunks_written=chunks_written)
        outcomes = defaultdict(int)
        for result in response.results:
            outcomes[pb.IngestOutcome.Name(result.outcome).removeprefix("INGEST_OUTCOME_").lower()] += 1
        log.info(
            "ingested",
            documents=len(documents),
            chunks_written=chunks_written,
            ms=round((time.perf_counter() - started) * 1000, 1),
            **outcomes,
        )
        return response

    async def _receive(self, request_iterator: AsyncIterator[pb.IngestDocumentsRequest]) -> list[pb.Document]:
        documents: list[pb.Document] = []
        size = 0
        async for request in request_iterator:
            documents.append(request.document)
            size += request.document.ByteSize()
            if len(documents) > MAX_STREAM_DOCUMENTS or size > MAX_STREAM_BYTES:
                raise InvalidArgument(
                    [
                        (
                            "document",
                            f"a stream takes at most {MAX_STREAM_DOCUMENTS} documents and "
                            f"{MAX_STREAM_BYTES} bytes; split it into several streams",
                        )
                    ],
                    reason="STREAM_TOO_LARGE",
                )
        return documents

    async def _index(self, batch: Sequence[tuple[pb.Document, str]]) -> list[pb.IngestResult]:
        """Chunk, embed and write a few documents; CPU work runs off the event loop."""

        def chunk_all() -> list[list[Chunk]]:
            return [
                self._chunker.chunk(
                    document.title.strip(),
                    document.body,
                    _FORMATS[document.format],
                    faq=document.doc_type == pb.DOCUMENT_TYPE_FAQ,
                )
                for document, _ in batch
            ]

        chunked = await asyncio.to_thread(chunk_all)
        texts = [chunk.embed_text for chunks in chunked for chunk in chunks]
        vectors = await asyncio.to_thread(self._embedder.embed_documents, texts)
        results = []
        offset = 0
        for (document, digest), chunks in zip(batch, chunked, strict=True):
            data = [
                ChunkData(chunk.index, chunk.heading_path, chunk.text, chunk.embed_text, vectors[offset + i])
                for i, chunk in enumerate(chunks)
            ]
            offset += len(chunks)
            meta = DocumentMeta(
                tenant_id=document.tenant_id,
                doc_id=document.doc_id,
                title=document.title.strip(),
                url=document.url.strip(),
                doc_type=document.doc_type or pb.DOCUMENT_TYPE_ARTICLE,
                product=document.product.strip(),
                version=document.version.strip(),
                updated_at=document.updated_at.seconds if document.HasField("updated_at") else 0,
                content_hash=digest,
                pipeline=self._pipeline,
            )
            existed = await self._store.replace_document(meta, data)
            outcome = pb.INGEST_OUTCOME_UPDATED if existed else pb.INGEST_OUTCOME_CREATED
            results.append(
                pb.IngestResult(doc_id=document.doc_id, outcome=outcome, chunk_count=len(data), content_hash=digest)
            )
        return results

    async def DeleteDocuments(
        self, request: pb.DeleteDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteDocumentsResponse:
        violations = Violations()
        _check_id(violations, request.tenant_id, "tenant_id")
        if not request.doc_ids:
            violations.add("doc_ids", "at least one doc_id is required")
        elif len(request.doc_ids) > MAX_DELETE_IDS:
            violations.add("doc_ids", f"at most {MAX_DELETE_IDS} ids per call")
        else:
            for position, doc_id in enumerate(request.doc_ids):
                _check_id(violations, doc_id, f"doc_ids[{position}]")
        violations.raise_if_any()

        doc_ids = list(dict.fromkeys(request.doc_ids))
        deleted = await self._store.delete_documents(request.tenant_id, doc_ids)
        if deleted:
            await self._store.flush()
        missing = [doc_id for doc_id in doc_ids if doc_id not in set(deleted)]
        log.info("documents_deleted", tenant_id=request.tenant_id, deleted=len(deleted), missing=len(missing))
        return pb.DeleteDocumentsResponse(deleted_doc_ids=deleted, missing_doc_ids=missing)

    async def Search(self, request: pb.SearchRequest, context: grpc.aio.ServicerContext) -> pb.SearchResponse:
        violations = Violations()
        _check_id(violations, request.tenant_id, "tenant_id")
        _check_text(violations, request.query, "query", max_chars=MAX_QUERY_CHARS, required=True)
        violations.check(0 <= request.top_k <= MAX_TOP_K, "top_k", f"must be between 1 and {MAX_TOP_K} (0: 5)")
        violations.check(request.mode in _MODES, "mode", f"unknown search mode {request.mode}")
        flt = request.filter
        for position, doc_type in enumerate(flt.doc_types):
            violations.check(doc_type in _DOC_TYPES, f"filter.doc_types[{position}]", f"unknown type {doc_type}")
        for name in ("product", "version"):
            _check_text(violations, getattr(flt, name), f"filter.{name}", max_chars=MAX_LABEL_CHARS, required=False)
        violations.raise_if_any()

        search_filter = SearchFilter(
            doc_types=tuple(flt.doc_types),
            product=flt.product.strip(),
            version=flt.version.strip(),
            updated_after=flt.updated_after.seconds if flt.HasField("updated_after") else None,
        )
        vector = await asyncio.to_thread(self._embedder.embed_query, request.query)
        hits = await self._store.search(
            request.tenant_id,
            request.query,
            vector,
            _MODES[request.mode],
            request.top_k or DEFAULT_TOP_K,
            search_filter,
        )
        return pb.SearchResponse(
            hits=[
                pb.SearchHit(
                    doc_id=hit.doc_id,
                    chunk_id=hit.chunk_id,
                    title=hit.title,
                    heading_path=hit.heading_path,
                    text=hit.text,
                    url=hit.url,
                    score=hit.score,
                    doc_type=hit.doc_type,
                    version=hit.version,
                    similarity=hit.similarity,
                )
                for hit in hits
            ],
            embedding_model=self._embedder.name,
        )

    async def GetStats(self, request: pb.GetStatsRequest, context: grpc.aio.ServicerContext) -> pb.GetStatsResponse:
        violations = Violations()
        _check_id(violations, request.tenant_id, "tenant_id")
        violations.raise_if_any()
        documents, chunks = await self._store.stats(request.tenant_id)
        return pb.GetStatsResponse(document_count=documents, chunk_count=chunks, embedding_model=self._embedder.name)
