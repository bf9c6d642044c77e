"""The Tier-1 conversation: load the conversation, triage, apply the routing
policy, rewrite a follow-up into a standalone query, find the answer unit that
matches the question (and passages, for the agent), decide with the calibrated
confidence before any generation (a question below the threshold goes to a
human at once), then send the unit's own words, or the LLM's phrasing of them
when every sentence of it is supported, sentence by sentence as each is
checked, and store the turn. The decision is a typed field, never parsed
from prose. Personal data is masked before anything reaches triage,
retrieval, the LLM, escalation, logs or spans; only the conversation store
keeps the customer's own words.

Each turn is served by one release of the tenant's (releases.py): its persona and thresholds,
its confidence fit and its LLM model, resolved once per turn (the live release, or the one the
request names, for evaluation), and every stored turn, handoff and proposed action names it.
Once a turn the answer path decided is stored, a release running in shadow may decide it again
in the background (shadow.py): the same message with the live turn's triage verdict and search
results, through the same `_decide`, but with no handoff, no phrasing and nothing recorded.

The parts live beside it: validation.py (what the RPCs accept), turns.py (a message
being answered, its keys, the masked conversation), decisions.py (each reason's code,
handoff reason and message), small_talk.py and answer_units.py (the answer path's
inputs), phrasing.py (the words said once the gate lets an answer through),
streaming.py (a streamed turn's events), handoff_messages.py (the handoff's wording),
forwarding.py (a human's conversation: forwarding and the held-message outbox) and
account.py with account_plans.py (the customer's own account: identity, reads from the
records, actions proposed and done only on the customer's explicit yes, for tenants whose
actions service has a catalog)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncIterator, Sequence
from typing import cast

import grpc
import structlog
from opentelemetry import trace

from aftercare.actions.v1 import actions_pb2_grpc
from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import answer_pb2, conversation_pb2, customer_pb2, search_pb2, verdict_pb2
from servicekit import attributes
from servicekit.errors import FailedPrecondition, NotFound, ResourceExhausted
from servicekit.llm import LlmBusy, LlmClient, LlmUnavailable
from servicekit.pii import mask
from servicekit.tracing import current_trace_id
from services.concierge import guardrails, matching, prompts, rewrite
from services.concierge.account import AccountAssistant
from services.concierge.answer_units import citation, for_this_customer, neutralised
from services.concierge.confidence import Confidence, Configuration
from services.concierge.decisions import (
    CODES,
    MESSAGE_OF,
    Decision,
    Reason,
    clarify,
    reason_code,
    record_decision,
)
from services.concierge.forwarding import REDELIVERY_INTERVAL_S, Forwarder
from services.concierge.grounding import content_words
from services.concierge.handoff_messages import handoff_reply
from services.concierge.persona import PersonaBook, PersonaError
from services.concierge.phrasing import Phraser
from services.concierge.releases import ReleaseBook, ServingRelease
from services.concierge.settings import ConciergeSettings
from services.concierge.shadow import OfferedTurn, ShadowBook
from services.concierge.small_talk import SMALL_TALK, acknowledges
from services.concierge.store import ConversationStore, RatedTurn, StoredConversation, off_loop
from services.concierge.streaming import Events
from services.concierge.turns import Attempt, Searched, Turn, had_handoff, masked_conversation, message_key, turn_key
from services.concierge.validation import validate, validate_get, validate_rating

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("aftercare.concierge")

_CLARIFIED = escalation_pb2.OUTCOME_DECISION_CLARIFIED


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
        actions: actions_pb2_grpc.ActionsServiceStub | None = None,
        releases: ReleaseBook | None = None,
        shadows: ShadowBook | None = None,
    ):
        self._settings = settings
        # Which release serves a tenant's turn; None: the working copy serves, no release is named.
        self._releases = releases
        # The tenants' releases running in shadow (needs releases); None: no shadow.
        self._shadows = shadows
        self._retrieval = retrieval
        self._triage = triage
        self._llm = llm
        self._store = store
        # The one escalation stub: the forwarder's (see the _escalation property).
        self._forwarder = Forwarder(escalation, store)
        self._phraser = Phraser(settings, llm)
        self._personas = personas or PersonaBook(settings.persona_dir, settings.confidence_threshold)
        self._confidence = confidence or Confidence.load(
            settings.fits_dir, configuration(settings), allow_uncalibrated=settings.allow_uncalibrated
        )
        # The customer's own account and orders, for tenants with an action catalog (account.py).
        self._account = AccountAssistant(
            actions, llm, self._escalate_account, catalog_ttl_s=settings.actions_catalog_ttl_s,
            llm_timeout_s=settings.account_llm_timeout_s,
        )
        # Streamed turns run to the end (and are stored) even when their client goes away.
        self._turns: set[asyncio.Task[concierge_pb2.ConverseResponse]] = set()
        # Releases whose fit is for another configuration, warned about once each.
        self._stale_fits_logged: set[tuple[str, str]] = set()

    @property
    def _escalation(self) -> escalation_pb2_grpc.EscalationServiceStub:
        """Escalation, for handoffs, outcomes, judgements and the agent's replies; the same stub
        forwards and redelivers, so that pointing the servicer elsewhere points both."""
        return self._forwarder.escalation

    @_escalation.setter
    def _escalation(self, escalation: escalation_pb2_grpc.EscalationServiceStub) -> None:
        self._forwarder.escalation = escalation

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
        self,
        request: concierge_pb2.ConverseRequest,
        context: grpc.aio.ServicerContext[concierge_pb2.ConverseRequest, concierge_pb2.ConverseResponse],
    ) -> concierge_pb2.ConverseResponse:
        validate(request)
        return await self._converse(request)

    async def StreamConverse(
        self,
        request: concierge_pb2.StreamConverseRequest,
        context: grpc.aio.ServicerContext[concierge_pb2.StreamConverseRequest, concierge_pb2.StreamConverseResponse],
    ) -> AsyncIterator[concierge_pb2.StreamConverseResponse]:
        validate(request.request, prefix="request.")
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
        self,
        request: concierge_pb2.GetConversationRequest,
        context: grpc.aio.ServicerContext[concierge_pb2.GetConversationRequest, concierge_pb2.GetConversationResponse],
    ) -> concierge_pb2.GetConversationResponse:
        validate_get(request)
        stored = await self._load(request.customer, request.conversation_id)
        if stored is None:
            raise NotFound("no conversation with this id for this customer")
        response = stored.as_proto(request.conversation_id)
        if had_handoff(stored):
            await self._merge_agent_messages(request, response.conversation)
        return response

    async def _merge_agent_messages(
        self, request: concierge_pb2.GetConversationRequest, conversation: conversation_pb2.Conversation
    ) -> None:
        """Add the agents' replies from escalation's thread, in time order. The customer's
        messages of the thread are concierge turns already. Without escalation the customer
        still gets what the concierge has."""
        try:
            thread: escalation_pb2.ListConversationMessagesResponse = await self._escalation.ListConversationMessages(
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
        self,
        request: concierge_pb2.RateTurnRequest,
        context: grpc.aio.ServicerContext[concierge_pb2.RateTurnRequest, concierge_pb2.RateTurnResponse],
    ) -> concierge_pb2.RateTurnResponse:
        validate_rating(request)
        trace.get_current_span().set_attribute(attributes.TENANT_ID, request.customer.tenant_id)
        rated = await off_loop(
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
            idempotency_key=turn_key(request.customer.tenant_id, request.conversation_id, request.turn_index),
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

    async def _load(self, customer: customer_pb2.CustomerRef, conversation_id: str) -> StoredConversation | None:
        return await off_loop(self._store.load, customer, conversation_id)

    async def _converse(
        self, request: concierge_pb2.ConverseRequest, events: Events | None = None
    ) -> concierge_pb2.ConverseResponse:
        trace.get_current_span().set_attribute(attributes.TENANT_ID, request.customer.tenant_id)
        customer = request.customer
        if request.client_message_id:
            replay = await off_loop(
                self._store.find_turn, customer.tenant_id, request.conversation_id, request.client_message_id
            )
            if replay is not None:
                return replay
        # Resolved once: the whole turn (persona, gate, model, lineage) is this release's.
        release = await self._serving_release(customer.tenant_id, request.release_id, request.conversation_id)
        stored = await self._load(customer, request.conversation_id)
        history = [t.customer_text for t in stored.turns] if stored else []
        try:
            persona = release.persona if release else self._personas.get(customer.tenant_id)
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
            release=release,
        )
        # A human has (or had) the conversation: the message is theirs first.
        outcome = await self._forwarder.forward(turn) if had_handoff(stored) else None
        if outcome is None and not turn.request.HasField("action_reply"):
            # Triage first: a customer who asks for a human gets one, even mid-way through an account request.
            outcome = await self._human_requested(turn)
        if outcome is None:
            outcome = await self._account.converse(turn)
        shadowed = False
        if outcome is None:
            outcome = await self._decide(turn)
            # The answer path decided it (not a human, the account assistant, or the customer's own
            # request for a person, which no release changes): a release in shadow may decide it too.
            shadowed = outcome.reason != Reason.DECISION_REASON_HUMAN_REQUESTED
        # Every stored turn names the release that served it, whichever path decided it.
        outcome.lineage.release_id = turn.release_id
        if outcome.decision in (Decision.DECISION_ANSWERED, Decision.DECISION_CLARIFY) and not turn.acknowledgement:
            await self._record_outcome(turn, outcome)
        held = bool(outcome.decision == Decision.DECISION_FORWARDED and outcome.reply) or turn.held_handoff is not None
        stored_outcome = await off_loop(
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
            forward_key=message_key(turn) if held else "",
            handoff_request=turn.held_handoff.SerializeToString() if turn.held_handoff else None,
            account_draft=turn.account_draft,
            intent=turn.intent or "",
        )
        if held:
            self.start_redelivery()
        if shadowed:
            await self._offer_to_shadow(turn, stored_outcome.turn_index)
        return stored_outcome

    async def _serving_release(self, tenant_id: str, release_id: str, conversation_id: str) -> ServingRelease | None:
        """The release serving this turn: the named one, else the canary's when the conversation
        is drawn into it, else the tenant's live one; None without a release book. An unknown
        name is NOT_FOUND (RELEASE_NOT_FOUND)."""
        if self._releases is None:
            if release_id:
                raise NotFound(f"release {release_id!r} not found: this concierge serves no releases",
                               reason="RELEASE_NOT_FOUND")
            return None
        try:
            release = await self._releases.serving(tenant_id, release_id, conversation_id=conversation_id)
        except PersonaError as error:
            log.error("persona_invalid", tenant_id=tenant_id)
            raise FailedPrecondition("the tenant's persona file is invalid", reason="PERSONA_INVALID") from error
        return release

    async def _offer_to_shadow(self, turn: Turn, turn_index: int) -> None:
        """Offer the stored turn to the tenant's release in shadow, if one runs: a cached check,
        then at most a background task (shadow.py), so the reply waits for nothing else. Not a
        turn evaluating a named release, nor one its own release served (a canary's)."""
        if self._shadows is None or turn.release is None or turn.request.release_id:
            return
        shadow = await self._shadows.active(turn.request.customer.tenant_id)
        if shadow is None or shadow.release_id == turn.release_id:
            return
        offered = OfferedTurn(
            tenant_id=turn.request.customer.tenant_id, conversation_id=turn.request.conversation_id,
            turn_index=turn_index, live_release_id=turn.release_id, intent=turn.intent,
        )
        self._shadows.submit(shadow, offered, functools.partial(self._decide_in_shadow, turn, shadow.release_id))

    async def _decide_in_shadow(self, live: Turn, release_id: str) -> concierge_pb2.ConverseResponse:
        """The live turn decided again by the release `release_id`, in shadow (see Turn.shadow):
        its persona, thresholds and confidence fit; the live turn's triage verdict, rewrite and
        searches."""
        assert self._releases is not None  # only offered when releases serve
        with tracer.start_as_current_span("concierge.shadow_decision") as span:
            span.set_attribute(attributes.TENANT_ID, live.request.customer.tenant_id)
            release = await self._releases.serving(live.request.customer.tenant_id, release_id)
            turn = dataclasses.replace(
                live, release=release, persona=release.persona, shadow=True, events=None, triage_asked=True,
                acknowledgement=False, held_handoff=None,
            )
            return await self._decide(turn)

    def _confidence_of(self, turn: Turn) -> Confidence:
        """The confidence the turn is gated with: its release's fit for its release's model and
        prompt, or (without releases) the fits of the configuration this process runs."""
        release = turn.release
        if release is None:
            return self._confidence
        settings = self._settings
        configuration = Configuration.serving(
            settings.answer_mode, settings.phrasing, release.llm_model, release.prompt_version
        )
        calibrator = release.calibrator
        if calibrator is not None and calibrator.configuration_id != configuration.id:
            # A release made before the answer path changed (an upgrade): its fit says nothing
            # of today's replies, so the gate stays closed until a release with a fit for
            # this configuration is promoted.
            if (release.tenant_id, release.release_id) not in self._stale_fits_logged:
                self._stale_fits_logged.add((release.tenant_id, release.release_id))
                log.warning(
                    "release_fit_for_other_configuration", tenant_id=release.tenant_id,
                    release_id=release.release_id, fitted_for=calibrator.configuration_id, serving=configuration.id,
                )
            calibrator = None
        return Confidence(configuration, calibrator)

    # --- the human's part of the conversation: see forwarding.py --------------------------

    def start_redelivery(self) -> None:
        """Make sure a redelivery loop runs while messages are held (see Forwarder)."""
        self._forwarder.start_redelivery()

    def stop_redelivery(self) -> None:
        self._forwarder.stop_redelivery()

    async def redeliver_held_messages(self, interval_s: float = REDELIVERY_INTERVAL_S) -> None:
        await self._forwarder.redeliver_held_messages(interval_s)

    # --- the answer path -------------------------------------------------------------------

    async def _human_requested(self, turn: Turn) -> concierge_pb2.ConverseResponse | None:
        """Triage the message; the handoff when the customer asks for a human, else None."""
        turn.triaged, turn.triage_asked = await self._triage_contact(turn), True
        flags = set(turn.triaged.risk_flags) if turn.triaged else set()
        if triage_pb2.RISK_FLAG_HUMAN_REQUESTED in flags:
            return await self._escalate(turn, Reason.DECISION_REASON_HUMAN_REQUESTED, Attempt())
        return None

    async def _decide(self, turn: Turn) -> concierge_pb2.ConverseResponse:
        if not turn.triage_asked:
            asked = await self._human_requested(turn)
            if asked is not None:
                return asked
        allowed, blocked_by = turn.persona.ai_may_answer(turn.triaged.route if turn.triaged else None)
        if not allowed:
            log.info("ai_blocked_by_route", blocked_by=blocked_by)
            return await self._escalate(turn, Reason.DECISION_REASON_POLICY_ROUTE, Attempt())

        # Sentences of the message that address the model are data: they are not searched or prompted.
        message = guardrails.neutralise(turn.masked_text)
        if turn.history and acknowledges(message):
            # "thanks", "no thanks", "yes please" after an answer: nothing to search for.
            turn.acknowledgement = True
            return clarify(turn, Reason.DECISION_REASON_NEEDS_DETAIL, message_key="acknowledge")
        if not content_words(message) - SMALL_TALK:
            return clarify(turn, Reason.DECISION_REASON_NEEDS_DETAIL)
        # Previous customer turns in their masked form: the rewrite feeds retrieval and the LLM.
        previous = [guardrails.neutralise(mask(text)) for text in turn.history]
        if not (turn.shadow and turn.standalone_query):
            turn.standalone_query = await self._standalone_query(turn, message, previous)
        if guardrails.looks_off_topic(turn.masked_text) and not previous:
            return clarify(turn, Reason.DECISION_REASON_OFF_TOPIC)

        if turn.searched is None:
            # Searched once a message: a shadow decision reuses the live turn's results (it searches
            # only when the live turn did not get that far).
            try:
                found_units, found_passages = await asyncio.gather(
                    self._search(turn, answer_units=True, top_k=self._settings.unit_top_k),
                    self._search(turn, answer_units=False, top_k=self._settings.retrieval_top_k),
                )
                turn.searched = Searched(
                    list(found_units.hits), list(found_passages.hits),
                    found_units.corrected_query or turn.standalone_query,
                )
            except grpc.aio.AioRpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                # No knowledge, no answer: the customer still gets an honest handoff.
                log.warning("retrieval_unavailable", code=error.code().name)
                return await self._escalate(turn, Reason.DECISION_REASON_RETRIEVAL_UNAVAILABLE, Attempt())
        units, passages = turn.searched.units, turn.searched.passages
        floor = self._settings.min_similarity
        considered = [citation(hit) for hit in passages if hit.similarity >= floor]
        # Sentences of a unit that address the model are never shown or prompted, but remembered:
        # a generated reply that follows one is caught.
        injected = [s for unit in units for s in guardrails.injection_sentences(unit.text)]
        injected += guardrails.injection_sentences(turn.masked_text)
        conversation = "\n".join([*turn.history, turn.masked_text])
        units = [unit for unit in (for_this_customer(neutralised(u), conversation) for u in units) if unit.text]
        match = matching.best_match(turn.searched.query, units, passages)
        # Nothing near the question, in any unit or passage: the knowledge base has nothing on it.
        nearest = max((hit.similarity for hit in [*units, *passages]), default=0.0)
        if match is None or nearest < floor:
            out_of_scope = bool(turn.triaged and turn.triaged.intent.out_of_scope)
            if out_of_scope and len(content_words(turn.masked_text)) <= 2:
                return clarify(turn, Reason.DECISION_REASON_NEEDS_DETAIL)
            # Nothing in the knowledge base, and not a support request either (none of the
            # tenant's contact reasons, or a request customer care does not do): declined
            # politely, not handed to a person as a knowledge gap.
            if out_of_scope or guardrails.looks_off_topic(turn.masked_text):
                return clarify(turn, Reason.DECISION_REASON_OFF_TOPIC)
            return await self._escalate(
                turn, Reason.DECISION_REASON_NO_KNOWLEDGE, Attempt(considered=considered), searched=passages
            )

        # The gate, decided before any generation.
        attempt = Attempt(
            reply=match.reply, citations=[citation(match.unit)], considered=considered, signals=match.signals
        )
        confidence = self._confidence_of(turn)
        score = confidence.score(turn.request.customer.tenant_id, match.signals)
        threshold = turn.persona.threshold_for(turn.intent)
        trace.get_current_span().set_attribute(attributes.CONCIERGE_CONFIDENCE, score)
        if not confidence.calibrated or score < threshold:
            return await self._escalate(
                turn, Reason.DECISION_REASON_LOW_CONFIDENCE, attempt, score=score, searched=passages
            )
        if guardrails.promises(match.reply, [match.unit.text]):
            # The unit itself promises in the AI's voice (a ticket's "I have refunded you"): not for this customer.
            return await self._escalate(
                turn, Reason.DECISION_REASON_UNSAFE_PROMISE, attempt, score=score, searched=passages
            )

        if not turn.shadow:  # in shadow, the unit's own words: no LLM load for a reply nobody reads
            try:
                attempt.reply = await self._phraser.say(turn, match, attempt, injected)
            except LlmBusy as error:
                # Saturated: shed the message (the gateway answers 429 with Retry-After) rather than
                # queue it past its deadline; nothing is stored, the client sends it again.
                log.warning("llm_busy", error=str(error))
                busy = "the assistant is busy; send the message again shortly"
                raise ResourceExhausted(busy, reason="LLM_BUSY") from error
        return self._respond(turn, Decision.DECISION_ANSWERED, Reason.DECISION_REASON_CONFIDENT, attempt,
                             reply=attempt.reply, score=score)

    async def _standalone_query(self, turn: Turn, masked_text: str, previous: list[str]) -> str:
        deterministic = rewrite.rewrite(masked_text, previous)
        if self._settings.answer_mode != "generative" or deterministic == masked_text or turn.shadow:
            return deterministic
        try:
            completion = await self._llm.chat(
                [{"role": "user", "content": rewrite.llm_prompt(masked_text, previous)}], max_tokens=60,
                model=turn.llm_model,
            )
        except LlmUnavailable:
            return deterministic
        return rewrite.accept_llm_rewrite(completion.text, masked_text, previous) or deterministic

    async def _triage_contact(self, turn: Turn) -> triage_pb2.TriageContactResponse | None:
        try:
            triaged: triage_pb2.TriageContactResponse = await self._triage.TriageContact(
                triage_pb2.TriageContactRequest(
                    customer=turn.request.customer, conversation=masked_conversation(turn),
                    account=turn.request.account,
                )
            )
        except grpc.aio.AioRpcError as error:
            # Triage informs routing; without it the answer is still gated by confidence.
            log.warning("triage_failed", code=error.code().name)
            return None
        return triaged

    async def _search(self, turn: Turn, *, answer_units: bool, top_k: int) -> retrieval_pb2.SearchResponse:
        response: retrieval_pb2.SearchResponse = await self._retrieval.Search(
            retrieval_pb2.SearchRequest(
                tenant_id=turn.request.customer.tenant_id,
                query=turn.standalone_query[:2000],
                top_k=top_k,
                mode=retrieval_pb2.SEARCH_MODE_HYBRID,
                answer_units=answer_units,
            )
        )
        return response

    async def _escalate(
        self,
        turn: Turn,
        reason: Reason,
        attempt: Attempt,
        score: float = 0.0,
        *,
        searched: Sequence[retrieval_pb2.SearchHit] | None = None,
    ) -> concierge_pb2.ConverseResponse:
        """Hand the conversation over. `searched`: what the passage search found, when it ran
        (nothing found included: escalation does not search again for the agent's package)."""
        request = turn.request
        code, handoff_reason = CODES[reason]
        key = message_key(turn)
        triaged = turn.triaged
        confidence = self._confidence_proto(turn, attempt, score)
        handoff: escalation_pb2.Handoff | None = None
        handoff_request = escalation_pb2.CreateHandoffRequest(
            idempotency_key=key,
            customer=request.customer,
            conversation=masked_conversation(turn),
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
            # What triage and the search found (when they ran), so the agent's package does not ask again.
            triage=_verdict(triaged),
            search=None if searched is None else search_pb2.SearchResult(hits=[_shared_hit(h) for h in searched]),
            # The same in the deprecated fields, for an escalation from before the fields above
            # (a rolling deploy, or a handoff held in the outbox across one).
            intent=triaged.intent.label if triaged else "",
            intent_confidence=triaged.intent.confidence if triaged else 0.0,
            sentiment_score=triaged.sentiment.score if triaged else 0.0,
            tier=triaged.route.tier if triaged else triage_pb2.TIER_UNSPECIFIED,
            retrieved=searched or [],
            # The release that handed over (lineage; a held request keeps it until redelivered).
            release_id=turn.release_id,
        )
        if turn.shadow:
            # Decided in shadow: nothing is handed over or held; the reply is what it would have said.
            handoff = escalation_pb2.Handoff()
        else:
            try:
                handoff = (await self._escalation.CreateHandoff(handoff_request)).handoff
            except grpc.aio.AioRpcError as error:
                # The turn is stored with the request in the outbox: redelivery makes the handoff
                # (same idempotency key), so "passed to our team" stays true.
                log.error("handoff_failed", code=error.code().name, reason=code)
                turn.held_handoff = handoff_request
        reply = handoff_reply(turn.persona, MESSAGE_OF[reason], handoff)
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

    async def _escalate_account(self, turn: Turn, reason: Reason, proposal: str) -> concierge_pb2.ConverseResponse:
        """A handoff for the account assistant (an approval request, or its planner down)."""
        return await self._escalate(turn, reason, Attempt(reply=proposal))

    async def _record_outcome(self, turn: Turn, outcome: concierge_pb2.ConverseResponse) -> None:
        """Tell escalation about a contact the AI handled alone: its per-topic automation
        rate and confidence series count these next to the handoffs. Best effort: it
        waits 2 s at most, and a failure never fails the customer's answer."""
        request = turn.request
        answered = outcome.decision == Decision.DECISION_ANSWERED
        try:
            await self._escalation.RecordOutcome(
                escalation_pb2.RecordOutcomeRequest(
                    idempotency_key=message_key(turn),
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
        confidence = self._confidence_of(turn).proto(
            turn.request.customer.tenant_id, score, turn.persona.threshold_for(turn.intent), attempt.signals
        )
        if turn.release is not None:
            confidence.calibration_version = turn.release.calibration_version
        return confidence

    def _respond(
        self, turn: Turn, decision: Decision, reason: Reason, attempt: Attempt, *, reply: str, score: float,
        confidence: answer_pb2.Confidence | None = None,
    ) -> concierge_pb2.ConverseResponse:
        code = reason_code(reason)
        if not turn.shadow:  # the decision metrics count what customers got
            record_decision(Decision.Name(decision).removeprefix("DECISION_").lower(), code)
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
                release_id=turn.release_id,
            ),
        )


def _verdict(triaged: triage_pb2.TriageContactResponse | None) -> verdict_pb2.TriageVerdict | None:
    """What triage decided, as escalation takes it; None when triage failed (escalation asks it then)."""
    if triaged is None:
        return None
    return verdict_pb2.TriageVerdict(
        intent=triaged.intent.label,
        intent_confidence=triaged.intent.confidence,
        sentiment_score=triaged.sentiment.score,
        tier=cast(verdict_pb2.Tier, triaged.route.tier),  # both Tier enums have the same numbers
    )


def _shared_hit(hit: retrieval_pb2.SearchHit) -> search_pb2.SearchHit:
    # The shared SearchHit has retrieval's fields and numbers, so the bytes are the same message.
    return search_pb2.SearchHit.FromString(hit.SerializeToString())


def configuration(settings: ConciergeSettings) -> Configuration:
    """The serving configuration whose confidence fit must serve (see confidence.py)."""
    return Configuration.serving(
        settings.answer_mode, settings.phrasing, settings.llm_model, prompts.version_for(settings.answer_mode)
    )
