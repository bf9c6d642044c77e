"""The knowledge base in Milvus: one collection of chunks for all tenants.

Tenant isolation lives here: every read, write and delete carries a
`tenant_id == "<tenant>"` clause built by this module from a validated id,
never from a caller's expression. Values that enter a filter are quoted with
`quote` (Milvus Lite has no filter templating: it rejects `{name}` params).

pymilvus calls block (Milvus Lite even runs the engine in this process), so
each one runs in a worker thread, one at a time under a single lock; multi-step
writes (replace a document) hold the lock for all their steps.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import structlog
from pymilvus import AnnSearchRequest, DataType, Function, FunctionType, MilvusClient, RRFRanker

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Milvus caps one query's result window at 16384 rows; a document never gets near it.
_QUERY_LIMIT = 16384
_HNSW = {"M": 16, "efConstruction": 200}
# Candidates each side of a hybrid search brings to the fusion, per hit wanted.
_HYBRID_CANDIDATES = 4
_RRF_K = 60

_OUTPUT = ["chunk_id", "doc_id", "title", "heading_path", "text", "url", "doc_type", "version", "dense"]


class _DropUnimplemented(logging.Filter):
    """Milvus Lite runs a gRPC server in this process whose unimplemented AllocTimestamp,
    which pymilvus calls while creating a collection, logs a traceback; it is harmless."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[0] is NotImplementedError)


logging.getLogger("grpc._server").addFilter(_DropUnimplemented())


class Mode(enum.Enum):
    HYBRID = "hybrid"
    DENSE = "dense"
    KEYWORD = "keyword"


def quote(value: str | int) -> str:
    """A Milvus expression literal. JSON string escaping is what the Milvus parser reads
    (quotes, backslashes and newlines included), so no value can close the literal."""
    return str(int(value)) if isinstance(value, int) else json.dumps(value, ensure_ascii=False)


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
    # Embedding model and chunker version: a change re-indexes unchanged content.
    pipeline: str


@dataclass(frozen=True)
class ChunkData:
    index: int
    heading_path: tuple[str, ...]
    text: str
    search_text: str
    vector: np.ndarray


@dataclass(frozen=True)
class SearchFilter:
    doc_types: tuple[int, ...] = ()
    product: str = ""
    version: str = ""
    updated_after: int | None = None


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


@dataclass(frozen=True)
class StoredVersion:
    content_hash: str
    pipeline: str
    chunk_count: int


