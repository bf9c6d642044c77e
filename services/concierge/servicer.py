"""The Tier-1 conversation: load the conversation, triage, apply the routing
policy, rewrite a follow-up into a standalone query, find the answer unit that
matches the question (and passages, for the agent), decide with the calibrated
confidence before any generation (a question below the threshold goes to a
human at once), then send the unit's own words, or the LLM's phrasing of them
when every sentence of it is supported, sentence by sentence as each is
checked, and store the turn. The decision is a typed field, never parsed
from prose. Personal data is masked before anything reaches triage,
retrieval, the LLM, escalation, logs or spans; only the conversation store
keeps the customer's own words."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import structlog
from opentelemetry import metrics, trace

from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import answer_pb2, conversation_pb2, customer_pb2
from servicekit import attributes, quoting
from servicekit.errors import FailedPrecondition, NotFound, ResourceExhausted, Violations
from servicekit.ids import check_customer_id, check_id
from servicekit.llm import LlmBusy, LlmClient, LlmUnavailable
from servicekit.pii import mask
from servicekit.tracing import current_trace_id
from services.concierge import guardrails, matching, prompts, rewrite
from services.concierge.confidence import Confidence, Configuration
from services.concierge.grounding import content_words, support
from services.concierge.matching import Match, Signals
from services.concierge.persona import Persona, PersonaBook, PersonaError
from services.concierge.settings import ConciergeSettings
from services.concierge.store import ConversationStore, PendingForward, RatedTurn, StoredConversation, StoredTurn

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("aftercare.concierge")

MAX_TEXT_CHARS = 4000
# Words that carry no question on their own ("hi", "help please"): ask what the customer needs.
_SMALL_TALK = frozenset(
    "hi hello hey hiya yo help helo thank thanks please ok okay question problem issue support assist "
    "need want good morning afternoon evening there someone anyone".split()
)

# Replies to the assistant's last message ("yes please", "no thanks", "ok great"): with the
# small-talk words above they are the whole message, and they ask nothing new.
_ACKNOWLEDGEMENTS = frozenset(
    "yes yeah yep yup sure no nope nah thanks thank thx ok okay k great perfect cool fine alright "
    "got it that's thats all good sounds much so very awesome brilliant understood you a lot that helped "
    "helps helpful".split()
)
_ANSWERS = frozenset("yes yeah yep yup sure no nope nah thanks thank thx ok okay great perfect cool".split())
# Escalation errors that pass: a message held for the agent is sent again later.
_TRANSIENT = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED, grpc.StatusCode.ABORTED,
})
# How often held messages are offered to escalation again.
REDELIVERY_INTERVAL_S = 10.0

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
    events: Events | None = None
    # A reply to the assistant ("thanks"): not a contact, so escalation's rates do not count it.
    acknowledgement: bool = False
    # The handoff escalation could not take (see _escalate): held in the outbox, made later.
    held_handoff: escalation_pb2.CreateHandoffRequest | None = None

    @property
    def position(self) -> int:
        """This message's position in the stored conversation."""
        return len(self.stored.turns) if self.stored else 0

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
    Reason.DECISION_REASON_WITH_AGENT: ("with_agent", 0),
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


# A sentence ends at . ! ? or a line break, followed by white space.
_PIECE = re.compile(r".*?(?:[.!?](?=\s)|\n)\s*|.+$", re.DOTALL)
# Share of a phrased sentence's content words its unit must contain.
MIN_SENTENCE_SUPPORT = 0.8


def pieces(text: str) -> list[str]:
    """`text` cut after each sentence; the pieces join back to `text` exactly."""
    return [piece for piece in _PIECE.findall(text) if piece]


