"""The Tier-1 conversation: triage, retrieve, generate, check, score, then
answer or hand over. The decision is a typed field, never parsed from prose."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import structlog
from opentelemetry import metrics, trace

from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import answer_pb2, conversation_pb2
from servicekit import attributes
from servicekit.errors import Violations
from servicekit.llm import LlmClient, LlmUnavailable
from servicekit.tracing import current_trace_id
from services.concierge import confidence, prompts
from services.concierge.grounding import content_words, support, verify_quote
from services.concierge.settings import ConciergeSettings

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("aftercare.concierge")

_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_TEXT_CHARS = 4000

Decision = concierge_pb2.Decision
HandoffReason = escalation_pb2.HandoffReason


@dataclass
class Attempt:
    """What the concierge worked out for one message, before deciding."""

    reply: str = ""
    # Passages the reply is grounded in (shown to the customer with an answer).
    citations: list[answer_pb2.Citation] | None = None
    # Every relevant passage the AI looked at (handed to the agent on escalation).
    considered: list[answer_pb2.Citation] | None = None
    confidence: answer_pb2.Confidence | None = None
    model: str = ""
    prompt_version: str = ""


class ConciergeServicer(concierge_pb2_grpc.ConciergeServiceServicer):
    def __init__(
        self,
        settings: ConciergeSettings,
        retrieval: retrieval_pb2_grpc.RetrievalServiceStub,
        triage: triage_pb2_grpc.TriageServiceStub,
        escalation: escalation_pb2_grpc.EscalationServiceStub,
        llm: LlmClient,
    ):
        self._settings = settings
        self._retrieval = retrieval
        self._triage = triage
        self._escalation = escalation
        self._llm = llm

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
        # The reply is only shown once it passed the grounding check, so it is
        # streamed after the check, word by word.
        for piece in re.findall(r"\S+\s*", outcome.reply):
            yield concierge_pb2.StreamConverseResponse(delta=piece)
        yield concierge_pb2.StreamConverseResponse(outcome=outcome)

    async def _converse(self, request: concierge_pb2.ConverseRequest) -> concierge_pb2.ConverseResponse:
        span = trace.get_current_span()
        conversation = conversation_pb2.Conversation(
            conversation_id=request.conversation_id,
            channel=request.channel,
            messages=[conversation_pb2.Message(role=conversation_pb2.ROLE_CUSTOMER, text=request.text)],
        )
        triaged = await self._triage_contact(request, conversation)
        flags = set(triaged.risk_flags) if triaged else set()
        if triage_pb2.RISK_FLAG_HUMAN_REQUESTED in flags:
            return await self._escalate(
                request, conversation, HandoffReason.HANDOFF_REASON_CUSTOMER_REQUEST,
                "human_requested", prompts.HUMAN_REQUESTED_MESSAGE, Attempt(), triaged,
            )
        if triaged and triaged.route.tier == triage_pb2.TIER_MANAGER_FLAGGED:
            return await self._escalate(
                request, conversation, HandoffReason.HANDOFF_REASON_POLICY,
                "policy_manager_flagged", prompts.HUMAN_REQUESTED_MESSAGE, Attempt(), triaged,
            )

        try:
            hits = (
                await self._retrieval.Search(
                    retrieval_pb2.SearchRequest(
                        tenant_id=request.customer.tenant_id,
                        query=request.text,
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
            return await self._escalate(
                request, conversation, HandoffReason.HANDOFF_REASON_SYSTEM_UNAVAILABLE,
                "retrieval_unavailable", prompts.UNAVAILABLE_MESSAGE, Attempt(), triaged,
            )
        relevant = [hit for hit in hits if hit.similarity >= self._settings.min_similarity]
        if not relevant:
            return await self._escalate(
                request, conversation, HandoffReason.HANDOFF_REASON_NO_KNOWLEDGE,
                "no_knowledge", prompts.HANDOFF_MESSAGE, Attempt(), triaged,
            )

        try:
            attempt = await self._answer(request.text, relevant)
        except LlmUnavailable as error:
            log.warning("llm_unavailable", error=str(error))
            return await self._escalate(
                request, conversation, HandoffReason.HANDOFF_REASON_SYSTEM_UNAVAILABLE,
                "llm_unavailable", prompts.UNAVAILABLE_MESSAGE, Attempt(), triaged,
            )
        assert attempt.confidence is not None
        span.set_attribute(attributes.CONCIERGE_CONFIDENCE, attempt.confidence.score)
        if attempt.reply and attempt.citations and attempt.confidence.score >= self._settings.confidence_threshold:
            _record_decision("answered", "confident")
            return concierge_pb2.ConverseResponse(
                reply=attempt.reply,
                citations=attempt.citations,
                confidence=attempt.confidence,
                decision=Decision.DECISION_ANSWERED,
                decision_reason="confident",
                lineage=_lineage(attempt),
            )
        return await self._escalate(
            request, conversation, HandoffReason.HANDOFF_REASON_LOW_CONFIDENCE,
            "low_confidence", prompts.HANDOFF_MESSAGE, attempt, triaged,
        )

    async def _triage_contact(
        self, request: concierge_pb2.ConverseRequest, conversation: conversation_pb2.Conversation
    ) -> triage_pb2.TriageContactResponse | None:
        try:
            return await self._triage.TriageContact(
                triage_pb2.TriageContactRequest(
                    customer=request.customer, conversation=conversation, account=request.account
                )
            )
        except grpc.aio.AioRpcError as error:
            # Triage informs routing; without it the answer is still gated by confidence.
            log.warning("triage_failed", code=error.code().name)
            return None

    async def _answer(self, question: str, hits: list[retrieval_pb2.SearchHit]) -> Attempt:
        hits = hits[:3]  # the prompt stays short: prefill dominates latency on a CPU
        passages = [(hit.title, hit.text) for hit in hits]
        texts = [hit.text for hit in hits]
        extractive = self._settings.answer_mode == "extractive"
        prompt = prompts.extractive(question, passages) if extractive else prompts.generative(question, passages)
        completion = await self._llm.complete(
            prompt,
            max_tokens=80 if extractive else 200,
            stop=['"', "\n"] if extractive else ["\nQuestion:"],
            logprobs=self._settings.llm_logprobs,
        )
        if extractive:
            quote = verify_quote(completion.text, texts, titles=[hit.title for hit in hits])
            reply = quote.sentence if quote else ""
            cited = [hits[quote.passage_index]] if quote else []
            answer_support = quote.similarity if quote else 0.0
        else:
            reply = completion.text.strip()
            cited = [hit for hit in hits if support(hit.text, [reply]) > 0.2] or hits[:1]
            answer_support = support(reply, texts)
        similarities = sorted((hit.similarity for hit in hits), reverse=True)
        signals = confidence.Signals(
            top_similarity=(cited[0].similarity if cited else similarities[0]),
            similarity_margin=similarities[0] - similarities[1] if len(similarities) > 1 else similarities[0],
            answer_support=answer_support,
            question_overlap=_overlap(question, reply),
            mean_token_logprob=(
                sum(completion.token_logprobs) / len(completion.token_logprobs)
                if completion.token_logprobs else None
            ),
        )
        return Attempt(
            reply=reply,
            citations=[_citation(hit) for hit in cited],
            considered=[_citation(hit) for hit in hits],
            confidence=answer_pb2.Confidence(
                score=confidence.score(signals),
                threshold=self._settings.confidence_threshold,
                signals=signals.as_proto(),
                calibration_version=confidence.CALIBRATION_VERSION,
            ),
            model=completion.model,
            prompt_version=prompts.EXTRACTIVE_VERSION if extractive else prompts.GENERATIVE_VERSION,
        )

    async def _escalate(
        self,
        request: concierge_pb2.ConverseRequest,
        conversation: conversation_pb2.Conversation,
        reason: int,
        reason_code: str,
        message: str,
        attempt: Attempt,
        triaged: triage_pb2.TriageContactResponse | None,
    ) -> concierge_pb2.ConverseResponse:
        _record_decision("escalated", reason_code)
        confidence_proto = attempt.confidence or answer_pb2.Confidence(
            score=0.0, threshold=self._settings.confidence_threshold,
            calibration_version=confidence.CALIBRATION_VERSION,
        )
        # One handoff per customer message, however often the channel retries it.
        key = hashlib.sha256(
            f"{request.customer.tenant_id}|{request.conversation_id}|{request.text}".encode()
        ).hexdigest()[:32]
        created = await self._escalation.CreateHandoff(
            escalation_pb2.CreateHandoffRequest(
                idempotency_key=key,
                customer=request.customer,
                conversation=conversation,
                reason=reason,
                ai_attempt=escalation_pb2.AiAttempt(
                    candidate_answer=attempt.reply,
                    confidence=confidence_proto,
                    citations=attempt.considered or attempt.citations or [],
                    explanation=reason_code,
                ),
                queue=(triaged.route.queue if triaged and triaged.route.queue else "general"),
                priority=(triaged.priority.score if triaged else 50),
                account=request.account,
            )
        )
        return concierge_pb2.ConverseResponse(
            reply=message,
            # No answer was given, so nothing is cited to the customer; the agent gets the passages.
            citations=[],
            confidence=confidence_proto,
            decision=Decision.DECISION_ESCALATED,
            decision_reason=reason_code,
            handoff_id=created.handoff.handoff_id,
            lineage=_lineage(attempt),
        )


_decisions = metrics.get_meter("aftercare.concierge").create_counter(attributes.CONCIERGE_DECISIONS)


def _record_decision(decision: str, reason: str) -> None:
    span = trace.get_current_span()
    span.set_attribute(attributes.CONCIERGE_DECISION, decision)
    span.set_attribute(attributes.CONCIERGE_DECISION_REASON, reason)
    _decisions.add(1, {attributes.CONCIERGE_DECISION: decision, attributes.CONCIERGE_DECISION_REASON: reason})


def _overlap(question: str, answer: str) -> float:
    asked = content_words(question)
    return len(asked & content_words(answer)) / len(asked) if asked else 0.0


def _citation(hit: retrieval_pb2.SearchHit) -> answer_pb2.Citation:
    return answer_pb2.Citation(
        doc_id=hit.doc_id, chunk_id=hit.chunk_id, title=hit.title, url=hit.url,
        score=round(hit.score, 6), doc_version=hit.version,
    )


def _lineage(attempt: Attempt) -> answer_pb2.Lineage:
    return answer_pb2.Lineage(
        sources=attempt.citations or [],
        model=attempt.model,
        prompt_template_version=attempt.prompt_version,
        trace_id=current_trace_id(),
    )


def _validate(request: concierge_pb2.ConverseRequest, prefix: str = "") -> None:
    violations = Violations()
    violations.check(bool(_ID.match(request.conversation_id)), f"{prefix}conversation_id",
                     "must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")
    violations.check(bool(_ID.match(request.customer.tenant_id)), f"{prefix}customer.tenant_id",
                     "must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")
    violations.check(bool(request.customer.customer_id), f"{prefix}customer.customer_id", "is required")
    violations.check(bool(request.text.strip()), f"{prefix}text", "must not be empty")
    violations.check(len(request.text) <= MAX_TEXT_CHARS, f"{prefix}text",
                     f"must be at most {MAX_TEXT_CHARS} characters")
    violations.raise_if_any()
