"""The knowledge base in Milvus, in three collections:

- `<name>`: every tenant's chunks (text, dense vector, BM25 sparse vector, metadata);
- `<name>_documents`: one record per document naming the version key of its
  current chunks; searches return only chunks of that version;
- `<name>_glossaries`: each tenant's glossary, a head row naming the current
  version and one row per entry (Milvus, not files: with MILVUS_URI every
  replica shares it, and it lives and dies with the chunks it shaped).

Tenant isolation lives here: every read, write and delete carries a
`tenant_id == "<tenant>"` clause, or primary keys that start with the tenant,
built by this module from a validated id, never from a caller's expression. Values that enter a filter are quoted with
`quote` (Milvus Lite has no filter templating: it rejects `{name}` params).

A changed document is replaced in four steps: a pending row names the new
version key, its new chunks are written under that key, its record is
switched to it, and the old chunks and the pending row are deleted. Chunk ids
are `tenant/doc/version/index`, so every step works by primary key, never by
scanning rows; a pending row left by a crash names the orphaned chunks, and
the next replace or delete of the document removes them. Searches drop hits whose version is not the record's, so
a search sees the old version or the new one, never both and never neither.
(With a Milvus server and several replicas writing, a search on one replica
may still miss a document for the moment another replica switches it.)

Milvus Lite is Milvus 2.5's own engine (the `milvus` binary in the milvus-lite
package, started by pymilvus for a file URI and stopped when this process lets go
of the file's lock), so dense search, BM25 and filters work alike on Lite and on a
server; only the dense index differs (Lite's local mode builds no HNSW).

pymilvus calls block, so each step runs in a worker thread under one lock; searches interleave between
the steps. The steps of one document are serialised by a per-document lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import functools
import hashlib
import json
import logging
import os
import subprocess
import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import structlog
from pymilvus import DataType, Function, FunctionType, MilvusClient, MilvusException

from services.retrieval.text import Glossary, GlossaryEntry

log = structlog.get_logger(__name__)

# milvus-lite 2.5.1 imports pkg_resources (pinned setuptools keeps it), which warns on import.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

T = TypeVar("T")

# Milvus caps one query's result window at 16384 rows; a document never gets near it.
_QUERY_LIMIT = 16384
_BATCH = 1000
_HNSW = {"M": 16, "efConstruction": 200}
# Milvus Lite's local mode refuses HNSW ("only support FLAT IVF_FLAT AUTOINDEX").
_LITE_DENSE_INDEX = "AUTOINDEX"
# pymilvus pings every 10 s, even when idle; the engine's gRPC server allows one ping per
# 5 minutes without calls and answers more with GOAWAY "too_many_pings", which can fail
# a call in flight. On a local socket (whose other end the watchdog watches) 10 minutes do.
_LITE_CHANNEL = {"grpc.keepalive_time_ms": 600_000}
# glog settings of the Milvus engine that Milvus Lite starts (kept where already set).
LITE_ENGINE_LOGGING = {"GLOG_logtostderr": "1", "GLOG_minloglevel": "2"}
# What Milvus 2.5 answers to a BM25 search of a collection that never held a row.
_EMPTY_BM25_ERROR = "Invalid sparse row: NaN or Inf value"
# Hybrid search fuses this many candidates from each side (more if more hits are wanted).
HYBRID_CANDIDATES = 20
# Weight of the keyword side in the hybrid score; the dense side gets the rest.
KEYWORD_WEIGHT = 0.5
# Extra hits fetched so that dropping chunks of a superseded version (a document
# being replaced right now) still leaves the hits asked for.
_STALE_MARGIN = 16
# With a server, how long a document's version read earlier is trusted by searches that
# find only its chunks: it bounds how long chunks left by another replica's crash in the
# middle of a delete can show (a replace elsewhere is seen at once, see _current_versions).
_VERSIONS_TRUSTED_S = 300.0
# Writes are flushed (sealed into a segment) once no write has run for this long,
# or once this many rows wait, or at the latest this long after the first one.
# Bounded by rows rather than time, segment sizes do not depend on how busy the CPU
# is; 2,000 unflushed rows cost a search ~50 ms on Milvus Lite while they wait.
FLUSH_QUIET_S = 1.0
FLUSH_MAX_ROWS = 2000
FLUSH_MAX_DELAY_S = 60.0

# A server then shows this process its own writes at once (ingest, then search), and
# never a record switched before the chunks it names; Milvus Lite is always current.
_CONSISTENCY = "Session"
# Every document record (a query iterator wants some filter); pending rows store
# _PENDING - chunk_count, a negative number, so that no record filter matches them.
_ALL = "chunk_count >= 0"
_PENDING = -1
_RECORD_FIELDS = ["doc_id", "version_key", "content_hash", "pipeline", "indexing", "chunk_count"]
_OUTPUT = ["chunk_id", "doc_id", "title", "heading_path", "text", "url", "doc_type", "version", "unit_question"]
_COPIED = ["url", "doc_type", "product", "version", "updated_at", "content_hash", "pipeline"]


class _DropSessionTsWarning(logging.Filter):
    """Milvus Lite hands query iterators no session timestamp; pymilvus then warns on
    every iterator and uses a client-side one, which is right for Lite."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to get mvccTs" not in record.getMessage()


logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(_DropSessionTsWarning())


class Mode(enum.Enum):
    HYBRID = "hybrid"
    DENSE = "dense"
    KEYWORD = "keyword"


def quote(value: str | int) -> str:
    """A Milvus expression literal. JSON string escaping is what the Milvus parser reads
    (quotes, backslashes and newlines included), so no value can close the literal."""
    return str(int(value)) if isinstance(value, int) else json.dumps(value, ensure_ascii=False)


def _in(values: Iterable[str | int]) -> str:
    return f"[{', '.join(map(quote, values))}]"


def version_key(content_hash: str, pipeline: str, indexing: str) -> str:
    return hashlib.sha256(f"{content_hash}|{pipeline}|{indexing}".encode()).hexdigest()[:12]


def chunk_version(chunk_id: str) -> str:
    """The version key inside a chunk id: tenant/doc/version/index (ids never hold '/')."""
    return chunk_id.rsplit("/", 2)[-2]


@dataclass(frozen=True)
class DocumentMeta:
    tenant_id: str
    doc_id: str
    title: str
    url: str
    doc_type: int
    product: str
    version: str
    updated_at: int
    content_hash: str
    # Chunking (chunker version and sizes): a change needs the document's body again.
    pipeline: str
    # Embedding model, keyword normalisation and glossary: a change re-indexes stored chunks.
    indexing: str


@dataclass(frozen=True)
class ChunkData:
    index: int
    heading_path: tuple[str, ...]
    text: str
    search_text: str
    vector: np.ndarray
    # Set on an answer unit: the question its text answers (its vector is that question's).
    unit_question: str = ""


@dataclass(frozen=True)
class StoredChunk:
    index: int
    heading_path: tuple[str, ...]
    text: str
    unit_question: str = ""


@dataclass(frozen=True)
class SearchFilter:
    doc_types: tuple[int, ...] = ()
    product: str = ""
    version: str = ""
    updated_after: int | None = None
    # Answer units instead of passages: the two never mix in one search.
    answer_units: bool = False


@dataclass(frozen=True)
class _Query:
    """One search: whose, its normalised keywords, its vector and its filter."""

    tenant_id: str
    keywords: str
    vector: np.ndarray
    search_filter: SearchFilter

    @functools.cached_property
    def expression(self) -> str:
        # Built once per search, though a hybrid search sends it twice.
        return _filter_expression(self.tenant_id, self.search_filter)


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    doc_id: str
    title: str
    heading_path: list[str]
    text: str
    url: str
    doc_type: int
    version: str
    score: float
    similarity: float
    unit_question: str = ""


@dataclass(frozen=True)
class DocumentRecord:
    doc_id: str
    version_key: str
    content_hash: str
    pipeline: str
    indexing: str
    chunk_count: int


@dataclass(frozen=True)
class Replaced:
    existed: bool
    # False when the caller's expected version was no longer current: nothing changed.
    applied: bool


