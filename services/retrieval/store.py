"""The knowledge base in Milvus, in three collections (schema.py): every tenant's chunks,
one record per document naming the version key of its current chunks (searches return
only chunks of that version), and each tenant's glossary (glossaries.py).

Tenant isolation lives here: every read, write and delete carries a tenant clause, or
primary keys that start with the tenant, built from a validated id, never from a caller's
expression (expressions.py).

A changed document is replaced in four steps: a pending row names the new
version key, its new chunks are written under that key, its record is
switched to it, and the old chunks and the pending row are deleted. Chunk ids
are `tenant/doc/version/index` (documents.py), so every step works by primary key, never
by scanning rows; a pending row left by a crash names the orphaned chunks, and
the next replace or delete of the document removes them. Searches (search.py) drop hits
whose version is not the record's (versions.py), so a search sees the old version or the
new one, never both and never neither.

On a file URI the store runs Milvus Lite (lite_engine.py), Milvus 2.5's own engine; writes
are flushed once they pause (flushing.py).

pymilvus calls block, so each step runs in a worker thread under one lock; searches interleave between
the steps. The steps of one document are serialised by a per-document lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import subprocess
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import structlog
from pymilvus import MilvusClient

from services.retrieval import glossaries, schema
from services.retrieval.documents import (
    ALL_RECORDS,
    COPIED,
    PENDING,
    RECORD_FIELDS,
    ChunkData,
    DocumentMeta,
    DocumentRecord,
    Replaced,
    StoredChunk,
    chunk_id_for,
    chunk_ids_for,
    chunk_rows,
    chunk_version,
    pending_key,
    record_key,
    record_of,
    record_row,
    version_key,
)
from services.retrieval.expressions import quote, tenant_is
from services.retrieval.flushing import FlushBatcher
from services.retrieval.lite_engine import LITE_CHANNEL, LITE_DENSE_INDEX, is_lite, lite_engine, prepare_lite
from services.retrieval.search import Hit, Mode, Query, Searcher, SearchFilter
from services.retrieval.text import Glossary
from services.retrieval.versions import CurrentVersions

log = structlog.get_logger(__name__)

T = TypeVar("T")

_BATCH = 1000


@dataclass
class Store:
    client: MilvusClient
    collection: str
    # Milvus Lite: this process is the collections' only writer (its lock file sees to it).
    lite: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _doc_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary
    )
    # Milvus Lite only: pending rows of finished replaces, deleted together at the next flush
    # (a delete by key scans in the engine's local mode: ~13 ms each at 100k chunks). One
    # left by a crash names the current version and is harmless: the next replace treats it
    # as stale, like the record, and deleting the document deletes it.
    _finished_pending: set[str] = field(default_factory=set)
    # Milvus Lite only: the engine process pymilvus started for the file (None on a server).
    _engine: subprocess.Popen[bytes] | None = None
    _versions: CurrentVersions = field(init=False)
    _searcher: Searcher = field(init=False)
    _flushes: FlushBatcher = field(init=False)

    def __post_init__(self) -> None:
        self._versions = CurrentVersions(self.client, self.documents, exact=self.lite)
        self._searcher = Searcher(self.client, self.collection, self._versions)
        self._flushes = FlushBatcher(self.flush)

    @property
    def documents(self) -> str:
        return f"{self.collection}_documents"

    @property
    def glossaries(self) -> str:
        return f"{self.collection}_glossaries"

    @classmethod
    def open(cls, uri: str, collection: str, dim: int, dense_index: str | None = None) -> Store:
        """Blocking: connect, create the collections if needed, load them. `dense_index`
        is the index a new chunk collection gets (default: HNSW, AUTOINDEX on Lite)."""
        lite = is_lite(uri)
        if lite:
            prepare_lite(uri)
        client = MilvusClient(uri=uri, **({"grpc_options": LITE_CHANNEL} if lite else {}))
        store = cls(client=client, collection=collection, lite=lite)
        if client.has_collection(collection):
            schema.check_dimension(client, collection, dim)
        else:
            schema.create_chunks(
                client, collection, dim, dense_index=dense_index or (LITE_DENSE_INDEX if lite else "HNSW")
            )
        if not client.has_collection(store.glossaries):
            schema.create_glossaries(client, store.glossaries)
        backfill = not client.has_collection(store.documents)
        if backfill:
            schema.create_documents(client, store.documents)
        # Needed after every (re)open of Milvus Lite, harmless on a server.
        for name in (collection, store.documents, store.glossaries):
            client.load_collection(name)
        if backfill:
            store._backfill_records()
        read_at = time.monotonic()
        for row in store._iterate(store.documents, ALL_RECORDS, ["tenant_id", "doc_id", "version_key", "chunk_count"]):
            store._versions.copy(
                row["tenant_id"], row["doc_id"], (row["version_key"], int(row["chunk_count"])), read_at
            )
        if lite:
            store._engine = lite_engine(uri)
        return store

    def _backfill_records(self) -> None:
        """Chunks written before document records existed get one, marked for re-indexing
        (an empty indexing matches no current one)."""
        fields = ["chunk_id", "tenant_id", "doc_id", "content_hash", "pipeline", "chunk_count"]
        records = [
            record_row(
                row["tenant_id"],
                DocumentRecord(
                    row["doc_id"],
                    chunk_version(row["chunk_id"]),
                    row["content_hash"],
                    row["pipeline"],
                    "",
                    row["chunk_count"],
                ),
            )
            for row in self._iterate(self.collection, "chunk_index == 0", fields)
        ]
        for start in range(0, len(records), _BATCH):
            self.client.upsert(self.documents, records[start : start + _BATCH])
        if records:
            log.info("document_records_backfilled", documents=len(records))

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        def locked() -> T:
            with self._lock:
                return fn(*args)

        return await asyncio.to_thread(locked)

    def engine_exit_code(self) -> int | None:
        """Milvus Lite: the engine's exit code once it has stopped; None while it runs (or on a server)."""
        return self._engine.poll() if self._engine is not None else None

    async def close(self) -> None:
        self._flushes.cancel()
        if self._flushes.unflushed and self.engine_exit_code() is None:
            await self.flush()
        await self._run(self.client.close)
        self._searcher.close()

    async def flush(self) -> None:
        """Seal what was written: sealed segments get the dense index (growing ones are
        searched row by row), so few large segments search faster than many small ones."""
        self._flushes.flushing()
        await self._run(self._delete_finished_pending)
        for name in (self.collection, self.documents, self.glossaries):
            await self._run(self.client.flush, name)

    def _delete_finished_pending(self) -> None:
        keys = sorted(self._finished_pending)
        self._finished_pending.clear()
        for start in range(0, len(keys), _BATCH):
            self.client.delete(self.documents, ids=keys[start : start + _BATCH])

    def writing(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold off flushing while a batch of writes runs (embedding between two writes can
        take seconds on a busy CPU): bulk ingestion then makes few, large segments."""
        return self._flushes.writing()

    @contextlib.asynccontextmanager
    async def _document_locks(self, tenant_id: str, doc_ids: Iterable[str]) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            # Sorted: two callers locking overlapping sets never wait on each other in a cycle.
            for doc_id in sorted(set(doc_ids)):
                lock = self._doc_locks.get((tenant_id, doc_id))
                if lock is None:
                    lock = self._doc_locks[(tenant_id, doc_id)] = asyncio.Lock()
                await stack.enter_async_context(lock)
            yield

    # Reads -------------------------------------------------------------------

    async def records(self, tenant_id: str, doc_ids: Sequence[str]) -> dict[str, DocumentRecord]:
        return await self._run(self._records, tenant_id, list(doc_ids))

    def _records(self, tenant_id: str, doc_ids: list[str]) -> dict[str, DocumentRecord]:
        records: dict[str, DocumentRecord] = {}
        for start in range(0, len(doc_ids), _BATCH):
            keys = [record_key(tenant_id, doc_id) for doc_id in doc_ids[start : start + _BATCH]]
            for row in self.client.get(self.documents, ids=keys, output_fields=RECORD_FIELDS):
                records[row["doc_id"]] = record_of(row)
        return records

    def _pending(self, tenant_id: str, doc_ids: list[str]) -> dict[str, DocumentRecord]:
        """Versions whose writing started but never finished (a crash): their chunks are orphans."""
        pending: dict[str, DocumentRecord] = {}
        for start in range(0, len(doc_ids), _BATCH):
            keys = [pending_key(tenant_id, doc_id) for doc_id in doc_ids[start : start + _BATCH]]
            for row in self.client.get(self.documents, ids=keys, output_fields=RECORD_FIELDS):
                record = record_of(row)
                pending[record.doc_id] = dataclasses.replace(record, chunk_count=PENDING - record.chunk_count)
        return pending

    async def stale_documents(self, tenant_id: str, indexing: str) -> list[DocumentRecord]:
        """The tenant's documents indexed otherwise than `indexing` (another glossary, say)."""
        return await self._run(self._stale_documents, tenant_id, indexing)

    def _stale_documents(self, tenant_id: str, indexing: str) -> list[DocumentRecord]:
        return [
            record_of(row)
            for row in self._iterate(
                self.documents,
                f"{tenant_is(tenant_id)} and {ALL_RECORDS} and indexing != {quote(indexing)}",
                RECORD_FIELDS,
            )
        ]

    async def indexings(self) -> dict[str, set[str]]:
        """Every tenant with documents, and the indexings its documents were built with."""
        return await self._run(self._indexings)

    def _indexings(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for row in self._iterate(self.documents, ALL_RECORDS, ["tenant_id", "indexing"]):
            found.setdefault(row["tenant_id"], set()).add(row["indexing"])
        return found

    def _iterate(self, collection: str, expr: str, fields: list[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        iterator = self.client.query_iterator(collection, batch_size=_BATCH, filter=expr, output_fields=fields)
        try:
            while batch := iterator.next():
                rows += batch
        finally:
            iterator.close()
        return rows

    async def stats(self, tenant_id: str) -> tuple[int, int]:
        """(documents, chunks) of one tenant, as searches see them."""
        return await self._run(self._stats, tenant_id)

    def _stats(self, tenant_id: str) -> tuple[int, int]:
        if self._versions.exact:
            known = self._versions.tenant(tenant_id)
            return len(known), sum(chunks for _, chunks in known.values())
        # Counted by the server rather than iterated here: one call whatever the size.
        (documents,) = self.client.query(
            self.documents, filter=f"{tenant_is(tenant_id)} and {ALL_RECORDS}", output_fields=["count(*)"]
        )
        if not documents["count(*)"]:
            return 0, 0
        # Chunks of a version being written right now (or orphaned by a crash) count too.
        (chunks,) = self.client.query(self.collection, filter=tenant_is(tenant_id), output_fields=["count(*)"])
        return int(documents["count(*)"]), int(chunks["count(*)"])

    async def list_documents(
        self, tenant_id: str, after_doc_id: str, limit: int
    ) -> list[tuple[DocumentRecord, dict[str, Any]]]:
        """A page of the tenant's documents in doc id order after `after_doc_id`, each with
        the metadata stored on its first chunk (title, url, doc type, product, version...)."""
        return await self._run(self._list_documents, tenant_id, after_doc_id, limit)

    def _list_documents(
        self, tenant_id: str, after_doc_id: str, limit: int
    ) -> list[tuple[DocumentRecord, dict[str, Any]]]:
        expr = f"{tenant_is(tenant_id)} and {ALL_RECORDS}"
        if after_doc_id:
            expr += f" and doc_id > {quote(after_doc_id)}"
        rows = self._iterate(self.documents, expr, RECORD_FIELDS)
        records = sorted((record_of(row) for row in rows), key=lambda record: record.doc_id)[:limit]
        first_chunks = (
            {
                row["doc_id"]: row
                for row in self.client.get(
                    self.collection,
                    ids=[chunk_id_for(tenant_id, r.doc_id, r.version_key, 0) for r in records if r.chunk_count],
                    output_fields=["doc_id", "title", *COPIED],
                )
            }
            if records
            else {}
        )
        return [(record, first_chunks.get(record.doc_id, {})) for record in records]

    async def read_chunks(self, tenant_id: str, record: DocumentRecord) -> tuple[dict[str, Any], list[StoredChunk]]:
        """A stored version of a document: its metadata and its chunks, in order."""
        return await self._run(self._read_chunks, tenant_id, record)

    def _read_chunks(self, tenant_id: str, record: DocumentRecord) -> tuple[dict[str, Any], list[StoredChunk]]:
        ids = chunk_ids_for(tenant_id, record.doc_id, record.version_key, record.chunk_count)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), _BATCH):
            rows += self.client.get(
                self.collection,
                ids=ids[start : start + _BATCH],
                output_fields=["chunk_id", "chunk_index", "title", "heading_path", "text", "unit_question", *COPIED],
            )
        rows.sort(key=lambda row: row["chunk_index"])
        meta = {name: rows[0][name] for name in ("title", *COPIED)} if rows else {}
        return meta, [
            StoredChunk(row["chunk_index"], tuple(row["heading_path"] or ()), row["text"], row["unit_question"])
            for row in rows
        ]

    async def search(
        self,
        tenant_id: str,
        keyword_query: str,
        vector: np.ndarray,
        mode: Mode,
        top_k: int,
        search_filter: SearchFilter,
    ) -> list[Hit]:
        """`keyword_query` is already normalised (keyword_text); empty skips the keyword side."""
        query = Query(tenant_id, keyword_query, vector, search_filter)
        return await self._run(self._searcher.search, query, mode, top_k)

    # Writes ------------------------------------------------------------------

    async def replace_document(
        self, meta: DocumentMeta, chunks: Sequence[ChunkData], *, expected_version: str | None = None
    ) -> Replaced:
        """Make `chunks` the document's content. With `expected_version`, only if that is
        still the current version (a re-index must not undo a newer ingest)."""
        key = version_key(meta.content_hash, meta.pipeline, meta.indexing)
        async with self._document_locks(meta.tenant_id, [meta.doc_id]):
            record, pending = await self._run(self._record_and_pending, meta.tenant_id, meta.doc_id)
            if expected_version is not None and (record is None or record.version_key != expected_version):
                return Replaced(existed=record is not None, applied=False)
            stale = [old for old in (record, pending) if old is not None and old.version_key != key]
            new = DocumentRecord(meta.doc_id, key, meta.content_hash, meta.pipeline, meta.indexing, len(chunks))
            await self._run(self._upsert_pending, meta.tenant_id, new, pending is None)
            # Chunk ids carry the version key: no row has them unless a record names the key.
            unwritten = all(old.version_key != key for old in (record, pending) if old is not None)
            await self._write_chunks(meta, key, chunks, unwritten)
            await self._switch_version(meta.tenant_id, new, record is None)
            await self._delete_stale_chunks(meta.tenant_id, meta.doc_id, stale)
        self._flushes.written(len(chunks) + 1)
        return Replaced(existed=record is not None, applied=True)

    def _record_and_pending(self, tenant_id: str, doc_id: str) -> tuple[DocumentRecord | None, DocumentRecord | None]:
        return self._records(tenant_id, [doc_id]).get(doc_id), self._pending(tenant_id, [doc_id]).get(doc_id)

    async def _switch_version(self, tenant_id: str, record: DocumentRecord, absent: bool) -> None:
        await self._run(self._upsert_record, tenant_id, record, absent)

    async def _delete_stale_chunks(self, tenant_id: str, doc_id: str, versions: Sequence[DocumentRecord]) -> None:
        await self._run(self._delete_versions, tenant_id, doc_id, versions, self._versions.exact)

    def _upsert_pending(self, tenant_id: str, record: DocumentRecord, absent: bool) -> None:
        row = record_row(tenant_id, dataclasses.replace(record, chunk_count=PENDING - record.chunk_count))
        key = pending_key(tenant_id, record.doc_id)
        # This row must outlive the next flush: it names the chunks being written.
        self._finished_pending.discard(key)
        self._write(self.documents, [{**row, "key": key}], absent)

    def _write(self, collection: str, rows: list[dict[str, Any]], absent: bool) -> None:
        """Upsert rows; insert them when no row has their keys yet (`absent`) and this is
        the only writer (Milvus Lite). An upsert looks every key up first, and Milvus 2.5's
        local mode scans for it: measured at 100k chunks, 143 ms a chunk upsert against
        a few ms an insert. With a server, replicas may race on one document, and only an
        upsert keeps its keys unique (Milvus does not enforce them on insert)."""
        if absent and self._versions.exact:
            self.client.insert(collection, rows)
        else:
            self.client.upsert(collection, rows)

    def _delete_versions(
        self, tenant_id: str, doc_id: str, versions: Sequence[DocumentRecord], defer_pending: bool = False
    ) -> None:
        """Delete these versions' chunks, then the document's pending row (all by primary key;
        the row at the next flush with `defer_pending`)."""
        ids = [
            chunk_id
            for version in versions
            for chunk_id in chunk_ids_for(tenant_id, doc_id, version.version_key, version.chunk_count)
        ]
        for start in range(0, len(ids), _BATCH):
            self.client.delete(self.collection, ids=ids[start : start + _BATCH])
        key = pending_key(tenant_id, doc_id)
        if defer_pending:
            self._finished_pending.add(key)
        else:
            self._finished_pending.discard(key)
            self.client.delete(self.documents, ids=[key])

    async def _write_chunks(self, meta: DocumentMeta, key: str, chunks: Sequence[ChunkData], absent: bool) -> None:
        rows = chunk_rows(meta, key, chunks)
        for start in range(0, len(rows), _BATCH):
            await self._run(self._write, self.collection, rows[start : start + _BATCH], absent)

    def _upsert_record(self, tenant_id: str, record: DocumentRecord, absent: bool) -> None:
        self._write(self.documents, [record_row(tenant_id, record)], absent)
        self._versions.copy(tenant_id, record.doc_id, (record.version_key, record.chunk_count), time.monotonic())

    async def delete_documents(self, tenant_id: str, doc_ids: Sequence[str]) -> list[str]:
        """Delete documents with all their chunks; returns the ids that existed."""
        async with self._document_locks(tenant_id, doc_ids):
            existing = await self.records(tenant_id, doc_ids)
            found = [doc_id for doc_id in doc_ids if doc_id in existing]
            if found:
                await self._run(self._delete_documents, tenant_id, [existing[doc_id] for doc_id in found])
        if found:
            self._flushes.written(len(found))
        return found

    def _delete_documents(self, tenant_id: str, records: list[DocumentRecord]) -> None:
        pending = self._pending(tenant_id, [record.doc_id for record in records])
        for start in range(0, len(records), _BATCH):
            batch = records[start : start + _BATCH]
            # The records go first: from then on searches drop the chunks.
            self.client.delete(self.documents, ids=[record_key(tenant_id, record.doc_id) for record in batch])
            for record in batch:
                self._versions.copy(tenant_id, record.doc_id, None, 0.0)
            for record in batch:
                orphans = [pending[record.doc_id]] if record.doc_id in pending else []
                self._delete_versions(tenant_id, record.doc_id, [record, *orphans])

    async def texts(self, tenant_id: str) -> list[str]:
        """Every stored chunk's words (title, headings, question, text) of one tenant: what
        the spelling of its queries is read against (spelling.py). The store's lock is taken
        a batch at a time, so that searches go on while a large tenant is read."""
        return await asyncio.to_thread(self._texts, tenant_id)

    def _texts(self, tenant_id: str) -> list[str]:
        fields = ["title", "heading_path", "unit_question", "text"]
        with self._lock:
            iterator = self.client.query_iterator(
                self.collection, batch_size=_BATCH, filter=tenant_is(tenant_id), output_fields=fields
            )
        texts: list[str] = []
        try:
            while True:
                with self._lock:
                    batch = iterator.next()
                if not batch:
                    return texts
                texts += [
                    " ".join([row["title"], *(row["heading_path"] or []), row.get("unit_question") or "", row["text"]])
                    for row in batch
                ]
        finally:
            with self._lock:
                iterator.close()

    # Glossaries ----------------------------------------------------------------

    async def glossary(self, tenant_id: str) -> Glossary:
        return await self._run(glossaries.read_glossary, self.client, self.glossaries, tenant_id)

    async def set_glossary(self, tenant_id: str, glossary: Glossary) -> None:
        """Replace a tenant's glossary: entries first, then the head row (the switch), then
        the old entries, so a reader sees the old glossary or the new one, whole."""
        rows, head = glossaries.glossary_rows(tenant_id, glossary)
        # "/glossary" is no document id (ids never hold '/'): one writer per tenant glossary.
        async with self._document_locks(tenant_id, ["/glossary"]):
            for start in range(0, len(rows), _BATCH):
                await self._run(self.client.upsert, self.glossaries, rows[start : start + _BATCH])
            await self._run(self.client.upsert, self.glossaries, [head])
            await self._run(self.client.delete, self.glossaries, glossaries.superseded_entries(tenant_id, glossary))
        self._flushes.written(len(rows) + 1)
