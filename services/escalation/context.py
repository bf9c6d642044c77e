"""The context package an agent reads instead of scrolling the transcript and
searching the knowledge base.

Built when the handoff is created, within a time budget: the knowledge-base
search, triage and the store's lookups run side by side, and whatever is not
back in time is replaced by its deterministic version. The summary starts
extractive and the draft reply is the template (the top suggestion, quoted);
the LLM's summary and then its draft (seconds each on a CPU) are written
afterwards, in the background, each only when it passes its checks, so the
customer's handoff never waits on them. An LLM or retrieval outage makes the
package plainer, never the handoff fail or slow.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, cast

import grpc
import structlog
from opentelemetry import trace

from aftercare.escalation.v1 import escalation_pb2
from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import answer_pb2, conversation_pb2, customer_pb2, search_pb2, verdict_pb2
from servicekit import attributes, quoting
from servicekit.database import utcnow
from servicekit.llm import LlmClient, LlmUnavailable
from servicekit.tracing import current_trace_id
from services.escalation import origins, summaries
from services.escalation.settings import EscalationSettings
from services.escalation.store import HandoffStore, PastContact, ResolvedCase
from services.escalation.summaries import Turn, content_words, shorten

log = structlog.get_logger("services.escalation.context")
tracer = trace.get_tracer("aftercare.escalation")
T = TypeVar("T")

SUGGESTIONS = 3
MAX_SUGGESTION_CHARS = 320
RECENT_CONTACT_DAYS = 30
# Lexical similarity above which a resolved case counts as similar.
MIN_CASE_SIMILARITY = 0.2
# Sentiment labels by VADER's own cut-offs on the compound score.
POSITIVE_AT = 0.05
NEGATIVE_AT = -0.05

_REASON_WORDS = {
    escalation_pb2.HANDOFF_REASON_LOW_CONFIDENCE: "its answer was not confident enough",
    escalation_pb2.HANDOFF_REASON_CUSTOMER_REQUEST: "the customer asked for a human",
    escalation_pb2.HANDOFF_REASON_POLICY: "the routing policy sends this contact to a person",
    escalation_pb2.HANDOFF_REASON_NO_KNOWLEDGE: "the knowledge base has nothing on the question",
    escalation_pb2.HANDOFF_REASON_SYSTEM_UNAVAILABLE: "the AI was unavailable",
    escalation_pb2.HANDOFF_REASON_APPROVAL_REQUIRED: "an action the customer said yes to needs an agent's approval",
}


@dataclass
class BuiltContext:
    package: escalation_pb2.ContextPackage
    # The newest customer message: what the AI could not answer.
    question: str = ""
    # The prompt a draft reply is generated from (stored for ExportFeedback).
    draft_prompt: str = ""
    # The LLM summary, to run once the handoff is stored: (summary, detail, method, model).
    summarize: Callable[[], Awaitable[tuple[str, str, str, str]]] | None = None
    # The LLM draft, to run after the summary: (draft, method, model).
    write_draft: Callable[[], Awaitable[tuple[str, str, str]]] | None = None


@dataclass
class _Suggestion:
    text: str
    score: float
    sources: list[answer_pb2.Citation] = field(default_factory=list)
    words: set[str] = field(default_factory=set)


def sentiment_label(score: float) -> str:
    if score >= POSITIVE_AT:
        return "positive"
    if score <= NEGATIVE_AT:
        return "negative"
    return "neutral"


def caller_verdict(request: escalation_pb2.CreateHandoffRequest) -> verdict_pb2.TriageVerdict | None:
    """What the caller's triage decided, or None when it did not triage (escalation asks
    triage then). The triage sub-message says so by its presence; a v1 caller's deprecated
    fields say so by an intent or a tier (an empty intent with a tier: triage found none)."""
    if request.HasField("triage"):
        return request.triage
    if request.intent or request.tier != triage_pb2.TIER_UNSPECIFIED:
        return verdict_pb2.TriageVerdict(
            intent=request.intent,
            intent_confidence=request.intent_confidence,
            sentiment_score=request.sentiment_score,
            tier=cast(verdict_pb2.Tier, request.tier),  # both Tier enums have the same numbers
        )
    return None


def caller_hits(request: escalation_pb2.CreateHandoffRequest) -> list[retrieval_pb2.SearchHit] | None:
    """What the caller's search found, or None when it did not search (escalation searches
    then). The search sub-message says so by its presence, and its hits may be none: the
    knowledge base has nothing, and a second search would find the same. A v1 caller's
    deprecated list cannot say "nothing found": empty means it did not search."""
    if request.HasField("search"):
        return [_retrieval_hit(hit) for hit in request.search.hits]
    if request.retrieved:
        return list(request.retrieved)
    return None


def _retrieval_hit(hit: search_pb2.SearchHit) -> retrieval_pb2.SearchHit:
    # The shared SearchHit has retrieval's fields and numbers, so the bytes are the same message.
    return retrieval_pb2.SearchHit.FromString(hit.SerializeToString())


def _money(minor: int) -> str:
    return f"{minor / 100:,.2f}"


def customer_summary(account: customer_pb2.AccountSignals, recent: Sequence[PastContact]) -> str:
    """The account in words: plan, tenure, value, open issues, recent contacts."""
    parts = []
    if account.plan:
        parts.append(f"{account.plan} plan")
    if account.tenure_days:
        years = account.tenure_days // 365
        if years:
            parts.append(f"customer for {years} year{'s' if years != 1 else ''}")
        elif account.tenure_days >= 60:
            parts.append(f"customer for {account.tenure_days // 30} months")
        else:
            parts.append(f"customer for {account.tenure_days} days")
    if account.contract_value_minor:
        parts.append(f"contract value {_money(account.contract_value_minor)} a year")
    if account.lifetime_value_minor:
        parts.append(f"lifetime value {_money(account.lifetime_value_minor)}")
    parts.append(f"{account.open_tickets} open ticket{'s' if account.open_tickets != 1 else ''}")
    contacts = account.contacts_last_7_days
    parts.append(f"{contacts} other contact{'s' if contacts != 1 else ''} in the last 7 days")
    text = "; ".join(parts)
    text = text[0].upper() + text[1:] + "."
    if recent:
        open_count = sum(1 for c in recent if c.state != "HANDOFF_STATE_RESOLVED")
        latest = recent[0]
        text += (
            f" {len(recent)} earlier handoff{'s' if len(recent) != 1 else ''} in the last {RECENT_CONTACT_DAYS} days"
            f" ({open_count} still open); latest {latest.created_at:%Y-%m-%d}"
            + (f": {shorten(latest.summary, 120)}" if latest.summary else ".")
        )
    return text


def approval_request(attempt: escalation_pb2.AiAttempt) -> tuple[str, str]:
    """(what is to be approved, why approval is needed) of an approval's AI attempt: the actions
    service's summary of the action on the candidate's first line, its approval rules on the
    lines after (or in the explanation, when that is in words rather than a reason code)."""
    summary, _, reasons = attempt.candidate_answer.strip().partition("\n")
    reasons = " ".join(reasons.split())
    if not reasons and " " in attempt.explanation.strip():
        reasons = attempt.explanation.strip()
    return summary.strip(), reasons


def approval_summary(attempt: escalation_pb2.AiAttempt) -> str:
    summary, _ = approval_request(attempt)
    return f"Approval requested: {shorten(summary, summaries.MAX_SUMMARY_CHARS)}" if summary else "Approval requested"


def ai_attempt_summary(request: escalation_pb2.CreateHandoffRequest, conversation: str = "") -> str:
    """What the AI tried and why it handed over. Its candidate answer is quoted only in the
    sentences that may be said to this customer (`conversation`: the text they may repeat)."""
    attempt = request.ai_attempt
    why = _REASON_WORDS.get(request.reason, "of its routing")
    if request.reason == escalation_pb2.HANDOFF_REASON_APPROVAL_REQUIRED:
        # The candidate is the actions service's summary of this customer's own action, not an
        # answer drawn from other cases, so it is quoted whole; no confidence went into it.
        summary, reasons = approval_request(attempt)
        proposed = (
            f'The AI proposed "{shorten(summary, summaries.MAX_SUMMARY_CHARS)}" and the customer said yes'
            if summary else "The customer said yes to an action the AI proposed"
        )
        return f"{proposed}; it handed over because {why}" + (f" ({reasons.rstrip('.')})." if reasons else ".")
    tried = []
    if attempt.citations:
        titles = list(dict.fromkeys(c.title or c.doc_id for c in attempt.citations))
        tried.append(f"looked at {len(attempt.citations)} passage(s) ({', '.join(titles[:3])})")
    if attempt.candidate_answer:
        tried.append(_candidate_words(attempt.candidate_answer, conversation))
    if attempt.HasField("confidence"):
        tried.append(
            f"with confidence {attempt.confidence.score:.2f} against a threshold of {attempt.confidence.threshold:.2f}"
        )
    what = f"The AI {' '.join(tried)}" if tried else "The AI did not attempt an answer"
    code = f" ({attempt.explanation})" if attempt.explanation else ""
    return f"{what}; it handed over because {why}{code}."


def _candidate_words(candidate: str, conversation: str) -> str:
    every = quoting.sentences(candidate) or [candidate]
    kept = [s for s in every if quoting.why_not(s, conversation, specific=True) is None]
    if not kept:
        return "drafted an answer that quoted another customer's case (not shown)"
    dropped = len(every) - len(kept)
    left_out = f" ({dropped} sentence(s) about another customer left out)" if dropped else ""
    return f'drafted "{shorten(" ".join(kept), 160)}"{left_out}'


def _overlap(a: set[str], b: set[str]) -> float:
    """Cosine similarity of two sets of words."""
    return len(a & b) / ((len(a) * len(b)) ** 0.5) if a and b else 0.0


def _best_sentences(sentences: Sequence[str], question_words: set[str]) -> str:
    """The most relevant of a passage's quotable sentences and the one after it (steps often continue)."""
    if not sentences:
        return ""
    scores = [len(content_words(s) & question_words) for s in sentences]
    best = max(range(len(sentences)), key=lambda i: (scores[i], -i))
    picked = list(sentences[best : best + 2])
    # A lead-in ("The refund is calculated as:") whose continuation was not quotable says nothing.
    while len(picked) > 1 and picked[-1].endswith(":"):
        picked.pop()
    return shorten(" ".join(picked), MAX_SUGGESTION_CHARS)