@dataclass
class Store:
    client: MilvusClient
    collection: str
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _doc_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary
    )
    # Each tenant's documents, doc id -> (current version key, chunks), kept here as well
    # (read at open, updated by this store's writes): a search needs the current version
    # of every document it finds, to drop chunks of a version being written or replaced.
    # Milvus Lite has one process (its lock file sees to it), so there the copy is exact,
    # and GetStats reads it too (Lite counts by scanning rows). With a server, other
    # replicas write too: see _current_versions for when the copy is trusted.
    _versions: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)
    _versions_exact: bool = False
    # Server only: when each copied version was last read from the server (monotonic s).
    _versions_read_at: dict[tuple[str, str], float] = field(default_factory=dict)
    _last_write: float = 0.0
    _writers: int = 0
    _first_unflushed: float | None = None
    _unflushed_rows: int = 0
    _flusher: asyncio.Task[None] | None = None
    # Milvus Lite only: pending rows of finished replaces, deleted together at the next flush
    # (a delete by key scans in the engine's local mode: ~13 ms each at 100k chunks). One
    # left by a crash names the current version and is harmless: the next replace treats it
    # as stale, like the record, and deleting the document deletes it.
    _finished_pending: set[str] = field(default_factory=set)
    # Milvus Lite only: the engine process pymilvus started for the file (None on a server).
    _engine: subprocess.Popen[bytes] | None = None
    # Runs a hybrid search's keyword side while the searching thread runs the dense side:
    # Milvus serves both at once (its own threads), so a hybrid costs about the slower one.
    _keyword_side: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyword-side")
    )

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
        lite = "://" not in uri  # a Milvus Lite file, not a server
        if lite and Path(uri).is_dir():
            raise RuntimeError(
                f"{uri} is a folder written by Milvus Lite 3 (before aftercare moved to Milvus Lite 2.5's "
                "engine), which cannot read it: move it away and ingest the documents again"
            )
        if lite:
            # The engine (started by pymilvus with this environment) logs through glog: by
            # default ~1 MB of INFO files in /tmp per start. Errors to stderr, no files.
            os.environ.update({key: os.environ.get(key, value) for key, value in LITE_ENGINE_LOGGING.items()})
        client = MilvusClient(uri=uri, **({"grpc_options": _LITE_CHANNEL} if lite else {}))
        store = cls(client=client, collection=collection)
        if client.has_collection(collection):
            store._check_dimension(dim)
        else:
            store._create_chunks(dim, dense_index=dense_index or (_LITE_DENSE_INDEX if lite else "HNSW"))
        if not client.has_collection(store.glossaries):
            store._create_glossaries()
        backfill = not client.has_collection(store.documents)
        if backfill:
            store._create_documents()
        # Needed after every (re)open of Milvus Lite, harmless on a server.
        for name in (collection, store.documents, store.glossaries):
            client.load_collection(name)
        if backfill:
            store._backfill_records()
        store._versions_exact = lite
        read_at = time.monotonic()
        for row in store._iterate(store.documents, _ALL, ["tenant_id", "doc_id", "version_key", "chunk_count"]):
            store._copy_version(row["tenant_id"], row["doc_id"], (row["version_key"], int(row["chunk_count"])), read_at)
        if lite:
            store._engine = _lite_engine(uri)
        return store

    def _check_dimension(self, dim: int) -> None:
        fields = self.client.describe_collection(self.collection)["fields"]
        if "unit_question" not in {spec["name"] for spec in fields}:
            raise RuntimeError(
                f"collection {self.collection!r} was made before answer units existed: ingest the documents "
                "again into a new collection (COLLECTION) or remove the data folder"
            )
        for spec in fields:
            if spec["name"] == "dense" and int(spec["params"]["dim"]) != dim:
                raise RuntimeError(
                    f"collection {self.collection!r} holds {spec['params']['dim']}-d vectors but the "
                    f"embedding model makes {dim}-d ones; use another collection or re-create it"
                )

    def _create_chunks(self, dim: int, *, dense_index: str) -> None:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("chunk_id", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("tenant_id", DataType.VARCHAR, max_length=128)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=128)
        schema.add_field("chunk_index", DataType.INT64)
        schema.add_field("chunk_count", DataType.INT64)
        schema.add_field("title", DataType.VARCHAR, max_length=4096)
        schema.add_field("heading_path", DataType.JSON)
        schema.add_field("text", DataType.VARCHAR, max_length=65535)
        # What BM25 reads: title, headings and text, glossary-expanded and stemmed by the
        # service (Milvus' standard analyzer does not stem), so that analyzer suffices.
        schema.add_field("search_text", DataType.VARCHAR, max_length=65535, enable_analyzer=True)
        schema.add_field("url", DataType.VARCHAR, max_length=4096)
        schema.add_field("doc_type", DataType.INT64)
        schema.add_field("product", DataType.VARCHAR, max_length=512)
        schema.add_field("version", DataType.VARCHAR, max_length=512)
        schema.add_field("updated_at", DataType.INT64)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
        schema.add_field("pipeline", DataType.VARCHAR, max_length=1024)
        # Empty on a passage; on an answer unit, the question it answers (its `dense` is
        # that question's vector, so a dense search over units matches question to question).
        schema.add_field("unit_question", DataType.VARCHAR, max_length=4096)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="search_text_bm25",
                function_type=FunctionType.BM25,
                input_field_names=["search_text"],
                output_field_names=["sparse"],
            )
        )
        index = self.client.prepare_index_params()
        if dense_index == "HNSW":
            # pymilvus 3.0.2 silently drops build params unless they are nested like this.
            index.add_index(field_name="dense", index_type="HNSW", metric_type="COSINE", params={"params": _HNSW})
        else:
            index.add_index(field_name="dense", index_type=dense_index, metric_type="COSINE")
        index.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        index.add_index(field_name="tenant_id", index_type="INVERTED")
        index.add_index(field_name="doc_id", index_type="INVERTED")
        index.add_index(field_name="unit_question", index_type="INVERTED")
        self.client.create_collection(
            self.collection, schema=schema, index_params=index, consistency_level=_CONSISTENCY
        )
        params = self.client.describe_index(self.collection, "dense").get("params", {})
        if dense_index == "HNSW" and {key: int(params.get(key, -1)) for key in _HNSW} != _HNSW:
            log.warning("hnsw_params_not_applied", expected=_HNSW, got=params)
        log.info("collection_created", collection=self.collection, dim=dim)

    def _create_small(self, name: str, schema: Any) -> None:
        # Milvus refuses a collection without a vector field: these get a 2-d placeholder.
        schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
        index = self.client.prepare_index_params()
        index.add_index(field_name="placeholder", index_type="FLAT", metric_type="L2")
        index.add_index(field_name="tenant_id", index_type="INVERTED")
        self.client.create_collection(name, schema=schema, index_params=index, consistency_level=_CONSISTENCY)
        log.info("collection_created", collection=name)

    def _create_documents(self) -> None:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=300)
        schema.add_field("tenant_id", DataType.VARCHAR, max_length=128)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=128)
        schema.add_field("version_key", DataType.VARCHAR, max_length=64)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
        schema.add_field("pipeline", DataType.VARCHAR, max_length=1024)
        schema.add_field("indexing", DataType.VARCHAR, max_length=1024)
        schema.add_field("chunk_count", DataType.INT64)
        self._create_small(self.documents, schema)

    def _create_glossaries(self) -> None:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("row_id", DataType.VARCHAR, is_primary=True, max_length=300)
        schema.add_field("tenant_id", DataType.VARCHAR, max_length=128)
        schema.add_field("version", DataType.VARCHAR, max_length=64)
        # -1 for the head row, else the entry's position.
        schema.add_field("position", DataType.INT64)
        schema.add_field("entry_count", DataType.INT64)
        schema.add_field("term", DataType.VARCHAR, max_length=1024)
        schema.add_field("expansion", DataType.VARCHAR, max_length=4096)
        self._create_small(self.glossaries, schema)

    def _backfill_records(self) -> None:
        """Chunks written before document records existed get one, marked for re-indexing
        (an empty indexing matches no current one)."""
        fields = ["chunk_id", "tenant_id", "doc_id", "content_hash", "pipeline", "chunk_count"]
        records = [
            _record_row(
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
        if self._flusher:
            self._flusher.cancel()
        if self._first_unflushed is not None and self.engine_exit_code() is None:
            await self.flush()
        await self._run(self.client.close)
        self._keyword_side.shutdown()

    async def flush(self) -> None:
        """Seal what was written: sealed segments get the dense index (growing ones are
        searched row by row), so few large segments search faster than many small ones."""
        self._first_unflushed = None
        self._unflushed_rows = 0
        await self._run(self._delete_finished_pending)
        for name in (self.collection, self.documents, self.glossaries):
            await self._run(self.client.flush, name)

    def _delete_finished_pending(self) -> None:
        keys = sorted(self._finished_pending)
        self._finished_pending.clear()
        for start in range(0, len(keys), _BATCH):
            self.client.delete(self.documents, ids=keys[start : start + _BATCH])

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """Hold off flushing while a batch of writes runs (embedding between two writes can
        take seconds on a busy CPU): bulk ingestion then makes few, large segments."""
        self._writers += 1
        try:
            yield
        finally:
            self._writers -= 1
            self._last_write = time.monotonic()

    def _written(self, rows: int) -> None:
        """Flush once writes pause, not after each one."""
        now = time.monotonic()
        self._last_write = now
        self._unflushed_rows += rows
        if self._first_unflushed is None:
            self._first_unflushed = now
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_when_quiet())

    async def _flush_when_quiet(self) -> None:
        while self._first_unflushed is not None:
            now = time.monotonic()
            quiet_since = now if self._writers else self._last_write
            due = min(quiet_since + FLUSH_QUIET_S, self._first_unflushed + FLUSH_MAX_DELAY_S)
            if due > now and self._unflushed_rows < FLUSH_MAX_ROWS:
                await asyncio.sleep(due - now)
                continue
            try:
                await self.flush()
            except Exception:
                # Unflushed rows stay searchable, only slower; the next write retries.
                log.exception("flush_failed")
                return

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
            keys = [_record_key(tenant_id, doc_id) for doc_id in doc_ids[start : start + _BATCH]]
            for row in self.client.get(self.documents, ids=keys, output_fields=_RECORD_FIELDS):
                records[row["doc_id"]] = _record(row)
        return records

    def _pending(self, tenant_id: str, doc_ids: list[str]) -> dict[str, DocumentRecord]:
        """Versions whose writing started but never finished (a crash): their chunks are orphans."""
        pending: dict[str, DocumentRecord] = {}
        for start in range(0, len(doc_ids), _BATCH):
            keys = [_pending_key(tenant_id, doc_id) for doc_id in doc_ids[start : start + _BATCH]]
            for row in self.client.get(self.documents, ids=keys, output_fields=_RECORD_FIELDS):
                record = _record(row)
                pending[record.doc_id] = dataclasses.replace(record, chunk_count=_PENDING - record.chunk_count)
        return pending

    async def stale_documents(self, tenant_id: str, indexing: str) -> list[DocumentRecord]:
        """The tenant's documents indexed otherwise than `indexing` (another glossary, say)."""
        return await self._run(self._stale_documents, tenant_id, indexing)

    def _stale_documents(self, tenant_id: str, indexing: str) -> list[DocumentRecord]:
        return [
            _record(row)
            for row in self._iterate(
                self.documents,
                f"{_tenant(tenant_id)} and {_ALL} and indexing != {quote(indexing)}",
                _RECORD_FIELDS,
            )
        ]

    async def indexings(self) -> dict[str, set[str]]:
        """Every tenant with documents, and the indexings its documents were built with."""
        return await self._run(self._indexings)

    def _indexings(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for row in self._iterate(self.documents, _ALL, ["tenant_id", "indexing"]):
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
        if self._versions_exact:
            known = self._versions.get(tenant_id, {})
            return len(known), sum(chunks for _, chunks in known.values())
        # Counted by the server rather than iterated here: one call whatever the size.
        (documents,) = self.client.query(
            self.documents, filter=f"{_tenant(tenant_id)} and {_ALL}", output_fields=["count(*)"]
        )
        if not documents["count(*)"]:
            return 0, 0
        # Chunks of a version being written right now (or orphaned by a crash) count too.
        (chunks,) = self.client.query(self.collection, filter=_tenant(tenant_id), output_fields=["count(*)"])
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
        expr = f"{_tenant(tenant_id)} and {_ALL}"
        if after_doc_id:
            expr += f" and doc_id > {quote(after_doc_id)}"
        rows = self._iterate(self.documents, expr, _RECORD_FIELDS)
        records = sorted((_record(row) for row in rows), key=lambda record: record.doc_id)[:limit]
        first_chunks = (
            {
                row["doc_id"]: row
                for row in self.client.get(
                    self.collection,
                    ids=[_chunk_id(tenant_id, r.doc_id, r.version_key, 0) for r in records if r.chunk_count],
                    output_fields=["doc_id", "title", *_COPIED],
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
        ids = _chunk_ids(tenant_id, record.doc_id, record.version_key, record.chunk_count)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), _BATCH):
            rows += self.client.get(
                self.collection,
                ids=ids[start : start + _BATCH],
                output_fields=["chunk_id", "chunk_index", "title", "heading_path", "text", "unit_question", *_COPIED],
            )
        rows.sort(key=lambda row: row["chunk_index"])
        meta = {name: rows[0][name] for name in ("title", *_COPIED)} if rows else {}
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
        query = _Query(tenant_id, keyword_query, vector, search_filter)
        return await self._run(self._search, query, mode, top_k)

    def _search(self, query: _Query, mode: Mode, top_k: int) -> list[Hit]:
        if mode is not Mode.HYBRID:
            return self._search_one(query, mode, top_k)
        # Two searches and nothing more: both return whole chunks, the keyword side with
        # their vectors, which give their similarity.
        candidates = max(HYBRID_CANDIDATES, 2 * top_k)
        keyword_side = self._keyword_side.submit(self._ann, query, Mode.KEYWORD, candidates, [*_OUTPUT, "dense"])
        dense = self._ann(query, Mode.DENSE, candidates, _OUTPUT)
        keyword = keyword_side.result()
        current = self._current_versions(query.tenant_id, [*dense, *keyword])
        similarity = {raw["entity"]["chunk_id"]: float(raw["distance"]) for raw in dense if _is_current(raw, current)}
        bm25 = {raw["entity"]["chunk_id"]: _bm25(raw) for raw in keyword if _is_current(raw, current)}
        rows = {raw["entity"]["chunk_id"]: raw["entity"] for raw in [*dense, *keyword]}
        for chunk_id in bm25:
            if chunk_id not in similarity:
                similarity[chunk_id] = _cosine(query.vector, rows[chunk_id]["dense"])
        scores = fuse(similarity, bm25)
        chosen = sorted(scores, key=lambda chunk_id: scores[chunk_id], reverse=True)[:top_k]
        return [_hit(rows[c], scores[c], similarity[c]) for c in chosen]

    def _search_one(self, query: _Query, mode: Mode, top_k: int) -> list[Hit]:
        if mode is Mode.KEYWORD and not query.keywords:
            return []
        # A dense hit's distance is its cosine similarity; a keyword hit's needs its vector.
        fields = _OUTPUT if mode is Mode.DENSE else [*_OUTPUT, "dense"]
        limit = top_k
        while True:
            found = self._ann(query, mode, limit, fields)
            current = self._current_versions(query.tenant_id, found)
            fresh = [raw for raw in found if _is_current(raw, current)]
            # Chunks of a superseded version (a replace under way) took places: ask for more.
            if len(fresh) >= top_k or len(found) < limit:
                break
            limit += top_k + len(found) - len(fresh)
        fresh = fresh[:top_k]
        return [
            _hit(
                raw["entity"],
                float(raw["distance"]) if mode is Mode.DENSE else _bm25(raw),
                float(raw["distance"]) if mode is Mode.DENSE else _cosine(query.vector, raw["entity"]["dense"]),
            )
            for raw in fresh
        ]

    def _ann(self, query: _Query, mode: Mode, limit: int, fields: list[str]) -> list[dict[str, Any]]:
        if mode is Mode.DENSE:
            data: list[Any] = [query.vector.tolist()]
            params: dict[str, Any] = {"metric_type": "COSINE", "params": {"ef": max(64, limit)}}
        elif query.keywords:
            data, params = [query.keywords], {"metric_type": "BM25"}
        else:
            return []
        anns_field = "dense" if mode is Mode.DENSE else "sparse"
        try:
            found = self.client.search(
                self.collection,
                data=data,
                anns_field=anns_field,
                filter=query.expression,
                limit=limit,
                output_fields=fields,
                search_params=params,
            )
        except MilvusException as error:
            # BM25 over a collection that never held a row divides by its zero mean length
            # (Milvus 2.5 then refuses the NaN in the query's sparse row): nothing to find.
            if mode is Mode.KEYWORD and _EMPTY_BM25_ERROR in str(error):
                return []
            raise
        return list(found[0])

    def _current_versions(self, tenant_id: str, found: Iterable[dict[str, Any]]) -> dict[str, str]:
        """The current version of each document that has chunks among `found`."""
        versions_found: dict[str, set[str]] = {}
        for raw in found:
            entity = raw["entity"]
            versions_found.setdefault(entity["doc_id"], set()).add(chunk_version(entity["chunk_id"]))
        known = self._versions.get(tenant_id, {})
        if not self._versions_exact:
            # With a server, the copy is trusted for a document only while a search finds
            # chunks of the copied version alone, for at most _VERSIONS_TRUSTED_S: a chunk of
            # any other version (another replica's replace or new document) makes it read the
            # record again, in one call for all such documents. So a replace elsewhere is
            # seen as soon as its new chunks are found; until then, the old version stays
            # searchable (never both, never neither) as long as its chunks are there.
            now = time.monotonic()
            unsure = sorted(
                doc_id
                for doc_id, versions in versions_found.items()
                if doc_id not in known
                or versions != {known[doc_id][0]}
                or now - self._versions_read_at.get((tenant_id, doc_id), 0.0) > _VERSIONS_TRUSTED_S
            )
            if unsure:
                rows = self.client.get(
                    self.documents,
                    ids=[_record_key(tenant_id, doc_id) for doc_id in unsure],
                    output_fields=["doc_id", "version_key", "chunk_count"],
                )
                fresh = {row["doc_id"]: (row["version_key"], int(row["chunk_count"])) for row in rows}
                for doc_id in unsure:
                    self._copy_version(tenant_id, doc_id, fresh.get(doc_id), now)
                known = self._versions.get(tenant_id, {})
        return {doc_id: known[doc_id][0] for doc_id in versions_found if doc_id in known}

    def _copy_version(self, tenant_id: str, doc_id: str, version: tuple[str, int] | None, read_at: float) -> None:
        """Keep (version key, chunks) as the document's current version; None: it has none."""
        if version is None:
            self._versions.get(tenant_id, {}).pop(doc_id, None)
            self._versions_read_at.pop((tenant_id, doc_id), None)
            return
        self._versions.setdefault(tenant_id, {})[doc_id] = version
        if not self._versions_exact:
            self._versions_read_at[(tenant_id, doc_id)] = read_at

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
        self._written(len(chunks) + 1)
        return Replaced(existed=record is not None, applied=True)

    def _record_and_pending(self, tenant_id: str, doc_id: str) -> tuple[DocumentRecord | None, DocumentRecord | None]:
        return self._records(tenant_id, [doc_id]).get(doc_id), self._pending(tenant_id, [doc_id]).get(doc_id)

    async def _switch_version(self, tenant_id: str, record: DocumentRecord, absent: bool) -> None:
        await self._run(self._upsert_record, tenant_id, record, absent)

    async def _delete_stale_chunks(self, tenant_id: str, doc_id: str, versions: Sequence[DocumentRecord]) -> None:
        await self._run(self._delete_versions, tenant_id, doc_id, versions, self._versions_exact)

    def _upsert_pending(self, tenant_id: str, record: DocumentRecord, absent: bool) -> None:
        row = _record_row(tenant_id, dataclasses.replace(record, chunk_count=_PENDING - record.chunk_count))
        key = _pending_key(tenant_id, record.doc_id)
        # This row must outlive the next flush: it names the chunks being written.
        self._finished_pending.discard(key)
        self._write(self.documents, [{**row, "key": key}], absent)

    def _write(self, collection: str, rows: list[dict[str, Any]], absent: bool) -> None:
        """Upsert rows; insert them when no row has their keys yet (`absent`) and this is
        the only writer (Milvus Lite). An upsert looks every key up first, and Milvus 2.5's
        local mode scans for it: measured at 100k chunks, 143 ms a chunk upsert against
        a few ms an insert. With a server, replicas may race on one document, and only an
        upsert keeps its keys unique (Milvus does not enforce them on insert)."""
        if absent and self._versions_exact:
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
            for chunk_id in _chunk_ids(tenant_id, doc_id, version.version_key, version.chunk_count)
        ]
        for start in range(0, len(ids), _BATCH):
            self.client.delete(self.collection, ids=ids[start : start + _BATCH])
        key = _pending_key(tenant_id, doc_id)
        if defer_pending:
            self._finished_pending.add(key)
        else:
            self._finished_pending.discard(key)
            self.client.delete(self.documents, ids=[key])

    async def _write_chunks(self, meta: DocumentMeta, key: str, chunks: Sequence[ChunkData], absent: bool) -> None:
        rows = [
            {
                "chunk_id": _chunk_id(meta.tenant_id, meta.doc_id, key, chunk.index),
                "tenant_id": meta.tenant_id,
                "doc_id": meta.doc_id,
                "chunk_index": chunk.index,
                "chunk_count": len(chunks),
                "title": meta.title,
                "heading_path": list(chunk.heading_path),
                "text": chunk.text,
                "search_text": chunk.search_text,
                "url": meta.url,
                "doc_type": meta.doc_type,
                "product": meta.product,
                "version": meta.version,
                "updated_at": meta.updated_at,
                "content_hash": meta.content_hash,
                "pipeline": meta.pipeline,
                "unit_question": chunk.unit_question,
                "dense": chunk.vector.tolist(),
            }
            for chunk in chunks
        ]
        for start in range(0, len(rows), _BATCH):
            await self._run(self._write, self.collection, rows[start : start + _BATCH], absent)

    def _upsert_record(self, tenant_id: str, record: DocumentRecord, absent: bool) -> None:
        self._write(self.documents, [_record_row(tenant_id, record)], absent)
        self._copy_version(tenant_id, record.doc_id, (record.version_key, record.chunk_count), time.monotonic())

    async def delete_documents(self, tenant_id: str, doc_ids: Sequence[str]) -> list[str]:
        """Delete documents with all their chunks; returns the ids that existed."""
        async with self._document_locks(tenant_id, doc_ids):
            existing = await self.records(tenant_id, doc_ids)
            found = [doc_id for doc_id in doc_ids if doc_id in existing]
            if found:
                await self._run(self._delete_documents, tenant_id, [existing[doc_id] for doc_id in found])
        if found:
            self._written(len(found))
        return found

    def _delete_documents(self, tenant_id: str, records: list[DocumentRecord]) -> None:
        pending = self._pending(tenant_id, [record.doc_id for record in records])
        for start in range(0, len(records), _BATCH):
            batch = records[start : start + _BATCH]
            # The records go first: from then on searches drop the chunks.
            self.client.delete(self.documents, ids=[_record_key(tenant_id, record.doc_id) for record in batch])
            for record in batch:
                self._copy_version(tenant_id, record.doc_id, None, 0.0)
            for record in batch:
                orphans = [pending[record.doc_id]] if record.doc_id in pending else []
                self._delete_versions(tenant_id, record.doc_id, [record, *orphans])

    # Glossaries ----------------------------------------------------------------

    async def glossary(self, tenant_id: str) -> Glossary:
        return await self._run(self._glossary, tenant_id)

    def _glossary(self, tenant_id: str) -> Glossary:
        head = self.client.query(
            self.glossaries,
            filter=f"row_id == {quote(f'{tenant_id}/head')}",
            output_fields=["version", "entry_count"],
        )
        if not head or not head[0]["entry_count"]:
            return Glossary()
        rows = self.client.query(
            self.glossaries,
            filter=f"{_tenant(tenant_id)} and version == {quote(head[0]['version'])} and position >= 0",
            output_fields=["position", "term", "expansion"],
            limit=_QUERY_LIMIT,
        )
        if len(rows) != head[0]["entry_count"]:
            log.warning("glossary_incomplete", tenant_id=tenant_id, expected=head[0]["entry_count"], got=len(rows))
        rows.sort(key=lambda row: row["position"])
        return Glossary(GlossaryEntry(row["term"], row["expansion"]) for row in rows)

    async def set_glossary(self, tenant_id: str, glossary: Glossary) -> None:
        """Replace a tenant's glossary: entries first, then the head row (the switch), then
        the old entries, so a reader sees the old glossary or the new one, whole."""
        version = glossary.digest or "empty"
        rows = [
            {
                "row_id": f"{tenant_id}/{version}/{position:04d}",
                "tenant_id": tenant_id,
                "version": version,
                "position": position,
                "entry_count": len(glossary.entries),
                "term": entry.term,
                "expansion": entry.expansion,
                "placeholder": [0.0, 0.0],
            }
            for position, entry in enumerate(glossary.entries)
        ]
        head = {**_GLOSSARY_HEAD, "row_id": f"{tenant_id}/head", "tenant_id": tenant_id, "version": version}
        head["entry_count"] = len(rows)
        # "/glossary" is no document id (ids never hold '/'): one writer per tenant glossary.
        async with self._document_locks(tenant_id, ["/glossary"]):
            for start in range(0, len(rows), _BATCH):
                await self._run(self.client.upsert, self.glossaries, rows[start : start + _BATCH])
            await self._run(self.client.upsert, self.glossaries, [head])
            await self._run(
                self.client.delete,
                self.glossaries,
                f"{_tenant(tenant_id)} and position >= 0 and version != {quote(version)}",
            )
        self._written(len(rows) + 1)


_GLOSSARY_HEAD = {"position": -1, "term": "", "expansion": "", "placeholder": [0.0, 0.0]}


def fuse(similarity: dict[str, float], bm25: dict[str, float]) -> dict[str, float]:
    """Hybrid score: a convex combination of the cosine similarity and the BM25 score
    relative to the query's best keyword match, both in [0, 1] for relevant chunks.
    Unlike reciprocal rank fusion it keeps how far ahead a match is, and every
    candidate's similarity is exact (its vector comes back with it); a candidate the
    keyword side did not return scores 0 there (at most the lowest score returned)."""
    best = max(bm25.values(), default=0.0)
    return {
        chunk_id: (1 - KEYWORD_WEIGHT) * cosine + KEYWORD_WEIGHT * (bm25.get(chunk_id, 0.0) / best if best else 0.0)
        for chunk_id, cosine in similarity.items()
    }


def _lite_engine(uri: str) -> subprocess.Popen[bytes] | None:
    """The engine process that pymilvus' Milvus Lite server manager started for this file.
    milvus-lite 2.5.1 keeps it in private attributes (the version is pinned); None if not found."""
    from milvus_lite.server_manager import server_manager_instance

    server = server_manager_instance._servers.get(str(Path(uri).absolute().resolve()))
    engine = getattr(server, "_p", None)
    if engine is None:
        log.warning("milvus_lite_engine_not_found")
    return engine


def _cosine(vector: np.ndarray, stored: Sequence[float]) -> float:
    # Stored and query vectors are unit length.
    return float(np.dot(vector, np.asarray(stored, dtype=np.float32)))


def _is_current(raw: dict[str, Any], current: dict[str, str]) -> bool:
    entity = raw["entity"]
    return current.get(entity["doc_id"]) == chunk_version(entity["chunk_id"])


def _bm25(raw: dict[str, Any]) -> float:
    # Milvus 2.5 reports BM25 as a score (larger is better).
    return float(raw["distance"])


def _hit(entity: dict[str, Any], score: float, similarity: float) -> Hit:
    return Hit(
        chunk_id=entity["chunk_id"],
        doc_id=entity["doc_id"],
        title=entity["title"],
        heading_path=list(entity["heading_path"] or []),
        text=entity["text"],
        url=entity["url"],
        doc_type=int(entity["doc_type"]),
        version=entity["version"],
        score=score,
        similarity=similarity,
        unit_question=entity.get("unit_question") or "",
    )


def _chunk_id(tenant_id: str, doc_id: str, key: str, index: int) -> str:
    # Tenant in the id: primary keys are global to the collection.
    return f"{tenant_id}/{doc_id}/{key}/{index:04d}"


def _chunk_ids(tenant_id: str, doc_id: str, key: str, chunk_count: int) -> list[str]:
    return [_chunk_id(tenant_id, doc_id, key, index) for index in range(chunk_count)]


def _record_key(tenant_id: str, doc_id: str) -> str:
    return f"{tenant_id}/{doc_id}"


def _pending_key(tenant_id: str, doc_id: str) -> str:
    # '#' never appears in a document id, so no record has this key.
    return f"{tenant_id}/{doc_id}#pending"


def _record(row: dict[str, Any]) -> DocumentRecord:
    return DocumentRecord(
        row["doc_id"], row["version_key"], row["content_hash"], row["pipeline"], row["indexing"], row["chunk_count"]
    )


def _record_row(tenant_id: str, record: DocumentRecord) -> dict[str, Any]:
    return {
        "key": _record_key(tenant_id, record.doc_id),
        "tenant_id": tenant_id,
        "doc_id": record.doc_id,
        "version_key": record.version_key,
        "content_hash": record.content_hash,
        "pipeline": record.pipeline,
        "indexing": record.indexing,
        "chunk_count": record.chunk_count,
        "placeholder": [0.0, 0.0],
    }


def _tenant(tenant_id: str) -> str:
    return f"tenant_id == {quote(tenant_id)}"


def _filter_expression(tenant_id: str, search_filter: SearchFilter) -> str:
    clauses = [_tenant(tenant_id), 'unit_question != ""' if search_filter.answer_units else 'unit_question == ""']
    if search_filter.doc_types:
        clauses.append(f"doc_type in {_in(search_filter.doc_types)}")
    if search_filter.product:
        clauses.append(f"product == {quote(search_filter.product)}")
    if search_filter.version:
        clauses.append(f"version == {quote(search_filter.version)}")
    if search_filter.updated_after is not None:
        clauses.append(f"updated_at >= {quote(search_filter.updated_after)}")
    return " and ".join(clauses)
