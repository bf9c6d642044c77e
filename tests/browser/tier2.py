"""A stack for the Tier-2 browser tests: the gateway served by uvicorn, the
real escalation service (SQLite, its LLM down so summaries are extractive),
and a concierge double that follows the concierge's contract for a handed-over
conversation (escalate once, then forward every customer message to the
handoff). Triage, retrieval and outreach are the scripted fakes of the gateway
tests. Everything runs on one event loop in a background thread, so
Playwright's sync API has the test's thread to itself."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import uvicorn
from google.protobuf.timestamp_pb2 import Timestamp

from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.outreach.v1 import outreach_pb2, outreach_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import answer_pb2, conversation_pb2
from gateway.app import create_app
from gateway.backends import Backends
from gateway.keys import Role, create_key
from gateway.settings import GatewaySettings
from servicekit.server import mount, serving, start_server
from servicekit.settings import ServiceSettings
from services.escalation.app import servicers as escalation_servicers
from tests.conftest import free_port
from tests.gateway.conftest import Fake
from tests.services.escalation.conftest import FakeRetrieval, FakeTriage, fake_embed, llm_down, settings_for

TENANT = "demo"
HANDOFF_TEXT = "A person from our support team is taking over this conversation and will reply here."


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


def _message(role: int, text: str) -> conversation_pb2.Message:
    return conversation_pb2.Message(role=role, text=text, sent_at=_now())


class ConciergeDouble(concierge_pb2_grpc.ConciergeServiceServicer):
    """The concierge's side of a handed-over conversation, by its contract: every customer message
    goes to escalation.AppendCustomerMessage first; appended means a person has the conversation
    (decision forwarded, no reply of its own); otherwise it hands over (low confidence). Its
    conversations live in memory; GetConversation merges the agents' messages from escalation."""

    def __init__(self, escalation: escalation_pb2_grpc.EscalationServiceStub) -> None:
        self.escalation = escalation
        self.conversations: dict[str, list[conversation_pb2.Message]] = {}
        self.turns: dict[str, list[concierge_pb2.ConversationTurn]] = {}

    async def _answer(self, request: concierge_pb2.ConverseRequest) -> concierge_pb2.ConverseResponse:
        messages = self.conversations.setdefault(request.conversation_id, [])
        messages.append(_message(conversation_pb2.ROLE_CUSTOMER, request.text))
        appended = await self.escalation.AppendCustomerMessage(escalation_pb2.AppendCustomerMessageRequest(
            customer=request.customer, conversation_id=request.conversation_id, text=request.text,
            client_message_id=request.client_message_id, channel=conversation_pb2.CHANNEL_CHAT,
        ))
        if appended.appended:
            outcome = concierge_pb2.ConverseResponse(
                decision=concierge_pb2.DECISION_FORWARDED, reason=concierge_pb2.DECISION_REASON_WITH_AGENT,
                decision_reason="with_agent", handoff_id=appended.handoff.handoff_id,
                handoff_reference=appended.handoff.reference,
            )
        else:
            outcome = await self._hand_over(request, messages)
        turns = self.turns.setdefault(request.conversation_id, [])
        outcome.turn_index = len(turns)
        turns.append(concierge_pb2.ConversationTurn(customer_text=request.text, outcome=outcome, created_at=_now()))
        return outcome

    async def _hand_over(
        self, request: concierge_pb2.ConverseRequest, messages: list[conversation_pb2.Message]
    ) -> concierge_pb2.ConverseResponse:
        messages.append(_message(conversation_pb2.ROLE_ASSISTANT, HANDOFF_TEXT))
        created = await self.escalation.CreateHandoff(escalation_pb2.CreateHandoffRequest(
            idempotency_key=f"{request.conversation_id}:{len(messages)}",
            customer=request.customer,
            conversation=conversation_pb2.Conversation(
                conversation_id=request.conversation_id, messages=messages, channel=conversation_pb2.CHANNEL_CHAT
            ),
            reason=escalation_pb2.HANDOFF_REASON_LOW_CONFIDENCE,
            ai_attempt=escalation_pb2.AiAttempt(
                confidence=answer_pb2.Confidence(score=0.41, threshold=0.85), explanation="low_confidence"
            ),
            queue="billing",
            priority=60,
        ))
        handoff = created.handoff
        return concierge_pb2.ConverseResponse(
            reply=HANDOFF_TEXT,
            confidence=answer_pb2.Confidence(score=0.41, threshold=0.85, calibrated=True, configuration_id="test"),
            decision=concierge_pb2.DECISION_ESCALATED, reason=concierge_pb2.DECISION_REASON_LOW_CONFIDENCE,
            decision_reason="low_confidence", handoff_id=handoff.handoff_id, handoff_reference=handoff.reference,
            expected_wait=handoff.expected_wait,
        )

    async def Converse(self, request: concierge_pb2.ConverseRequest, context: Any) -> concierge_pb2.ConverseResponse:
        return await self._answer(request)

    async def StreamConverse(self, request: concierge_pb2.StreamConverseRequest, context: Any) -> AsyncIterator[Any]:
        yield concierge_pb2.StreamConverseResponse(outcome=await self._answer(request.request))

    async def GetConversation(
        self, request: concierge_pb2.GetConversationRequest, context: Any
    ) -> concierge_pb2.GetConversationResponse:
        if request.conversation_id not in self.conversations:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such conversation")
        thread = await self.escalation.ListConversationMessages(escalation_pb2.ListConversationMessagesRequest(
            tenant_id=request.customer.tenant_id, conversation_id=request.conversation_id,
            customer_id=request.customer.customer_id,
        ))
        agents = [
            conversation_pb2.Message(role=conversation_pb2.ROLE_AGENT, text=m.message.text, sent_at=m.message.sent_at,
                                     author_name=m.author_name)
            for m in thread.messages if m.message.role == conversation_pb2.ROLE_AGENT
        ]
        mine = self.conversations[request.conversation_id]
        merged = sorted([*mine, *agents], key=lambda m: m.sent_at.ToNanoseconds())
        return concierge_pb2.GetConversationResponse(
            conversation=conversation_pb2.Conversation(conversation_id=request.conversation_id, messages=merged),
            turns=self.turns.get(request.conversation_id, []),
        )


