"""The store's three collections: their creation and the checks of one found made.

- `<name>`: every tenant's chunks (text, dense vector, BM25 sparse vector, metadata);
- `<name>_documents`: one record per document naming the version key of its current chunks;
- `<name>_glossaries`: each tenant's glossary, a head row and one row per entry.
"""

from __future__ import annotations

from typing import Any

import structlog
from pymilvus import DataType, Function, FunctionType, MilvusClient

log = structlog.get_logger(__name__)

HNSW = {"M": 16, "efConstruction": 200}
# A server then shows this process its own writes at once (ingest, then search), and
# never a record switched before the chunks it names; Milvus Lite is always current.
CONSISTENCY = "Session"


def check_dimension(client: MilvusClient, collection: str, dim: int) -> None:
    """Refuse a chunk collection made before answer units, or for another embedding size."""
    fields = client.describe_collection(collection)["fields"]
    if "unit_question" not in {spec["name"] for spec in fields}:
        raise RuntimeError(
            f"collection {collection!r} was made before answer units existed: ingest the documents "
            "again into a new collection (COLLECTION) or remove the data folder"
        )
    for spec in fields:
        if spec["name"] == "dense" and int(spec["params"]["dim"]) != dim:
            raise RuntimeError(
                f"collection {collection!r} holds {spec['params']['dim']}-d vectors but the "
                f"embedding model makes {dim}-d ones; use another collection or re-create it"
            )


def create_chunks(client: MilvusClient, collection: str, dim: int, *, dense_index: str) -> None:
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
    index = client.prepare_index_params()
    if dense_index == "HNSW":
        # pymilvus 3.0.2 silently drops build params unless they are nested like this.
        index.add_index(field_name="dense", index_type="HNSW", metric_type="COSINE", params={"params": HNSW})
    else:
        index.add_index(field_name="dense", index_type=dense_index, metric_type="COSINE")
    index.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    index.add_index(field_name="tenant_id", index_type="INVERTED")
    index.add_index(field_name="doc_id", index_type="INVERTED")
    index.add_index(field_name="unit_question", index_type="INVERTED")
    client.create_collection(collection, schema=schema, index_params=index, consistency_level=CONSISTENCY)
    params = client.describe_index(collection, "dense").get("params", {})
    if dense_index == "HNSW" and {key: int(params.get(key, -1)) for key in HNSW} != HNSW:
        log.warning("hnsw_params_not_applied", expected=HNSW, got=params)
    log.info("collection_created", collection=collection, dim=dim)


def create_documents(client: MilvusClient, name: str) -> None:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=300)
    schema.add_field("tenant_id", DataType.VARCHAR, max_length=128)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=128)
    schema.add_field("version_key", DataType.VARCHAR, max_length=64)
    schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
    schema.add_field("pipeline", DataType.VARCHAR, max_length=1024)
    schema.add_field("indexing", DataType.VARCHAR, max_length=1024)
    schema.add_field("chunk_count", DataType.INT64)
    _create_small(client, name, schema)


def create_glossaries(client: MilvusClient, name: str) -> None:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("row_id", DataType.VARCHAR, is_primary=True, max_length=300)
    schema.add_field("tenant_id", DataType.VARCHAR, max_length=128)
    schema.add_field("version", DataType.VARCHAR, max_length=64)
    # -1 for the head row, else the entry's position.
    schema.add_field("position", DataType.INT64)
    schema.add_field("entry_count", DataType.INT64)
    schema.add_field("term", DataType.VARCHAR, max_length=1024)
    schema.add_field("expansion", DataType.VARCHAR, max_length=4096)
    _create_small(client, name, schema)


def _create_small(client: MilvusClient, name: str, schema: Any) -> None:
    # Milvus refuses a collection without a vector field: these get a 2-d placeholder.
    schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
    index = client.prepare_index_params()
    index.add_index(field_name="placeholder", index_type="FLAT", metric_type="L2")
    index.add_index(field_name="tenant_id", index_type="INVERTED")
    client.create_collection(name, schema=schema, index_params=index, consistency_level=CONSISTENCY)
    log.info("collection_created", collection=name)
