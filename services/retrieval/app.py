"""Process wiring: open the store and the model, serve RetrievalService."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence

import structlog

from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from servicekit.server import Mount, mount, run_service
from services.retrieval.chunking import Chunker
from services.retrieval.data_lock import DataFolderInUse, hold_lite_folder
from services.retrieval.embedding import Embedder
from services.retrieval.indexing import Indexer
from services.retrieval.servicer import RetrievalServicer
from services.retrieval.settings import RetrievalSettings
from services.retrieval.store import Store

log = structlog.get_logger(__name__)

# How often the Milvus Lite engine's process is checked.
ENGINE_CHECK_S = 1.0
# The exit status after the engine died (EX_SOFTWARE): a failure, not an asked-for stop.
EXIT_ENGINE_LOST = 70
# The exit status when another live process has the Milvus Lite data folder open (EX_CANTCREAT).
EXIT_DATA_FOLDER_IN_USE = 73

# Set when the watchdog stopped this process; main() then exits with EXIT_ENGINE_LOST.
_engine_lost = threading.Event()


def _stop_this_process() -> None:
    # Unwinds like a deployment's SIGTERM: health NOT_SERVING, calls drained, then exit.
    _engine_lost.set()
    os.kill(os.getpid(), signal.SIGTERM)


async def stop_when_engine_exits(store: Store, stop: Callable[[], None] = _stop_this_process) -> None:
    """Milvus Lite's engine is a child process of this service. Should it die, no call can
    succeed any more, so the service stops as well and its supervisor (Kubernetes, devstack)
    starts both again, rather than answering every call with an error while looking alive."""
    while True:
        await asyncio.sleep(ENGINE_CHECK_S)
        code = store.engine_exit_code()
        if code is not None:
            try:
                log.error("milvus_lite_engine_exited", exit_code=code)
            finally:
                stop()  # even should logging fail: a service without its engine must not live on
            return


@contextlib.asynccontextmanager
async def servicers(settings: RetrievalSettings, embedder: Embedder | None = None) -> AsyncIterator[Sequence[Mount]]:
    """The service's servicers; `embedder` lets tests share one loaded model."""
    uri = settings.resolved_milvus_uri()
    # First: one process per Milvus Lite data folder (raises DataFolderInUse), held until we stop.
    with hold_lite_folder(uri):
        async with _servicers(settings, uri, embedder) as mounts:
            yield mounts


@contextlib.asynccontextmanager
async def _servicers(
    settings: RetrievalSettings, uri: str, embedder: Embedder | None
) -> AsyncIterator[Sequence[Mount]]:
    if embedder is None:
        embedder = await asyncio.to_thread(Embedder, settings.embedding_model)
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
    watchdog = asyncio.get_running_loop().create_task(stop_when_engine_exits(store))
    try:
        yield [mount(RetrievalServicer(store, indexer), retrieval_pb2, retrieval_pb2_grpc)]
    finally:
        watchdog.cancel()
        resume.cancel()
        await indexer.close()
        await store.close()


def main() -> None:
    try:
        run_service("retrieval", RetrievalSettings(), servicers)
    except DataFolderInUse as error:
        log.error("data_folder_in_use", detail=str(error))
        print(f"retrieval: error: {error}", file=sys.stderr, flush=True)
        sys.exit(EXIT_DATA_FOLDER_IN_USE)
    if _engine_lost.is_set():
        sys.exit(EXIT_ENGINE_LOST)
