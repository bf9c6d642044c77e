"""The RetrievalService handlers: validate, then index (services.retrieval.indexing) or search."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import cast

import grpc
import structlog

from aftercare.retrieval.v1 import retrieval_pb2 as pb
from aftercare.retrieval.v1 import retrieval_pb2_grpc
from servicekit.errors import InvalidArgument, Violations
from servicekit.ids import id_problem, is_id
from services.retrieval.chunking import Format
from services.retrieval.documents import DocumentMeta
from services.retrieval.indexing import Indexer, Source
from services.retrieval.search import Mode, SearchFilter
from services.retrieval.store import Store
from services.retrieval.text import Glossary, GlossaryEntry

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 1024 * 1024
MAX_TITLE_CHARS = 1000
MAX_URL_CHARS = 2048
MAX_LABEL_CHARS = 256  # product, version
MAX_QUERY_CHARS = 2000
MAX_TOP_K = 50
DEFAULT_TOP_K = 5
MAX_DELETE_IDS = 1000
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# The whole stream is held in memory so that it can be validated before any write.
MAX_STREAM_DOCUMENTS = 10_000
MAX_STREAM_BYTES = 256 * 1024 * 1024
# Documents chunked, embedded and written together.
WRITE_BATCH = 32
MAX_GLOSSARY_ENTRIES = 2000
MAX_TERM_CHARS = 64
MAX_EXPANSION_CHARS = 256

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
    if (problem := id_problem(value)) is not None:
        violations.add(field_path, f"{prefix}{problem}")


def _decode_page_token(token: str, violations: Violations) -> str:
    """The doc id a page starts after ("" for the first page)."""
    if not token:
        return ""
    try:
        doc_id = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeError, ValueError):
        doc_id = ""
    if not is_id(doc_id):
        violations.add("page_token", "is not a token this service issued")
        return ""
    return doc_id


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


def _validate_glossary(request: pb.SetGlossaryRequest) -> Violations:
    violations = Violations()
    _check_id(violations, request.tenant_id, "tenant_id")
    if len(request.entries) > MAX_GLOSSARY_ENTRIES:
        violations.add("entries", f"at most {MAX_GLOSSARY_ENTRIES} entries")
        return violations
    seen: dict[str, int] = {}
    for position, entry in enumerate(request.entries):
        field_path = f"entries[{position}]"
        term = entry.term.strip()
        _check_text(violations, term, f"{field_path}.term", max_chars=MAX_TERM_CHARS, required=True)
        _check_text(
            violations, entry.expansion.strip(), f"{field_path}.expansion", max_chars=MAX_EXPANSION_CHARS, required=True
        )
        if term and not any(character.isalnum() for character in term):
            violations.add(f"{field_path}.term", "must contain a letter or a digit")
        # Unique ignoring case: an all-lower-case term matches every casing of itself.
        if term and (first := seen.setdefault(term.casefold(), position)) != position:
            violations.add(f"{field_path}.term", f"duplicates entries[{first}].term (terms are unique ignoring case)")
    return violations


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
    def __init__(self, store: Store, indexer: Indexer) -> None:
        self._store = store
        self._indexer = indexer

    async def IngestDocuments(
        self,
        request_iterator: AsyncIterator[pb.IngestDocumentsRequest],
        context: grpc.aio.ServicerContext[pb.IngestDocumentsRequest, pb.IngestDocumentsResponse],
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
        glossaries = {tenant: await self._indexer.glossary(tenant, fresh=True) for tenant in by_tenant}
        stored = {
            (tenant, doc_id): record
            for tenant, doc_ids in by_tenant.items()
            for doc_id, record in (await self._store.records(tenant, doc_ids)).items()
        }

        results: list[pb.IngestResult | None] = [None] * len(documents)
        pending: list[int] = []
        for position, (document, digest) in enumerate(zip(documents, hashes, strict=True)):
            old = stored.get((document.tenant_id, document.doc_id))
            indexing = self._indexer.indexing(glossaries[document.tenant_id])
            if old and (old.content_hash, old.pipeline, old.indexing) == (digest, self._indexer.pipeline, indexing):
                results[position] = pb.IngestResult(
                    doc_id=document.doc_id,
                    outcome=pb.INGEST_OUTCOME_UNCHANGED,
                    chunk_count=old.chunk_count,
                    content_hash=digest,
                )
            else:
                pending.append(position)

        async with self._store.writing():
            chunks_written = await self._index_pending(documents, hashes, pending, glossaries, results)
        response = pb.IngestDocumentsResponse(results=[r for r in results if r], chunks_written=chunks_written)
        outcomes: dict[str, int] = defaultdict(int)
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

    async def _index_pending(
        self,
        documents: list[pb.Document],
        hashes: list[str],
        pending: list[int],
        glossaries: dict[str, Glossary],
        results: list[pb.IngestResult | None],
    ) -> int:
        """Index the documents at `pending` positions, filling in their results."""
        chunks_written = 0
        for tenant, glossary in glossaries.items():
            mine = [position for position in pending if documents[position].tenant_id == tenant]
            for start in range(0, len(mine), WRITE_BATCH):
                batch = mine[start : start + WRITE_BATCH]
                indexed = await self._indexer.index([_source(documents[i], hashes[i]) for i in batch], glossary)
                for position, (chunk_count, replaced) in zip(batch, indexed, strict=True):
                    outcome = pb.INGEST_OUTCOME_UPDATED if replaced.existed else pb.INGEST_OUTCOME_CREATED
                    results[position] = pb.IngestResult(
                        doc_id=documents[position].doc_id,
                        outcome=outcome,
                        chunk_count=chunk_count,
                        content_hash=hashes[position],
                    )
                    chunks_written += chunk_count
            # The glossary changed while this stream was indexed with the old one.
            if mine and (await self._indexer.glossary(tenant, fresh=True)).digest != glossary.digest:
                self._indexer.schedule_reindex(tenant)
        return chunks_written

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

    async def DeleteDocuments(
        self,
        request: pb.DeleteDocumentsRequest,
        context: grpc.aio.ServicerContext[pb.DeleteDocumentsRequest, pb.DeleteDocumentsResponse],
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
        self._indexer.words_changed(request.tenant_id)
        missing = [doc_id for doc_id in doc_ids if doc_id not in set(deleted)]
        log.info("documents_deleted", tenant_id=request.tenant_id, deleted=len(deleted), missing=len(missing))
        return pb.DeleteDocumentsResponse(deleted_doc_ids=deleted, missing_doc_ids=missing)

    async def Search(
        self, request: pb.SearchRequest, context: grpc.aio.ServicerContext[pb.SearchRequest, pb.SearchResponse]
    ) -> pb.SearchResponse:
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
            answer_units=request.answer_units,
        )
        query = await self._indexer.query(request.tenant_id, request.query)
        hits = await self._store.search(
            request.tenant_id,
            query.keywords,
            query.vector,
            _MODES[request.mode],
            request.top_k or DEFAULT_TOP_K,
            search_filter,
        )
        return pb.SearchResponse(
            corrected_query=query.corrected,
            corrections=[pb.SpellingCorrection(written=c.written, corrected=c.corrected) for c in query.corrections],
            hits=[
                pb.SearchHit(
                    doc_id=hit.doc_id,
                    chunk_id=hit.chunk_id,
                    title=hit.title,
                    heading_path=hit.heading_path,
                    text=hit.text,
                    url=hit.url,
                    score=hit.score,
                    # Stored as a plain int; protoc's stubs type an enum value as their own int subclass.
                    doc_type=cast(pb.DocumentType, hit.doc_type),
                    version=hit.version,
                    similarity=hit.similarity,
                    unit_question=hit.unit_question,
                    # A unit's vector is its question's: its similarity is the question's.
                    question_similarity=hit.similarity if hit.unit_question else 0.0,
                )
                for hit in hits
            ],
            embedding_model=self._indexer.embedding_model,
        )

    async def GetStats(
        self, request: pb.GetStatsRequest, context: grpc.aio.ServicerContext[pb.GetStatsRequest, pb.GetStatsResponse]
    ) -> pb.GetStatsResponse:
        violations = Violations()
        _check_id(violations, request.tenant_id, "tenant_id")
        violations.raise_if_any()
        documents, chunks = await self._store.stats(request.tenant_id)
        return pb.GetStatsResponse(
            document_count=documents, chunk_count=chunks, embedding_model=self._indexer.embedding_model
        )

    async def ListDocuments(
        self,
        request: pb.ListDocumentsRequest,
        context: grpc.aio.ServicerContext[pb.ListDocumentsRequest, pb.ListDocumentsResponse],
    ) -> pb.ListDocumentsResponse:
        violations = Violations()
        _check_id(violations, request.tenant_id, "tenant_id")
        violations.check(0 <= request.page_size <= MAX_PAGE_SIZE, "page_size", f"must be 0 to {MAX_PAGE_SIZE}")
        after = _decode_page_token(request.page_token, violations)
        violations.raise_if_any()
        size = request.page_size or DEFAULT_PAGE_SIZE
        # One more than asked: whether it exists says whether there is a next page.
        page = await self._store.list_documents(request.tenant_id, after, size + 1)
        response = pb.ListDocumentsResponse()
        for record, meta in page[:size]:
            summary = response.documents.add(
                doc_id=record.doc_id,
                title=meta.get("title", ""),
                url=meta.get("url", ""),
                doc_type=int(meta.get("doc_type", 0)),
                product=meta.get("product", ""),
                version=meta.get("version", ""),
                content_hash=record.content_hash,
                chunk_count=record.chunk_count,
            )
            if meta.get("updated_at"):
                summary.updated_at.FromSeconds(int(meta["updated_at"]))
        if len(page) > size:
            response.next_page_token = base64.urlsafe_b64encode(page[size - 1][0].doc_id.encode()).decode()
        return response

    async def SetGlossary(
        self,
        request: pb.SetGlossaryRequest,
        context: grpc.aio.ServicerContext[pb.SetGlossaryRequest, pb.SetGlossaryResponse],
    ) -> pb.SetGlossaryResponse:
        _validate_glossary(request).raise_if_any()
        glossary = Glossary(GlossaryEntry(e.term.strip(), e.expansion.strip()) for e in request.entries)
        reindexing = await self._indexer.set_glossary(request.tenant_id, glossary)
        return pb.SetGlossaryResponse(
            entry_count=len(glossary.entries), glossary_version=glossary.digest, reindex_document_count=reindexing
        )

    async def GetGlossary(
        self,
        request: pb.GetGlossaryRequest,
        context: grpc.aio.ServicerContext[pb.GetGlossaryRequest, pb.GetGlossaryResponse],
    ) -> pb.GetGlossaryResponse:
        violations = Violations()
        _check_id(violations, request.tenant_id, "tenant_id")
        violations.raise_if_any()
        glossary = await self._indexer.glossary(request.tenant_id, fresh=True)
        return pb.GetGlossaryResponse(
            entries=[pb.GlossaryEntry(term=e.term, expansion=e.expansion) for e in glossary.entries],
            glossary_version=glossary.digest,
            pending_document_count=await self._indexer.pending(request.tenant_id, glossary),
        )


def _source(document: pb.Document, digest: str) -> Source:
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
        # Set by the indexer.
        pipeline="",
        indexing="",
    )
    return Source(meta, document.body, _FORMATS[document.format])
