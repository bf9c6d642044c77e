"""Concierge decisions, with test doubles for its backends and the LLM server
(the real ones are exercised by tests/mesh)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import grpc
import httpx
import pytest

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.retrieval.v1 import retrieval_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import customer_pb2
from servicekit.errors import InvalidArgument
from servicekit.llm import LlmClient
from services.concierge.grounding import support, verify_quote
from services.concierge.servicer import ConciergeServicer
from services.concierge.settings import ConciergeSettings

PASSAGE = (
    "Annual plans cancelled within 14 days get a prorated refund. Monthly plans are not refundable. "
    "You keep access until the end of the billing period."
)


@dataclass
class FakeRetrieval:
    similarity: float = 0.72

    async def Search(self, request: retrieval_pb2.SearchRequest) -> retrieval_pb2.SearchResponse:
        return retrieval_pb2.SearchResponse(
            hits=[
                retrieval_pb2.SearchHit(
                    doc_id="refund-policy",
                    chunk_id="refund-policy#0",
                    title="Refund policy",
                    text=PASSAGE,
                    score=0.03,
                    similarity=self.similarity,
                    url="https://x/refunds",
                ),
                retrieval_pb2.SearchHit(
                    doc_id="sla",
                    chunk_id="sla#0",
                    title="SLA",
                    text="Support is 24/5.",
                    score=0.01,
                    similarity=self.similarity - 0.2,
                ),
            ]
        )


@dataclass
class FakeTriage:
    flags: list[int] = field(default_factory=list)

    async def TriageContact(self, request: triage_pb2.TriageContactRequest) -> triage_pb2.TriageContactResponse:
        return triage_pb2.TriageContactResponse(risk_flags=self.flags, priority=triage_pb2.Priority(score=40))


@dataclass
class FakeEscalation:
    requests: list[escalation_pb2.CreateHandoffRequest] = field(default_factory=list)

    async def CreateHandoff(self, request: escalation_pb2.CreateHandoffRequest) -> escalation_pb2.CreateHandoffResponse:
        self.requests.append(request)
        return escalation_pb2.CreateHandoffResponse(
            handoff=escalation_pb2.Handoff(handoff_id=f"h-{len(self.requests)}"), created=True
        )


def llm_answering(text: str) -> LlmClient:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert "Monthly plans are not refundable" in body["prompt"], "passages reach the prompt"
        assert body["stream"] is True
        # Streamed the way OpenAI-compatible servers do: one SSE event per token, usage last.
        events: list[dict[str, object]] = [
            {"model": "test-model", "choices": [{"text": (" " if i else "") + piece}]}
            for i, piece in enumerate(text.split(" "))
        ]
        events.append({"model": "test-model", "choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 9}})
        stream = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=stream, headers={"content-type": "text/event-stream"})

    return LlmClient("http://llm.test/v1", "test-model", transport=httpx.MockTransport(handler))


def llm_down() -> LlmClient:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    return LlmClient("http://llm.test/v1", "test-model", transport=httpx.MockTransport(handler))


def make(llm: LlmClient, retrieval: FakeRetrieval | None = None, triage: FakeTriage | None = None):
    settings = ConciergeSettings(
        port=0, retrieval_addr="x", triage_addr="x", escalation_addr="x", llm_base_url="http://llm.test/v1"
    )
    escalation = FakeEscalation()
    servicer = ConciergeServicer(settings, retrieval or FakeRetrieval(), triage or FakeTriage(), escalation, llm)
    return servicer, escalation


def request(text: str = "Can I get a refund on a monthly plan?") -> concierge_pb2.ConverseRequest:
    return concierge_pb2.ConverseRequest(
        conversation_id="c1", text=text, customer=customer_pb2.CustomerRef(tenant_id="demo", customer_id="u1")
    )


async def test_verified_quote_is_answered_with_the_source_sentence_and_a_citation() -> None:
    servicer, escalation = make(llm_answering("Monthly plans are not refundable."))
    response = await servicer.Converse(request(), None)  # type: ignore[arg-type]
    assert response.decision == concierge_pb2.DECISION_ANSWERED
    assert response.reply == "Monthly plans are not refundable."
    assert [c.doc_id for c in response.citations] == ["refund-policy"]
    assert response.confidence.score >= 0.85
    assert response.lineage.model == "test-model" and response.lineage.prompt_template_version
    assert not escalation.requests


async def test_made_up_answer_is_never_shown_and_escalates_transparently() -> None:
    servicer, escalation = make(llm_answering("Yes, monthly plans are refunded in full within 30 days."))
    response = await servicer.Converse(request(), None)  # type: ignore[arg-type]
    assert response.decision == concierge_pb2.DECISION_ESCALATED
    assert response.decision_reason == "low_confidence"
    assert "not entirely confident" in response.reply
    assert response.handoff_id == "h-1"
    assert escalation.requests[0].reason == escalation_pb2.HANDOFF_REASON_LOW_CONFIDENCE


async def test_irrelevant_knowledge_escalates_without_calling_the_llm() -> None:
    servicer, _ = make(llm_down(), retrieval=FakeRetrieval(similarity=0.1))
    response = await servicer.Converse(request("Tell me a joke"), None)  # type: ignore[arg-type]
    assert response.decision == concierge_pb2.DECISION_ESCALATED
    assert response.decision_reason == "no_knowledge"


async def test_llm_down_gives_an_honest_handoff_not_an_error() -> None:
    servicer, escalation = make(llm_down())
    response = await servicer.Converse(request(), None)  # type: ignore[arg-type]
    assert response.decision == concierge_pb2.DECISION_ESCALATED
    assert response.decision_reason == "llm_unavailable"
    assert escalation.requests[0].reason == escalation_pb2.HANDOFF_REASON_SYSTEM_UNAVAILABLE


async def test_customer_asking_for_a_human_is_handed_over() -> None:
    servicer, _ = make(llm_down(), triage=FakeTriage(flags=[triage_pb2.RISK_FLAG_HUMAN_REQUESTED]))
    response = await servicer.Converse(request("I want to talk to a person"), None)  # type: ignore[arg-type]
    assert response.decision == concierge_pb2.DECISION_ESCALATED
    assert response.decision_reason == "human_requested"


async def test_retried_message_creates_one_handoff_key() -> None:
    servicer, escalation = make(llm_down())
    await servicer.Converse(request(), None)  # type: ignore[arg-type]
    await servicer.Converse(request(), None)  # type: ignore[arg-type]
    assert escalation.requests[0].idempotency_key == escalation.requests[1].idempotency_key


@pytest.mark.parametrize(
    ("text", "conversation_id", "field_name"),
    [("", "c1", "text"), ("x" * 4001, "c1", "text"), ("hi", "bad id!", "conversation_id")],
)
async def test_bad_input_names_the_field(text: str, conversation_id: str, field_name: str) -> None:
    servicer, _ = make(llm_down())
    bad = request(text)
    bad.conversation_id = conversation_id
    with pytest.raises(InvalidArgument) as raised:
        await servicer.Converse(bad, None)  # type: ignore[arg-type]
    assert field_name in [name for name, _ in raised.value.violations]
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_verify_quote_accepts_near_copies_only() -> None:
    assert verify_quote('"Monthly plans are not refundable"', [PASSAGE]) is not None
    assert verify_quote("Monthly plans are refundable in full", [PASSAGE]) is None
    assert verify_quote("", [PASSAGE]) is None


def test_support_measures_content_words_in_passages() -> None:
    assert support("Monthly plans are not refundable", [PASSAGE]) == 1.0
    assert support("Bananas grow on trees", [PASSAGE]) == 0.0