@dataclass
class Store:
    client: MilvusClient
    collection: str
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, uri: str, collection: str, dim: int) -> Store:
        """Blocking: connect, create the collection if needed, load it."""
        client = MilvusClient(uri=uri)
        store = cls(client=client, collection=collection)
        if client.has_collection(collection):
            store._check_dimension(dim)
        else:
            store._create(dim)
        # Needed after every (re)open of Milvus Lite, harmless on a server.
        client.load_collection(collection)
        return store

    def _check_dimension(self, dim: int) -> None:
        for spec in self.client.describe_collection(self.collection)["fields"]:
            if spec["name"] == "dense" and int(spec["params"]["dim"]) != dim:
                raise RuntimeError(
                    f"collection {self.collection!r} holds {spec['params']['dim']}-d vectors but the "
                    f"embedding model makes {dim}-d ones; use another collection or re-create it"
                )

    def _create(self, dim: int) -> None:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("chunk_id", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("tenant_id", DataType.VARCHAR, max_length=128)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=128)
        schema.add_field("chunk_index", DataType.INT64)
        schema.add_field("chunk_count", DataType.INT64)
        schema.add_field("title", DataType.VARCHAR, max_length=4096)
        schema.add_field("heading_path", DataType.JSON)
        schema.add_field("text", DataType.VARCHAR, max_length=65535)
        # BM25 reads title and headings too: FAQ questions live in headings.
        schema.add_field("search_text", DataType.VARCHAR, max_length=65535, enable_analyzer=True)
        schema.add_field("url", DataType.VARCHAR, max_length=4096)
        schema.add_field("doc_type", DataType.INT64)
        schema.add_field("product", DataType.VARCHAR, max_length=512)
        schema.add_field("version", DataType.VARCHAR, max_length=512)
        schema.add_field("updated_at", DataType.INT64)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
        schema.add_field("pipeline", DataType.VARCHAR, max_length=1024)
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
        # pymilvus 3.0.2 silently drops build params unless they are nested like this.
        index.add_index(field_name="dense", index_type="HNSW", metric_type="COSINE", params={"params": _HNSW})
        index.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        index.add_index(field_name="tenant_id", index_type="INVERTED")
        index.add_index(field_name="doc_id", index_type="INVERTED")
        self.client.create_collection(self.collection, schema=schema, index_params=index)
        params = self.client.describe_index(self.collection, "dense").get("params", {})
        if {key: int(params.get(key, -1)) for key in _HNSW} != _HNSW:
            log.warning("hnsw_params_not_applied", expected=_HNSW, got=params)
        log.info("collection_created", collection=self.collection, dim=dim)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        def locked() -> T:
            with self._lock:
                return fn(*args)

        return await asyncio.to_thread(locked)

    async def close(self) -> None:
        await self._run(self.client.close)

    async def flush(self) -> None:
        """Seal what was written. Milvus Lite scans unflushed rows one by one: measured at
        3k rows, search took ~80 ms before a flush and ~4 ms after; a flush costs ~10-50 ms,
        so writers call it once per request, not per document."""
        await self._run(self.client.flush, self.collection)

    # Reads -------------------------------------------------------------------

    async def stored_versions(self, tenant_id: str, doc_ids: Sequence[str]) -> dict[str, StoredVersion]:
        return await self._run(self._stored_versions, tenant_id, list(doc_ids))

    def _stored_versions(self, tenant_id: str, doc_ids: list[str]) -> dict[str, StoredVersion]:
        versions: dict[str, StoredVersion] = {}
        for start in range(0, len(doc_ids), 1000):
            batch = doc_ids[start : start + 1000]
            # One row per document: every document has exactly one chunk with index 0.
            rows = self.client.query(
                self.collection,
                filter=f"{_tenant(tenant_id)} and chunk_index == 0 and doc_id in [{', '.join(map(quote, batch))}]",
                output_fields=["doc_id", "content_hash", "pipeline", "chunk_count"],
                limit=_QUERY_LIMIT,
            )
            for row in rows:
                versions[row["doc_id"]] = StoredVersion(row["content_hash"], row["pipeline"], row["chunk_count"])
        return versions

    async def stats(self, tenant_id: str) -> tuple[int, int]:
        """(documents, chunks) of one tenant."""
        return await self._run(self._stats, tenant_id)

    def _stats(self, tenant_id: str) -> tuple[int, int]:
        def count(expr: str) -> int:
            rows = self.client.query(self.collection, filter=expr, output_fields=["count(*)"])
            return int(rows[0]["count(*)"]) if rows else 0

        return count(f"{_tenant(tenant_id)} and chunk_index == 0"), count(_tenant(tenant_id))

    async def search(
        self,
        tenant_id: str,
        query: str,
        vector: np.ndarray,
        mode: Mode,
        top_k: int,
        search_filter: SearchFilter,
    ) -> list[Hit]:
        return await self._run(self._search, tenant_id, query, vector, mode, top_k, search_filter)

    def _search(
        self,
        tenant_id: str,
        query: str,
        vector: np.ndarray,
        mode: Mode,
        top_k: int,
        search_filter: SearchFilter,
    ) -> list[Hit]:
        expr = _filter_expression(tenant_id, search_filter)
        dense = {"metric_type": "COSINE", "params": {"ef": max(64, top_k)}}
        if mode is Mode.DENSE:
            result = self.client.search(
                self.collection,
                data=[vector.tolist()],
                anns_field="dense",
                filter=expr,
                limit=top_k,
                output_fields=_OUTPUT,
                search_params=dense,
            )
        elif mode is Mode.KEYWORD:
            result = self.client.search(
                self.collection,
                data=[query],
                anns_field="sparse",
                filter=expr,
                limit=top_k,
                output_fields=_OUTPUT,
                search_params={"metric_type": "BM25"},
            )
        else:
            candidates = max(top_k * _HYBRID_CANDIDATES, 20)
            requests = [
                AnnSearchRequest(data=[vector.tolist()], anns_field="dense", param=dense, limit=candidates, expr=expr),
                AnnSearchRequest(
                    data=[query], anns_field="sparse", param={"metric_type": "BM25"}, limit=candidates, expr=expr
                ),
            ]
            result = self.client.hybrid_search(
                self.collection, requests, RRFRanker(_RRF_K), limit=top_k, output_fields=_OUTPUT
            )
        hits = []
        for raw in result[0] if result else []:
            entity = raw["entity"]
            similarity = float(np.dot(vector, np.asarray(entity["dense"], dtype=np.float32)))
            score = float(raw["distance"])
            hits.append(
                Hit(
                    chunk_id=entity["chunk_id"],
                    doc_id=entity["doc_id"],
                    title=entity["title"],
                    heading_path=list(entity["heading_path"] or []),
                    text=entity["text"],
                    url=entity["url"],
                    doc_type=int(entity["doc_type"]),
                    version=entity["version"],
                    # Milvus Lite reports BM25 negated (smaller is better); callers get the BM25 score.
                    score=abs(score) if mode is Mode.KEYWORD else score,
                    similarity=similarity,
                )
            )
        return hits

    # Writes ------------------------------------------------------------------

    async def replace_document(self, meta: DocumentMeta, chunks: Sequence[ChunkData]) -> bool:
        """Index a document's chunks, replacing any previous ones; True if it existed."""
        return await self._run(self._replace_document, meta, list(chunks))

    def _replace_document(self, meta: DocumentMeta, chunks: list[ChunkData]) -> bool:
        doc = f"{_tenant(meta.tenant_id)} and doc_id == {quote(meta.doc_id)}"
        old_ids = {
            row["chunk_id"]
            for row in self.client.query(self.collection, filter=doc, output_fields=["chunk_id"], limit=_QUERY_LIMIT)
        }
        key = hashlib.sha256(f"{meta.content_hash}|{meta.pipeline}".encode()).hexdigest()[:12]
        rows = [
            {
                # Tenant in the key: primary keys are global to the collection.
                "chunk_id": f"{meta.tenant_id}/{meta.doc_id}/{key}/{chunk.index:04d}",
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
                "dense": chunk.vector.tolist(),
            }
            for chunk in chunks
        ]
        # New chunks go in before the old ones go out (new ids, as the version key
        # differs), so the document is searchable throughout: at worst a search sees
        # both versions for a moment, never neither. Upsert, not insert: a concurrent
        # ingest of the same content makes the same ids, and Milvus does not enforce
        # primary-key uniqueness on insert.
        self.client.upsert(self.collection, rows)
        stale = sorted(old_ids - {row["chunk_id"] for row in rows})
        for start in range(0, len(stale), 1000):
            batch = stale[start : start + 1000]
            self.client.delete(self.collection, filter=f"chunk_id in [{', '.join(map(quote, batch))}]")
        return bool(old_ids)

    async def delete_documents(self, tenant_id: str, doc_ids: Sequence[str]) -> list[str]:
        """Delete documents with all their chunks; returns the ids that existed."""
        return await self._run(self._delete_documents, tenant_id, list(doc_ids))

    def _delete_documents(self, tenant_id: str, doc_ids: list[str]) -> list[str]:
        existing = set(self._stored_versions(tenant_id, doc_ids))
        found = [doc_id for doc_id in doc_ids if doc_id in existing]
        if found:
            self.client.delete(
                self.collection,
                filter=f"{_tenant(tenant_id)} and doc_id in [{', '.join(map(quote, found))}]",
            )
        return found


def _tenant(tenant_id: str) -> str:
    return f"tenant_id == {quote(tenant_id)}"


def _filter_expression(tenant_id: str, search_filter: SearchFilter) -> str:
    clauses = [_tenant(tenant_id)]
    if search_filter.doc_types:
        clauses.append(f"doc_type in [{', '.join(map(quote, search_filter.doc_types))}]")
    if search_filter.product:
        clauses.append(f"product == {quote(search_filter.product)}")
    if search_filter.version:
        clauses.append(f"version == {quote(search_filter.version)}")
    if search_filter.updated_after is not None:
        clauses.append(f"updated_at >= {quote(search_filter.updated_after)}")
    return " and ".join(clauses)
