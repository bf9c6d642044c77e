"""The Tier-1 conversation: load the conversation, triage, apply the routing
policy, rewrite a follow-up into a standalone query, retrieve, generate,
check (grounding, injection, promises), score, then answer, ask to clarify or
hand over, and store the turn. The decision is a typed field, never parsed
from prose. Personal data is masked before anything reaches triage,
retrieval, the LLM, escalation, logs or spans; only the conversation store
keeps the customer's own words."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import structlog
from opentelemetry import metrics, trace
from sqlalchemy.exc import SQLAlchemyError

from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import answer_pb2, conversation_pb2, customer_pb2
from servicekit import attributes
from servicekit.errors import FailedPrecondition, NotFound, ResourceExhausted, Unavailable, Violations
from servicekit.llm import Completion, LlmBusy, LlmClient, LlmUnavailable
from servicekit.pii import mask
from servicekit.tracing import current_trace_id
from services.concierge import guardrails, prompts, rewrite
from services.concierge.confidence import Confidence, Signals
from services.concierge.grounding import best_sentences, content_words, quotes_part_of, support, verify_quote
from services.concierge.persona import Persona, PersonaBook, PersonaError
from services.concierge.settings import ConciergeSettings
from services.concierge.store import ConversationStore, RatedTurn, StoredConversation

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("aftercare.concierge")

_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_TEXT_CHARS = 4000
# Words that carry no question on their own ("hi", "help please"): ask what the customer needs.
_SMALL_TALK = frozenset(
    "hi hello hey hiya yo help helo thank thanks please ok okay question problem issue support assist "
    "need want good morning afternoon evening there someone anyone".split()
)

_T = TypeVar("_T")
Decision = concierge_pb2.Decision
Reason = concierge_pb2.DecisionReason
HandoffReason = escalation_pb2.HandoffReason


@dataclass
class Attempt:
    """What the concierge worked out for one message, before deciding."""

    reply: str = ""
    # Passages the reply is grounded in (shown to the customer with an answer).
    citations: list[answer_pb2.Citation] = field(default_factory=list)
    # Every relevant passage the AI looked at (handed to the agent on escalation).
    considered: list[answer_pb2.Citation] = field(default_factory=list)
    signals: Signals | None = None
    model: str = ""
    prompt_version: str = ""
    # Set when a check rejected the reply: why (a DecisionReason code).
    rejected: str = ""


@dataclass
class Turn:
    """One message being answered: the request, its stored conversation, triage."""

    request: concierge_pb2.ConverseRequest
    persona: Persona
    history: list[str]
    masked_text: str
    stored: StoredConversation | None = None
    standalone_query: str = ""
    triaged: triage_pb2.TriageContactResponse | None = None
    # What retrieval returned for the standalone query: a handoff's package reuses it.
    retrieved: list[retrieval_pb2.SearchHit] = field(default_factory=list)

    @property
    def intent(self) -> str:
        return self.triaged.intent.label if self.triaged else ""


# Stable string code and handoff reason of each decision reason.
_CODES: dict[int, tuple[str, int]] = {
    Reason.DECISION_REASON_CONFIDENT: ("confident", 0),
    Reason.DECISION_REASON_LOW_CONFIDENCE: ("low_confidence", HandoffReason.HANDOFF_REASON_LOW_CONFIDENCE),
    Reason.DECISION_REASON_NO_KNOWLEDGE: ("no_knowledge", HandoffReason.HANDOFF_REASON_NO_KNOWLEDGE),
    Reason.DECISION_REASON_LLM_UNAVAILABLE: ("llm_unavailable", HandoffReason.HANDOFF_REASON_SYSTEM_UNAVAILABLE),
    Reason.DECISION_REASON_RETRIEVAL_UNAVAILABLE: (
        "retrieval_unavailable", HandoffReason.HANDOFF_REASON_SYSTEM_UNAVAILABLE,
    ),
    Reason.DECISION_REASON_HUMAN_REQUESTED: ("human_requested", HandoffReason.HANDOFF_REASON_CUSTOMER_REQUEST),
    Reason.DECISION_REASON_POLICY_ROUTE: ("policy_route", HandoffReason.HANDOFF_REASON_POLICY),
    Reason.DECISION_REASON_UNSAFE_PROMISE: ("unsafe_promise", HandoffReason.HANDOFF_REASON_POLICY),
    Reason.DECISION_REASON_PROMPT_INJECTION: ("prompt_injection", HandoffReason.HANDOFF_REASON_POLICY),
    Reason.DECISION_REASON_OFF_TOPIC: ("off_topic", 0),
    Reason.DECISION_REASON_NEEDS_DETAIL: ("needs_detail", 0),
    Reason.DECISION_REASON_MODEL_DOES_NOT_KNOW: ("model_does_not_know", HandoffReason.HANDOFF_REASON_NO_KNOWLEDGE),
}
_MESSAGE_OF = {
    Reason.DECISION_REASON_LOW_CONFIDENCE: "handoff",
    Reason.DECISION_REASON_NO_KNOWLEDGE: "dont_know",
    Reason.DECISION_REASON_MODEL_DOES_NOT_KNOW: "dont_know",
    Reason.DECISION_REASON_LLM_UNAVAILABLE: "unavailable",
    Reason.DECISION_REASON_RETRIEVAL_UNAVAILABLE: "unavailable",
    Reason.DECISION_REASON_HUMAN_REQUESTED: "human",
    Reason.DECISION_REASON_POLICY_ROUTE: "policy",
    Reason.DECISION_REASON_UNSAFE_PROMISE: "handoff",
    Reason.DECISION_REASON_PROMPT_INJECTION: "handoff",
    Reason.DECISION_REASON_OFF_TOPIC: "off_topic",
    Reason.DECISION_REASON_NEEDS_DETAIL: "needs_detail",
}


def reason_code(reason: int) -> str:
    return _CODES[reason][0]


class ConciergeServicer(concierge_pb2_grpc.ConciergeServiceServicer):
    def __init__(
        self,
        settings: ConciergeSettings,
        retrieval: retrieval_pb2_grpc.RetrievalServiceStub,
        triage: triage_pb2_grpc.TriageServiceStub,
        escalation: escalation_pb2_grpc.EscalationServiceStub,
        llm: LlmClient,
        store: ConversationStore,
        personas: PersonaBook | None = None,
        confidence: Confidence | None = None,
    ):
        self._settings = settings
        self._retrieval = retrieval
        self._triage = triage
        self._escalation = escalation
        self._llm = llm
        self._store = store
        self._personas = personas or PersonaBook(settings.persona_dir, settings.confidence_threshold)
        self._confidence = confidence or Confidence.load(settings.calibration_file, settings.answer_mode)

    @property
    def calibration_version(self) -> str:
        return self._confidence.version

    async def warm_up(self, attempts: int = 30) -> None:
        """Send the fixed part of the prompt once at start-up, so that the LLM server
        has it cached and the first customer does not pay for loading it."""
        prompt = prompts.extractive("", []) if self._settings.answer_mode == "extractive" else ""
        for _ in range(attempts):
            try:
                await self._llm.complete(prompt, max_tokens=1, stop=["\n"])
                log.info("llm_warmed_up")
                return
            except LlmUnavailable:
                await asyncio.sleep(2)
        log.warning("llm_warm_up_failed")

    async def Converse(
        self, request: concierge_pb2.ConverseRequest, context: grpc.aio.ServicerContext
    ) -> concierge_pb2.ConverseResponse:
        _validate(request)
        return await self._converse(request)

    async def StreamConverse(
        self, request: concierge_pb2.StreamConverseRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[concierge_pb2.StreamConverseResponse]:
        _validate(request.request, prefix="request.")
        outcome = await self._converse(request.request)
        # The reply is only shown once it passed every check and was stored, so
        # it is streamed after them, word by word.
        for piece in re.findall(r"\S+\s*", outcome.reply):
            yield concierge_pb2.StreamConverseResponse(delta=piece)
        yield concierge_pb2.StreamConverseResponse(outcome=outcome)

    async def GetConversation(
        self, request: concierge_pb2.GetConversationRequest, context: grpc.aio.ServicerContext
    ) -> concierge_pb2.GetConversationResponse:
        violations = Violations()
        _check_conversation(violations, request.customer, request.conversation_id)
        violations.raise_if_any()
        stored = await self._load(request.customer, request.conversation_id)
        if stored is None:
            raise NotFound("no conversation with this id for this customer")
        return stored.as_proto(request.conversation_id)

    async def RateTurn(
        self, request: concierge_pb2.RateTurnRequest, context: grpc.aio.ServicerContext
    ) -> concierge_pb2.RateTurnResponse:
        violations = Violations()
        _check_conversation(violations, request.customer, request.conversation_id)
        violations.check(request.turn_index >= 0, "turn_index", "must be 0 or more")
        violations.check(request.rating in _RATINGS, "rating", "must be TURN_RATING_HELPFUL or TURN_RATING_NOT_HELPFUL")
        violations.raise_if_any()
        trace.get_current_span().set_attribute(attributes.TENANT_ID, request.customer.tenant_id)
        rated = await self._stored(
            self._store.rate, request.customer, request.conversation_id, request.turn_index, request.rating
        )
        # Forwarded even when unchanged: the key makes it idempotent, and rating again
        # is how a verdict that escalation missed reaches it.
        await self._record_judgement(request, rated)
        return concierge_pb2.RateTurnResponse(changed=rated.changed)

    async def _record_judgement(self, request: concierge_pb2.RateTurnRequest, rated: RatedTurn) -> None:
        """Pass the customer's verdict to escalation's reliability diagram. Best effort, like
        _record_outcome: 2 s at most, and a failure never loses the stored rating."""
        judgement = escalation_pb2.RecordJudgementRequest(
            idempotency_key=_turn_key(request.customer.tenant_id, request.conversation_id, request.turn_index),
            customer=request.customer,
            source=escalation_pb2.JUDGEMENT_SOURCE_CUSTOMER,
            confidence=rated.confidence,
            correct=request.rating == concierge_pb2.TURN_RATING_HELPFUL,
        )
        judgement.answered_at.FromDatetime(rated.answered_at)
        try:
            await self._escalation.RecordJudgement(judgement, timeout=2.0)
        except grpc.aio.AioRpcError as error:
            log.warning("judgement_not_recorded", code=error.code().name)

    async def _stored(self, call: Callable[..., _T], *args: object, **kwargs: object) -> _T:
        """A store call off the event loop; a database failure is UNAVAILABLE (the channel retries)."""
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except SQLAlchemyError as error:
            # Not stored means not acknowledged: nothing is half-written.
            log.error("conversation_store_failed", error=type(error).__name__)
            raise Unavailable("the conversation store is unavailable; retry shortly") from error

    async def _load(self, customer: customer_pb2.CustomerRef, conversation_id: str) -> StoredConversation | None:
        return await self._stored(self._store.load, customer, conversation_id)

    async def _converse(self, request: concierge_pb2.ConverseRequest) -> concierge_pb2.ConverseResponse:
        trace.get_current_span().set_attribute(attributes.TENANT_ID, request.customer.tenant_id)
        customer = request.customer
        if request.client_message_id:
            replay = await self._stored(
                self._store.find_turn, customer.tenant_id, request.conversation_id, request.client_message_id
            )
            if replay is not None:
                return replay
        stored = await self._load(customer, request.conversation_id)
        history = [t.customer_text for t in stored.turns] if stored else []
        try:
            persona = self._personas.get(customer.tenant_id)
        except PersonaError as error:
            log.error("persona_invalid", tenant_id=customer.tenant_id)
            raise FailedPrecondition("the tenant's persona file is invalid", reason="PERSONA_INVALID") from error
        turn = Turn(
            request=request,
            persona=persona,
            history=history[-self._settings.history_turns:],
            masked_text=mask(request.text),
            stored=stored,
        )
        outcome = await self._decide(turn)
        if outcome.decision in (Decision.DECISION_ANSWERED, Decision.DECISION_CLARIFY):
            await self._record_outcome(turn, outcome)
        return await self._stored(
            self._store.append,
            customer=customer,
            conversation_id=request.conversation_id,
            channel=request.channel,
            client_message_id=request.client_message_id,
            # Stored masked: personal data never rests in the conversation store.
            customer_text=turn.masked_text,
            standalone_query=turn.standalone_query or turn.masked_text,
            outcome=outcome,
        )

    async def _decide(self, turn: Turn) -> concierge_pb2.ConverseResponse:
        turn.triaged = await self._triage_contact(turn)
        flags = set(turn.triaged.risk_flags) if turn.triaged else set()
        if triage_pb2.RISK_FLAG_HUMAN_REQUESTED in flags:
            return await self._escalate(turn, Reason.DECISION_REASON_HUMAN_REQUESTED, Attempt())
        allowed, blocked_by = turn.persona.ai_may_answer(turn.triaged.route if turn.triaged else None)
        if not allowed:
            log.info("ai_blocked_by_route", blocked_by=blocked_by)
            return await self._escalate(turn, Reason.DECISION_REASON_POLICY_ROUTE, Attempt())

        # Sentences of the message that address the model are data: they are not searched or prompted.
        message = guardrails.neutralise(turn.masked_text)
        if not content_words(message) - _SMALL_TALK:
            return _clarify(turn, Reason.DECISION_REASON_NEEDS_DETAIL)
        # Previous customer turns in their masked form: the rewrite feeds retrieval and the LLM.
        previous = [guardrails.neutralise(mask(text)) for text in turn.history]
        turn.standalone_query = await self._standalone_query(message, previous)
        if guardrails.looks_off_topic(turn.masked_text) and not previous:
            return _clarify(turn, Reason.DECISION_REASON_OFF_TOPIC)

        try:
            hits = (
                await self._retrieval.Search(
                    retrieval_pb2.SearchRequest(
                        tenant_id=turn.request.customer.tenant_id,
                        query=turn.standalone_query[:2000],
                        top_k=self._settings.retrieval_top_k,
                        mode=retrieval_pb2.SEARCH_MODE_HYBRID,
                    )
                )
            ).hits
        except grpc.aio.AioRpcError as error:
            if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            # No knowledge, no answer: the customer still gets an honest handoff.
            log.warning("retrieval_unavailable", code=error.code().name)
            return await self._escalate(turn, Reason.DECISION_REASON_RETRIEVAL_UNAVAILABLE, Attempt())
        turn.retrieved = list(hits)
        relevant = [hit for hit in hits if hit.similarity >= self._settings.min_similarity]
        if not relevant:
            out_of_scope = bool(turn.triaged and turn.triaged.intent.out_of_scope)
            if out_of_scope and len(content_words(turn.masked_text)) <= 2:
                return _clarify(turn, Reason.DECISION_REASON_NEEDS_DETAIL)
            return await self._escalate(turn, Reason.DECISION_REASON_NO_KNOWLEDGE, Attempt())

        try:
            attempt = await self._answer(turn, relevant)
        except LlmBusy as error:
            # Saturated: shed the message (the gateway answers 429 with Retry-After) rather than
            # queue it past its deadline; nothing is stored, the client sends it again.
            log.warning("llm_busy", error=str(error))
            busy = "the assistant is busy; send the message again shortly"
            raise ResourceExhausted(busy, reason="LLM_BUSY") from error
        except LlmUnavailable as error:
            log.warning("llm_unavailable", error=str(error))
            return await self._escalate(turn, Reason.DECISION_REASON_LLM_UNAVAILABLE, Attempt())
        if attempt.rejected:
            return await self._escalate(turn, Reason.Value(attempt.rejected), attempt)
        assert attempt.signals is not None
        score = self._confidence.score(attempt.signals)
        threshold = turn.persona.threshold_for(turn.intent)
        trace.get_current_span().set_attribute(attributes.CONCIERGE_CONFIDENCE, score)
        if attempt.reply and attempt.citations and score >= threshold:
            return self._respond(turn, Decision.DECISION_ANSWERED, Reason.DECISION_REASON_CONFIDENT, attempt,
                                 reply=attempt.reply, score=score)
        return await self._escalate(turn, Reason.DECISION_REASON_LOW_CONFIDENCE, attempt, score=score)

    async def _standalone_query(self, masked_text: str, previous: list[str]) -> str:
        deterministic = rewrite.rewrite(masked_text, previous)
        if self._settings.answer_mode != "generative" or deterministic == masked_text:
            return deterministic
        try:
            completion = await self._llm.chat(
                [{"role": "user", "content": rewrite.llm_prompt(masked_text, previous)}], max_tokens=60
            )
        except LlmUnavailable:
            return deterministic
        return rewrite.accept_llm_rewrite(completion.text, masked_text, previous) or deterministic

    async def _triage_contact(self, turn: Turn) -> triage_pb2.TriageContactResponse | None:
        try:
            return await self._triage.TriageContact(
                triage_pb2.TriageContactRequest(
                    customer=turn.request.customer, conversation=_conversation(turn),
                    account=turn.request.account,
                )
            )
        except grpc.aio.AioRpcError as error:
            # Triage informs routing; without it the answer is still gated by confidence.
            log.warning("triage_failed", code=error.code().name)
            return None

    async def _generate(
        self, turn: Turn, passages: list[tuple[str, str]], retry_note: bool
    ) -> tuple[Completion, str]:
        if self._settings.answer_mode == "extractive":
            # The model is asked about the passage whose sentences answer (see _ground): one
            # passage instead of three cuts the prompt, and prefill is most of a CPU's time.
            prompt = prompts.extractive(turn.standalone_query, passages[:1])
            completion = await self._llm.complete(
                prompt, max_tokens=80, stop=['"', "\n"], logprobs=self._settings.llm_logprobs
            )
            return completion, prompts.EXTRACTIVE_VERSION
        messages = prompts.chat(turn.persona, turn.standalone_query, passages)
        if retry_note:
            messages.append(prompts.chat_retry_note())
        completion = await self._llm.chat(messages, max_tokens=200, logprobs=self._settings.llm_logprobs)
        return completion, prompts.GENERATIVE_VERSION

    async def _answer(self, turn: Turn, hits: list[retrieval_pb2.SearchHit]) -> Attempt:
        hits = hits[:3]  # the prompt stays short: prefill dominates latency on a CPU
        # Sentences that address the model are data for an agent, never prompt text.
        injected = [s for hit in hits for s in guardrails.injection_sentences(hit.text)]
        injected += guardrails.injection_sentences(turn.masked_text)
        texts = [mask(guardrails.neutralise(hit.text)) for hit in hits]
        passages = [(hit.title, text) for hit, text in zip(hits, texts, strict=True)]
        considered = [_citation(hit) for hit in hits]
        attempt = Attempt(considered=considered)
        for regenerated in (False, True):
            completion, attempt.prompt_version = await self._generate(turn, passages, retry_note=regenerated)
            attempt.model = completion.model
            reply, cited, answer_support, verified = self._ground(completion.text, hits, texts, turn.standalone_query)
            if self._settings.answer_mode == "generative" and completion.text.strip().startswith(prompts.DONT_KNOW):
                attempt.rejected = Reason.Name(Reason.DECISION_REASON_MODEL_DOES_NOT_KNOW)
                return attempt
            if guardrails.follows_injection(completion.text, injected, prompts.CANARIES, texts):
                log.warning("reply_followed_injection")
                attempt.rejected = Reason.Name(Reason.DECISION_REASON_PROMPT_INJECTION)
                return attempt
            promised = guardrails.promises(reply, [texts[hits.index(hit)] for hit in cited])
            if not promised:
                break
            log.warning("reply_promised_action", attempt=int(regenerated) + 1)
            if regenerated or self._settings.answer_mode == "extractive":
                # A quote of the source that promises in the AI's voice cannot be reworded.
                attempt.reply = reply
                attempt.rejected = Reason.Name(Reason.DECISION_REASON_UNSAFE_PROMISE)
                return attempt
        attempt.reply = reply
        attempt.citations = [_citation(hit) for hit in cited]
        attempt.signals = _signals(turn, hits, cited, reply, answer_support, completion, verified)
        return attempt

    def _ground(
        self, text: str, hits: list[retrieval_pb2.SearchHit], texts: list[str], question: str
    ) -> tuple[str, list[retrieval_pb2.SearchHit], float, bool]:
        """The reply the customer may see, the passages it rests on, how well they
        support it, and whether the model's own output backs it (see Signals.model_verified)."""
        if self._settings.answer_mode == "extractive":
            # The reply is the best passage's own sentences; the base model's quote is a second
            # opinion on them, not the answer. On E-Manual (dev) the sentences were right for
            # 25 of the 37 questions where the model's quote verified, its quotes for 15: it
            # often quotes a heading, or a passage retrieval ranked lower.
            quote = verify_quote(text, texts[:1], titles=[hits[0].title])
            reply, _ = best_sentences(question, texts[0])
            if reply:
                return reply, [hits[0]], 1.0, quote is not None and quotes_part_of(quote, reply)
            if quote is not None:
                return quote.sentence, [hits[0]], quote.similarity, True
            return "", [], 0.0, False
        reply = text.strip()
        marked = {int(n) for n in re.findall(r"\[(\d)\]", reply) if 1 <= int(n) <= len(hits)}
        cited = [hits[n - 1] for n in sorted(marked)] or [
            hit for hit, passage in zip(hits, texts, strict=True) if support(reply, [passage]) > 0.5
        ][:1]
        backed = support(re.sub(r"\[\d\]", "", reply), [texts[hits.index(hit)] for hit in cited])
        return reply, cited, backed, bool(cited)

    async def _escalate(
        self, turn: Turn, reason: int, attempt: Attempt, score: float = 0.0
    ) -> concierge_pb2.ConverseResponse:
        request = turn.request
        code, handoff_reason = _CODES[reason]
        key = _message_key(request)
        triaged = turn.triaged
        confidence = self._confidence_proto(turn, attempt, score)
        handoff_id = ""
        try:
            created = await self._escalation.CreateHandoff(
                escalation_pb2.CreateHandoffRequest(
                    idempotency_key=key,
                    customer=request.customer,
                    conversation=_conversation(turn),
                    reason=handoff_reason,
                    ai_attempt=escalation_pb2.AiAttempt(
                        candidate_answer=mask(attempt.reply),
                        confidence=confidence,
                        # The passages the candidate rests on; every passage looked at when there is none.
                        citations=attempt.citations or attempt.considered,
                        explanation=code,
                    ),
                    queue=(turn.triaged.route.queue if turn.triaged and turn.triaged.route.queue else "general"),
                    priority=(turn.triaged.priority.score if turn.triaged else 50),
                    account=request.account,
                    # What triage found, so the agent's package need not ask it again.
                    intent=triaged.intent.label if triaged else "",
                    intent_confidence=triaged.intent.confidence if triaged else 0.0,
                    sentiment_score=triaged.sentiment.score if triaged else 0.0,
                    tier=triaged.route.tier if triaged else triage_pb2.TIER_UNSPECIFIED,
                    retrieved=turn.retrieved,
                )
            )
            handoff_id = created.handoff.handoff_id
        except grpc.aio.AioRpcError as error:
            # The customer still gets the honest message and the turn is stored with
            # its reason; the handoff is created when the message is retried.
            log.error("handoff_failed", code=error.code().name, reason=code)
        response = self._respond(turn, Decision.DECISION_ESCALATED, reason, attempt,
                                 reply=turn.persona.message(_MESSAGE_OF[reason]), score=score,
                                 confidence=confidence)
        # No answer was given, so nothing is cited to the customer; the agent got the passages.
        del response.citations[:]
        response.handoff_id = handoff_id
        return response

    async def _record_outcome(self, turn: Turn, outcome: concierge_pb2.ConverseResponse) -> None:
        """Tell escalation about a contact the AI handled alone: its per-topic automation
        rate and confidence series count these next to the handoffs. Best effort: it
        waits 2 s at most, and a failure never fails the customer's answer."""
        request = turn.request
        answered = outcome.decision == Decision.DECISION_ANSWERED
        try:
            await self._escalation.RecordOutcome(
                escalation_pb2.RecordOutcomeRequest(
                    idempotency_key=_message_key(request),
                    customer=request.customer,
                    decision=escalation_pb2.OUTCOME_DECISION_ANSWERED if answered else _CLARIFIED,
                    intent=turn.intent or "",
                    confidence=outcome.confidence.score,
                    question=turn.masked_text[:2000],
                ),
                timeout=2.0,
            )
        except grpc.aio.AioRpcError as error:
            log.warning("outcome_not_recorded", code=error.code().name)

    def _confidence_proto(self, turn: Turn, attempt: Attempt, score: float) -> answer_pb2.Confidence:
        return answer_pb2.Confidence(
            score=score,
            threshold=turn.persona.threshold_for(turn.intent),
            signals=attempt.signals.as_proto() if attempt.signals else [],
            calibration_version=self._confidence.version,
        )

    def _respond(
        self, turn: Turn, decision: int, reason: int, attempt: Attempt, *, reply: str, score: float,
        confidence: answer_pb2.Confidence | None = None,
    ) -> concierge_pb2.ConverseResponse:
        code = reason_code(reason)
        _record_decision(Decision.Name(decision).removeprefix("DECISION_").lower(), code)
        return concierge_pb2.ConverseResponse(
            reply=reply,
            citations=attempt.citations,
            confidence=confidence or self._confidence_proto(turn, attempt, score),
            decision=decision,
            decision_reason=code,
            reason=reason,
            standalone_query=turn.standalone_query,
            lineage=answer_pb2.Lineage(
                sources=attempt.citations,
                model=attempt.model,
                prompt_template_version=attempt.prompt_version,
                trace_id=current_trace_id(),
            ),
        )