def _citation(hit: retrieval_pb2.SearchHit) -> answer_pb2.Citation:
    return answer_pb2.Citation(
        doc_id=hit.doc_id,
        chunk_id=hit.chunk_id,
        title=hit.title,
        url=hit.url,
        score=round(hit.similarity, 4),
        doc_version=hit.version,
    )


def _case_citation(case: ResolvedCase, similarity: float) -> answer_pb2.Citation:
    return answer_pb2.Citation(
        doc_id=f"handoff:{case.handoff_id}",
        title=shorten(case.summary or case.question, 120),
        score=round(similarity, 4),
    )


def suggest(
    question: str,
    intent: str,
    hits: Sequence[retrieval_pb2.SearchHit],
    cases: Sequence[ResolvedCase],
    conversation: str = "",
) -> list[_Suggestion]:
    """Up to three resolutions, each quoting a knowledge-base passage or a resolved case,
    with every other source (passage or case) that backs it. Only what may be said to
    this customer is quoted (`conversation`: the text they may repeat; see quoting.py):
    of a resolved ticket only its answer, and of any case-specific text no sentence
    about the other customer."""
    asked = content_words(question)
    candidates: list[_Suggestion] = []
    for hit in hits:
        if not quoting.quotable(hit):
            continue
        kept = quoting.for_this_customer(hit.text, conversation, specific=quoting.case_specific(hit))
        text = _best_sentences(kept, asked)
        if text:
            candidates.append(_Suggestion(text, hit.similarity, [_citation(hit)], content_words(text)))
    for case in cases:
        similarity = _overlap(asked, content_words(f"{case.question} {case.summary}"))
        if intent and case.intent == intent:
            similarity += 0.1
        kept = quoting.for_this_customer(case.resolution, conversation, specific=True)
        if similarity < MIN_CASE_SIMILARITY or not kept:
            continue
        resolution = " ".join(kept)
        text = shorten(f"As in a similar resolved case: {resolution}", MAX_SUGGESTION_CHARS)
        candidates.append(_Suggestion(text, similarity, [_case_citation(case, similarity)], content_words(resolution)))
    candidates.sort(key=lambda s: s.score, reverse=True)
    chosen: list[_Suggestion] = []
    for candidate in candidates:
        if any(_overlap(candidate.words, other.words) > 0.8 for other in chosen):
            continue  # the same advice twice helps nobody
        chosen.append(candidate)
        if len(chosen) == SUGGESTIONS:
            break
    # Cross-grounding: a passage and a case that say the same thing back each other.
    for suggestion in chosen:
        for other in candidates:
            if other is suggestion or other.sources[0] in suggestion.sources:
                continue
            if _overlap(suggestion.words, other.words) >= 0.3:
                suggestion.sources.append(other.sources[0])
    return chosen


