"""The keyword (BM25) index beside a Milvus Lite file, in tantivy.

Milvus Lite's own BM25 walks posting lists in a Python loop (~12 ms a search at
10k chunks, O(rows)); tantivy, a Rust full-text engine in the Lucene mould,
answers the same BM25 query in ~0.3 ms. So on the embedded default the store
asks Milvus Lite for dense neighbours only, and this index for keyword matches
and for the fields of the hits it returns (title, text, url, vector...), which
saves Lite a call per search as well. A Milvus server keeps its own BM25 (every
replica must see the same index; a local folder cannot be shared).

The index is derived from the Milvus collection, never the other way round:
rows are added after Milvus has them and committed before a document's record
is switched to them (a keyword search then finds a document's new version as
soon as it becomes current), and `reconcile` repairs what a crash between the
two left, at open. Searches go through the store's version check like Milvus
hits do, so chunks of a superseded or half-written version are never returned.

It has Milvus Lite's deployment model: one process (tantivy's writer lock, like
Lite's), blocking calls made under the store's lock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tantivy

if TYPE_CHECKING:
    from services.retrieval.store import SearchFilter

_WRITER_HEAP_BYTES = 50_000_000
# The index lives in a folder named after its schema: a new schema starts an empty index,
# which the store then fills from the collection (Store._reconcile_keyword).
SCHEMA_VERSION = "v1"
# Fields returned with a hit, stored as one JSON document (the vector apart, as bytes).
_PAYLOAD = ("chunk_id", "doc_id", "title", "heading_path", "text", "url", "doc_type", "version")


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    # Exact-match fields: whole values, no analysis.
    for name in ("chunk_id", "tenant_id", "product", "version"):
        builder.add_text_field(name, stored=name == "chunk_id", tokenizer_name="raw", index_option="basic")
    builder.add_integer_field("doc_type", indexed=True)
    builder.add_integer_field("updated_at", indexed=True, fast=True)
    # The service has already lower-cased, stemmed and stripped stop words (text.keyword_text):
    # split on whitespace only, so query terms meet exactly the tokens indexed.
    builder.add_text_field("search_text", tokenizer_name="whitespace", index_option="freq")
    builder.add_bytes_field("payload", stored=True)
    builder.add_bytes_field("dense", stored=True)
    return builder.build()


class KeywordIndex:
    def __init__(self, path: Path) -> None:
        folder = path / SCHEMA_VERSION
        folder.mkdir(parents=True, exist_ok=True)
        self.schema = _schema()
        self._index = tantivy.Index(self.schema, path=str(folder))
        self._writer = self._index.writer(heap_size=_WRITER_HEAP_BYTES, num_threads=1)
        self._searcher = self._index.searcher()
        self._uncommitted = False

    # Writes (visible after commit) ---------------------------------------------

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rows as the store writes them to Milvus; an existing chunk id is replaced."""
        for row in rows:
            self._writer.delete_documents_by_term("chunk_id", row["chunk_id"])
            document = tantivy.Document()
            for name in ("chunk_id", "tenant_id", "product", "version"):
                document.add_text(name, row[name])
            document.add_integer("doc_type", int(row["doc_type"]))
            document.add_integer("updated_at", int(row["updated_at"]))
            document.add_text("search_text", row["search_text"])
            document.add_bytes("payload", json.dumps({name: row[name] for name in _PAYLOAD}).encode())
            document.add_bytes("dense", np.asarray(row["dense"], dtype=np.float32).tobytes())
            self._writer.add_document(document)
        self._uncommitted = True

    def delete(self, chunk_ids: Iterable[str]) -> None:
        for chunk_id in chunk_ids:
            self._writer.delete_documents_by_term("chunk_id", chunk_id)
        self._uncommitted = True

    def commit(self) -> None:
        if not self._uncommitted:
            return
        self._writer.commit()
        self._index.reload()
        self._searcher = self._index.searcher()
        self._uncommitted = False

    def close(self) -> None:
        self.commit()
        self._writer.wait_merging_threads()

    # Reads -------------------------------------------------------------------------

    def search(
        self, tenant_id: str, search_filter: SearchFilter, keyword_query: str, limit: int
    ) -> list[dict[str, Any]]:
        """BM25 matches of any of the query's terms, in the shape of a Milvus search hit
        ({"entity": fields, "distance": score}), best first."""
        terms = list(dict.fromkeys(keyword_query.split()))
        if not terms or limit <= 0:
            return []
        matches = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "search_text", term)) for term in terms]
        )
        # The filter decides which chunks may match; only the terms score.
        where = tantivy.Query.const_score_query(self._filter(tenant_id, search_filter), 0.0)
        query = tantivy.Query.boolean_query([(tantivy.Occur.Must, matches), (tantivy.Occur.Must, where)])
        searcher = self._searcher
        return [
            {"entity": self._entity(searcher.doc(address)), "distance": float(score)}
            for score, address in searcher.search(query, limit).hits
        ]

    def get(self, chunk_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The stored fields (and vector) of these chunks; unknown ids are left out."""
        if not chunk_ids:
            return []
        searcher = self._searcher
        found = searcher.search(tantivy.Query.term_set_query(self.schema, "chunk_id", list(chunk_ids)), len(chunk_ids))
        return [self._entity(searcher.doc(address)) for _, address in found.hits]

    def chunk_ids(self) -> set[str]:
        searcher = self._searcher
        if not searcher.num_docs:
            return set()
        found = searcher.search(tantivy.Query.all_query(), searcher.num_docs)
        return {searcher.doc(address)["chunk_id"][0] for _, address in found.hits}

    def _filter(self, tenant_id: str, search_filter: SearchFilter) -> tantivy.Query:
        schema = self.schema
        clauses = [tantivy.Query.term_query(schema, "tenant_id", tenant_id)]
        if search_filter.doc_types:
            clauses.append(tantivy.Query.term_set_query(schema, "doc_type", list(search_filter.doc_types)))
        if search_filter.product:
            clauses.append(tantivy.Query.term_query(schema, "product", search_filter.product))
        if search_filter.version:
            clauses.append(tantivy.Query.term_query(schema, "version", search_filter.version))
        if search_filter.updated_after is not None:
            clauses.append(
                tantivy.Query.range_query(
                    schema, "updated_at", tantivy.FieldType.Integer, lower_bound=search_filter.updated_after
                )
            )
        return tantivy.Query.boolean_query([(tantivy.Occur.Must, clause) for clause in clauses])

    @staticmethod
    def _entity(document: tantivy.Document) -> dict[str, Any]:
        entity: dict[str, Any] = json.loads(document["payload"][0])
        entity["dense"] = np.frombuffer(document["dense"][0], dtype=np.float32)
        return entity
