"""Language standardisation over gRPC: SetGlossary/GetGlossary, validation, background
re-indexing of stored documents, and persistence across a restart."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from aftercare.retrieval.v1 import retrieval_pb2 as pb
from aftercare.retrieval.v1.retrieval_pb2_grpc import RetrievalServiceStub
from servicekit.errors import details_from_rpc_error
from servicekit.server import serving
from services.retrieval.app import servicers
from services.retrieval.embedding import Embedder
from services.retrieval.settings import RetrievalSettings

pytestmark = pytest.mark.asyncio(loop_scope="module")

LOGIN = "# Workspace login\n\nTurn on SSO for your workspace under Admin, then require 2FA for every member.\n"
PASSWORDS = "# Passwords\n\nReset a forgotten password from the account page.\n"
GLOSSARY = [("SSO", "single sign-on"), ("2FA", "two-factor authentication")]


@pytest.fixture
def tenant() -> str:
    return f"g-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stub(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> AsyncIterator[RetrievalServiceStub]:
    settings = RetrievalSettings(port=0, data_dir=tmp_path_factory.mktemp("glossary"), milvus_uri="")
    async with serving(settings, functools.partial(servicers, embedder=embedder)) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield RetrievalServiceStub(channel)


def entries(pairs: list[tuple[str, str]]) -> list[pb.GlossaryEntry]:
    return [pb.GlossaryEntry(term=term, expansion=expansion) for term, expansion in pairs]


async def ingest(stub: RetrievalServiceStub, tenant: str) -> pb.IngestDocumentsResponse:
    documents = [
        pb.Document(tenant_id=tenant, doc_id="login", title="Workspace login", body=LOGIN),
        pb.Document(tenant_id=tenant, doc_id="passwords", title="Passwords", body=PASSWORDS),
    ]
    return await stub.IngestDocuments(iter([pb.IngestDocumentsRequest(document=d) for d in documents]), timeout=60)


async def keyword_hits(stub: RetrievalServiceStub, tenant: str, query: str) -> list[pb.SearchHit]:
    request = pb.SearchRequest(tenant_id=tenant, query=query, mode=pb.SEARCH_MODE_KEYWORD, top_k=10)
    return list((await stub.Search(request, timeout=10)).hits)


async def settled(stub: RetrievalServiceStub, tenant: str) -> pb.GetGlossaryResponse:
    """GetGlossary once the background re-index is done."""
    deadline = time.monotonic() + 60
    while (response := await stub.GetGlossary(pb.GetGlossaryRequest(tenant_id=tenant))).pending_document_count:
        assert time.monotonic() < deadline, "re-indexing did not finish"
        await asyncio.sleep(0.1)
    return response


async def test_a_new_glossary_reindexes_stored_documents(stub: RetrievalServiceStub, tenant: str) -> None:
    await ingest(stub, tenant)
    before = await keyword_hits(stub, tenant, "single sign-on")
    assert all(hit.doc_id != "login" for hit in before)

    response = await stub.SetGlossary(pb.SetGlossaryRequest(tenant_id=tenant, entries=entries(GLOSSARY)))
    assert response.entry_count == 2 and response.glossary_version
    assert response.reindex_document_count == 2

    current = await settled(stub, tenant)
    assert [(e.term, e.expansion) for e in current.entries] == GLOSSARY
    assert current.glossary_version == response.glossary_version
    for query in ("single sign-on", "two-factor authentication", "SSO"):
        hits = await keyword_hits(stub, tenant, query)
        assert hits and hits[0].doc_id == "login", query
    # The expansion shapes the index, never the text callers get back.
    assert hits[0].text == LOGIN.split("\n\n", 1)[1].strip()
    # Indexed with the current glossary already: nothing to redo.
    again = await ingest(stub, tenant)
    assert [r.outcome for r in again.results] == [pb.INGEST_OUTCOME_UNCHANGED] * 2

    # Queries are expanded too: a customer's "2FA" meets a manual that spells it out.
    await stub.IngestDocuments(
        iter(
            [
                pb.IngestDocumentsRequest(
                    document=pb.Document(
                        tenant_id=tenant,
                        doc_id="mfa",
                        title="Second factor",
                        body="# Second factor\n\nTwo-factor authentication asks for a code from your phone.\n",
                    )
                )
            ]
        ),
        timeout=60,
    )
    assert (await keyword_hits(stub, tenant, "2FA code"))[0].doc_id == "mfa"

    cleared = await stub.SetGlossary(pb.SetGlossaryRequest(tenant_id=tenant))
    assert (cleared.entry_count, cleared.glossary_version, cleared.reindex_document_count) == (0, "", 3)
    assert not (await settled(stub, tenant)).entries
    assert all(hit.doc_id != "login" for hit in await keyword_hits(stub, tenant, "single sign-on"))


async def test_documents_ingested_after_the_glossary_need_no_reindex(stub: RetrievalServiceStub, tenant: str) -> None:
    response = await stub.SetGlossary(pb.SetGlossaryRequest(tenant_id=tenant, entries=entries(GLOSSARY)))
    assert response.reindex_document_count == 0
    await ingest(stub, tenant)
    assert (await stub.GetGlossary(pb.GetGlossaryRequest(tenant_id=tenant))).pending_document_count == 0
    assert (await keyword_hits(stub, tenant, "single sign-on"))[0].doc_id == "login"


async def test_glossaries_are_per_tenant(stub: RetrievalServiceStub, tenant: str) -> None:
    other = f"{tenant}-other"
    await stub.SetGlossary(pb.SetGlossaryRequest(tenant_id=tenant, entries=entries(GLOSSARY)))
    await ingest(stub, other)
    assert not (await stub.GetGlossary(pb.GetGlossaryRequest(tenant_id=other))).entries
    assert all(hit.doc_id != "login" for hit in await keyword_hits(stub, other, "single sign-on"))


async def test_glossary_validation_names_each_bad_entry(stub: RetrievalServiceStub, tenant: str) -> None:
    bad = [
        ("SSO", "single sign-on"),
        ("  ", "blank term"),
        ("x" * 65, "term too long"),
        ("sso", "the same term in another case"),
        ("2FA", ""),
        ("--", "no letter or digit"),
        ("ok", "y" * 257),
        ("nul\x00", "bad text"),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SetGlossary(pb.SetGlossaryRequest(tenant_id=tenant, entries=entries(bad)))
    details = details_from_rpc_error(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [name for name, _ in details.field_violations] == [
        "entries[1].term",
        "entries[2].term",
        "entries[3].term",
        "entries[4].expansion",
        "entries[5].term",
        "entries[6].expansion",
        "entries[7].term",
    ]
    assert "duplicates entries[0].term" in details.field_violations[2][1]
    # Nothing was stored.
    assert not (await stub.GetGlossary(pb.GetGlossaryRequest(tenant_id=tenant))).entries

    many = [(f"T{i}", "term") for i in range(2001)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SetGlossary(pb.SetGlossaryRequest(tenant_id=tenant, entries=entries(many)))
    assert details_from_rpc_error(caught.value).field_violations == [("entries", "at most 2000 entries")]
    for call in (
        stub.SetGlossary(pb.SetGlossaryRequest(tenant_id='a" or "1', entries=entries(GLOSSARY))),
        stub.GetGlossary(pb.GetGlossaryRequest(tenant_id="")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert [name for name, _ in details_from_rpc_error(caught.value).field_violations] == ["tenant_id"]


async def test_the_largest_glossary_round_trips(stub: RetrievalServiceStub, tenant: str) -> None:
    largest = [(f"T{i:04d}-" + "t" * 58, "e" * 256) for i in range(2000)]
    response = await stub.SetGlossary(pb.SetGlossaryRequest(tenant_id=tenant, entries=entries(largest)), timeout=30)
    assert response.entry_count == 2000
    current = await stub.GetGlossary(pb.GetGlossaryRequest(tenant_id=tenant), timeout=30)
    assert [(e.term, e.expansion) for e in current.entries] == largest


async def test_a_glossary_survives_a_restart(tmp_path: Path, embedder: Embedder) -> None:
    settings = RetrievalSettings(port=0, data_dir=tmp_path, milvus_uri="")
    for attempt in range(2):
        async with serving(settings, functools.partial(servicers, embedder=embedder)) as running:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                stub = RetrievalServiceStub(channel)
                if attempt == 0:
                    await stub.SetGlossary(pb.SetGlossaryRequest(tenant_id="acme", entries=entries(GLOSSARY)))
                current = await stub.GetGlossary(pb.GetGlossaryRequest(tenant_id="acme"))
                assert [(e.term, e.expansion) for e in current.entries] == GLOSSARY