def template_draft(suggestions: Sequence[_Suggestion]) -> str:
    """A reply an agent can send as is: the top knowledge-base advice, quoted, and nothing promised."""
    kb = [s for s in suggestions if not s.sources[0].doc_id.startswith("handoff:")]
    if kb:
        return (
            "Hi, thanks for your patience, and sorry for the trouble. "
            f"{kb[0].text} Let me know if this solves it, and I'll stay on it with you if not."
        )
    return (
        "Hi, thanks for your patience, and sorry for the trouble. I've read through your conversation "
        "so you won't need to repeat anything, and I'm looking into it now."
    )


def draft_prompt(conversation_text: str, suggestions: Sequence[_Suggestion]) -> str:
    # Passages are data, never instructions: numbered and bounded.
    notes = "\n".join(f"[{i}] {s.text}" for i, s in enumerate(suggestions, start=1)) or "(none)"
    return (
        "You are a support agent. Write a short, friendly reply to the customer that uses only the notes. "
        "Do not promise anything the notes do not say, do not say you already did something, and do not "
        "mention numbers, dates or names the customer did not give.\n\n"
        f"Notes:\n{notes}\n\nConversation:\n{conversation_text}\n\nReply:"
    )


def checked_draft(generated: str, conversation: str, suggestions: Sequence[_Suggestion]) -> str | None:
    """The LLM's draft when every sentence of it may be sent to this customer, else None.

    Each factual sentence must be supported by the conversation or the notes (greetings and
    courtesy are not facts), and none may speak for another customer, name a record number,
    date or amount neither gave, claim an action nobody took, or hold personal data. The
    draft is checked as the agent will send it: nothing is unmasked into it, so a
    placeholder ("[email]") or a raw phone number the model wrote fails it too (the agent
    has the customer's own details on screen; a draft never needs to repeat them)."""
    text = " ".join(generated.split()).strip().strip('"')
    notes = "\n".join(s.text for s in suggestions)
    allowed = f"{conversation}\n{notes}"
    parts = quoting.sentences(text)
    if len(text) < 12 or not parts:
        return None
    for sentence in parts:
        if quoting.why_not(sentence, allowed, specific=True) is not None:
            return None
        if not summaries.supported(sentence, allowed, summaries.REPLY_WORDS):
            return None
        if not summaries.figures_stand_together(sentence, notes, conversation):
            return None
    return shorten(text, 1200)