_CLARIFIED = escalation_pb2.OUTCOME_DECISION_CLARIFIED
_RATINGS = frozenset({concierge_pb2.TURN_RATING_HELPFUL, concierge_pb2.TURN_RATING_NOT_HELPFUL})


def _message_key(request: concierge_pb2.ConverseRequest) -> str:
    """One key per customer message, however often the channel retries it: one handoff, one outcome."""
    text = f"{request.customer.tenant_id}|{request.conversation_id}|{request.client_message_id}|{request.text}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _turn_key(tenant_id: str, conversation_id: str, turn_index: int) -> str:
    """One key per answered turn, however often it is rated: escalation keeps the latest verdict."""
    return hashlib.sha256(f"{tenant_id}|{conversation_id}|{turn_index}".encode()).hexdigest()[:32]


def _clarify(turn: Turn, reason: int) -> concierge_pb2.ConverseResponse:
    code = reason_code(reason)
    _record_decision("clarify", code)
    return concierge_pb2.ConverseResponse(
        reply=turn.persona.message(_MESSAGE_OF[reason]),
        confidence=answer_pb2.Confidence(score=0.0, threshold=turn.persona.threshold_for(turn.intent)),
        decision=Decision.DECISION_CLARIFY,
        decision_reason=code,
        reason=reason,
        standalone_query=turn.standalone_query,
        lineage=answer_pb2.Lineage(trace_id=current_trace_id()),
    )


