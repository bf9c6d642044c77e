"""RetrievalService against a Milvus server (`MILVUS_URI`), not the embedded file.

Milvus' engine from the milvus-lite package (devstack/milvus_server.py) serves the
Milvus gRPC API on a free port with a throw-away data folder, and the service, in
this process, reaches it by `milvus_uri=http://127.0.0.1:PORT` with the AUTOINDEX
dense index (the engine's local mode builds no HNSW). Hybrid, dense and keyword
search and tenant isolation must hold over that path too.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from aftercare.retrieval.v1 import retrieval_pb2 as pb
from aftercare.retrieval.v1.retrieval_pb2_grpc import RetrievalServiceStub
from devstack.milvus_server import milvus_server
from servicekit.clients import connect
from servicekit.server import serving
from services.retrieval.app import servicers
from services.retrieval.documents import version_key
from services.retrieval.embedding import Embedder
from services.retrieval.settings import RetrievalSettings
from services.retrieval.store import Store
from tests.conftest import free_port
from tests.services.retrieval.test_store import (
    NEW,
    OLD,
    TENANT,
    chunks,
    each_mode,
    meta,
    pause_replaces,
    versions_seen,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVICE = "aftercare.retrieval.v1.RetrievalService"
# The engine's local mode refuses HNSW.
DENSE_INDEX = "AUTOINDEX"
ACME, GLOBEX = "acme", "globex"

REFUNDS = """# Refund policy

Northwind refunds purchases made in the last 30 days.

## Annual plans

Annual plans are refunded pro rata for the unused full months. Ask support with your invoice number.

## Monthly plans

Monthly plans are not refunded after the first 30 days, but you can cancel at any time.
"""

SSO = """# Configure SAML single sign-on

## Step 1: Verify your domain

Add the TXT record beacon-verification to your DNS and click Re-check.

## Step 2: Create the application in your IdP