class Tier2Stack:
    """Gateway + real escalation + concierge double, on free ports, in a thread of their own."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.keys_path = data_dir / "api_keys.json"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keys = {role: create_key(self.keys_path, TENANT, role, f"{role.label}-{TENANT}")[0]
                     for role in (Role.CHANNEL, Role.AGENT, Role.ADMIN)}
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._server: uvicorn.Server | None = None
        self._thread = threading.Thread(target=self._run, name="tier2-stack", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # surfaced to the test by start()
            self._failure = error
            self._ready.set()

    async def _serve(self) -> None:
        async with AsyncExitStack() as stack:
            escalation_addr = await self._start_escalation(stack)
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(escalation_addr))
            concierge = ConciergeDouble(escalation_pb2_grpc.EscalationServiceStub(channel))
            fakes = [(Fake(pb2, pb2_grpc), pb2, pb2_grpc) for pb2, pb2_grpc in (
                (triage_pb2, triage_pb2_grpc), (retrieval_pb2, retrieval_pb2_grpc), (outreach_pb2, outreach_pb2_grpc))]
            others = await start_server(ServiceSettings(port=0), [
                mount(concierge, concierge_pb2, concierge_pb2_grpc), *(mount(*fake) for fake in fakes)])
            stack.push_async_callback(others.stop, 0)
            others_addr = f"127.0.0.1:{others.port}"
            settings = GatewaySettings(
                concierge_addr=others_addr, triage_addr=others_addr, retrieval_addr=others_addr,
                outreach_addr=others_addr, escalation_addr=escalation_addr, api_keys_file=self.keys_path,
                port=self.port, rate_limit_per_s=1000.0, rate_limit_burst=1000,
            )
            backends = Backends.connect(settings)
            stack.push_async_callback(backends.close)
            config = uvicorn.Config(create_app(settings, backends), host="127.0.0.1", port=self.port,
                                    log_config=None, access_log=False, timeout_graceful_shutdown=2)
            self._server = uvicorn.Server(config)
            serving_task = asyncio.create_task(self._server.serve())
            while not self._server.started and not serving_task.done():  # noqa: ASYNC110 (uvicorn has only a flag)
                await asyncio.sleep(0.02)
            self._ready.set()
            await serving_task

    async def _start_escalation(self, stack: AsyncExitStack) -> str:
        """The real escalation service on a free port; its address."""
        factory = functools.partial(escalation_servicers, llm=llm_down(), retrieval=FakeRetrieval(),
                                    triage=FakeTriage(), embed=fake_embed)
        escalation = await stack.enter_async_context(serving(settings_for(self.data_dir / "escalation"), factory))
        return f"127.0.0.1:{escalation.port}"

    def start(self) -> Tier2Stack:
        self._thread.start()
        if not self._ready.wait(60) or self._failure is not None:
            raise RuntimeError(f"the Tier-2 stack did not start: {self._failure!r}")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(15)
