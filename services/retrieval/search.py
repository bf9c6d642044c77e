"""Searching the chunks: dense, keyword (BM25) or hybrid, and the fusion of the two sides.

Searches drop hits whose version is not the document's current one (CurrentVersions), so
a search sees the old version of a document being replaced or the new one, never both and
never neither. (With a Milvus server and several replicas writing, a search on one replica
may still miss a document for the moment another replica switches it.)

Every call here blocks: the store runs them in a worker thread under its lock.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymilvus import MilvusClient, MilvusException

from services.retrieval.documents import chunk_version
from services.retrieval.expressions import in_list, quote, tenant_is
from services.retrieval.versions import CurrentVersions

# Hybrid search fuses this many candidates from each side (more if more hits are wanted).
HYBRID_CANDIDATES = 20
# Weight of the keyword side in the hybrid score; the dense side gets the rest.
KEYWORD_WEIGHT = 0.5
# What Milvus 2.5 answers to a BM25 search of a collection that never held a row.
_EMPTY_BM25_ERROR = "Invalid sparse row: NaN or Inf value"
_OUTPUT = ["chunk_id", "doc_id", "title", "heading_path", "text", "url", "doc_type", "version", "unit_question"]


class Mode(enum.Enum):
    HYBRID = "hybrid"
    DENSE = "dense"
    KEYWORD = "keyword"


@dataclass(frozen=True)
class SearchFilter:
    doc_types: tuple[int, ...] = ()
    product: str = ""
    version: str = ""
    updated_after: int | None = None
    # Answer units instead of passages: the two never mix in one search.
    answer_units: bool = False


@dataclass(frozen=True)
class Query:
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


class Searcher:
    """The searches of one chunk collection."""

    def __init__(self, client: MilvusClient, collection: str, versions: CurrentVersions) -> None:
        self.client = client
        self.collection = collection
        self._versions = versions
        # Runs a hybrid search's keyword side while the searching thread runs the dense side:
        # Milvus serves both at once (its own threads), so a hybrid costs about the slower one.
        self._keyword_side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyword-side")

    def close(self) -> None:
        self._keyword_side.shutdown()

    def search(self, query: Query, mode: Mode, top_k: int) -> list[Hit]:
        if mode is not Mode.HYBRID:
            return self._search_one(query, mode, top_k)
        # Two searches and nothing more: both return whole chunks, the keyword side with
        # their vectors, which give their similarity.
        candidates = max(HYBRID_CANDIDATES, 2 * top_k)
        keyword_side = self._keyword_side.submit(self._ann, query, Mode.KEYWORD, candidates, [*_OUTPUT, "dense"])
        dense = self._ann(query, Mode.DENSE, candidates, _OUTPUT)
        keyword = keyword_side.result()
        current = self._versions.of(query.tenant_id, [*dense, *keyword])
        similarity = {raw["entity"]["chunk_id"]: float(raw["distance"]) for raw in dense if _is_current(raw, current)}
        bm25 = {raw["entity"]["chunk_id"]: _bm25(raw) for raw in keyword if _is_current(raw, current)}
        rows = {raw["entity"]["chunk_id"]: raw["entity"] for raw in [*dense, *keyword]}
        for chunk_id in bm25:
            if chunk_id not in similarity:
                similarity[chunk_id] = _cosine(query.vector, rows[chunk_id]["dense"])
        scores = fuse(similarity, bm25)
        chosen = sorted(scores, key=lambda chunk_id: scores[chunk_id], reverse=True)[:top_k]
        return [_hit(rows[c], scores[c], similarity[c]) for c in chosen]

    def _search_one(self, query: Query, mode: Mode, top_k: int) -> list[Hit]:
        if mode is Mode.KEYWORD and not query.keywords:
            return []
        # A dense hit's distance is its cosine similarity; a keyword hit's needs its vector.
        fields = _OUTPUT if mode is Mode.DENSE else [*_OUTPUT, "dense"]
        limit = top_k
        while True:
            found = self._ann(query, mode, limit, fields)
            current = self._versions.of(query.tenant_id, found)
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

    def _ann(self, query: Query, mode: Mode, limit: int, fields: list[str]) -> list[dict[str, Any]]:
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


def _filter_expression(tenant_id: str, search_filter: SearchFilter) -> str:
    clauses = [tenant_is(tenant_id), 'unit_question != ""' if search_filter.answer_units else 'unit_question == ""']
    if search_filter.doc_types:
        clauses.append(f"doc_type in {in_list(search_filter.doc_types)}")
    if search_filter.product:
        clauses.append(f"product == {quote(search_filter.product)}")
    if search_filter.version:
        clauses.append(f"version == {quote(search_filter.version)}")
    if search_filter.updated_after is not None:
        clauses.append(f"updated_at >= {quote(search_filter.updated_after)}")
    return " and ".join(clauses)
