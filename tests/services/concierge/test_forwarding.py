"""Tier 2 as a conversation, the concierge's side: a message of a conversation a human has
goes to them (no retrieval, no LLM, no new handoff), a held message is never lost, the
handoff message says plainly that a person is taking over (reference, expected wait),
GetConversation shows the agents' replies in time order, off-topic messages are declined
and "yes please" / "no thanks" are never a knowledge gap.

Escalation is an in-process double of EscalationService on a real gRPC server (one open
handoff per conversation, a thread, idempotent appends); the rest are the doubles of
test_concierge.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import conversation_pb2
from services.concierge.handoff_messages import wait_in_words
from tests.services.concierge.test_concierge import (
    CLOSED,
    OPEN,
    FakeLlm,
    FakeRetrieval,
    FakeTriage,
    Rig,
    _refuse,
    converse,
    history,
    kinds,
    make,
    request,
    stand_in,
    stream,
)

REFERENCE = "HO-7KQ2M9"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'concierge.db'}"


@dataclass
class Thread:
    handoff: escalation_pb2.Handoff
    messages: list[escalation_pb2.ThreadMessage] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)


class EscalationDouble(escalation_pb2_grpc.EscalationServiceServicer):
    """Escalation's contract for a conversation: CreateHandoff opens one handoff per
    conversation (later ones append), AppendCustomerMessage adds to an open one only,
    once per client_message_id, ListConversationMessages returns the thread."""

    def __init__(self) -> None:
        self.threads: dict[str, Thread] = {}
        self.created: list[escalation_pb2.CreateHandoffRequest] = []
        self.appends: list[escalation_pb2.AppendCustomerMessageRequest] = []
        self.outcomes: list[escalation_pb2.RecordOutcomeRequest] = []
        self.down = False
        self.wait_s: int | None = 600

    async def _refuse_when_down(self, context: grpc.aio.ServicerContext) -> None:
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "escalation is restarting")

    async def CreateHandoff(
        self, request: escalation_pb2.CreateHandoffRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.CreateHandoffResponse:
        await self._refuse_when_down(context)
        self.created.append(request)
        conversation_id = request.conversation.conversation_id
        thread = self.threads.get(conversation_id)
        if thread is not None and thread.handoff.state != escalation_pb2.HANDOFF_STATE_RESOLVED:
            return escalation_pb2.CreateHandoffResponse(handoff=thread.handoff, appended=True)
        handoff = escalation_pb2.Handoff(
            handoff_id=f"h-{len(self.threads) + 1}", reference=REFERENCE, conversation_id=conversation_id,
            customer=request.customer, state=escalation_pb2.HANDOFF_STATE_WAITING,
        )
        if self.wait_s is not None:
            handoff.expected_wait.CopyFrom(duration_pb2.Duration(seconds=self.wait_s))
        self.threads[conversation_id] = Thread(handoff)
        return escalation_pb2.CreateHandoffResponse(handoff=handoff, created=True)

    async def AppendCustomerMessage(
        self, request: escalation_pb2.AppendCustomerMessageRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.AppendCustomerMessageResponse:
        await self._refuse_when_down(context)
        self.appends.append(request)
        thread = self.threads.get(request.conversation_id)
        if thread is None or thread.handoff.state == escalation_pb2.HANDOFF_STATE_RESOLVED:
            return escalation_pb2.AppendCustomerMessageResponse(appended=False)
        if request.client_message_id not in thread.keys:
            thread.keys.add(request.client_message_id)
            self._add(thread, conversation_pb2.ROLE_CUSTOMER, request.text, dt.datetime.now(dt.UTC))
        return escalation_pb2.AppendCustomerMessageResponse(appended=True, handoff=thread.handoff)

    async def ListConversationMessages(
        self, request: escalation_pb2.ListConversationMessagesRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.ListConversationMessagesResponse:
        await self._refuse_when_down(context)
        thread = self.threads.get(request.conversation_id)
        if thread is None:
            return escalation_pb2.ListConversationMessagesResponse()
        assert request.customer_id == thread.handoff.customer.customer_id
        return escalation_pb2.ListConversationMessagesResponse(messages=thread.messages, handoff=thread.handoff)

    async def RecordOutcome(
        self, request: escalation_pb2.RecordOutcomeRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.RecordOutcomeResponse:
        self.outcomes.append(request)
        return escalation_pb2.RecordOutcomeResponse(recorded=True)

    def agent_replies(self, conversation_id: str, text: str, at: dt.datetime, name: str = "Dana") -> None:
        self._add(self.threads[conversation_id], conversation_pb2.ROLE_AGENT, text, at, name)

    def resolve(self, conversation_id: str) -> None:
        self.threads[conversation_id].handoff.state = escalation_pb2.HANDOFF_STATE_RESOLVED

    @staticmethod
    def _add(thread: Thread, role: int, text: str, at: dt.datetime, author_name: str = "") -> None:
        message = conversation_pb2.Message(role=role, text=text)  # type: ignore[arg-type]
        message.sent_at.FromDatetime(at)
        thread.messages.append(escalation_pb2.ThreadMessage(
            message_id=f"m-{len(thread.messages) + 1}", sequence=len(thread.messages) + 1,
            handoff_id=thread.handoff.handoff_id, message=message, author_name=author_name,
            conversation_id=thread.handoff.conversation_id,
        ))


@dataclass
class Live:
    escalation: EscalationDouble
    stub: escalation_pb2_grpc.EscalationServiceStub


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    double = EscalationDouble()
    server = grpc.aio.server()
    escalation_pb2_grpc.add_EscalationServiceServicer_to_server(double, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Live(double, escalation_pb2_grpc.EscalationServiceStub(channel))
    await server.stop(None)


def rig_on(live: Live, db_url: str, **options: object) -> Rig:
    options.setdefault("gate", CLOSED)  # every question below the threshold: a handoff
    rig = make(FakeLlm(fail=_refuse), db_url, **options)  # type: ignore[arg-type]
    rig.servicer._escalation = live.stub  # the real channel to the escalation double
    return rig


async def handed_over(rig: Rig) -> concierge_pb2.ConverseResponse:
    response = await converse(rig, request("My invoice shows a charge I don't recognise"))
    assert response.decision == concierge_pb2.DECISION_ESCALATED
    return response


# --- the handoff message -------------------------------------------------------------


async def test_the_handoff_says_plainly_that_a_person_takes_over_with_reference_and_wait(
    live: Live, db_url: str
) -> None:
    rig = rig_on(live, db_url)
    response = await handed_over(rig)
    assert response.reply == (
        "I'm not confident enough in an answer to this, so I've passed your question to our support team. "
        f"Your reference is {REFERENCE}. Someone usually picks it up within about 10 minutes and will reply "
        "here. You won't need to repeat yourself."
    )
    assert "?" not in response.reply, "nothing to answer: the handoff exists already"
    assert response.handoff_id == "h-1" and response.handoff_reference == REFERENCE
    assert response.expected_wait.seconds == 600
    stored = (await history(rig)).turns[0].outcome
    assert stored.handoff_reference == REFERENCE and stored.expected_wait.seconds == 600


async def test_without_a_known_wait_the_handoff_promises_no_time(live: Live, db_url: str) -> None:
    live.escalation.wait_s = None
    response = await handed_over(rig_on(live, db_url))
    assert "within" not in response.reply and "Someone will reply here as soon as they can." in response.reply
    assert not response.HasField("expected_wait")


def test_no_persona_message_asks_to_transfer() -> None:
    from services.concierge.persona import PersonaBook

    for tenant in ("default", "demo"):
        persona = PersonaBook().get(tenant)
        assert not [key for key, text in persona.messages.items() if "transfer you" in text.lower()]


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(20, "a minute"), (60, "a minute"), (400, "7 minutes"), (1000, "20 minutes"), (3600, "an hour"),
     (9000, "3 hours"), (90000, "a day")],
)
def test_waits_are_said_as_a_person_says_them(seconds: int, words: str) -> None:
    assert wait_in_words(seconds) == words


# --- forwarding ----------------------------------------------------------------------


async def test_a_message_while_a_human_has_the_conversation_goes_to_them_and_nowhere_else(
    live: Live, db_url: str
) -> None:
    rig = rig_on(live, db_url)
    first = await handed_over(rig)
    searches, triaged = len(rig.retrieval.requests), len(rig.triage.requests)
    response = await converse(rig, request("It was on the 3rd, for 49.99", client_message_id="msg-2"))
    assert response.decision == concierge_pb2.DECISION_FORWARDED
    assert response.reason == concierge_pb2.DECISION_REASON_WITH_AGENT and response.decision_reason == "with_agent"
    assert response.reply == ""
    assert (response.handoff_id, response.handoff_reference) == (first.handoff_id, REFERENCE)
    # No retrieval, no triage, no LLM, no new handoff, no automation outcome.
    assert (len(rig.retrieval.requests), len(rig.triage.requests)) == (searches, triaged)
    assert not rig.llm.bodies and len(live.escalation.created) == 1 and not live.escalation.outcomes
    (append,) = live.escalation.appends
    assert append.text == "It was on the 3rd, for 49.99" and append.conversation_id == "c1"
    assert append.customer.customer_id == "u1" and append.client_message_id
    # Stored as a turn, with the handoff; a retry is the same message (escalation appends once).
    turn = (await history(rig)).turns[1]
    assert turn.outcome.decision == concierge_pb2.DECISION_FORWARDED and turn.outcome.handoff_id == "h-1"
    again = await converse(rig, request("It was on the 3rd, for 49.99", client_message_id="msg-2"))
    assert again == response and len(live.escalation.threads["c1"].messages) == 1


async def test_a_streamed_forwarded_message_sends_just_the_outcome(live: Live, db_url: str) -> None:
    rig = rig_on(live, db_url)
    await handed_over(rig)
    events = await stream(rig, request("Any news?"))
    assert kinds(events) == ["outcome"]
    assert events[0].outcome.decision == concierge_pb2.DECISION_FORWARDED


@pytest.mark.parametrize("text", ["yes", "yes please", "no thanks", "ok"])
async def test_yes_and_no_after_a_handoff_are_forwarded_never_a_knowledge_gap(
    live: Live, db_url: str, text: str
) -> None:
    rig = rig_on(live, db_url)
    await handed_over(rig)
    response = await converse(rig, request(text))
    assert response.decision == concierge_pb2.DECISION_FORWARDED
    assert len(live.escalation.created) == 1 and not live.escalation.outcomes


async def test_after_the_handoff_is_closed_the_ai_answers_as_usual(live: Live, db_url: str) -> None:
    rig = rig_on(live, db_url)
    await handed_over(rig)
    live.escalation.resolve("c1")
    rig.servicer._confidence = stand_in(rig.settings, OPEN)  # the AI would answer now
    response = await converse(rig, request())
    assert len(live.escalation.appends) == 1, "escalation was asked first"
    assert response.decision == concierge_pb2.DECISION_ANSWERED and rig.retrieval.requests


async def test_a_conversation_without_a_handoff_never_asks_escalation_to_forward(live: Live, db_url: str) -> None:
    rig = rig_on(live, db_url, gate=OPEN)
    await converse(rig, request())
    await converse(rig, request("And for annual plans?"))
    assert not live.escalation.appends


# --- escalation down -----------------------------------------------------------------


async def test_a_message_escalation_cannot_take_is_held_and_delivered_in_order(live: Live, db_url: str) -> None:
    await held_and_delivered_in_order(live, db_url)


async def test_held_messages_on_postgresql(live: Live, postgres_url: str) -> None:
    await held_and_delivered_in_order(live, postgres_url)


async def held_and_delivered_in_order(live: Live, db_url: str) -> None:
    rig = rig_on(live, db_url)
    await handed_over(rig)
    live.escalation.down = True
    held = [await converse(rig, request(text)) for text in ("First follow-up", "Second follow-up")]
    for response in held:
        # Honest: not answered by the AI, not lost, and the customer need not send it again.
        assert response.decision == concierge_pb2.DECISION_FORWARDED
        assert "saved and will reach them" in response.reply and response.handoff_reference == REFERENCE
    assert [t.outcome.decision for t in (await history(rig)).turns][1:] == [concierge_pb2.DECISION_FORWARDED] * 2
    assert len(rig.store.pending_forwards()) == 2 and not rig.retrieval.requests[2:]
    live.escalation.down = False
    # The next message waits for the held ones: the agent reads them in the order written.
    third = await converse(rig, request("Third follow-up"))
    assert third.decision == concierge_pb2.DECISION_FORWARDED and third.reply == ""
    texts = [m.message.text for m in live.escalation.threads["c1"].messages]
    assert texts == ["First follow-up", "Second follow-up", "Third follow-up"]
    assert rig.store.pending_forwards() == []


async def test_held_messages_reach_the_agent_without_another_message(live: Live, db_url: str) -> None:
    rig = rig_on(live, db_url)
    await handed_over(rig)
    live.escalation.down = True
    await converse(rig, request("Are you there?"))
    live.escalation.down = False
    rig.servicer.stop_redelivery()
    await rig.servicer.redeliver_held_messages(interval_s=0)
    assert [m.message.text for m in live.escalation.threads["c1"].messages] == ["Are you there?"]
    assert rig.store.pending_forwards() == []


async def test_a_handoff_escalation_could_not_take_is_made_later_with_its_package(live: Live, db_url: str) -> None:
    rig = rig_on(live, db_url)
    live.escalation.down = True
    response = await handed_over(rig)
    assert not response.handoff_id and "saved and will reach them" in response.reply
    live.escalation.down = False
    rig.servicer.stop_redelivery()
    await rig.servicer.redeliver_held_messages(interval_s=0)
    (created,) = live.escalation.created
    assert created.ai_attempt.explanation == "low_confidence" and created.queue == "general"
    # The next message goes to the human who now has it.
    follow_up = await converse(rig, request("Thanks, I'll wait"))
    assert follow_up.decision == concierge_pb2.DECISION_FORWARDED and follow_up.handoff_reference == REFERENCE


async def test_a_held_message_whose_handoff_closed_meanwhile_still_reaches_the_team(live: Live, db_url: str) -> None:
    rig = rig_on(live, db_url)
    await handed_over(rig)
    live.escalation.down = True
    await converse(rig, request("One more thing about that charge"))
    live.escalation.down = False
    live.escalation.resolve("c1")
    rig.servicer.stop_redelivery()
    await rig.servicer.redeliver_held_messages(interval_s=0)
    # Told it would reach the team: a new handoff carries it.
    assert len(live.escalation.created) == 2
    last = live.escalation.created[-1]
    assert last.conversation.messages[-1].text == "One more thing about that charge"
    assert live.escalation.threads["c1"].handoff.state == escalation_pb2.HANDOFF_STATE_WAITING


# --- GetConversation -----------------------------------------------------------------


async def test_get_conversation_merges_the_agents_replies_by_time(live: Live, db_url: str) -> None:
    rig = rig_on(live, db_url)
    await handed_over(rig)
    await converse(rig, request("It was on the 3rd"))
    first, second = (turn.created_at.ToDatetime(dt.UTC) for turn in (await history(rig)).turns)
    live.escalation.agent_replies("c1", "Which card was it?", first + (second - first) / 2)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    live.escalation.agent_replies("c1", "Refunded, sorry about that.", later)
    messages = (await history(rig)).conversation.messages
    roles = [conversation_pb2.Role.Name(m.role) for m in messages]
    assert roles == ["ROLE_CUSTOMER", "ROLE_ASSISTANT", "ROLE_AGENT", "ROLE_CUSTOMER", "ROLE_AGENT"]
    assert [m.text for m in messages][2:] == ["Which card was it?", "It was on the 3rd", "Refunded, sorry about that."]
    assert messages[2].author_name == "Dana" and messages[1].author_name == ""
    # The customer's forwarded message is in the thread too, but shown once.
    assert sum(m.text == "It was on the 3rd" for m in messages) == 1


async def test_get_conversation_without_escalation_returns_what_the_concierge_has(live: Live, db_url: str) -> None:
    rig = rig_on(live, db_url)
    await handed_over(rig)
    live.escalation.agent_replies("c1", "Which card was it?", dt.datetime.now(dt.UTC))
    live.escalation.down = True
    messages = (await history(rig)).conversation.messages
    assert [m.role for m in messages] == [conversation_pb2.ROLE_CUSTOMER, conversation_pb2.ROLE_ASSISTANT]


# --- off-topic and acknowledgements ----------------------------------------------------


@pytest.mark.parametrize("text", ["What's the weather tomorrow?", "write me a poem"])
async def test_off_topic_is_declined_politely_even_mid_conversation(live: Live, db_url: str, text: str) -> None:
    # An answered first question, then the off-topic one, which the knowledge base knows nothing of.
    retrieval = FakeRetrieval()
    rig = rig_on(live, db_url, retrieval=retrieval, gate=OPEN)
    await converse(rig, request())
    retrieval.similarity = 0.05
    response = await converse(rig, request(text))
    assert response.decision == concierge_pb2.DECISION_CLARIFY
    assert response.reason == concierge_pb2.DECISION_REASON_OFF_TOPIC
    assert "I can only help with questions about Beacon by Northwind Cloud" in response.reply
    assert not live.escalation.created, "not handed to a person as a knowledge gap"


async def test_triage_out_of_scope_with_nothing_retrieved_is_off_topic_not_a_handoff(
    live: Live, db_url: str
) -> None:
    # No keyword of any list: the signal is triage's out-of-scope intent plus an empty search.
    triage = FakeTriage(intent=triage_pb2.IntentPrediction(label="card_arrival", confidence=0.1, out_of_scope=True))
    rig = rig_on(live, db_url, triage=triage, retrieval=FakeRetrieval(similarity=0.05))
    response = await converse(rig, request("Which football team should I support this season?"))
    assert response.reason == concierge_pb2.DECISION_REASON_OFF_TOPIC and not live.escalation.created


async def test_an_in_scope_question_the_knowledge_base_lacks_still_goes_to_a_person(live: Live, db_url: str) -> None:
    triage = FakeTriage(intent=triage_pb2.IntentPrediction(label="billing", confidence=0.9))
    rig = rig_on(live, db_url, triage=triage, retrieval=FakeRetrieval(similarity=0.05))
    response = await converse(rig, request("How do I export invoices to my ERP system?"))
    assert response.reason == concierge_pb2.DECISION_REASON_NO_KNOWLEDGE and live.escalation.created


@pytest.mark.parametrize("text", ["thanks", "yes please", "no thanks", "ok great, thank you"])
async def test_a_reply_to_an_answer_is_acknowledged_not_searched(live: Live, db_url: str, text: str) -> None:
    rig = rig_on(live, db_url, gate=OPEN)
    await converse(rig, request())
    searches = len(rig.retrieval.requests)
    response = await converse(rig, request(text))
    assert response.decision == concierge_pb2.DECISION_CLARIFY
    assert "anything else about Beacon by Northwind Cloud" in response.reply
    assert len(rig.retrieval.requests) == searches and not live.escalation.created
    # Not a contact: escalation's automation and gap counts do not see it.
    assert len(live.escalation.outcomes) == 1
