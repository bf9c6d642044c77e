"""Tier 0 (SuggestForContext, DismissSuggestion): query building, relevance gate,
dismissals and the per-user rate limit, with a scripted retrieval and a real
SQLite store; then through real servers, retrieval included."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from aftercare.retrieval.v1 import retrieval_pb2
from aftercare.retrieval.v1.retrieval_pb2_grpc import RetrievalServiceStub
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import customer_pb2
from servicekit.database import make_engine
from servicekit.errors import details_from_rpc_error
from servicekit.server import serving
from services.triage.app import servicers
from services.triage.settings import TriageSettings
from services.triage.tier0 import QueryPlan, Suggester, best_sentence, build_query, choose, page_words
from services.triage.tier0_store import RateLimit, Tier0Store

T0 = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
LIMIT = RateLimit(
    max_per_window=2,
    window=dt.timedelta(hours=1),
    min_interval=dt.timedelta(minutes=2),
    repeat_after=dt.timedelta(days=1),
)


def hit(doc_id: str, similarity: float, text: str = "Retry failed webhooks. They are retried 8 times.", **kw):
    return retrieval_pb2.SearchHit(
        doc_id=doc_id, title=kw.pop("title", doc_id.title()), text=text, url=f"https://kb/{doc_id}",
        similarity=similarity, **kw,
    )


class ScriptedRetrieval:
    """Answers every Search with the same hits and remembers the queries."""

    def __init__(self, hits: list[retrieval_pb2.SearchHit]) -> None:
        self.hits = hits
        self.requests: list[retrieval_pb2.SearchRequest] = []

    async def Search(self, request: retrieval_pb2.SearchRequest) -> retrieval_pb2.SearchResponse:
        self.requests.append(request)
        return retrieval_pb2.SearchResponse(hits=self.hits)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def ask(
    customer: str = "u-1",
    *,
    search: str = "",
    errors: tuple[str, ...] = (),
    page: str = "/settings/webhooks",
    feature: str = "webhooks",
    dwell: int = 5,
    dismissed: tuple[str, ...] = (),
    tenant: str = "acme",
) -> triage_pb2.SuggestForContextRequest:
    return triage_pb2.SuggestForContextRequest(
        customer=customer_pb2.CustomerRef(tenant_id=tenant, customer_id=customer),
        context=triage_pb2.BrowsingContext(
            page=page, feature=feature, dwell_seconds=dwell, recent_errors=list(errors), search_query=search
        ),
        dismissed_doc_ids=list(dismissed),
    )


def dismiss(doc_id: str, customer: str = "u-1", tenant: str = "acme") -> triage_pb2.DismissSuggestionRequest:
    return triage_pb2.DismissSuggestionRequest(
        customer=customer_pb2.CustomerRef(tenant_id=tenant, customer_id=customer), doc_id=doc_id
    )


@pytest.fixture
def store(tmp_path: Path) -> Tier0Store:
    store = Tier0Store(make_engine(f"sqlite:///{tmp_path / 'tier0.db'}"), LIMIT)
    store.migrate()
    return store


def suggester(store: Tier0Store, retrieval: ScriptedRetrieval, clock: Clock) -> Suggester:
    return Suggester(retrieval, store, min_relevance=0.45, min_dwell_seconds=45, clock=clock)


# --- the query --------------------------------------------------------------------


def test_page_paths_become_words_without_ids_or_noise() -> None:
    assert page_words("https://app.example.com/settings/billing/invoices/12345?tab=pdf") == (
        "example settings billing invoices tab pdf"
    )
    assert page_words("/projects/3fa2c1d9e8b7/api-keys") == "projects keys"


def test_the_query_leads_with_the_users_words_then_errors_then_the_place() -> None:
    plan = build_query(
        triage_pb2.BrowsingContext(
            page="/settings/webhooks",
            feature="Webhooks",
            search_query="  retry   failed deliveries ",
            recent_errors=["old error", "E1001 timeout", "HTTP 429 Too Many Requests"],
        ),
        min_dwell_seconds=45,
    )
    assert plan is not None
    # Only the two newest errors; words of the place once each.
    assert plan.query == "retry failed deliveries. E1001 timeout. HTTP 429 Too Many Requests. webhooks settings"
    assert plan.signals == [
        'you searched for "retry failed deliveries"',
        'you just hit the error "HTTP 429 Too Many Requests" on Webhooks',
    ]


def test_without_search_or_error_only_a_long_dwell_asks_for_help() -> None:
    short = triage_pb2.BrowsingContext(page="/billing/invoices", dwell_seconds=44)
    long = triage_pb2.BrowsingContext(page="/billing/invoices", dwell_seconds=45)
    assert build_query(short, min_dwell_seconds=45) is None
    plan = build_query(long, min_dwell_seconds=45)
    assert plan is not None and plan.query == "billing invoices"
    assert plan.signals == ["you have spent 45 s on /billing/invoices"]


def test_the_snippet_is_the_sentence_closest_to_the_query() -> None:
    text = "# Webhooks\n\nWebhooks notify your server of events. Failed deliveries are retried 8 times over 24 hours."
    assert best_sentence(text, "retry failed deliveries") == "Failed deliveries are retried 8 times over 24 hours."
    assert len(best_sentence("word " * 200, "word")) <= 240


def test_choose_refuses_low_relevance_dismissed_and_recent_documents() -> None:
    plan = QueryPlan("q", ["you searched for \"q\""])
    hits = [hit("a", 0.80), hit("b", 0.60), hit("c", 0.30)]
    assert choose([], plan, min_relevance=0.45, dismissed=set(), recently_shown=set()).reason == "no_results"
    low = choose([hit("c", 0.44)], plan, min_relevance=0.45, dismissed=set(), recently_shown=set())
    assert low.suggestion is None and low.reason == "low_relevance"
    assert choose(hits, plan, min_relevance=0.45, dismissed={"a", "b"}, recently_shown=set()).reason == "dismissed"
    assert choose(hits, plan, min_relevance=0.45, dismissed={"a"}, recently_shown={"b"}).reason == "recently_shown"
    picked = choose(hits, plan, min_relevance=0.45, dismissed={"a"}, recently_shown=set()).suggestion
    assert picked is not None and picked.doc_id == "b" and picked.relevance == 0.6
    assert picked.reason == 'You searched for "q": this article matches it (relevance 0.60).'
    assert picked.kind == triage_pb2.SUGGESTION_KIND_ARTICLE
    faq = choose([hit("f", 0.7, doc_type=retrieval_pb2.DOCUMENT_TYPE_FAQ)], plan, min_relevance=0.45,
                 dismissed=set(), recently_shown=set()).suggestion
    assert faq is not None and faq.kind == triage_pb2.SUGGESTION_KIND_TIP


# --- the suggester: retrieval scripted, store real ------------------------------------


async def test_one_relevant_suggestion_with_its_why(store: Tier0Store) -> None:
    retrieval = ScriptedRetrieval([hit("webhook-retries", 0.71), hit("api-keys", 0.52)])
    response = await suggester(store, retrieval, Clock()).suggest(ask(search="webhook retries"))

    assert response.suggestion.doc_id == "webhook-retries"
    assert response.suggestion.url == "https://kb/webhook-retries"
    assert response.suggestion.snippet == "Retry failed webhooks."
    assert "webhook retries" in response.suggestion.reason
    assert response.no_suggestion_reason == ""
    assert response.query == "webhook retries. webhooks settings"
    (request,) = retrieval.requests
    assert request.tenant_id == "acme" and request.query == response.query
    assert request.mode == retrieval_pb2.SEARCH_MODE_HYBRID


async def test_nothing_without_a_signal_and_no_search_is_made(store: Tier0Store) -> None:
    retrieval = ScriptedRetrieval([hit("webhook-retries", 0.9)])
    response = await suggester(store, retrieval, Clock()).suggest(ask(dwell=10))

    assert not response.HasField("suggestion")
    assert response.no_suggestion_reason == "no_signal"
    assert retrieval.requests == []


async def test_never_below_the_relevance_threshold(store: Tier0Store) -> None:
    retrieval = ScriptedRetrieval([hit("vaguely-related", 0.449)])
    response = await suggester(store, retrieval, Clock()).suggest(ask(errors=("E42 quota exceeded",)))

    assert not response.HasField("suggestion")
    assert response.no_suggestion_reason == "low_relevance"


async def test_the_rate_limit_holds_per_user_and_says_when_to_come_back(store: Tier0Store) -> None:
    clock = Clock()
    tier0 = suggester(store, ScriptedRetrieval([hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)]), clock)

    first = await tier0.suggest(ask(search="help"))
    assert first.suggestion.doc_id == "a"
    soon = await tier0.suggest(ask(search="help"))
    assert soon.no_suggestion_reason == "rate_limited" and soon.retry_after_seconds == 120
    # Another user of the same tenant is not limited by this one.
    other = await tier0.suggest(ask("u-2", search="help"))
    assert other.suggestion.doc_id == "a"

    clock.advance(minutes=2)
    second = await tier0.suggest(ask(search="help"))
    assert second.suggestion.doc_id == "b"  # "a" was shown today already
    clock.advance(minutes=10)
    third = await tier0.suggest(ask(search="help"))
    # Two per hour: the first one leaves the window an hour after it was shown.
    assert third.no_suggestion_reason == "rate_limited"
    assert third.retry_after_seconds == 48 * 60
    clock.advance(minutes=48)
    assert (await tier0.suggest(ask(search="help"))).suggestion.doc_id == "c"


async def test_dismissals_are_remembered_and_never_suggested_again(store: Tier0Store) -> None:
    clock = Clock()
    tier0 = suggester(store, ScriptedRetrieval([hit("a", 0.9), hit("b", 0.8)]), clock)

    assert (await tier0.dismiss(dismiss("a"))).newly_dismissed is True
    assert (await tier0.dismiss(dismiss("a"))).newly_dismissed is False
    response = await tier0.suggest(ask(search="help"))
    assert response.suggestion.doc_id == "b"
    # Dismissed on the page but not yet reported: the request's own list counts too.
    clock.advance(days=2)
    response = await tier0.suggest(ask(search="help", dismissed=("b",)))
    assert response.no_suggestion_reason == "dismissed"
    # Another user dismissed nothing.
    assert (await tier0.suggest(ask("u-2", search="help"))).suggestion.doc_id == "a"


async def test_a_dismissal_survives_a_new_store_on_the_same_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tier0.db'}"
    first = Tier0Store(make_engine(url), LIMIT)
    first.migrate()
    assert first.dismiss("acme", "u-1", "a", T0)
    again = Tier0Store(make_engine(url), LIMIT)
    again.migrate()
    assert again.user_state("acme", "u-1", T0).dismissed == {"a"}


async def test_state_lives_in_postgresql_too(postgres_url: str) -> None:
    store = Tier0Store(make_engine(postgres_url), LIMIT)
    store.migrate()
    clock = Clock()
    tier0 = suggester(store, ScriptedRetrieval([hit("a", 0.9), hit("b", 0.8)]), clock)
    await tier0.dismiss(dismiss("a"))
    assert (await tier0.suggest(ask(search="help"))).suggestion.doc_id == "b"
    assert (await tier0.suggest(ask(search="help"))).no_suggestion_reason == "rate_limited"


# --- through the real servers -------------------------------------------------------


async def _triage(settings: TriageSettings) -> AsyncIterator[triage_pb2_grpc.TriageServiceStub]:
    async with (
        serving(settings, servicers) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        yield triage_pb2_grpc.TriageServiceStub(channel)


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[triage_pb2_grpc.TriageServiceStub]:
    # Nothing listens on port 9: a search there fails UNAVAILABLE.
    async for item in _triage(TriageSettings(port=0, data_dir=tmp_path, retrieval_addr="127.0.0.1:9")):
        yield item


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (ask(tenant="", customer=""), [("customer.tenant_id", "required"), ("customer.customer_id", "required")]),
        (
            ask(page="", feature="", search=" "),
            [("context", "needs a page, feature, search query or recent error")],
        ),
        (ask(search="x" * 501, dwell=-1), [("context.search_query", "at most 500 characters"),
                                          ("context.dwell_seconds", "must not be negative")]),
        (ask(errors=("e",) * 21), [("context.recent_errors", "at most 20 errors")]),
        (ask(errors=("e" * 501,)), [("context.recent_errors[0]", "at most 500 characters")]),
        (ask(tenant="../etc"), [("customer.tenant_id", "only letters, digits, '.', '_', ':', '@' or '-'")]),
    ],
)
async def test_bad_contexts_are_invalid_arguments(
    stub: triage_pb2_grpc.TriageServiceStub,
    request_: triage_pb2.SuggestForContextRequest,
    expected: list[tuple[str, str]],
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SuggestForContext(request_)
    details = details_from_rpc_error(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.field_violations == expected


async def test_bad_dismissals_are_invalid_arguments(stub: triage_pb2_grpc.TriageServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.DismissSuggestion(dismiss("", customer=""))
    details = details_from_rpc_error(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.field_violations == [("customer.customer_id", "required"), ("doc_id", "required")]


async def test_retrieval_down_is_unavailable_not_a_crash(stub: triage_pb2_grpc.TriageServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SuggestForContext(ask(search="webhooks"))
    details = details_from_rpc_error(caught.value)
    assert details.code == grpc.StatusCode.UNAVAILABLE
    assert details.reason == "RETRIEVAL_UNAVAILABLE"
    # No signal, no search: answered without retrieval.
    quiet = await stub.SuggestForContext(ask())
    assert quiet.no_suggestion_reason == "no_signal"


WEBHOOKS = """# Webhooks FAQ