class _PolarityScorer(Protocol):
    """What is used of VADER's SentimentIntensityAnalyzer (vaderSentiment has no type information)."""

    def polarity_scores(self, text: str) -> dict[str, float]: ...


class ContextBuilder:
    def __init__(
        self,
        settings: EscalationSettings,
        store: HandoffStore,
        llm: LlmClient | None,
        retrieval: retrieval_pb2_grpc.RetrievalServiceStub | None,
        triage: triage_pb2_grpc.TriageServiceStub | None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._llm = llm
        self._retrieval = retrieval
        self._triage = triage
        self._vader: _PolarityScorer | None = None

    async def build(self, request: escalation_pb2.CreateHandoffRequest) -> BuiltContext:
        with tracer.start_as_current_span("escalation.context_package") as span:
            span.set_attribute(attributes.TENANT_ID, request.customer.tenant_id)
            built = await self._build(request)
            # The attributes keep their string values ("pending", "template"...), as dashboards know them.
            span.set_attribute(attributes.ESCALATION_SUMMARY_METHOD, built.package.summary_method)
            span.set_attribute(attributes.ESCALATION_DRAFT_METHOD, built.package.draft_method)
            span.set_attribute(attributes.ESCALATION_SUGGESTIONS, len(built.package.suggested_resolutions))
            return built

    async def _build(self, request: escalation_pb2.CreateHandoffRequest) -> BuiltContext:
        budget = self._settings.context_budget_s
        tenant_id = request.customer.tenant_id
        conversation_turns = summaries.open_question(summaries.turns(request.conversation.messages))
        conversation_text = summaries.transcript(conversation_turns)
        customer_texts = [
            m.text.strip()
            for m in request.conversation.messages
            if m.role == conversation_pb2.ROLE_CUSTOMER and m.text.strip()
        ]
        question = customer_texts[-1] if customer_texts else ""

        since = utcnow() - dt.timedelta(days=RECENT_CONTACT_DAYS)
        store = self._store
        intent_task = asyncio.create_task(self._intent_and_sentiment(request, customer_texts), name="triage")
        hits_task = asyncio.create_task(self._passages(request, question), name="retrieval")
        recent_task = asyncio.create_task(
            asyncio.to_thread(store.recent_contacts, tenant_id, request.customer.customer_id, since),
            name="recent_contacts",
        )
        cases_task = asyncio.create_task(
            asyncio.to_thread(store.resolved_cases, tenant_id, self._settings.similar_case_pool),
            name="resolved_cases",
        )
        tasks = [intent_task, hits_task, recent_task, cases_task]
        # One budget for everything; what is late is cancelled and replaced below.
        await asyncio.wait(tasks, timeout=budget)
        for task in tasks:
            if not task.done():
                task.cancel()
                log.warning("context_part_late", part=task.get_name(), budget_s=budget)

        def result(task: asyncio.Task[T], default: T) -> T:
            if task.cancelled() or not task.done():
                return default
            if task.exception() is not None:
                log.warning("context_part_failed", part=task.get_name(), error=type(task.exception()).__name__)
                return default
            return task.result()

        # Everything this customer said or was told: what a quote to them may repeat.
        conversation = "\n".join(turn.text for turn in conversation_turns)
        summary, detail = summaries.extractive(conversation_turns)
        # "pending": the extractive summary stands until the LLM's is written or refused.
        summary_method, model = ("pending" if self._llm is not None else "extractive"), ""
        approval = request.reason == escalation_pb2.HANDOFF_REASON_APPROVAL_REQUIRED
        if approval:
            # What the agent must do, in the actions service's words; final, as an LLM summary of
            # the conversation ("the customer said yes") would not say what is to be approved.
            summary, summary_method = approval_summary(request.ai_attempt), "extractive"
        intent, intent_confidence, sentiment = result(intent_task, ("", 0.0, self._vader_score(customer_texts)))
        hits: list[retrieval_pb2.SearchHit] = result(hits_task, [])
        recent: list[PastContact] = result(recent_task, [])
        cases: list[ResolvedCase] = result(cases_task, [])

        suggestions = suggest(question, intent, hits, cases, conversation)
        prompt = draft_prompt(conversation_text, suggestions)
        # The template is shown at once; "pending" until the LLM's draft replaces it (or not).
        write_draft = self.drafter(prompt, request.conversation, [s.text for s in suggestions])
        draft, draft_method = template_draft(suggestions), ("pending" if write_draft is not None else "template")

        sources = [source for s in suggestions for source in s.sources]
        package = escalation_pb2.ContextPackage(
            summary=summary,
            detail=detail,
            account=request.account,
            intent=intent,
            intent_confidence=round(intent_confidence, 4),
            sentiment_score=round(sentiment, 4),
            sentiment_label=sentiment_label(sentiment),
            ai_attempt=request.ai_attempt,
            suggested_resolutions=[
                escalation_pb2.SuggestedResolution(text=s.text, sources=s.sources) for s in suggestions
            ],
            draft_reply=draft,
            customer_summary=customer_summary(request.account, recent),
            ai_attempt_summary=ai_attempt_summary(request, conversation),
            summary_method=summary_method,
            draft_method=draft_method,
            lineage=answer_pb2.Lineage(
                sources=sources,
                model=model,
                prompt_template_version=summaries.prompt_versions(draft_method),
                trace_id=current_trace_id(),
            ),
        )
        origins.fill_enums(package)  # the enums say what the strings say, for v1 and v2 clients alike
        summarize = None if approval else self.summarizer(request.conversation, sentiment)
        return BuiltContext(
            package=package, question=question, draft_prompt=prompt, summarize=summarize, write_draft=write_draft
        )

    def drafter(
        self, prompt: str, conversation: conversation_pb2.Conversation, notes: Sequence[str]
    ) -> Callable[[], Awaitable[tuple[str, str, str]]] | None:
        """The LLM draft reply of a new or stored handoff, to run in the background: (draft,
        "llm", model) when every sentence passes checked_draft against the conversation and
        the suggestions (`notes`), else ("", "template", "") and the template stays. None
        when drafts are templates only (DRAFT_MODE=template, or no LLM)."""
        if self._settings.draft_mode != "llm" or self._llm is None:
            return None
        # What this customer said or was told: what a draft may repeat.
        said = "\n".join(turn.text for turn in summaries.turns(conversation.messages))
        suggestions = [_Suggestion(text, 0.0) for text in notes]

        async def write_draft() -> tuple[str, str, str]:
            return await self._generate_draft(prompt, said, suggestions, self._settings.draft_budget_s)

        return write_draft

    def summarizer(
        self, conversation: conversation_pb2.Conversation, sentiment_score: float | None = None
    ) -> Callable[[], Awaitable[tuple[str, str, str, str]]] | None:
        """The LLM summary of a stored or new handoff's conversation, to run in the
        background; None without an LLM (the extractive summary is final then). Its tone
        comes from the sentiment score of the package (or, for a stored handoff, of the
        customer's last message), never from the prompt's wording."""
        if self._llm is None:
            return None
        conversation_turns = summaries.open_question(summaries.turns(conversation.messages))
        conversation_text = summaries.transcript(conversation_turns)
        if sentiment_score is None:
            customer_texts = [t.text for t in conversation_turns if t.speaker == "Customer"]
            sentiment_score = self._vader_score(customer_texts)
        tone = sentiment_label(sentiment_score)

        async def summarize() -> tuple[str, str, str, str]:
            return await asyncio.wait_for(
                self._summarize(conversation_turns, conversation_text, tone), self._settings.summary_budget_s
            )

        return summarize

    async def _summarize(
        self, conversation_turns: list[Turn], conversation_text: str, tone: str = "neutral"
    ) -> tuple[str, str, str, str]:
        """(summary, detail, method, model): the LLM's when grounded and in the sentiment
        model's tone, else extractive."""
        fallback_summary, fallback_detail = summaries.extractive(conversation_turns)
        if self._llm is None or not conversation_turns:
            return fallback_summary, fallback_detail, "extractive", ""
        try:
            completion = await self._llm.complete(
                summaries.summary_prompt(conversation_text, tone), max_tokens=60, stop=["\n"]
            )
        except LlmUnavailable as error:
            log.warning("llm_unavailable", error=str(error))
            return fallback_summary, fallback_detail, "extractive", ""
        first, rest = summaries.split_generated(completion.text)
        first = summaries.in_tone(first, tone, conversation_text)
        summary = first and summaries.accept(first, conversation_text, summaries.MAX_SUMMARY_CHARS)
        if not summary:
            log.info("llm_summary_rejected", reason="not_grounded_or_tone")
            return fallback_summary, fallback_detail, "extractive", ""
        # The detail: the rest of the generation when grounded, then what the agent last did or
        # promised in the agent's own words (the small model rarely gets that part right).
        rest = summaries.in_tone(rest, tone, conversation_text)
        generated_detail = (rest and summaries.accept(rest, conversation_text, summaries.MAX_DETAIL_CHARS)) or ""
        action = summaries.last_action(conversation_turns)
        detail = summaries.shorten(" ".join(p for p in (generated_detail, action) if p), summaries.MAX_DETAIL_CHARS)
        detail = detail or fallback_detail
        return summary, detail, "llm", completion.model

    async def _intent_and_sentiment(
        self, request: escalation_pb2.CreateHandoffRequest, customer_texts: list[str]
    ) -> tuple[str, float, float]:
        """From the request when the caller triaged (see caller_verdict); otherwise triage is asked."""
        verdict = caller_verdict(request)
        if verdict is not None:
            return verdict.intent, verdict.intent_confidence, verdict.sentiment_score
        if self._triage is not None:
            try:
                triaged: triage_pb2.TriageContactResponse = await self._triage.TriageContact(
                    triage_pb2.TriageContactRequest(
                        customer=request.customer, conversation=request.conversation, account=request.account
                    ),
                    timeout=self._settings.context_budget_s,
                )
                return triaged.intent.label, triaged.intent.confidence, triaged.sentiment.score
            except grpc.aio.AioRpcError as error:
                log.warning("triage_unavailable", code=error.code().name)
        return "", 0.0, self._vader_score(customer_texts)

    def _vader_score(self, customer_texts: list[str]) -> float:
        if not customer_texts:
            return 0.0
        if self._vader is None:
            # No stubs and no py.typed: _PolarityScorer says what is used of it.
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            self._vader = SentimentIntensityAnalyzer()
        return float(self._vader.polarity_scores(customer_texts[-1])["compound"])

    async def _passages(
        self, request: escalation_pb2.CreateHandoffRequest, question: str
    ) -> list[retrieval_pb2.SearchHit]:
        """What the caller's search found when it searched (nothing, too: see caller_hits);
        otherwise retrieval is asked."""
        hits = caller_hits(request)
        if hits is None:
            hits = list(await self._search(request.customer.tenant_id, question))
        return [hit for hit in hits if hit.similarity >= self._settings.min_similarity]

    async def _search(self, tenant_id: str, question: str) -> Sequence[retrieval_pb2.SearchHit]:
        if self._retrieval is None or not question:
            return []
        try:
            response: retrieval_pb2.SearchResponse = await self._retrieval.Search(
                retrieval_pb2.SearchRequest(
                    tenant_id=tenant_id,
                    query=shorten(question, 1000),
                    top_k=self._settings.retrieval_top_k,
                    mode=retrieval_pb2.SEARCH_MODE_HYBRID,
                ),
                timeout=self._settings.context_budget_s,
            )
        except grpc.aio.AioRpcError as error:
            log.warning("retrieval_unavailable", code=error.code().name)
            return []
        return response.hits

    async def _generate_draft(
        self, prompt: str, conversation: str, suggestions: Sequence[_Suggestion], timeout_s: float
    ) -> tuple[str, str, str]:
        assert self._llm is not None
        try:
            completion = await asyncio.wait_for(
                self._llm.complete(prompt, max_tokens=160, stop=["\n\n", "\nCustomer:"]),
                timeout=timeout_s,
            )
        except (LlmUnavailable, TimeoutError) as error:
            log.warning("llm_draft_failed", error=type(error).__name__)
            return "", "template", ""
        draft = checked_draft(completion.text, conversation, suggestions)
        if draft is None:
            log.info("llm_draft_rejected", reason="not_grounded_or_not_for_this_customer")
            return "", "template", ""
        return draft, "llm", completion.model