def _conversation(turn: Turn) -> conversation_pb2.Conversation:
    """The conversation so far with the new message, personal data masked."""
    conversation = conversation_pb2.Conversation(
        conversation_id=turn.request.conversation_id, channel=turn.request.channel
    )
    for past in (turn.stored.turns if turn.stored else [])[-10:]:
        conversation.messages.add(role=conversation_pb2.ROLE_CUSTOMER, text=mask(past.customer_text))
        conversation.messages.add(role=conversation_pb2.ROLE_ASSISTANT, text=past.outcome.reply)
    conversation.messages.add(role=conversation_pb2.ROLE_CUSTOMER, text=turn.masked_text)
    return conversation


def _signals(
    turn: Turn,
    hits: Sequence[retrieval_pb2.SearchHit],
    cited: Sequence[retrieval_pb2.SearchHit],
    reply: str,
    answer_support: float,
    completion: Completion,
    verified: bool,
) -> Signals:
    similarities = sorted((hit.similarity for hit in hits), reverse=True)
    scores = sorted((hit.score for hit in hits), reverse=True)
    best = cited[0] if cited else hits[0]
    question = content_words(turn.standalone_query)
    passage = content_words(f"{best.title} {best.text}")
    return Signals(
        top_similarity=best.similarity,
        similarity_margin=similarities[0] - similarities[1] if len(similarities) > 1 else similarities[0],
        answer_support=answer_support,
        question_overlap=len(question & content_words(reply)) / len(question) if question else 0.0,
        mean_token_logprob=(
            sum(completion.token_logprobs) / len(completion.token_logprobs) if completion.token_logprobs else None
        ),
        retrieval_score=best.score,
        score_margin=scores[0] - scores[1] if len(scores) > 1 else scores[0],
        cited_is_top=1.0 if cited and cited[0].chunk_id == hits[0].chunk_id else 0.0,
        passage_overlap=len(question & passage) / len(question) if question else 0.0,
        intent_confidence=turn.triaged.intent.confidence if turn.triaged else 0.0,
        model_verified=1.0 if verified else 0.0,
    )


