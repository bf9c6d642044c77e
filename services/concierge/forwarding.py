"""The human's part of the conversation: a message of a conversation that a person has
(or had) goes to that person's thread in escalation. When escalation cannot take it, the
message (or a handoff it could not make) waits in the store's outbox, and redelivery
offers it again, oldest first, until escalation takes it: held, never lost."""

from __future__ import annotations

import asyncio

import grpc
import structlog

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.type.v1 import answer_pb2
from servicekit.tracing import current_trace_id
from services.concierge.decisions import Decision, HandoffReason, Reason, reason_code, record_decision
from services.concierge.store import ConversationStore, PendingForward, StoredConversation, off_loop
from services.concierge.turns import Turn, message_key, stored_conversation

log = structlog.get_logger(__name__)

# Escalation errors that pass: a message held for the agent is sent again later.
TRANSIENT = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED, grpc.StatusCode.ABORTED,
})
# How often held messages are offered to escalation again.
REDELIVERY_INTERVAL_S = 10.0


class Forwarder:
    """Owns the escalation stub and the conversation store's outbox: forwards a message to
    the human who has the conversation, and redelivers what escalation could not take."""

    def __init__(self, escalation: escalation_pb2_grpc.EscalationServiceStub, store: ConversationStore) -> None:
        self.escalation = escalation
        self._store = store
        self._redelivery: asyncio.Task[None] | None = None

    async def forward(self, turn: Turn) -> concierge_pb2.ConverseResponse | None:
        """Give the message to the human who has the conversation: the FORWARDED outcome, or
        None when no handoff takes it (none open, or resolved outside the reopen window) and
        the AI answers as usual. When escalation cannot take it, it is held, never lost."""
        request = turn.request
        # Messages held earlier go first, so that the agent reads them in order.
        if not await self._deliver_held(request.customer.tenant_id, request.conversation_id):
            return _forwarded(turn, None, held=True)
        try:
            appended: escalation_pb2.AppendCustomerMessageResponse = await self.escalation.AppendCustomerMessage(
                escalation_pb2.AppendCustomerMessageRequest(
                    customer=request.customer,
                    conversation_id=request.conversation_id,
                    text=turn.masked_text,
                    client_message_id=message_key(turn),
                    channel=request.channel,
                ),
                timeout=5.0,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() not in TRANSIENT:
                # Escalation refuses the message (an older version without the RPC, say): the AI answers.
                log.error("forward_refused", code=error.code().name)
                return None
            log.warning("forward_held", code=error.code().name)
            return _forwarded(turn, None, held=True)
        if not appended.appended:
            return None
        return _forwarded(turn, appended.handoff, held=False)

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
                pending = await off_loop(self._store.pending_forwards)
                if not pending:
                    return
                await self._deliver_held()
            except Exception as error:  # the loop must outlive one bad round
                log.error("redelivery_failed", error=type(error).__name__)
            await asyncio.sleep(interval_s)

    async def _deliver_held(self, tenant_id: str = "", conversation_id: str = "") -> bool:
        """Send held messages (of one conversation, or all), oldest first; True when none is
        left. A conversation whose message fails waits for the next round, keeping its order."""
        pending = await off_loop(self._store.pending_forwards, tenant_id, conversation_id)
        blocked: set[tuple[str, str]] = set()
        for held in pending:
            conversation = (held.customer.tenant_id, held.conversation_id)
            if conversation in blocked:
                continue
            try:
                await self._deliver(held)
            except grpc.aio.AioRpcError as error:
                transient = error.code() in TRANSIENT
                # A refused message is kept and retried, but does not hold up the ones after it.
                (log.warning if transient else log.error)(
                    "held_message_not_delivered", code=error.code().name, attempts=held.attempts + 1
                )
                if transient:
                    blocked.add(conversation)
                await off_loop(self._store.forward_failed, held)
                continue
            await off_loop(self._store.forwarded, held)
            log.info("held_message_delivered", attempts=held.attempts + 1)
        return not blocked

    async def _deliver(self, held: PendingForward) -> None:
        if held.handoff_request is not None:
            await self.escalation.CreateHandoff(escalation_pb2.CreateHandoffRequest.FromString(held.handoff_request))
            return
        appended: escalation_pb2.AppendCustomerMessageResponse = await self.escalation.AppendCustomerMessage(
            escalation_pb2.AppendCustomerMessageRequest(
                customer=held.customer, conversation_id=held.conversation_id, text=held.text,
                client_message_id=held.message_key, channel=held.channel,
            ),
            timeout=5.0,
        )
        if not appended.appended:
            # The handoff closed while the message waited; the customer was told the team
            # would get it, so the team gets it.
            stored = await off_loop(self._store.load, held.customer, held.conversation_id)
            await self.escalation.CreateHandoff(
                escalation_pb2.CreateHandoffRequest(
                    idempotency_key=held.message_key,
                    customer=held.customer,
                    conversation=stored_conversation(stored, held),
                    reason=HandoffReason.HANDOFF_REASON_SYSTEM_UNAVAILABLE,
                    ai_attempt=escalation_pb2.AiAttempt(explanation="held_while_escalation_unavailable"),
                    queue="general",
                    priority=50,
                    release_id=_release_of(stored, held),
                )
            )


def _release_of(stored: StoredConversation | None, held: PendingForward) -> str:
    """The release that served the held message's turn (its lineage), for the handoff it makes."""
    turns = stored.turns if stored else []
    return turns[held.turn_index].outcome.lineage.release_id if 0 <= held.turn_index < len(turns) else ""


def _forwarded(
    turn: Turn, handoff: escalation_pb2.Handoff | None, *, held: bool
) -> concierge_pb2.ConverseResponse:
    """The outcome of a message for the agent: no reply of the AI's, unless the message is
    held (then the customer is told it will reach the team, which redelivery makes true)."""
    record_decision("forwarded", reason_code(Reason.DECISION_REASON_WITH_AGENT))
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
