"""Ingest a folder of knowledge-base files through the IngestDocuments RPC.

    python -m services.retrieval.ingest --target 127.0.0.1:50051 --tenant demo kb/demo

The folder goes in several short client streams rather than one: the mesh
channel (servicekit.clients) gives every RetrievalService call the service's
short default deadline, and a client stream is one call. Each stream is
validated as a whole by the server, so a bad file rejects its batch only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import grpc

from aftercare.retrieval.v1 import retrieval_pb2 as pb
from aftercare.retrieval.v1.retrieval_pb2_grpc import RetrievalServiceStub
from servicekit.clients import connect
from servicekit.errors import details_from_rpc_error
from services.retrieval.loader import load_folder

SERVICE = "aftercare.retrieval.v1.RetrievalService"
# About 30 chunks per stream: on two CPU cores the server embeds ~50 chunks/s, and the
# mesh deadline (5 s, of which gRPC grants only ~3.5 s in practice) covers one stream.
BATCH_DOCUMENTS = 8
BATCH_BYTES = 8 * 1024

Progress = Callable[[int, int], None]


def batches(documents: Sequence[pb.Document]) -> Iterator[list[pb.Document]]:
    batch: list[pb.Document] = []
    size = 0
    for document in documents:
        if batch and (len(batch) >= BATCH_DOCUMENTS or size + len(document.body) > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(document)
        size += len(document.body)
    if batch:
        yield batch


async def ingest_documents(
    stub: RetrievalServiceStub, documents: Sequence[pb.Document], progress: Progress | None = None
) -> pb.IngestDocumentsResponse:
    """Send documents in batches; one response with every result, in order."""
    merged = pb.IngestDocumentsResponse()
    done = 0
    for batch in batches(documents):
        response = await stub.IngestDocuments(iter([pb.IngestDocumentsRequest(document=d) for d in batch]))
        merged.results.extend(response.results)
        merged.chunks_written += response.chunks_written
        done += len(batch)
        if progress:
            progress(done, len(documents))
    return merged


async def ingest_folder(
    channel_or_stub: grpc.aio.Channel | RetrievalServiceStub,
    folder: str | Path,
    tenant: str,
    progress: Progress | None = None,
) -> pb.IngestDocumentsResponse:
    """Load every knowledge-base file of `folder` for `tenant` and ingest it."""
    stub = (
        channel_or_stub if isinstance(channel_or_stub, RetrievalServiceStub) else RetrievalServiceStub(channel_or_stub)
    )
    documents = await asyncio.to_thread(load_folder, folder, tenant)
    return await ingest_documents(stub, documents, progress)


def outcome_counts(response: pb.IngestDocumentsResponse) -> dict[str, int]:
    counts = Counter(
        pb.IngestOutcome.Name(result.outcome).removeprefix("INGEST_OUTCOME_").lower() for result in response.results
    )
    return {name: counts.get(name, 0) for name in ("created", "updated", "unchanged")}


async def _main(target: str, tenant: str, folder: Path) -> int:
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        print(f"ingest: {done}/{total} documents sent", flush=True)

    channel = connect(target, SERVICE)
    try:
        response = await ingest_folder(channel, folder, tenant, progress)
    except grpc.aio.AioRpcError as error:
        details = details_from_rpc_error(error)
        print(f"ingest failed: {details.code.name}: {details.message}", file=sys.stderr)
        for field_path, description in details.field_violations:
            print(f"  {field_path}: {description}", file=sys.stderr)
        return 1
    finally:
        await channel.close()
    counts = " ".join(f"{name}={count}" for name, count in outcome_counts(response).items())
    print(
        f"ingest: {len(response.results)} documents for tenant {tenant!r} at {target}: {counts} "
        f"chunks_written={response.chunks_written} in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.retrieval.ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="127.0.0.1:50051", help="retrieval service host:port")
    parser.add_argument("--tenant", required=True, help="tenant that will own the documents")
    parser.add_argument("folder", type=Path, help="folder of .md, .html and .txt files")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    try:
        return asyncio.run(_main(args.target, args.tenant, args.folder))
    except (ValueError, OSError) as error:
        print(f"ingest failed: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