class Events:
    """Where a streamed turn's checked sentences go as they are produced (StreamConverse
    reads the queue); a unary Converse has none."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[concierge_pb2.StreamConverseResponse] = asyncio.Queue()
        self.shown = ""

    def sentence(self, text: str) -> None:
        self.shown += text
        self.queue.put_nowait(concierge_pb2.StreamConverseResponse(delta=text))

    def retract(self, reason: int, replacement: str) -> None:
        """Withdraw what was shown (nothing to do when nothing was)."""
        if self.shown:
            self.shown = ""
            self.queue.put_nowait(
                concierge_pb2.StreamConverseResponse(
                    retraction=concierge_pb2.Retraction(reason=reason, replacement=replacement)
                )
            )


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
        self._confidence = confidence or Confidence.load(
            settings.fits_dir, configuration(settings), allow_uncalibrated=settings.allow_uncalibrated
        )
        # Streamed turns run to the end (and are stored) even when their client goes away.
        self._turns: set[asyncio.Task[concierge_pb2.ConverseResponse]] = set()
        self._redelivery: asyncio.Task[None] | None = None

    @property
    def calibration_version(self) -> str:
        return self._confidence.version()

    @property
    def _llm_writes(self) -> bool:
        return self._settings.answer_mode == "generative" or self._settings.phrasing != "off"

    async def warm_up(self, attempts: int = 30) -> None:
        """Send the fixed part of the prompt once at start-up, so that the LLM server
        has it cached and the first customer does not pay for loading it."""
        if not self._llm_writes:
            return
        messages = prompts.phrase(self._personas.get("default"), "", "")
        for _ in range(attempts):
            try:
                await self._llm.chat(messages, max_tokens=1)
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
        events = Events()
        turn = asyncio.create_task(self._converse(request.request, events))
        self._turns.add(turn)
        turn.add_done_callback(self._turns.discard)
        # Each sentence goes out as soon as it is checked; the decision comes last.
        while True:
            next_event = asyncio.ensure_future(events.queue.get())
            await asyncio.wait({next_event, turn}, return_when=asyncio.FIRST_COMPLETED)
            if next_event.done():
                yield next_event.result()
                continue
            next_event.cancel()
            break
        while not events.queue.empty():
            yield events.queue.get_nowait()
        yield concierge_pb2.StreamConverseResponse(outcome=await turn)

    async def GetConversation(
        self, request: concierge_pb2.GetConversationRequest, context: grpc.aio.ServicerContext
    ) -> concierge_pb2.GetConversationResponse:
        violations = Violations()
        _check_conversation(violations, request.customer, request.conversation_id)
        violations.raise_if_any()
        stored = await self._load(request.customer, request.conversation_id)
        if stored is None:
            raise NotFound("no conversation with this id for this customer")
        response = stored.as_proto(request.conversation_id)
        if _had_handoff(stored):
            await self._merge_agent_messages(request, response.conversation)
        return response

    async def _merge_agent_messages(
        self, request: concierge_pb2.GetConversationRequest, conversation: conversation_pb2.Conversation
    ) -> None:
        """Add the agents' replies from escalation's thread, in time order. The customer's
        messages of the thread are concierge turns already. Without escalation the customer
        still gets what the concierge has."""
        try:
            thread = await self._escalation.ListConversationMessages(
                escalation_pb2.ListConversationMessagesRequest(
                    tenant_id=request.customer.tenant_id,
                    conversation_id=request.conversation_id,
                    customer_id=request.customer.customer_id,
                ),
                timeout=2.0,
            )
        except grpc.aio.AioRpcError as error:
            log.warning("agent_messages_unavailable", code=error.code().name)
            return
        replies = []
        for item in thread.messages:
            if item.message.role != conversation_pb2.ROLE_AGENT:
                continue
            reply = conversation_pb2.Message()
            reply.CopyFrom(item.message)
            reply.author_name = reply.author_name or item.author_name
            replies.append(reply)
        # Stable: at equal times the concierge's own order stays.
        merged = sorted([*conversation.messages, *replies], key=lambda m: (m.sent_at.seconds, m.sent_at.nanos))
        del conversation.messages[:]
        conversation.messages.extend(merged)

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
        """A store call off the event loop. Not stored means not acknowledged (nothing is
        half-written); the runtime answers a database that is down with UNAVAILABLE."""
        return await asyncio.to_thread(call, *args, **kwargs)

    async def _load(self, customer: customer_pb2.CustomerRef, conversation_id: str) -> StoredConversation | None:
        return await self._stored(self._store.load, customer, conversation_id)

    async def _converse(
        self, request: concierge_pb2.ConverseRequest, events: Events | None = None
    ) -> concierge_pb2.ConverseResponse:
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
            events=events,
        )
        # A human has (or had) the conversation: the message is theirs first.
        outcome = await self._forward(turn) if _had_handoff(stored) else None
        if outcome is None:
            outcome = await self._decide(turn)
        if outcome.decision in (Decision.DECISION_ANSWERED, Decision.DECISION_CLARIFY) and not turn.acknowledgement:
            await self._record_outcome(turn, outcome)
        held = bool(outcome.decision == Decision.DECISION_FORWARDED and outcome.reply) or turn.held_handoff is not None
        stored_outcome = await self._stored(
            self._store.append,
            customer=customer,
            conversation_id=request.conversation_id,
            channel=request.channel,
            client_message_id=request.client_message_id,
            # Stored masked: personal data never rests in the conversation store.
            customer_text=turn.masked_text,
            standalone_query=turn.standalone_query or turn.masked_text,
            outcome=outcome,
            # A message escalation could not take waits in the store's outbox, in this transaction.
            forward_key=_message_key(turn) if held else "",
            handoff_request=turn.held_handoff.SerializeToString() if turn.held_handoff else None,
        )
        if held:
            self.start_redelivery()
        return stored_outcome

    # --- the human's part of the conversation ---------------------------------------------

    async def _forward(self, turn: Turn) -> concierge_pb2.ConverseResponse | None:
        """Give the message to the human who has the conversation: the FORWARDED outcome, or
        None when no handoff takes it (none open, or resolved outside the reopen window) and
        the AI answers as usual. When escalation cannot take it, it is held, never lost."""
        request = turn.request
        # Messages held earlier go first, so that the agent reads them in order.
        if not await self._deliver_held(request.customer.tenant_id, request.conversation_id):
            return self._forwarded(turn, None, held=True)
        try:
            appended = await self._escalation.AppendCustomerMessage(
                escalation_pb2.AppendCustomerMessageRequest(
                    customer=request.customer,
                    conversation_id=request.conversation_id,
                    text=turn.masked_text,
                    client_message_id=_message_key(turn),
                    channel=request.channel,
                ),
                timeout=5.0,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() not in _TRANSIENT:
                # Escalation refuses the message (an older version without the RPC, say): the AI answers.
                log.error("forward_refused", code=error.code().name)
                return None
            log.warning("forward_held", code=error.code().name)
            return self._forwarded(turn, None, held=True)
        if not appended.appended:
            return None
        return self._forwarded(turn, appended.handoff, held=False)

    def _forwarded(
        self, turn: Turn, handoff: escalation_pb2.Handoff | None, *, held: bool
    ) -> concierge_pb2.ConverseResponse:
        """The outcome of a message for the agent: no reply of the AI's, unless the message is
        held (then the customer is told it will reach the team, which redelivery makes true)."""
        _record_decision("forwarded", reason_code(Reason.DECISION_REASON_WITH_AGENT))
        latest = turn.stored.latest_handoff() if turn.stored else None
        outcome = concierge_pb2.ConverseResponse(
            reply=turn.persona.message("forward_delayed") if held else "",
            decision=Decision.DECISION_FORWARDED,
            decision_reason=reason_code(Reason.DECISION_REASON_WITH_AGENT),
            reason=Reason.DECISION_REASON_WITH_AGENT,
            handoff_id=handoff.handoff_id if handoff else (latest.handoff_id if latest else ""),
            handoff_reference=handoff.reference if handoff else (latest.handoff_reference if latest else ""),
            lineage=answer_pb2.Lineage(trace_id=current_trace_id()),
        )
        if handoff is not None and handoff.HasField("expected_wait"):
            outcome.expected_wait.CopyFrom(handoff.expected_wait)
        return outcome

    def start_redelivery(self) -> None:
        """Make sure a redelivery loop runs while messages are held: at start-up (messages held
        before a restart) and whenever one is held."""
        if self._redelivery is None or self._redelivery.done():
            self._redelivery = asyncio.create_task(self.redeliver_held_messages())

    def stop_redelivery(self) -> None:
        if self._redelivery is not None:
            self._redelivery.cancel()

    async def redeliver_held_messages(self, interval_s: float = REDELIVERY_INTERVAL_S) -> None:
        """Offer held messages to escalation again until none is left (run at start-up too,
        for messages held before a restart)."""
        while True:
            try:
                pending = await self._stored(self._store.pending_forwards)
                if not pending:
                    return
                await self._deliver_held()
            except Exception as error:  # the loop must outlive one bad round
                log.error("redelivery_failed", error=type(error).__name__)
            await asyncio.sleep(interval_s)

    async def _deliver_held(self, tenant_id: str = "", conversation_id: str = "") -> bool:
        """Send held messages (of one conversation, or all), oldest first; True when none is
        left. A conversation whose message fails waits for the next round, keeping its order."""
        pending = await self._stored(self._store.pending_forwards, tenant_id, conversation_id)
        blocked: set[tuple[str, str]] = set()
        for held in pending:
            conversation = (held.customer.tenant_id, held.conversation_id)
            if conversation in blocked:
                continue
            try:
                await self._deliver(held)
            except grpc.aio.AioRpcError as error:
                transient = error.code() in _TRANSIENT
                # A refused message is kept and retried, but does not hold up the ones after it.
                (log.warning if transient else log.error)(
                    "held_message_not_delivered", code=error.code().name, attempts=held.attempts + 1
                )
                if transient:
                    blocked.add(conversation)
                await self._stored(self._store.forward_failed, held)
                continue
            await self._stored(self._store.forwarded, held)
            log.info("held_message_delivered", attempts=held.attempts + 1)
        return not blocked

    async def _deliver(self, held: PendingForward) -> None:
        if held.handoff_request is not None:
            await self._escalation.CreateHandoff(escalation_pb2.CreateHandoffRequest.FromString(held.handoff_request))
            return
        appended = await self._escalation.AppendCustomerMessage(
            escalation_pb2.AppendCustomerMessageRequest(
                customer=held.customer, conversation_id=held.conversation_id, text=held.text,
                client_message_id=held.message_key, channel=held.channel,
            ),
            timeout=5.0,
        )
        if not appended.appended:
            # The handoff closed while the message waited; the customer was told the team
            # would get it, so the team gets it.
            stored = await self._load(held.customer, held.conversation_id)
            await self._escalation.CreateHandoff(
                escalation_pb2.CreateHandoffRequest(
                    idempotency_key=held.message_key,
                    customer=held.customer,
                    conversation=_stored_conversation(stored, held),
                    reason=HandoffReason.HANDOFF_REASON_SYSTEM_UNAVAILABLE,
                    ai_attempt=escalation_pb2.AiAttempt(explanation="held_while_escalation_unavailable"),
                    queue="general",
                    priority=50,
                )
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
        if turn.history and _acknowledges(message):
            # "thanks", "no thanks", "yes please" after an answer: nothing to search for.
            turn.acknowledgement = True
            return _clarify(turn, Reason.DECISION_REASON_NEEDS_DETAIL, message_key="acknowledge")
        if not content_words(message) - _SMALL_TALK:
            return _clarify(turn, Reason.DECISION_REASON_NEEDS_DETAIL)
        # Previous customer turns in their masked form: the rewrite feeds retrieval and the LLM.
        previous = [guardrails.neutralise(mask(text)) for text in turn.history]
        turn.standalone_query = await self._standalone_query(message, previous)
        if guardrails.looks_off_topic(turn.masked_text) and not previous:
            return _clarify(turn, Reason.DECISION_REASON_OFF_TOPIC)

        try:
            units, passages = await asyncio.gather(
                self._search(turn, answer_units=True, top_k=self._settings.unit_top_k),
                self._search(turn, answer_units=False, top_k=self._settings.retrieval_top_k),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            # No knowledge, no answer: the customer still gets an honest handoff.
            log.warning("retrieval_unavailable", code=error.code().name)
            return await self._escalate(turn, Reason.DECISION_REASON_RETRIEVAL_UNAVAILABLE, Attempt())
        turn.retrieved = list(passages)
        floor = self._settings.min_similarity
        considered = [_citation(hit) for hit in passages if hit.similarity >= floor]
        # Sentences of a unit that address the model are never shown or prompted, but remembered:
        # a generated reply that follows one is caught.
        injected = [s for unit in units for s in guardrails.injection_sentences(unit.text)]
        injected += guardrails.injection_sentences(turn.masked_text)
        conversation = "\n".join([*turn.history, turn.masked_text])
        units = [unit for unit in (_for_this_customer(_neutralised(u), conversation) for u in units) if unit.text]
        match = matching.best_match(turn.standalone_query, units, passages)
        # Nothing near the question, in any unit or passage: the knowledge base has nothing on it.
        nearest = max((hit.similarity for hit in [*units, *passages]), default=0.0)
        if match is None or nearest < floor:
            out_of_scope = bool(turn.triaged and turn.triaged.intent.out_of_scope)
            if out_of_scope and len(content_words(turn.masked_text)) <= 2:
                return _clarify(turn, Reason.DECISION_REASON_NEEDS_DETAIL)
            # Nothing in the knowledge base, and not a support request either (none of the
            # tenant's contact reasons, or a request customer care does not do): declined
            # politely, not handed to a person as a knowledge gap.
            if out_of_scope or guardrails.looks_off_topic(turn.masked_text):
                return _clarify(turn, Reason.DECISION_REASON_OFF_TOPIC)
            return await self._escalate(turn, Reason.DECISION_REASON_NO_KNOWLEDGE, Attempt(considered=considered))

        # The gate, decided before any generation.
        attempt = Attempt(
            reply=match.reply, citations=[_citation(match.unit)], considered=considered, signals=match.signals
        )
        score = self._confidence.score(turn.request.customer.tenant_id, match.signals)
        threshold = turn.persona.threshold_for(turn.intent)
        trace.get_current_span().set_attribute(attributes.CONCIERGE_CONFIDENCE, score)
        if not self._confidence.calibrated or score < threshold:
            return await self._escalate(turn, Reason.DECISION_REASON_LOW_CONFIDENCE, attempt, score=score)
        if guardrails.promises(match.reply, [match.unit.text]):
            # The unit itself promises in the AI's voice (a ticket's "I have refunded you"): not for this customer.
            return await self._escalate(turn, Reason.DECISION_REASON_UNSAFE_PROMISE, attempt, score=score)

        try:
            attempt.reply = await self._say(turn, match, attempt, injected)
        except LlmBusy as error:
            # Saturated: shed the message (the gateway answers 429 with Retry-After) rather than
            # queue it past its deadline; nothing is stored, the client sends it again.
            log.warning("llm_busy", error=str(error))
            busy = "the assistant is busy; send the message again shortly"
            raise ResourceExhausted(busy, reason="LLM_BUSY") from error
        return self._respond(turn, Decision.DECISION_ANSWERED, Reason.DECISION_REASON_CONFIDENT, attempt,
                             reply=attempt.reply, score=score)

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

    async def _search(self, turn: Turn, *, answer_units: bool, top_k: int) -> list[retrieval_pb2.SearchHit]:
        response = await self._retrieval.Search(
            retrieval_pb2.SearchRequest(
                tenant_id=turn.request.customer.tenant_id,
                query=turn.standalone_query[:2000],
                top_k=top_k,
                mode=retrieval_pb2.SEARCH_MODE_HYBRID,
                answer_units=answer_units,
            )
        )
        return list(response.hits)

    async def _say(self, turn: Turn, match: Match, attempt: Attempt, injected: list[str]) -> str:
        """The reply the customer reads, streamed sentence by sentence as each is checked:
        the unit's own words, or the LLM's phrasing of them when the configuration asks
        for it and every sentence is supported by the unit (else the unit's words)."""
        events = turn.events
        phrase = self._settings.answer_mode == "generative" or (
            self._settings.phrasing == "always"
            or (self._settings.phrasing == "long" and not match.signals.reply_is_whole_unit)
        )
        if not phrase:
            for piece in pieces(match.reply):
                if events:
                    events.sentence(piece)
            return match.reply

        sources = [match.unit.text]
        if self._settings.answer_mode == "generative":
            # The matched unit first, then the next best (already cleaned of injected sentences).
            shown = [match.unit, *match.runners_up[:2]]
            sources = [unit.text for unit in shown]
            messages = prompts.chat(turn.persona, turn.standalone_query,
                                    [(unit.unit_question, unit.text) for unit in shown])
            attempt.prompt_version = prompts.GENERATIVE_VERSION
        else:
            messages = prompts.phrase(turn.persona, turn.masked_text, match.reply)
            attempt.prompt_version = prompts.PHRASE_VERSION
        buffer = ""
        failed = False

        async def on_delta(text: str) -> None:
            nonlocal buffer, failed
            buffer += text
            *complete, buffer = pieces(buffer) or [""]
            for sentence in complete:
                failed = failed or not _supported(sentence, sources)
                if not failed and events:
                    events.sentence(sentence)

        try:
            completion = await self._llm.chat(messages, max_tokens=160, on_delta=on_delta)
        except LlmBusy:
            raise
        except LlmUnavailable as error:
            log.warning("phrasing_unavailable", error=str(error))
            completion = None
        if completion is not None:
            attempt.model = completion.model
            failed = failed or (bool(buffer.strip()) and not _supported(buffer, sources))
            text = completion.text.strip()
            failed = failed or not text or text.startswith(prompts.DONT_KNOW)
            failed = failed or guardrails.follows_injection(text, injected, prompts.CANARIES, sources)
            failed = failed or bool(guardrails.promises(text, sources))
        if completion is None or failed:
            log.info("phrasing_dropped", unavailable=completion is None)
            attempt.model = ""
            attempt.prompt_version = ""
            if events:
                if events.shown:
                    events.retract(Reason.DECISION_REASON_CONFIDENT, match.reply)
                else:
                    for piece in pieces(match.reply):
                        events.sentence(piece)
            return match.reply
        if events and buffer.strip():
            events.sentence(buffer)
        return text

    async def _escalate(
        self, turn: Turn, reason: int, attempt: Attempt, score: float = 0.0
    ) -> concierge_pb2.ConverseResponse:
        request = turn.request
        code, handoff_reason = _CODES[reason]
        key = _message_key(turn)
        triaged = turn.triaged
        confidence = self._confidence_proto(turn, attempt, score)
        handoff: escalation_pb2.Handoff | None = None
        handoff_request = escalation_pb2.CreateHandoffRequest(
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
        try:
            handoff = (await self._escalation.CreateHandoff(handoff_request)).handoff
        except grpc.aio.AioRpcError as error:
            # The turn is stored with the request in the outbox: redelivery makes the handoff
            # (same idempotency key), so "passed to our team" stays true.
            log.error("handoff_failed", code=error.code().name, reason=code)
            turn.held_handoff = handoff_request
        reply = _handoff_reply(turn.persona, _MESSAGE_OF[reason], handoff)
        response = self._respond(turn, Decision.DECISION_ESCALATED, reason, attempt,
                                 reply=reply, score=score, confidence=confidence)
        # No answer was given, so nothing is cited to the customer; the agent got the passages.
        del response.citations[:]
        if handoff is not None:
            response.handoff_id = handoff.handoff_id
            response.handoff_reference = handoff.reference
            if handoff.HasField("expected_wait"):
                response.expected_wait.CopyFrom(handoff.expected_wait)
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
                    idempotency_key=_message_key(turn),
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
        return self._confidence.proto(
            turn.request.customer.tenant_id, score, turn.persona.threshold_for(turn.intent), attempt.signals
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


def _message_key(turn: Turn) -> str:
    """One key per customer message: the channel's own message id, however often it retries
    it (one handoff, one outcome); without one, the message's position in the conversation,
    so that the same words sent again later ("Any update?") are a new message."""
    request = turn.request
    message = f"id:{request.client_message_id}" if request.client_message_id else f"turn:{turn.position}"
    text = f"{request.customer.tenant_id}|{request.conversation_id}|{message}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _turn_key(tenant_id: str, conversation_id: str, turn_index: int) -> str:
    """One key per answered turn, however often it is rated: escalation keeps the latest verdict."""
    return hashlib.sha256(f"{tenant_id}|{conversation_id}|{turn_index}".encode()).hexdigest()[:32]


def _clarify(turn: Turn, reason: int, message_key: str = "") -> concierge_pb2.ConverseResponse:
    code = reason_code(reason)
    _record_decision("clarify", code)
    return concierge_pb2.ConverseResponse(
        reply=turn.persona.message(message_key or _MESSAGE_OF[reason]),
        confidence=answer_pb2.Confidence(score=0.0, threshold=turn.persona.threshold_for(turn.intent)),
        decision=Decision.DECISION_CLARIFY,
        decision_reason=code,
        reason=reason,
        standalone_query=turn.standalone_query,
        lineage=answer_pb2.Lineage(trace_id=current_trace_id()),
    )


def _acknowledges(text: str) -> bool:
    """Whether the message only answers the assistant ("yes please", "no thanks", "ok great")."""
    words = re.findall(r"[a-z']+", text.lower())
    return bool(words) and set(words) <= _ACKNOWLEDGEMENTS | _SMALL_TALK and bool(set(words) & _ANSWERS)


def _had_handoff(stored: StoredConversation | None) -> bool:
    """Whether a human has had the conversation: a turn handed over or forwarded (with or
    without a handoff id: a handoff held for escalation is made later)."""
    handed = (Decision.DECISION_ESCALATED, Decision.DECISION_FORWARDED)
    return stored is not None and any(turn.outcome.decision in handed for turn in stored.turns)


def wait_in_words(seconds: float) -> str:
    """An expected wait as a person says it: "a minute", "10 minutes", "2 hours"."""
    minutes = max(1, math.ceil(seconds / 60))
    if minutes == 1:
        return "a minute"
    if minutes < 60:
        return f"{minutes if minutes < 15 else 5 * math.ceil(minutes / 5)} minutes"
    hours = int(minutes / 60 + 0.5)
    if hours <= 1:
        return "an hour"
    return f"{hours} hours" if hours < 24 else ("a day" if hours < 36 else f"{int(hours / 24 + 0.5)} days")


def _handoff_reply(persona: Persona, reason_key: str, handoff: escalation_pb2.Handoff | None) -> str:
    """Says plainly that a person is taking over, with the reference and the expected wait
    when known; no question to answer (the handoff exists already)."""
    parts = [persona.message(reason_key)]
    if handoff is None:
        parts.append(persona.message("handoff_delayed"))
        return " ".join(parts)
    if handoff.reference:
        parts.append(persona.message("handoff_reference", reference=handoff.reference))
    if handoff.HasField("expected_wait"):
        wait = handoff.expected_wait.seconds + handoff.expected_wait.nanos / 1e9
        parts.append(persona.message("handoff_wait", wait=wait_in_words(wait)))
    else:
        parts.append(persona.message("handoff_no_wait"))
    return " ".join(parts)


def _ai_said(past: StoredTurn) -> bool:
    """Whether a stored turn has an AI reply for the agent to read: a forwarded message has none
    (a held one's notice is about delivery, not the question)."""
    return bool(past.outcome.reply) and past.outcome.decision != Decision.DECISION_FORWARDED


def _stored_conversation(stored: StoredConversation | None, held: PendingForward) -> conversation_pb2.Conversation:
    """A stored conversation's last turns, as a handoff's conversation (already masked)."""
    conversation = conversation_pb2.Conversation(conversation_id=held.conversation_id, channel=held.channel)
    for past in (stored.turns if stored else [])[-10:]:
        conversation.messages.add(role=conversation_pb2.ROLE_CUSTOMER, text=past.customer_text)
        if _ai_said(past):
            conversation.messages.add(role=conversation_pb2.ROLE_ASSISTANT, text=past.outcome.reply)
    return conversation


def _conversation(turn: Turn) -> conversation_pb2.Conversation:
    """The conversation so far with the new message, personal data masked."""
    conversation = conversation_pb2.Conversation(
        conversation_id=turn.request.conversation_id, channel=turn.request.channel
    )
    for past in (turn.stored.turns if turn.stored else [])[-10:]:
        conversation.messages.add(role=conversation_pb2.ROLE_CUSTOMER, text=mask(past.customer_text))
        if _ai_said(past):
            conversation.messages.add(role=conversation_pb2.ROLE_ASSISTANT, text=past.outcome.reply)
    conversation.messages.add(role=conversation_pb2.ROLE_CUSTOMER, text=turn.masked_text)
    return conversation


_decisions = metrics.get_meter("aftercare.concierge").create_counter(attributes.CONCIERGE_DECISIONS)


def _record_decision(decision: str, reason: str) -> None:
    span = trace.get_current_span()
    span.set_attribute(attributes.CONCIERGE_DECISION, decision)
    span.set_attribute(attributes.CONCIERGE_DECISION_REASON, reason)
    _decisions.add(1, {attributes.CONCIERGE_DECISION: decision, attributes.CONCIERGE_DECISION_REASON: reason})


def configuration(settings: ConciergeSettings) -> Configuration:
    """The serving configuration whose confidence fit must serve (see confidence.py)."""
    writes = settings.answer_mode == "generative" or settings.phrasing != "off"
    return Configuration(
        answer_path=f"{settings.answer_mode}-v1",
        phrasing="free" if settings.answer_mode == "generative" else settings.phrasing,
        llm_model=settings.llm_model if writes else "",
        prompt_version=prompts.version_for(settings.answer_mode) if writes else "",
    )


def _supported(sentence: str, sources: list[str]) -> bool:
    """Whether the sources state what a generated sentence says (a sentence of no content
    words, "Sure!", passes; it says nothing)."""
    return not content_words(sentence) or support(sentence, sources) >= MIN_SENTENCE_SUPPORT


def _neutralised(unit: retrieval_pb2.SearchHit) -> retrieval_pb2.SearchHit:
    clean = retrieval_pb2.SearchHit()
    clean.CopyFrom(unit)
    clean.text = guardrails.neutralise(unit.text)
    return clean


def _for_this_customer(unit: retrieval_pb2.SearchHit, conversation: str) -> retrieval_pb2.SearchHit:
    """A resolved ticket's answer was written to that ticket's customer: only its sentences
    that may be said to this one are kept (none with that customer's dates, amounts, record
    numbers, or actions taken for them). Articles and FAQs speak to everyone: kept whole."""
    if not quoting.case_specific(unit):
        return unit
    clean = retrieval_pb2.SearchHit()
    clean.CopyFrom(unit)
    clean.text = " ".join(quoting.for_this_customer(unit.text, conversation, specific=True))
    return clean


def _citation(hit: retrieval_pb2.SearchHit) -> answer_pb2.Citation:
    return answer_pb2.Citation(
        doc_id=hit.doc_id, chunk_id=hit.chunk_id, title=hit.title, url=hit.url,
        score=round(hit.score, 6), doc_version=hit.version,
    )


def _check_conversation(
    violations: Violations, customer: customer_pb2.CustomerRef, conversation_id: str, prefix: str = ""
) -> None:
    check_id(violations, conversation_id, f"{prefix}conversation_id")
    check_id(violations, customer.tenant_id, f"{prefix}customer.tenant_id")
    check_customer_id(violations, customer.customer_id, f"{prefix}customer.customer_id")


def _validate(request: concierge_pb2.ConverseRequest, prefix: str = "") -> None:
    violations = Violations()
    _check_conversation(violations, request.customer, request.conversation_id, prefix)
    violations.check(bool(request.text.strip()), f"{prefix}text", "must not be empty")
    violations.check(len(request.text) <= MAX_TEXT_CHARS, f"{prefix}text",
                     f"must be at most {MAX_TEXT_CHARS} characters")
    # NUL is no text: the stores and retrieval refuse it, so it is refused here, by field.
    violations.check("\x00" not in request.text, f"{prefix}text", "must not contain NUL characters")
    if request.client_message_id:
        check_id(violations, request.client_message_id, f"{prefix}client_message_id")
    violations.raise_if_any()
