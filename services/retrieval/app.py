"""Process wiring: open the store and the model, serve RetrievalService."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import structlog

from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from servicekit.server import Mount, mount, run_service
from services.retrieval.chunking import Chunker
from services.retrieval.embedding import Embedder
from services.retrieval.indexing import Indexer
from services.retrieval.servicer import RetrievalServicer
from services.retrieval.settings import RetrievalSettings
from services.retrieval.store import Store

log = structlog.get_logger(__name__)


@contextlib.asynccontextmanager
async def servicers(settings: RetrievalSettings, embedder: Embedder | None = None) -> AsyncIterator[Sequence[Mount]]:
    """The service's servicers; `embedder` lets tests share one loaded model."""
    if embedder is None:
        embedder = await asyncio.to_thread(Embedder, settings.embedding_model)
    uri = settings.resolved_milvus_uri()
    store = await asyncio.to_thread(
        Store.open, uri, settings.collection, embedder.dimension, settings.milvus_dense_index or None
    )
    # Log the location only: a server URI may carry credentials.
    log.info("store_opened", collection=settings.collection, embedded=not settings.milvus_uri)
    chunker = Chunker(
        embedder.tokenizer,
        max_tokens=settings.chunk_max_tokens,
        overlap=settings.chunk_overlap_tokens,
        model_max_tokens=embedder.max_seq_length,
    )
    indexer = Indexer(store, embedder, chunker)
    # Finish re-indexing left behind by a stopped process or a changed model, meanwhile serving.
    resume = asyncio.get_running_loop().create_task(indexer.resume())
    try:
        yield [mount(RetrievalServicer(store, indexer), retrieval_pb2, retrieval_pb2_grpc)]
    finally:
        resume.cancel()
        await indexer.close()
        await store.close()


def main() -> None:
    run_service("retrieval", RetrievalSettings(), servicers)
