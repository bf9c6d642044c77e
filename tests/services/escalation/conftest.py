"""Doubles and helpers for the escalation tests: a real server on port 0 and a
real channel; the LLM is an httpx.MockTransport, retrieval and triage are
in-process fakes, so each test says exactly what the backends answer."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import answer_pb2, conversation_pb2, customer_pb2
from servicekit.errors import details_from_rpc_error
from servicekit.llm import LlmClient
from servicekit.server import serving
from services.escalation.app import servicers
from services.escalation.settings import EscalationSettings
from tests.llm_stream import completion

CUSTOMER = conversation_pb2.ROLE_CUSTOMER
ASSISTANT = conversation_pb2.ROLE_ASSISTANT
AGENT = conversation_pb2.ROLE_AGENT
Stub = escalation_pb2_grpc.EscalationServiceStub


class Unavailable(grpc.aio.AioRpcError):
    def __init__(self) -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down")


class FakeRetrieval:
    def __init__(self, hits: list[retrieval_pb2.SearchHit] | None = None, down: bool = False) -> None:
        self.hits = hits or []
        self.down = down
        self.requests: list[retrieval_pb2.SearchRequest] = []

    async def Search(
        self,
        request: retrieval_pb2.SearchRequest,
        timeout: float | None = None,  # noqa: ASYNC109 - the stub's signature
    ) -> retrieval_pb2.SearchResponse:
        self.requests.append(request)
        if self.down:
            raise Unavailable()
        return retrieval_pb2.SearchResponse(hits=self.hits)


class FakeTriage:
    def __init__(self, response: triage_pb2.TriageContactResponse | None = None) -> None:
        self.response = response
        self.calls = 0

    async def TriageContact(
        self,
        request: triage_pb2.TriageContactRequest,
        timeout: float | None = None,  # noqa: ASYNC109 - the stub's signature
    ) -> triage_pb2.TriageContactResponse:
        self.calls += 1
        if self.response is None:
            raise Unavailable()
        return self.response


def llm_answering(answer: Callable[[str], str] | list[str]) -> tuple[LlmClient, list[str]]:
    """An LLM double: `answer(prompt)` (or the next of a list) streamed back; returns (client, prompts seen)."""
    prompts: list[str] = []
    queue = list(answer) if isinstance(answer, list) else None

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        prompts.append(body["prompt"])
        text = queue.pop(0) if queue is not None else answer(body["prompt"])  # type: ignore[operator]
        return completion([f"{word} " for word in text.split()])

    return LlmClient("http://llm.test/v1", "test-model", transport=httpx.MockTransport(handler)), prompts


def llm_down() -> LlmClient:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    return LlmClient("http://llm.test/v1", "test-model", transport=httpx.MockTransport(handler))


def fake_embed(texts: list[str]) -> np.ndarray:
    """Bag-of-words vectors (hashed), L2-normalised: same words, same direction. A stable
    hash (Python's hash() of a str changes with every process) into enough buckets that
    the tests' few words do not collide: a collision in one run once split a cluster."""
    vectors = np.zeros((len(texts), 4096), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().replace("?", " ").split():
            vectors[row, int(hashlib.md5(word.encode()).hexdigest()[:8], 16) % 4096] += 1.0
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-9)


def settings_for(data_dir: Path, **overrides: Any) -> EscalationSettings:
    # Every value given explicitly, so the caller's shell environment cannot leak in.
    values: dict[str, Any] = {
        "port": 0,
        "data_dir": data_dir,
        "database_url": "",
        "llm_base_url": "http://llm.test/v1",
        "retrieval_addr": "unused:1",
        "triage_addr": "unused:1",
        # Summaries start at once (the quiet-turn wait has tests of its own).
        "summary_quiet_s": 0.0,
    }
    return EscalationSettings(**{**values, **overrides})


@asynccontextmanager
async def running_stub(
    settings: EscalationSettings,
    *,
    llm: LlmClient | None = None,
    retrieval: FakeRetrieval | None = None,
    triage: FakeTriage | None = None,
    embed: Callable[[list[str]], np.ndarray] | None = fake_embed,
) -> AsyncIterator[Stub]:
    factory = functools.partial(
        servicers,
        llm=llm or llm_down(),
        retrieval=retrieval or FakeRetrieval(),  # type: ignore[arg-type]
        triage=triage or FakeTriage(),  # type: ignore[arg-type]
        embed=embed,
    )
    async with (
        serving(settings, factory) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        yield Stub(channel)


async def settled(stub: Stub, handoff: escalation_pb2.Handoff) -> escalation_pb2.Handoff:
    """The handoff once its background LLM summary ("llm" or "extractive") and draft ("llm"
    or "template") are settled."""
    request = escalation_pb2.GetHandoffRequest(tenant_id=handoff.customer.tenant_id, handoff_id=handoff.handoff_id)
    for _ in range(200):
        got = (await stub.GetHandoff(request)).handoff
        if "pending" not in (got.context.summary_method, got.context.draft_method):
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"the summary or draft of handoff {handoff.handoff_id} never settled")


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[Stub]:
    async with running_stub(settings_for(tmp_path)) as client:
        yield client


def handoff_request(
    key: str = "key-1",
    tenant: str = "demo",
    priority: int = 50,
    queue: str = "billing",
    texts: tuple[str, ...] = ("My invoice is wrong.", "I was charged twice for November."),
    intent: str = "",
    reason: int = escalation_pb2.HANDOFF_REASON_LOW_CONFIDENCE,
    confidence: float = 0.42,
    customer_id: str = "cust-7",
    conversation_id: str = "",
) -> escalation_pb2.CreateHandoffRequest:
    """A CreateHandoff; each key is its own conversation unless conversation_id names one
    (a conversation has one open handoff: a second key would be added to the first)."""
    messages = []
    for text in texts:
        messages.append(conversation_pb2.Message(role=CUSTOMER, text=text))
        messages.append(conversation_pb2.Message(role=ASSISTANT, text="Let me check that for you."))
    return escalation_pb2.CreateHandoffRequest(
        idempotency_key=key,
        customer=customer_pb2.CustomerRef(tenant_id=tenant, customer_id=customer_id),
        conversation=conversation_pb2.Conversation(
            conversation_id=conversation_id or f"conv-{key}", messages=messages, channel=conversation_pb2.CHANNEL_CHAT
        ),
        reason=reason,
        ai_attempt=escalation_pb2.AiAttempt(
            candidate_answer="Refunds take 5 days.",
            confidence=answer_pb2.Confidence(score=confidence, threshold=0.85),
            citations=[answer_pb2.Citation(doc_id="billing-faq", chunk_id="3", title="Billing FAQ")],
            explanation="low_confidence",
        ),
        queue=queue,
        priority=priority,
        account=customer_pb2.AccountSignals(plan="business", tenure_days=200, contract_value_minor=1_200_000),
        intent=intent,
        intent_confidence=0.9 if intent else 0.0,
    )


async def expect_error(call: object, code: grpc.StatusCode) -> tuple[list[tuple[str, str]], str]:
    """The field violations and the ErrorInfo reason of a call that must fail with `code`."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    details = details_from_rpc_error(caught.value)
    assert details.code == code, details.message
    return details.field_violations, details.reason
