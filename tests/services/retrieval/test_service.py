"""RetrievalService end to end in this process: real server, real channel, Milvus Lite file.

One server serves the whole module (opening Milvus Lite and the model is the slow
part); every test works in its own tenant, which is also what isolation promises.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp

from aftercare.retrieval.v1 import retrieval_pb2 as pb
from aftercare.retrieval.v1.retrieval_pb2_grpc import RetrievalServiceStub
from servicekit.errors import details_from_rpc_error
from servicekit.ids import ID_RULE
from servicekit.server import serving
from services.retrieval.app import servicers
from services.retrieval.embedding import Embedder
from services.retrieval.ingest import ingest_folder
from services.retrieval.settings import RetrievalSettings

pytestmark = pytest.mark.asyncio(loop_scope="module")
ID_RULE_PROBLEM = f"only {ID_RULE}"

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

WEBHOOKS = """# Webhooks and alerts FAQ

## How often are failed webhooks retried?

Failed deliveries are retried 8 times with exponential backoff over 24 hours, then the endpoint is disabled.

## Can I sign webhook payloads?

Yes, every request carries an X-Beacon-Signature header, an HMAC-SHA256 of the body.
"""


def document(tenant: str, doc_id: str, body: str, **fields: object) -> pb.Document:
    title = fields.pop("title", None) or body.splitlines()[0].lstrip("# ")
    return pb.Document(tenant_id=tenant, doc_id=doc_id, title=title, body=body, **fields)  # type: ignore[arg-type]


def kb(tenant: str) -> list[pb.Document]:
    return [
        document(tenant, "refund-policy", REFUNDS, doc_type=pb.DOCUMENT_TYPE_POLICY, product="beacon", version="4.3"),
        document(tenant, "configure-saml-sso", SSO, doc_type=pb.DOCUMENT_TYPE_ARTICLE, product="beacon", version="4.2"),
        document(tenant, "faq-webhooks", WEBHOOKS, doc_type=pb.DOCUMENT_TYPE_FAQ, product="beacon", version="4.3"),
    ]


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stub(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> AsyncIterator[RetrievalServiceStub]:
    settings = RetrievalSettings(port=0, data_dir=tmp_path_factory.mktemp("retrieval"), milvus_uri="")
    async with serving(settings, functools.partial(servicers, embedder=embedder)) as running:
        # A plain channel: the mesh deadline is not what these tests are about.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield RetrievalServiceStub(channel)


async def ingest(stub: RetrievalServiceStub, documents: Sequence[pb.Document]) -> pb.IngestDocumentsResponse:
    return await stub.IngestDocuments(iter([pb.IngestDocumentsRequest(document=d) for d in documents]), timeout=60)


async def search(stub: RetrievalServiceStub, tenant: str, query: str, **fields: object) -> list[pb.SearchHit]:
    response = await stub.Search(pb.SearchRequest(tenant_id=tenant, query=query, **fields), timeout=10)  # type: ignore[arg-type]
    return list(response.hits)


async def rejected(call: object) -> list[tuple[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    details = details_from_rpc_error(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT, details
    return details.field_violations


@pytest.mark.parametrize(
    ("mode", "query", "expected"),
    [
        (pb.SEARCH_MODE_HYBRID, "can I get my money back for a yearly subscription?", "refund-policy"),
        (pb.SEARCH_MODE_UNSPECIFIED, "how many times do you retry a failed webhook", "faq-webhooks"),
        (pb.SEARCH_MODE_DENSE, "can I get my money back for a yearly subscription?", "refund-policy"),
        (pb.SEARCH_MODE_KEYWORD, "ACS URL NameID", "configure-saml-sso"),
    ],
)
async def test_search_finds_the_right_document(
    stub: RetrievalServiceStub, tenant: str, mode: int, query: str, expected: str
) -> None:
    response = await ingest(stub, kb(tenant))
    assert [r.outcome for r in response.results] == [pb.INGEST_OUTCOME_CREATED] * 3
    assert response.chunks_written == sum(r.chunk_count for r in response.results) > 3

    search_response = await stub.Search(pb.SearchRequest(tenant_id=tenant, query=query, mode=mode, top_k=3))
    hits = search_response.hits
    assert search_response.embedding_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert hits and hits[0].doc_id == expected, [(h.doc_id, h.heading_path, h.score) for h in hits]
    top = hits[0]
    assert top.chunk_id and top.title and top.text and top.heading_path
    assert 0.0 < top.similarity <= 1.0001
    assert top.score > 0
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    if mode == pb.SEARCH_MODE_DENSE:
        assert top.score == pytest.approx(top.similarity, abs=1e-3)


async def test_hit_carries_metadata_and_faq_chunk_is_question_and_answer(
    stub: RetrievalServiceStub, tenant: str
) -> None:
    await ingest(stub, kb(tenant))
    hits = await search(stub, tenant, "are webhook payloads signed?", top_k=1)
    assert hits[0].heading_path == ["Webhooks and alerts FAQ", "Can I sign webhook payloads?"]
    assert hits[0].text.startswith("Yes, every request carries an X-Beacon-Signature header")
    assert hits[0].doc_type == pb.DOCUMENT_TYPE_FAQ
    assert hits[0].version == "4.3"


async def test_answer_units_are_matched_by_their_question_and_never_mix_with_passages(
    stub: RetrievalServiceStub, tenant: str
) -> None:
    await ingest(stub, kb(tenant))
    units = await search(stub, tenant, "do you retry webhooks that failed?", top_k=3, answer_units=True)
    top = units[0]
    # The FAQ entry as a whole answer, found by its question.
    assert top.unit_question == "How often are failed webhooks retried?"
    assert top.text.startswith("Failed deliveries are retried 8 times")
    assert top.question_similarity == pytest.approx(top.similarity) and top.question_similarity > 0.5
    # Every hit of a unit search is a unit; no passage search returns one.
    assert all(hit.unit_question for hit in units)
    passages = await search(stub, tenant, "do you retry webhooks that failed?", top_k=10)
    assert passages and not any(hit.unit_question for hit in passages)
    assert not {hit.chunk_id for hit in units} & {hit.chunk_id for hit in passages}
    # A how-to section is a unit for the task its heading names.
    step = await search(stub, tenant, "which ACS URL do I give my IdP?", top_k=1, answer_units=True)
    assert step[0].unit_question == "Configure SAML single sign-on: Step 2: Create the application in your IdP"


async def test_top_k_defaults_to_five(stub: RetrievalServiceStub, tenant: str) -> None:
    await ingest(stub, kb(tenant))
    assert len(await search(stub, tenant, "beacon")) == 5


async def test_reingesting_unchanged_documents_is_a_no_op(stub: RetrievalServiceStub, tenant: str) -> None:
    first = await ingest(stub, kb(tenant))
    stats = await stub.GetStats(pb.GetStatsRequest(tenant_id=tenant))
    again = await ingest(stub, kb(tenant))
    assert [r.outcome for r in again.results] == [pb.INGEST_OUTCOME_UNCHANGED] * 3
    assert again.chunks_written == 0
    assert [(r.content_hash, r.chunk_count) for r in again.results] == [
        (r.content_hash, r.chunk_count) for r in first.results
    ]
    assert await stub.GetStats(pb.GetStatsRequest(tenant_id=tenant)) == stats
    assert (stats.document_count, stats.chunk_count) == (3, first.chunks_written)


async def test_changed_document_replaces_its_chunks(stub: RetrievalServiceStub, tenant: str) -> None:
    await ingest(stub, kb(tenant))
    before = await search(stub, tenant, "pro rata unused months", mode=pb.SEARCH_MODE_KEYWORD)
    assert before[0].doc_id == "refund-policy"

    changed = REFUNDS.replace("pro rata for the unused full months", "as store credit valid for twelve months")
    response = await ingest(
        stub,
        [document(tenant, "refund-policy", changed, doc_type=pb.DOCUMENT_TYPE_POLICY, product="beacon", version="4.3")],
    )
    result = response.results[0]
    assert result.outcome == pb.INGEST_OUTCOME_UPDATED
    assert all(
        hit.doc_id != "refund-policy" or "pro rata" not in hit.text
        for hit in await search(stub, tenant, "pro rata unused months", mode=pb.SEARCH_MODE_KEYWORD, top_k=50)
    )
    after = await search(stub, tenant, "store credit", mode=pb.SEARCH_MODE_KEYWORD)
    assert after[0].doc_id == "refund-policy" and "store credit" in after[0].text
    stats = await stub.GetStats(pb.GetStatsRequest(tenant_id=tenant))
    assert stats.document_count == 3
    # Old chunks are gone: the document's hits are exactly its new passages and answer units.
    mine = [
        h
        for units in (False, True)
        for h in await search(stub, tenant, "refund", top_k=50, mode=pb.SEARCH_MODE_DENSE, answer_units=units)
        if h.doc_id == "refund-policy"
    ]
    assert len(mine) == result.chunk_count
    assert all(h.chunk_id != b.chunk_id for h in mine for b in before)


async def test_delete_removes_documents(stub: RetrievalServiceStub, tenant: str) -> None:
    await ingest(stub, kb(tenant))
    response = await stub.DeleteDocuments(
        pb.DeleteDocumentsRequest(tenant_id=tenant, doc_ids=["refund-policy", "never-existed"])
    )
    assert list(response.deleted_doc_ids) == ["refund-policy"]
    assert list(response.missing_doc_ids) == ["never-existed"]
    for mode in (pb.SEARCH_MODE_HYBRID, pb.SEARCH_MODE_DENSE, pb.SEARCH_MODE_KEYWORD):
        hits = await search(stub, tenant, "refund annual plan pro rata", mode=mode, top_k=50)
        assert all(hit.doc_id != "refund-policy" for hit in hits)
    stats = await stub.GetStats(pb.GetStatsRequest(tenant_id=tenant))
    assert stats.document_count == 2
    # Deleted then ingested again: created anew.
    again = await ingest(stub, kb(tenant)[:1])
    assert again.results[0].outcome == pb.INGEST_OUTCOME_CREATED


async def test_documents_are_listed_page_by_page(stub: RetrievalServiceStub, tenant: str) -> None:
    await ingest(stub, kb(tenant))
    first = await stub.ListDocuments(pb.ListDocumentsRequest(tenant_id=tenant, page_size=2))
    assert [d.doc_id for d in first.documents] == ["configure-saml-sso", "faq-webhooks"]
    assert first.documents[1].doc_type == pb.DOCUMENT_TYPE_FAQ
    assert first.documents[1].title == "Webhooks and alerts FAQ" and first.documents[1].chunk_count >= 2
    assert first.next_page_token
    rest = await stub.ListDocuments(
        pb.ListDocumentsRequest(tenant_id=tenant, page_size=2, page_token=first.next_page_token)
    )
    assert [(d.doc_id, d.version) for d in rest.documents] == [("refund-policy", "4.3")]
    assert not rest.next_page_token
    other = await stub.ListDocuments(pb.ListDocumentsRequest(tenant_id=f"x-{tenant}"))
    assert list(other.documents) == []
    problems = await rejected(
        stub.ListDocuments(pb.ListDocumentsRequest(tenant_id=tenant, page_size=500, page_token="not-ours!"))
    )
    assert {field for field, _ in problems} == {"page_size", "page_token"}


async def test_tenants_are_isolated(stub: RetrievalServiceStub) -> None:
    tenant_a, tenant_b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    secret = "Tenant A's private runbook: rotate the zebra-quartz key every 17 days."
    await ingest(stub, [document(tenant_a, "runbook", f"# Runbook\n\n{secret}\n")])
    await ingest(stub, [document(tenant_b, "other", "# Other\n\nNothing to see.\n")])
    for mode in (pb.SEARCH_MODE_HYBRID, pb.SEARCH_MODE_DENSE, pb.SEARCH_MODE_KEYWORD):
        hits = await search(stub, tenant_b, secret, mode=mode, top_k=50)
        assert all(hit.doc_id == "other" for hit in hits), hits
        assert all("zebra" not in hit.text for hit in hits)
    # Same doc_id in two tenants: two documents, neither overwrites the other.
    await ingest(stub, [document(tenant_b, "runbook", "# Runbook\n\nB's own runbook.\n")])
    a_hits = await search(stub, tenant_a, "runbook", top_k=50)
    assert [hit.text for hit in a_hits] == [secret]
    assert (await stub.GetStats(pb.GetStatsRequest(tenant_id=tenant_b))).document_count == 2
    deleted = await stub.DeleteDocuments(pb.DeleteDocumentsRequest(tenant_id=tenant_b, doc_ids=["runbook"]))
    assert list(deleted.deleted_doc_ids) == ["runbook"]
    assert [hit.text for hit in await search(stub, tenant_a, "runbook", top_k=50)] == [secret]


@pytest.mark.parametrize("evil", ['a" or tenant_id != "x', "a' or 1==1", "a\\", "", "x" * 129])
async def test_tenant_ids_that_could_escape_the_filter_are_rejected(stub: RetrievalServiceStub, evil: str) -> None:
    expected = {"": "required", "x" * 129: "at most 128 characters"}.get(evil, ID_RULE_PROBLEM)
    assert await rejected(stub.Search(pb.SearchRequest(tenant_id=evil, query="runbook"))) == [("tenant_id", expected)]
    assert [v[0] for v in await rejected(stub.GetStats(pb.GetStatsRequest(tenant_id=evil)))] == ["tenant_id"]
    assert [
        v[0] for v in await rejected(stub.DeleteDocuments(pb.DeleteDocumentsRequest(tenant_id=evil, doc_ids=["x"])))
    ] == ["tenant_id"]
    violations = await rejected(ingest(stub, [document(evil, "x", "# X\n\nbody")]))
    assert [v[0] for v in violations] == ["document.tenant_id"]


async def test_filter_values_are_quoted_not_interpreted(stub: RetrievalServiceStub, tenant: str) -> None:
    await ingest(stub, kb(tenant))
    for product in ['beacon" or product != "', "beacon\\", 'x" || tenant_id != "']:
        hits = await search(stub, tenant, "refund", filter=pb.SearchFilter(product=product))
        assert hits == []


async def test_metadata_filters(stub: RetrievalServiceStub, tenant: str) -> None:
    documents = kb(tenant)
    stamp = Timestamp(seconds=1_800_000_000)
    documents[1].updated_at.CopyFrom(stamp)
    await ingest(stub, documents)

    async def doc_ids(**filter_fields: object) -> set[str]:
        hits = await search(
            stub, tenant, "beacon plan webhook domain", top_k=50, filter=pb.SearchFilter(**filter_fields)
        )  # type: ignore[arg-type]
        return {hit.doc_id for hit in hits}

    assert await doc_ids() == {"refund-policy", "configure-saml-sso", "faq-webhooks"}
    assert await doc_ids(doc_types=[pb.DOCUMENT_TYPE_FAQ]) == {"faq-webhooks"}
    assert await doc_ids(doc_types=[pb.DOCUMENT_TYPE_FAQ, pb.DOCUMENT_TYPE_POLICY]) == {"faq-webhooks", "refund-policy"}
    assert await doc_ids(version="4.2") == {"configure-saml-sso"}
    assert await doc_ids(product="other") == set()
    assert await doc_ids(updated_after=Timestamp(seconds=1_700_000_000)) == {"configure-saml-sso"}


async def test_html_and_text_documents(stub: RetrievalServiceStub, tenant: str) -> None:
    html = (
        "<html><body><h1>Data exports</h1><p>Intro.</p><h2>Amazon S3</h2>"
        "<p>Grant s3:PutObject on the bucket to the Beacon export role.</p></body></html>"
    )
    await ingest(
        stub,
        [
            document(tenant, "exports", html, title="Data exports", format=pb.DOCUMENT_FORMAT_HTML),
            document(
                tenant,
                "notes",
                "Release 4.3\n\nThe JavaScript SDK now batches events.",
                title="Release 4.3",
                format=pb.DOCUMENT_FORMAT_TEXT,
            ),
        ],
    )
    hits = await search(stub, tenant, "which permission does the S3 export need?", top_k=1)
    assert hits[0].doc_id == "exports"
    assert list(hits[0].heading_path) == ["Data exports", "Amazon S3"]
    assert hits[0].text == "Grant s3:PutObject on the bucket to the Beacon export role."
    hits = await search(stub, tenant, "javascript sdk batching", top_k=1)
    assert hits[0].doc_id == "notes" and list(hits[0].heading_path) == []


async def test_search_validation_lists_every_problem(stub: RetrievalServiceStub, tenant: str) -> None:
    violations = await rejected(stub.Search(pb.SearchRequest(tenant_id=tenant, query="  ", top_k=51)))
    assert [field for field, _ in violations] == ["query", "top_k"]
    violations = await rejected(stub.Search(pb.SearchRequest(tenant_id=tenant, query="q" * 2001, top_k=-1)))
    assert [field for field, _ in violations] == ["query", "top_k"]
    violations = await rejected(
        stub.Search(
            pb.SearchRequest(
                tenant_id=tenant,
                query="ok",
                mode=99,
                filter=pb.SearchFilter(doc_types=[42], version="v\x00"),
            )
        )
    )
    assert [field for field, _ in violations] == ["mode", "filter.doc_types[0]", "filter.version"]
    assert await search(stub, tenant, "q" * 2000, top_k=50) == []


async def test_document_validation(stub: RetrievalServiceStub, tenant: str) -> None:
    cases = [
        (document(tenant, "a", "# A\n\nbody", title=" "), "document.title"),
        (document(tenant, "a", "   \n", title="A"), "document.body"),
        (document(tenant, "a", "# A\n\nnul \x00 byte"), "document.body"),
        (document(tenant, "a", "# A\n\n" + "x" * (1024 * 1024)), "document.body"),
        (document(tenant, "a b", "# A\n\nbody"), "document.doc_id"),
        (document(tenant, "", "# A\n\nbody"), "document.doc_id"),
        (document(tenant, "a", "# A\n\nbody", doc_type=17), "document.doc_type"),
        (document(tenant, "a", "# A\n\nbody", format=9), "document.format"),
    ]
    for bad, field in cases:
        violations = await rejected(ingest(stub, [bad]))
        assert [name for name, _ in violations] == [field], (bad.doc_id, violations)
        assert "document #0" in violations[0][1]
    violations = await rejected(stub.DeleteDocuments(pb.DeleteDocumentsRequest(tenant_id=tenant, doc_ids=[])))
    assert [name for name, _ in violations] == ["doc_ids"]
    violations = await rejected(
        stub.DeleteDocuments(pb.DeleteDocumentsRequest(tenant_id=tenant, doc_ids=["ok", 'x" or "1']))
    )
    assert [name for name, _ in violations] == ["doc_ids[1]"]


async def test_a_bad_document_rejects_the_whole_stream(stub: RetrievalServiceStub, tenant: str) -> None:
    good = kb(tenant)
    bad = document(tenant, "broken", "# Broken\n\n\x00")
    violations = await rejected(ingest(stub, [good[0], bad, good[1], good[2]]))
    assert violations == [("document.body", "document #1 (doc_id 'broken'): must not contain NUL characters")]
    stats = await stub.GetStats(pb.GetStatsRequest(tenant_id=tenant))
    assert (stats.document_count, stats.chunk_count) == (0, 0)
    # The same doc_id twice in one stream is ambiguous: rejected too.
    violations = await rejected(ingest(stub, [good[0], good[0]]))
    assert [name for name, _ in violations] == ["document.doc_id"]
    assert (await stub.GetStats(pb.GetStatsRequest(tenant_id=tenant))).document_count == 0


async def test_ingest_folder(stub: RetrievalServiceStub, tenant: str, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# Not a document\n")
    (tmp_path / "faq.md").write_text(f'---\ndoc_type: faq\nversion: "4.3"\n---\n{WEBHOOKS}')
    (tmp_path / "refunds.md").write_text(REFUNDS)
    seen: list[tuple[int, int]] = []
    response = await ingest_folder(stub, tmp_path, tenant, progress=lambda done, total: seen.append((done, total)))
    assert [(r.doc_id, r.outcome) for r in response.results] == [
        ("faq", pb.INGEST_OUTCOME_CREATED),
        ("refunds", pb.INGEST_OUTCOME_CREATED),
    ]
    assert seen[-1] == (2, 2)
    hits = await search(stub, tenant, "webhook retries", top_k=1)
    assert hits[0].doc_id == "faq" and hits[0].doc_type == pb.DOCUMENT_TYPE_FAQ and hits[0].version == "4.3"
