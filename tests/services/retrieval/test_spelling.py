"""Typos in a query are read as the tenant's own words (services/retrieval/spelling.py), and
Search says what it searched."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from aftercare.retrieval.v1 import retrieval_pb2 as pb
from aftercare.retrieval.v1.retrieval_pb2_grpc import RetrievalServiceStub
from servicekit.server import serving
from services.retrieval.app import servicers
from services.retrieval.embedding import Embedder
from services.retrieval.settings import RetrievalSettings
from services.retrieval.spelling import Speller, edit_distance

KB = [
    "Your account is locked after too many failed login attempts. It unlocks after 15 minutes.",
    "Invitation links for new members are valid for 7 days. Webhook signatures use your secret.",
    "Each batch request accepts at most 500 events. Send events to the batch endpoint.",
]
ENGLISH = ["after", "too", "many", "how", "long", "wait", "batch", "the", "max", "got", "my", "is"]


def test_edit_distance_counts_a_swap_of_neighbours_as_one_edit() -> None:
    assert edit_distance("evnets", "events") == 1
    assert edit_distance("acount", "account") == 1
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3


def test_typos_are_read_as_the_knowledge_bases_words() -> None:
    speller = Speller.of_texts(KB, ENGLISH)
    text, corrections = speller.correct("my acount got lockd after to many login atempts, how long do i wait")
    assert text == "my account got locked after to many login attempts, how long do i wait"
    assert [(c.written, c.corrected) for c in corrections] == [
        ("acount", "account"), ("lockd", "locked"), ("atempts", "attempts"),
    ]
    # One edit away at most.
    assert speller.correct("atemts")[1] == []


def test_known_words_short_words_and_inflections_are_left_alone() -> None:
    speller = Speller.of_texts(KB, [*ENGLISH, "cohort"])
    for text in ("cohorts", "invitations", "webhooks", "batches", "wait", "nr", "cust", "Zapier"):
        assert speller.correct(text) == (text, []), text


def test_no_guess_between_two_equally_near_and_common_words() -> None:
    tied = Speller.of_texts(["plans plane"])
    assert tied.correct("planx")[1] == []
    assert Speller.of_texts(["plans plans plane"]).correct("planx")[0] == "plans"


pytestmark_async = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stub(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> AsyncIterator[RetrievalServiceStub]:
    settings = RetrievalSettings(port=0, data_dir=tmp_path_factory.mktemp("spelling"), milvus_uri="")
    async with serving(settings, functools.partial(servicers, embedder=embedder)) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield RetrievalServiceStub(channel)


async def _ingest(stub: RetrievalServiceStub, tenant: str, doc_id: str, body: str) -> None:
    document = pb.Document(tenant_id=tenant, doc_id=doc_id, title=doc_id.title(), body=body)
    response = await stub.IngestDocuments(iter([pb.IngestDocumentsRequest(document=document)]), timeout=60)
    assert response.chunks_written > 0


@pytestmark_async
async def test_search_corrects_typos_and_says_what_it_searched(stub: RetrievalServiceStub) -> None:
    tenant = f"s-{uuid.uuid4().hex[:12]}"
    await _ingest(stub, tenant, "lockout", "# Account lockout\n\n" + KB[0])
    request = pb.SearchRequest(tenant_id=tenant, query="acount lockd", mode=pb.SEARCH_MODE_KEYWORD, top_k=3)
    response = await stub.Search(request, timeout=10)
    assert response.corrected_query == "account locked"
    assert [(c.written, c.corrected) for c in response.corrections] == [("acount", "account"), ("lockd", "locked")]
    # BM25 finds the article only through the corrected words.
    assert [hit.doc_id for hit in response.hits] == ["lockout"]
    # A query without typos is searched as sent.
    plain = await stub.Search(pb.SearchRequest(tenant_id=tenant, query="account locked"), timeout=10)
    assert plain.corrected_query == "" and not plain.corrections


@pytestmark_async
async def test_words_of_documents_ingested_later_are_learned(stub: RetrievalServiceStub) -> None:
    tenant = f"s-{uuid.uuid4().hex[:12]}"
    await _ingest(stub, tenant, "lockout", "# Account lockout\n\n" + KB[0])
    request = pb.SearchRequest(tenant_id=tenant, query="snowflak", mode=pb.SEARCH_MODE_KEYWORD)
    assert (await stub.Search(request, timeout=10)).corrected_query == ""
    await _ingest(stub, tenant, "warehouses", "# Warehouses\n\nBeacon exports to Snowflake and BigQuery every hour.")
    # The write made the vocabulary stale: one search with the old one starts the rebuild.
    await stub.Search(request, timeout=10)
    for _ in range(50):
        if (await stub.Search(request, timeout=10)).corrected_query == "snowflake":
            break
    assert (await stub.Search(request, timeout=10)).corrected_query == "snowflake"