Use the ACS URL https://app.beacon.example/sso/saml/acs and NameID format email address.
"""


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with milvus_server(tmp_path_factory.mktemp("milvus-server"), free_port()) as uri:
        yield uri


@pytest.fixture(scope="module")
def service_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("retrieval-service")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stub(milvus_uri: str, service_dir: Path, embedder: Embedder) -> AsyncIterator[RetrievalServiceStub]:
    settings = RetrievalSettings(port=0, data_dir=service_dir, milvus_uri=milvus_uri, milvus_dense_index=DENSE_INDEX)
    async with serving(settings, functools.partial(servicers, embedder=embedder)) as server:
        async with connect(f"127.0.0.1:{server.port}", SERVICE) as channel:
            stub = RetrievalServiceStub(channel)
            response = await stub.IngestDocuments(
                iter(
                    [
                        pb.IngestDocumentsRequest(
                            document=pb.Document(
                                tenant_id=ACME,
                                doc_id="refund-policy",
                                title="Refund policy",
                                body=REFUNDS,
                                format=pb.DOCUMENT_FORMAT_MARKDOWN,
                                doc_type=pb.DOCUMENT_TYPE_POLICY,
                            )
                        ),
                        pb.IngestDocumentsRequest(
                            document=pb.Document(
                                tenant_id=GLOBEX,
                                doc_id="configure-saml-sso",
                                title="Configure SAML single sign-on",
                                body=SSO,
                                format=pb.DOCUMENT_FORMAT_MARKDOWN,
                                doc_type=pb.DOCUMENT_TYPE_ARTICLE,
                            )
                        ),
                    ]
                )
            )
            assert [r.outcome for r in response.results] == [pb.INGEST_OUTCOME_CREATED] * 2
            assert response.chunks_written >= 4
            yield stub


async def search(stub: RetrievalServiceStub, tenant: str, query: str, mode: int) -> list[pb.SearchHit]:
    response = await stub.Search(pb.SearchRequest(tenant_id=tenant, query=query, top_k=5, mode=mode))
    return list(response.hits)


async def test_the_store_lives_on_the_server(stub: RetrievalServiceStub, milvus_uri: str, service_dir: Path) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=milvus_uri)
    try:
        assert RetrievalSettings(port=0).collection in client.list_collections()
    finally:
        client.close()
    # No embedded Milvus Lite file was opened beside the service.
    assert not (service_dir / "retrieval").exists()


@pytest.mark.parametrize(
    ("mode", "query"),
    [
        (pb.SEARCH_MODE_HYBRID, "Are annual plans refunded?"),
        (pb.SEARCH_MODE_DENSE, "pro rata refund of an annual plan"),
        (pb.SEARCH_MODE_KEYWORD, "annual plans refunded pro rata"),
    ],
)
async def test_each_mode_finds_the_right_section(stub: RetrievalServiceStub, mode: int, query: str) -> None:
    hits = await search(stub, ACME, query, mode)
    assert hits, "no hits"
    assert hits[0].doc_id == "refund-policy"
    assert hits[0].heading_path[-1] == "Annual plans"
    assert "pro rata" in hits[0].text


@pytest.mark.parametrize("mode", [pb.SEARCH_MODE_HYBRID, pb.SEARCH_MODE_DENSE, pb.SEARCH_MODE_KEYWORD])
async def test_keyword_terms_of_the_other_tenant(stub: RetrievalServiceStub, mode: int) -> None:
    hits = await search(stub, GLOBEX, "ACS URL NameID format", mode)
    assert hits and hits[0].doc_id == "configure-saml-sso"
    assert "NameID" in hits[0].text


@pytest.mark.parametrize("mode", [pb.SEARCH_MODE_HYBRID, pb.SEARCH_MODE_DENSE, pb.SEARCH_MODE_KEYWORD])
async def test_tenants_never_see_each_other(stub: RetrievalServiceStub, mode: int) -> None:
    # Each tenant asks for exactly what only the other tenant has.
    acme = await search(stub, ACME, "SAML single sign-on ACS URL NameID DNS TXT record", mode)
    globex = await search(stub, GLOBEX, "refund annual monthly plans invoice pro rata", mode)
    assert {hit.doc_id for hit in acme} <= {"refund-policy"}
    assert {hit.doc_id for hit in globex} <= {"configure-saml-sso"}
    assert all(hit.chunk_id.startswith(f"{ACME}/") for hit in acme)
    assert all(hit.chunk_id.startswith(f"{GLOBEX}/") for hit in globex)


async def test_stats_and_an_unknown_tenant(stub: RetrievalServiceStub) -> None:
    for tenant in (ACME, GLOBEX):
        stats = await stub.GetStats(pb.GetStatsRequest(tenant_id=tenant))
        assert stats.document_count == 1
        assert stats.chunk_count >= 2
    assert not await search(stub, "initech", "refund", pb.SEARCH_MODE_HYBRID)
    stats = await stub.GetStats(pb.GetStatsRequest(tenant_id="initech"))
    assert (stats.document_count, stats.chunk_count) == (0, 0)


async def test_unchanged_documents_are_not_rewritten(stub: RetrievalServiceStub) -> None:
    again = await stub.IngestDocuments(
        iter(
            [
                pb.IngestDocumentsRequest(
                    document=pb.Document(
                        tenant_id=ACME,
                        doc_id="refund-policy",
                        title="Refund policy",
                        body=REFUNDS,
                        format=pb.DOCUMENT_FORMAT_MARKDOWN,
                        doc_type=pb.DOCUMENT_TYPE_POLICY,
                    )
                )
            ]
        )
    )
    assert [r.outcome for r in again.results] == [pb.INGEST_OUTCOME_UNCHANGED]
    assert again.chunks_written == 0


async def test_a_replica_sees_another_replicas_replace_whole(
    milvus_uri: str, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two retrieval replicas on one server: the reader keeps copies of document versions
    # and must still never show the writer's document in two versions, or in none.
    writer = await asyncio.to_thread(Store.open, milvus_uri, "kb_replicas", embedder.dimension, DENSE_INDEX)
    await writer.replace_document(meta("v1"), chunks(embedder, OLD))
    reader = await asyncio.to_thread(Store.open, milvus_uri, "kb_replicas", embedder.dimension, DENSE_INDEX)
    old, new = version_key("v1", "test", "test"), version_key("v2", "test", "test")
    try:
        assert await versions_seen(reader, embedder) == each_mode({old})
        paused = pause_replaces(writer, monkeypatch)
        replace = asyncio.create_task(writer.replace_document(meta("v2"), chunks(embedder, NEW)))
        for step, expected in (("new chunks written", {old}), ("record switched", {new})):
            reached, resume = await asyncio.wait_for(paused.get(), 30)
            assert reached == step
            assert await versions_seen(reader, embedder) == each_mode(expected), step
            resume.set()
        await asyncio.wait_for(replace, 30)
        assert await versions_seen(reader, embedder) == each_mode({new})

        assert await writer.delete_documents(TENANT, ["router-light"]) == ["router-light"]
        assert await versions_seen(reader, embedder) == each_mode(set())
    finally:
        await reader.close()
        await writer.close()
