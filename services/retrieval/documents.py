"""Documents as the store keeps them: what a caller writes and reads back, and the keys
and rows of the versioned replace.

A document's chunks are written under a version key (content, chunking and indexing);
chunk ids are `tenant/doc/version/index`, so every step of a replace works by primary key,
never by scanning rows. The document's record (`tenant/doc` in `<name>_documents`) names
its current version; a pending row (`tenant/doc#pending`) names a version being written,
storing PENDING - chunk_count, a negative number, so that no record filter matches it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Every document record (a query iterator wants some filter): pending rows count negative.
ALL_RECORDS = "chunk_count >= 0"
PENDING = -1
RECORD_FIELDS = ["doc_id", "version_key", "content_hash", "pipeline", "indexing", "chunk_count"]
# Document metadata copied onto every chunk.
COPIED = ["url", "doc_type", "product", "version", "updated_at", "content_hash", "pipeline"]


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


def version_key(content_hash: str, pipeline: str, indexing: str) -> str:
    return hashlib.sha256(f"{content_hash}|{pipeline}|{indexing}".encode()).hexdigest()[:12]


def chunk_version(chunk_id: str) -> str:
    """The version key inside a chunk id: tenant/doc/version/index (ids never hold '/')."""
    return chunk_id.rsplit("/", 2)[-2]


def chunk_id_for(tenant_id: str, doc_id: str, key: str, index: int) -> str:
    # Tenant in the id: primary keys are global to the collection.
    return f"{tenant_id}/{doc_id}/{key}/{index:04d}"


def chunk_ids_for(tenant_id: str, doc_id: str, key: str, chunk_count: int) -> list[str]:
    return [chunk_id_for(tenant_id, doc_id, key, index) for index in range(chunk_count)]


def record_key(tenant_id: str, doc_id: str) -> str:
    return f"{tenant_id}/{doc_id}"


def pending_key(tenant_id: str, doc_id: str) -> str:
    # '#' never appears in a document id, so no record has this key.
    return f"{tenant_id}/{doc_id}#pending"


def record_of(row: dict[str, Any]) -> DocumentRecord:
    return DocumentRecord(
        row["doc_id"], row["version_key"], row["content_hash"], row["pipeline"], row["indexing"], row["chunk_count"]
    )


def record_row(tenant_id: str, record: DocumentRecord) -> dict[str, Any]:
    return {
        "key": record_key(tenant_id, record.doc_id),
        "tenant_id": tenant_id,
        "doc_id": record.doc_id,
        "version_key": record.version_key,
        "content_hash": record.content_hash,
        "pipeline": record.pipeline,
        "indexing": record.indexing,
        "chunk_count": record.chunk_count,
        "placeholder": [0.0, 0.0],
    }


def chunk_rows(meta: DocumentMeta, key: str, chunks: Sequence[ChunkData]) -> list[dict[str, Any]]:
    """The chunk collection's rows of one version of a document."""
    return [
        {
            "chunk_id": chunk_id_for(meta.tenant_id, meta.doc_id, key, chunk.index),
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