_decisions = metrics.get_meter("aftercare.concierge").create_counter(attributes.CONCIERGE_DECISIONS)


def _record_decision(decision: str, reason: str) -> None:
    span = trace.get_current_span()
    span.set_attribute(attributes.CONCIERGE_DECISION, decision)
    span.set_attribute(attributes.CONCIERGE_DECISION_REASON, reason)
    _decisions.add(1, {attributes.CONCIERGE_DECISION: decision, attributes.CONCIERGE_DECISION_REASON: reason})


def _citation(hit: retrieval_pb2.SearchHit) -> answer_pb2.Citation:
    return answer_pb2.Citation(
        doc_id=hit.doc_id, chunk_id=hit.chunk_id, title=hit.title, url=hit.url,
        score=round(hit.score, 6), doc_version=hit.version,
    )


def _check_id(violations: Violations, value: str, name: str) -> None:
    violations.check(bool(_ID.match(value)), name, "must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")


def _check_conversation(
    violations: Violations, customer: customer_pb2.CustomerRef, conversation_id: str, prefix: str = ""
) -> None:
    _check_id(violations, conversation_id, f"{prefix}conversation_id")
    _check_id(violations, customer.tenant_id, f"{prefix}customer.tenant_id")
    violations.check(bool(customer.customer_id), f"{prefix}customer.customer_id", "is required")
    violations.check(
        len(customer.customer_id) <= 200, f"{prefix}customer.customer_id", "must be at most 200 characters"
    )


def _validate(request: concierge_pb2.ConverseRequest, prefix: str = "") -> None:
    violations = Violations()
    _check_conversation(violations, request.customer, request.conversation_id, prefix)
    violations.check(bool(request.text.strip()), f"{prefix}text", "must not be empty")
    violations.check(len(request.text) <= MAX_TEXT_CHARS, f"{prefix}text",
                     f"must be at most {MAX_TEXT_CHARS} characters")
    # NUL is no text: the stores and retrieval refuse it, so it is refused here, by field.
    violations.check("\x00" not in request.text, f"{prefix}text", "must not contain NUL characters")
    if request.client_message_id:
        _check_id(violations, request.client_message_id, f"{prefix}client_message_id")
    violations.raise_if_any()