## How often are failed webhooks retried?

Failed webhook deliveries are retried 8 times with exponential backoff over 24 hours, then the endpoint is disabled.
"""

INVOICES = """# Download invoices

Open Billing, then Invoices, and click Download PDF next to the month you need.
"""


async def test_end_to_end_with_the_real_retrieval_service(tmp_path: Path) -> None:
    from services.retrieval.app import servicers as retrieval_servicers
    from services.retrieval.settings import RetrievalSettings

    retrieval_settings = RetrievalSettings(port=0, data_dir=tmp_path / "retrieval", log_level="warning")
    async with serving(retrieval_settings, retrieval_servicers) as retrieval:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{retrieval.port}") as channel:
            docs = [
                retrieval_pb2.Document(tenant_id="acme", doc_id="faq-webhooks", title="Webhooks FAQ", body=WEBHOOKS,
                                       doc_type=retrieval_pb2.DOCUMENT_TYPE_FAQ, url="https://kb/webhooks"),
                retrieval_pb2.Document(tenant_id="acme", doc_id="invoices", title="Download invoices", body=INVOICES,
                                       url="https://kb/invoices"),
            ]
            await RetrievalServiceStub(channel).IngestDocuments(
                iter(retrieval_pb2.IngestDocumentsRequest(document=d) for d in docs)
            )
        settings = TriageSettings(
            port=0, data_dir=tmp_path / "triage", retrieval_addr=f"127.0.0.1:{retrieval.port}", tier0_min_interval_s=0
        )
        async for stub in _triage(settings):
            found = await stub.SuggestForContext(ask(search="how often are failed webhooks retried"))
            assert found.suggestion.doc_id == "faq-webhooks"
            assert found.suggestion.kind == triage_pb2.SUGGESTION_KIND_TIP
            assert "retried 8 times" in found.suggestion.snippet
            assert found.suggestion.relevance >= settings.tier0_min_relevance

            stuck = await stub.SuggestForContext(ask("u-2", page="/billing/invoices", feature="invoices", dwell=120))
            assert stuck.suggestion.doc_id == "invoices", stuck

            assert (await stub.DismissSuggestion(dismiss("faq-webhooks"))).newly_dismissed
            again = await stub.SuggestForContext(ask(search="how often are failed webhooks retried"))
            assert not again.HasField("suggestion")
            assert again.no_suggestion_reason == "dismissed"

            unrelated = await stub.SuggestForContext(ask("u-3", search="recipe for lemon cake with blueberries"))
            assert not unrelated.HasField("suggestion")
            assert unrelated.no_suggestion_reason == "low_relevance"

