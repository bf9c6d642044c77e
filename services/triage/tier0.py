"""Tier 0, invisible help: at most one article or micro-tip for what a user is
looking at, or nothing.

It speaks only when the context shows the user needs something: a query typed
in the product's search box, a recent client error, or a long dwell on one
page (the user is stuck). From those it builds one search query, asks
retrieval for the best passages of the tenant's knowledge base, and suggests
the best one that

- is at least `min_relevance` similar to the query (cosine similarity of the
  passage to the query, the one scale retrieval gives in every search mode),
- the user has not dismissed (persisted, plus any the caller passes), and
- was not shown to the same user recently (`RateLimit.repeat_after`),

and only when the user's rate limit allows one more (a minimum interval and a
maximum per window, persisted per user). Every "nothing" has a reason code.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import structlog

from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2
from servicekit.database import utcnow
from servicekit.errors import Unavailable
from servicekit.text import content_words, split_sentences, stop_words
from services.triage.tier0_store import Tier0Store

log = structlog.get_logger("services.triage.tier0")

MAX_QUERY_CHARS = 2000  # retrieval's limit
MAX_SNIPPET_CHARS = 240
MAX_ERRORS_IN_QUERY = 2

# Path segments that name no feature: scheme and host parts, file names, ids.
_PATH_NOISE = {"app", "www", "http", "https", "com", "html", "htm", "php", "index", "en", "us", "v1", "v2", "api"}
_ID_LIKE = re.compile(r"^(\d+|[0-9a-f]{8,}|[0-9a-f-]{16,})$", re.IGNORECASE)
_SPLIT_PATH = re.compile(r"[/\\?#&=._\-+:]+")
_MARKUP = re.compile(r"^\s*(#+|[-*+]|\d+[.)])\s+")
# Only question scaffolding and the commonest words of the base list go: the snippet
# is the sentence sharing most words with a short query (a search, an error, page
# words), and a longer list changes which sentence the user is shown.
_STOP = stop_words(
    only="a an and are as at be by can do does for from how i in is it my of on or the this to what when where "
    "why with you your"
)


@dataclass(frozen=True)
class QueryPlan:
    query: str
    # Human-readable signals that made the query, strongest first.
    signals: list[str]


def page_words(page: str) -> str:
    """`/settings/billing/invoices/12345?tab=pdf` -> "settings billing invoices tab pdf"."""
    words = []
    for part in _SPLIT_PATH.split(page.lower()):
        if part and part not in _PATH_NOISE and not _ID_LIKE.match(part) and part not in words:
            words.append(part)
    return " ".join(words)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return (cut or text[: limit - 1]) + "…"


def build_query(context: triage_pb2.BrowsingContext, *, min_dwell_seconds: int) -> QueryPlan | None:
    """The search query for a browsing context, or None when nothing says the user needs help."""
    search = " ".join(context.search_query.split())
    errors = [" ".join(e.split()) for e in context.recent_errors if e.strip()][-MAX_ERRORS_IN_QUERY:]
    location = " ".join(dict.fromkeys(f"{context.feature} {page_words(context.page)}".lower().split()))
    where = context.feature.strip() or context.page.strip()
    signals: list[str] = []
    if search:
        signals.append(f'you searched for "{_clip(search, 80)}"')
    if errors:
        signals.append(f'you just hit the error "{_clip(errors[-1], 80)}"' + (f" on {where}" if where else ""))
    if not signals:
        if context.dwell_seconds < min_dwell_seconds or not location:
            return None
        signals.append(f"you have spent {context.dwell_seconds} s on {where}")
    # The user's own words lead; the location narrows them to the feature at hand.
    parts = [search, *errors, location]
    query = ". ".join(part for part in parts if part)
    return QueryPlan(query=query[:MAX_QUERY_CHARS], signals=signals)


def _terms(text: str) -> set[str]:
    return content_words(text, stop=_STOP)


def best_sentence(text: str, query: str) -> str:
    """The passage sentence sharing most words with the query (the first on a tie), clipped."""
    wanted = _terms(query)
    sentences = [_MARKUP.sub("", s).strip() for s in split_sentences(text)]
    sentences = [s for s in sentences if len(_terms(s)) >= 2] or [" ".join(text.split())]
    best = max(sentences, key=lambda s: (len(_terms(s) & wanted), -sentences.index(s)))
    return _clip(best, MAX_SNIPPET_CHARS)


def kind_of(hit: retrieval_pb2.SearchHit) -> triage_pb2.SuggestionKind:
    # A FAQ answer is help in itself; anything else is worth opening.
    if hit.doc_type == retrieval_pb2.DOCUMENT_TYPE_FAQ:
        return triage_pb2.SUGGESTION_KIND_TIP
    return triage_pb2.SUGGESTION_KIND_ARTICLE


@dataclass(frozen=True)
class Choice:
    suggestion: triage_pb2.Suggestion | None
    # Set when suggestion is None.
    reason: str = ""


def choose(
    hits: list[retrieval_pb2.SearchHit],
    plan: QueryPlan,
    *,
    min_relevance: float,
    dismissed: set[str] | frozenset[str],
    recently_shown: set[str] | frozenset[str],
) -> Choice:
    """The best hit that is relevant enough and neither dismissed nor shown lately."""
    if not hits:
        return Choice(None, "no_results")
    relevant = [hit for hit in hits if hit.similarity >= min_relevance]
    if not relevant:
        return Choice(None, "low_relevance")
    fresh = [hit for hit in relevant if hit.doc_id not in dismissed]
    if not fresh:
        return Choice(None, "dismissed")
    unseen = [hit for hit in fresh if hit.doc_id not in recently_shown]
    if not unseen:
        return Choice(None, "recently_shown")
    hit = unseen[0]
    relevance = min(1.0, max(0.0, hit.similarity))
    what = "tip" if kind_of(hit) == triage_pb2.SUGGESTION_KIND_TIP else "article"
    reason = "; ".join(plan.signals) + f": this {what} matches it (relevance {relevance:.2f})."
    return Choice(
        triage_pb2.Suggestion(
            doc_id=hit.doc_id,
            title=hit.title,
            snippet=best_sentence(hit.text, plan.query),
            url=hit.url,
            relevance=round(relevance, 4),
            reason=reason[0].upper() + reason[1:],
            kind=kind_of(hit),
        )
    )


# --- serving --------------------------------------------------------------------


class Suggester:
    """SuggestForContext and DismissSuggestion behind the servicer; the clock is injectable for tests."""

    def __init__(
        self,
        retrieval: retrieval_pb2_grpc.RetrievalServiceStub,
        store: Tier0Store,
        *,
        min_relevance: float,
        min_dwell_seconds: int,
        top_k: int = 8,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._retrieval = retrieval
        self._store = store
        self.min_relevance = min_relevance
        self.min_dwell_seconds = min_dwell_seconds
        self._top_k = top_k
        self._clock = clock
        # Striped per-user locks: one process never races itself between checking
        # the limit and recording a suggestion (the store re-checks in a transaction).
        self._locks = [asyncio.Lock() for _ in range(64)]

    def _lock(self, tenant_id: str, customer_id: str) -> asyncio.Lock:
        return self._locks[hash((tenant_id, customer_id)) % len(self._locks)]

    async def suggest(self, request: triage_pb2.SuggestForContextRequest) -> triage_pb2.SuggestForContextResponse:
        tenant_id, customer_id = request.customer.tenant_id, request.customer.customer_id
        plan = build_query(request.context, min_dwell_seconds=self.min_dwell_seconds)
        if plan is None:
            return triage_pb2.SuggestForContextResponse(no_suggestion_reason="no_signal")
        async with self._lock(tenant_id, customer_id):
            state = await asyncio.to_thread(self._store.user_state, tenant_id, customer_id, self._clock())
            if state.wait_seconds:
                # Checked before searching: a user who may not get one costs no search.
                return triage_pb2.SuggestForContextResponse(
                    no_suggestion_reason="rate_limited", query=plan.query, retry_after_seconds=state.wait_seconds
                )
            try:
                response: retrieval_pb2.SearchResponse = await self._retrieval.Search(
                    retrieval_pb2.SearchRequest(
                        tenant_id=tenant_id, query=plan.query, top_k=self._top_k, mode=retrieval_pb2.SEARCH_MODE_HYBRID
                    )
                )
            except grpc.aio.AioRpcError as error:
                if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    log.warning("tier0_retrieval_unavailable", code=error.code().name)
                    raise Unavailable(
                        "the knowledge base cannot be searched right now", reason="RETRIEVAL_UNAVAILABLE"
                    ) from None
                raise
            choice = choose(
                list(response.hits),
                plan,
                min_relevance=self.min_relevance,
                dismissed=state.dismissed | set(request.dismissed_doc_ids),
                recently_shown=state.recently_shown,
            )
            if choice.suggestion is None:
                outcome = triage_pb2.SuggestForContextResponse(no_suggestion_reason=choice.reason, query=plan.query)
            else:
                wait = await asyncio.to_thread(
                    self._store.record_shown, tenant_id, customer_id, choice.suggestion.doc_id, self._clock()
                )
                outcome = (
                    triage_pb2.SuggestForContextResponse(
                        no_suggestion_reason="rate_limited", query=plan.query, retry_after_seconds=wait
                    )
                    if wait
                    else triage_pb2.SuggestForContextResponse(suggestion=choice.suggestion, query=plan.query)
                )
        log.info(
            "tier0_suggestion",
            tenant_id=tenant_id,
            doc_id=outcome.suggestion.doc_id,
            relevance=outcome.suggestion.relevance,
            no_suggestion_reason=outcome.no_suggestion_reason,
            hits=len(response.hits),
        )
        return outcome

    async def dismiss(self, request: triage_pb2.DismissSuggestionRequest) -> triage_pb2.DismissSuggestionResponse:
        newly = await asyncio.to_thread(
            self._store.dismiss,
            request.customer.tenant_id,
            request.customer.customer_id,
            request.doc_id,
            self._clock(),
        )
        log.info("tier0_dismissed", tenant_id=request.customer.tenant_id, doc_id=request.doc_id, newly=newly)
        return triage_pb2.DismissSuggestionResponse(newly_dismissed=newly)
