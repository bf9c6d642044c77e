"""The gateway over real gRPC channels to test doubles of the backends."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.retrieval.v1 import retrieval_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import answer_pb2, conversation_pb2, customer_pb2
from gateway.app import create_app
from gateway.backends import Backends
from gateway.settings import GatewaySettings
from servicekit.errors import InvalidArgument, NotFound
from tests.conftest import free_port
from tests.gateway.conftest import Mesh, open_gateway

CUSTOMER = {"tenant_id": "demo", "customer_id": "cust-42"}
MESSAGE_URL = "/v1/conversations/conv-1/messages"


def _is_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in response.text
    problem = response.json()
    assert problem["status"] == status
    assert {"type", "title", "status", "detail", "reason", "trace_id"} <= problem.keys()
    return problem


def _citation(n: int) -> answer_pb2.Citation:
    return answer_pb2.Citation(
        doc_id=f"doc-{n}", chunk_id=f"doc-{n}#{n}", title=f"Title {n}", url=f"https://kb/{n}", score=0.5 + n / 10
    )


# --- conversations ---------------------------------------------------------


async def test_message_maps_every_field(
    mesh: Mesh, gateway: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    mesh.concierge.converse.outcome = concierge_pb2.ConverseResponse(
        reply="Open Settings > Security and turn on 2FA.",
        citations=[_citation(1), _citation(2)],
        confidence=answer_pb2.Confidence(
            score=0.91, threshold=0.85, calibrated=True, configuration_id="rag/qwen2.5-3b/q4_k_m/p7",
            calibration_version="fit-12",
        ),
        decision=concierge_pb2.DECISION_ANSWERED,
        decision_reason="confident",
        lineage=answer_pb2.Lineage(release_id="r4"),
    )
    response = await gateway.post(
        MESSAGE_URL, json={"text": "How do I enable 2FA?", "customer": CUSTOMER, "channel": "email"}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "conversation_id": "conv-1",
        "reply": "Open Settings > Security and turn on 2FA.",
        "citations": [
            {"doc_id": "doc-1", "chunk_id": "doc-1#1", "title": "Title 1", "url": "https://kb/1", "score": 0.6},
            {"doc_id": "doc-2", "chunk_id": "doc-2#2", "title": "Title 2", "url": "https://kb/2", "score": 0.7},
        ],
        "confidence": 0.91,
        "calibrated": True,
        "configuration_id": "rag/qwen2.5-3b/q4_k_m/p7",
        "calibration_version": "fit-12",
        "decision": "answered",
        "decision_reason": "confident",
        "handoff_id": None,
        "handoff_reference": None,
        "expected_wait_s": None,
        "threshold": 0.85,
        "turn_index": 0,
        "trace_id": body["trace_id"],
        "release_id": "r4",
    }
    (sent,) = mesh.concierge.converse.requests
    assert sent.conversation_id == "conv-1"
    assert sent.text == "How do I enable 2FA?"
    assert (sent.customer.tenant_id, sent.customer.customer_id) == ("demo", "cust-42")
    assert sent.channel == conversation_pb2.CHANNEL_EMAIL
    # The trace id in the body is the one the backend call ran under.
    converse_spans = [s for s in spans.get_finished_spans() if s.name.endswith("/Converse")]
    assert converse_spans
    assert all(format(s.context.trace_id, "032x") == body["trace_id"] for s in converse_spans)
    assert response.headers["x-request-id"]


async def test_escalated_message_carries_the_handoff_id(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.concierge.converse.outcome = concierge_pb2.ConverseResponse(
        reply="I'm not entirely confident about this answer.",
        confidence=answer_pb2.Confidence(score=0.3),
        decision=concierge_pb2.DECISION_ESCALATED,
        decision_reason="low_confidence",
        handoff_id="ho-7",
    )
    response = await gateway.post(MESSAGE_URL, json={"text": "Refund?", "customer": CUSTOMER})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["decision"], body["handoff_id"], body["citations"]) == ("escalated", "ho-7", [])
    assert (body["calibrated"], body["configuration_id"]) == (False, ""), "no fit: an uncalibrated score"
    assert mesh.concierge.converse.requests[0].channel == conversation_pb2.CHANNEL_CHAT  # the default


@pytest.mark.parametrize(
    ("url", "content", "field"),
    [
        pytest.param(MESSAGE_URL, b'{"text": "hi", "customer": ', "body.", id="malformed-json"),
        pytest.param(MESSAGE_URL, json.dumps({"customer": CUSTOMER}), "body.text", id="missing-text"),
        pytest.param(MESSAGE_URL, json.dumps({"text": "", "customer": CUSTOMER}), "body.text", id="empty-text"),
        pytest.param(
            MESSAGE_URL, json.dumps({"text": "x" * 4001, "customer": CUSTOMER}), "body.text", id="too-long-text"
        ),
        pytest.param(
            MESSAGE_URL,
            json.dumps({"text": "hi", "customer": CUSTOMER, "channel": "fax"}),
            "body.channel",
            id="unknown-channel",
        ),
        pytest.param(
            MESSAGE_URL, json.dumps({"text": "hi", "customer": {"tenant_id": "demo"}}),
            "body.customer.customer_id", id="missing-customer-id",
        ),
        pytest.param(
            "/v1/conversations/bad%20id!/messages",
            json.dumps({"text": "hi", "customer": CUSTOMER}),
            "path.conversation_id",
            id="bad-conversation-id",
        ),
    ],
)
async def test_invalid_message_is_400_with_every_field(
    mesh: Mesh, gateway: httpx.AsyncClient, url: str, content: bytes | str, field: str
) -> None:
    response = await gateway.post(url, content=content, headers={"content-type": "application/json"})

    problem = _is_problem(response, 400)
    assert problem["reason"] == "INVALID_ARGUMENT"
    assert any(error["field"].startswith(field) for error in problem["errors"]), problem["errors"]
    assert all(error["description"] for error in problem["errors"])
    assert mesh.concierge.converse.requests == [], "an invalid request never reaches a backend"


async def test_backend_field_violation_reaches_the_client(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.concierge.converse.outcome = InvalidArgument([("text", "must contain a question")], reason="TEXT_NO_QUESTION")
    response = await gateway.post(MESSAGE_URL, json={"text": "hmm", "customer": CUSTOMER})

    problem = _is_problem(response, 400)
    assert problem["reason"] == "TEXT_NO_QUESTION"
    assert problem["errors"] == [{"field": "text", "description": "must contain a question"}]
    assert "must contain a question" in problem["detail"]


async def test_backend_down_is_503_not_a_hang(mesh: Mesh) -> None:
    settings = mesh.settings(concierge_addr=f"127.0.0.1:{free_port()}")
    async with open_gateway(settings, key=mesh.key()) as gateway:
        started = time.monotonic()
        response = await gateway.post(MESSAGE_URL, json={"text": "hello?", "customer": CUSTOMER})
        elapsed = time.monotonic() - started

    problem = _is_problem(response, 503)
    assert elapsed < 10
    assert problem["reason"] == "UNAVAILABLE"
    assert "127.0.0.1" not in response.text, "transport errors do not leak internal addresses"


async def test_slow_backend_is_504_within_the_request_budget(mesh: Mesh) -> None:
    mesh.concierge.converse.delay_s = 5.0
    async with open_gateway(mesh.settings(request_timeout_s=0.3), key=mesh.key()) as gateway:
        started = time.monotonic()
        response = await gateway.post(MESSAGE_URL, json={"text": "hello?", "customer": CUSTOMER})
        elapsed = time.monotonic() - started

    _is_problem(response, 504)
    assert elapsed < 3


async def test_backend_crash_is_generic_500(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.concierge.converse.outcome = RuntimeError("secret internal state")
    response = await gateway.post(MESSAGE_URL, json={"text": "hello?", "customer": CUSTOMER})

    problem = _is_problem(response, 500)
    assert problem["reason"] == "INTERNAL"
    assert "secret" not in response.text


async def test_body_over_the_limit_is_413(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    big = json.dumps({"text": "x" * 70_000, "customer": CUSTOMER})
    response = await gateway.post(MESSAGE_URL, content=big, headers={"content-type": "application/json"})

    problem = _is_problem(response, 413)
    assert problem["reason"] == "BODY_TOO_LARGE"
    assert mesh.concierge.converse.requests == []


async def test_streamed_body_over_the_limit_is_413(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 8192

    # No Content-Length: the limit has to be enforced while reading.
    response = await gateway.post(MESSAGE_URL, content=chunks(), headers={"content-type": "application/json"})

    problem = _is_problem(response, 413)
    assert problem["reason"] == "BODY_TOO_LARGE"


# --- handoffs, search, triage ---------------------------------------------


async def test_handoff_maps_the_context_package(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    created = Timestamp()
    created.FromDatetime(datetime(2026, 11, 24, 9, 30, tzinfo=UTC))
    mesh.escalation.get_handoff.outcome = escalation_pb2.GetHandoffResponse(
        handoff=escalation_pb2.Handoff(
            handoff_id="ho-7",
            customer=customer_pb2.CustomerRef(tenant_id="demo", customer_id="cust-42"),
            conversation=conversation_pb2.Conversation(
                conversation_id="conv-1",
                channel=conversation_pb2.CHANNEL_CHAT,
                messages=[conversation_pb2.Message(role=conversation_pb2.ROLE_CUSTOMER, text="Refund?")],
            ),
            reason=escalation_pb2.HANDOFF_REASON_LOW_CONFIDENCE,
            queue="billing",
            priority=72,
            state=escalation_pb2.HANDOFF_STATE_WAITING,
            context=escalation_pb2.ContextPackage(
                summary="Customer wants a refund.",
                detail="Charged twice in November.",
                account=customer_pb2.AccountSignals(plan="team", tenure_days=400),
                intent="refund_request",
                intent_confidence=0.8,
                sentiment_score=-0.4,
                ai_attempt=escalation_pb2.AiAttempt(
                    candidate_answer="Refunds take 5 days.",
                    confidence=answer_pb2.Confidence(score=0.4),
                    citations=[_citation(1)],
                    explanation="below threshold",
                ),
                suggested_resolutions=[escalation_pb2.SuggestedResolution(text="Refund.", sources=[_citation(2)])],
                draft_reply="Hi, I have refunded the duplicate charge.",
            ),
            created_at=created,
        )
    )
    response = await gateway.get("/v1/tenants/demo/handoffs/ho-7")

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["handoff_id"], body["tenant_id"], body["customer_id"]) == ("ho-7", "demo", "cust-42")
    assert (body["reason"], body["queue"], body["priority"], body["state"]) == (
        "low_confidence", "billing", 72, "waiting"
    )
    assert body["assigned_agent_id"] is None
    assert body["created_at"] == "2026-11-24T09:30:00Z"
    assert body["updated_at"] is None
    assert body["channel"] == "chat"
    assert body["messages"] == [{"role": "customer", "text": "Refund?", "sent_at": None, "author_name": None}]
    context = body["context"]
    assert context["summary"] == "Customer wants a refund."
    assert context["account"]["plan"] == "team"
    assert context["ai_attempt"]["confidence"] == 0.4
    assert context["ai_attempt"]["citations"][0]["doc_id"] == "doc-1"
    assert context["suggested_resolutions"][0]["sources"][0]["doc_id"] == "doc-2"
    assert context["draft_reply"].startswith("Hi,")
    (sent,) = mesh.escalation.get_handoff.requests
    assert (sent.tenant_id, sent.handoff_id) == ("demo", "ho-7")


async def test_unknown_handoff_is_404(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.get_handoff.outcome = NotFound("handoff ho-404 not found", reason="HANDOFF_NOT_FOUND")
    response = await gateway.get("/v1/tenants/demo/handoffs/ho-404")

    problem = _is_problem(response, 404)
    assert problem["reason"] == "HANDOFF_NOT_FOUND"
    assert problem["detail"] == "handoff ho-404 not found"
    assert "errors" not in problem


async def test_search_maps_hits(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.retrieval.search.outcome = retrieval_pb2.SearchResponse(
        hits=[
            retrieval_pb2.SearchHit(
                doc_id="doc-1", chunk_id="doc-1#0", title="2FA", heading_path=["Security", "2FA"], text="Turn on",
                url="https://kb/1", score=0.03, similarity=0.8, doc_type=retrieval_pb2.DOCUMENT_TYPE_FAQ, version="4",
                unit_question="How do I turn on 2FA?", question_similarity=0.75,
            )
        ],
        embedding_model="all-MiniLM-L6-v2",
    )
    response = await gateway.post("/v1/tenants/demo/kb/search", json={"query": "2fa", "mode": "keyword"})

    assert response.status_code == 200, response.text
    assert response.json() == {
        "hits": [
            {
                "doc_id": "doc-1", "chunk_id": "doc-1#0", "title": "2FA", "heading_path": ["Security", "2FA"],
                "text": "Turn on", "url": "https://kb/1", "score": 0.03, "similarity": 0.8,
                "unit_question": "How do I turn on 2FA?", "question_similarity": 0.75, "doc_type": "faq",
                "version": "4",
            }
        ],
        "embedding_model": "all-MiniLM-L6-v2",
    }
    (sent,) = mesh.retrieval.search.requests
    assert (sent.tenant_id, sent.query, sent.top_k, sent.mode) == ("demo", "2fa", 5, retrieval_pb2.SEARCH_MODE_KEYWORD)


async def test_triage_maps_the_decision(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.triage.triage_contact.outcome = triage_pb2.TriageContactResponse(
        intent=triage_pb2.IntentPrediction(
            label="cancel", confidence=0.9, alternatives=[triage_pb2.IntentCandidate(label="refund", confidence=0.05)],
            model_version="m3",
        ),
        sentiment=triage_pb2.Sentiment(label=triage_pb2.SENTIMENT_LABEL_NEGATIVE, score=-0.6, trajectory=-0.2),
        risk_flags=[triage_pb2.RISK_FLAG_CHURN, triage_pb2.RISK_FLAG_LEGAL],
        priority=triage_pb2.Priority(score=88, reasons=[triage_pb2.PriorityReason(code="risk:churn", points=30)]),
        route=triage_pb2.Route(tier=triage_pb2.TIER_MANAGER_FLAGGED, queue="retention", reason_codes=["risk_legal"]),
    )
    response = await gateway.post(
        "/v1/tenants/demo/triage", json={"text": "I'll call my lawyer and cancel", "customer_id": "cust-42"}
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "intent": {
            "label": "cancel", "confidence": 0.9, "alternatives": [{"label": "refund", "confidence": 0.05}],
            "out_of_scope": False, "model_version": "m3",
        },
        "sentiment": {"label": "negative", "score": -0.6, "trajectory": -0.2},
        "risk_flags": ["churn", "legal"],
        "priority": {"score": 88, "reasons": [{"code": "risk:churn", "points": 30.0}]},
        "route": {"tier": "manager_flagged", "queue": "retention", "reason_codes": ["risk_legal"]},
    }
    (sent,) = mesh.triage.triage_contact.requests
    assert (sent.customer.tenant_id, sent.customer.customer_id) == ("demo", "cust-42")
    assert [(m.role, m.text) for m in sent.conversation.messages] == [
        (conversation_pb2.ROLE_CUSTOMER, "I'll call my lawyer and cancel")
    ]


# --- health and readiness --------------------------------------------------


async def test_healthz_calls_no_backend() -> None:
    unreachable = f"127.0.0.1:{free_port()}"
    settings = GatewaySettings(
        retrieval_addr=unreachable, triage_addr=unreachable, concierge_addr=unreachable,
        escalation_addr=unreachable, outreach_addr=unreachable,
    )
    async with open_gateway(settings) as gateway:
        response = await gateway.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_when_every_backend_serves(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/readyz")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "backends": {
            name: "SERVING" for name in ("retrieval", "triage", "concierge", "escalation", "outreach", "actions")
        },
    }


async def test_readyz_names_the_backend_that_is_down(mesh: Mesh) -> None:
    async with open_gateway(mesh.settings(triage_addr=f"127.0.0.1:{free_port()}")) as gateway:
        started = time.monotonic()
        response = await gateway.get("/readyz")
        elapsed = time.monotonic() - started

    problem = _is_problem(response, 503)
    assert elapsed < 5
    assert problem["reason"] == "NOT_READY"
    assert "triage" in problem["detail"]
    assert problem["backends"]["triage"] == "UNAVAILABLE"
    assert problem["backends"]["concierge"] == "SERVING"


async def test_readyz_names_a_backend_that_is_not_serving(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    await mesh.server.health.set(
        "aftercare.escalation.v1.EscalationService", health_pb2.HealthCheckResponse.NOT_SERVING
    )
    response = await gateway.get("/readyz")

    problem = _is_problem(response, 503)
    assert problem["backends"]["escalation"] == "NOT_SERVING"
    assert "escalation" in problem["detail"]


# --- the edge itself -------------------------------------------------------


async def test_routing_errors_are_problems(gateway: httpx.AsyncClient) -> None:
    _is_problem(await gateway.get("/v1/nowhere"), 404)
    not_allowed = await gateway.get(MESSAGE_URL)
    assert _is_problem(not_allowed, 405)["reason"] == "METHOD_NOT_ALLOWED"
    assert "POST" in not_allowed.headers["allow"]


async def test_unexpected_error_is_500_without_a_stack_trace(mesh: Mesh) -> None:
    settings = mesh.settings()
    backends = Backends.connect(settings)
    app = create_app(settings, backends)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("internal detail that must not leak")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            response = await client.get("/boom", headers={"X-Request-ID": "req-123"})
    finally:
        await backends.close()

    problem = _is_problem(response, 500)
    assert problem["reason"] == "INTERNAL"
    assert "must not leak" not in response.text
    assert response.headers["x-request-id"] == "req-123"


async def test_request_id_is_echoed_or_made(gateway: httpx.AsyncClient) -> None:
    echoed = await gateway.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    made = await gateway.get("/healthz", headers={"X-Request-ID": "not ok"})
    assert made.headers["x-request-id"] != "not ok"
    assert len(made.headers["x-request-id"]) == 32


async def test_openapi_lists_the_routes_and_their_problems(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/openapi.json")

    assert response.status_code == 200
    schema = response.json()
    assert (schema["info"]["title"], schema["info"]["version"]) == ("aftercare gateway", "v1")
    paths = schema["paths"]
    assert {
        "/healthz",
        "/readyz",
        "/v1/me",
        "/v1/conversations/{conversation_id}",
        "/v1/conversations/{conversation_id}/messages",
        "/v1/conversations/{conversation_id}/messages/stream",
        "/v1/conversations/{conversation_id}/turns/{turn_index}/rating",
        "/v1/conversations/{conversation_id}/events",
        "/v1/conversations/{conversation_id}/handoffs/{handoff_id}/rating",
        "/v1/tenants/{tenant_id}/intake/email",
        "/v1/tenants/{tenant_id}/browsing-events",
        "/v1/tenants/{tenant_id}/suggestions/{doc_id}/dismiss",
        "/v1/tenants/{tenant_id}/kb/documents",
        "/v1/tenants/{tenant_id}/kb/documents/{doc_id}",
        "/v1/tenants/{tenant_id}/kb/search",
        "/v1/tenants/{tenant_id}/handoffs",
        "/v1/tenants/{tenant_id}/handoffs/{handoff_id}",
        "/v1/tenants/{tenant_id}/handoffs/{handoff_id}/assign",
        "/v1/tenants/{tenant_id}/handoffs/{handoff_id}/replies",
        "/v1/tenants/{tenant_id}/handoffs/{handoff_id}/resolve",
        "/v1/tenants/{tenant_id}/handoff-settings",
        "/v1/tenants/{tenant_id}/conversations/{conversation_id}/events",
        "/v1/tenants/{tenant_id}/deliveries",
        "/v1/tenants/{tenant_id}/triage",
        "/v1/tenants/{tenant_id}/insights/topics",
        "/v1/tenants/{tenant_id}/insights/knowledge-gaps",
        "/v1/tenants/{tenant_id}/feedback/export",
        "/v1/tenants/{tenant_id}/feedback/intent-corrections",
        "/v1/tenants/{tenant_id}/usage-events",
        "/v1/tenants/{tenant_id}/outreach/accounts",
        "/v1/tenants/{tenant_id}/outreach/detect",
        "/v1/tenants/{tenant_id}/outreach/findings/{finding_id}/drafts",
        "/v1/tenants/{tenant_id}/outreach/drafts",
        "/v1/tenants/{tenant_id}/intent-model",
        "/v1/tenants/{tenant_id}/intent-model:retrain",
        "/v1/tenants/{tenant_id}/operations",
        "/v1/tenants/{tenant_id}/operations/{operation_id}",
        "/v1/tenants/{tenant_id}/operations/{operation_id}:cancel",
        "/v1/tenants/{tenant_id}/actions",
        "/v1/tenants/{tenant_id}/actions/pending-approvals",
        "/v1/tenants/{tenant_id}/actions/{action_id}",
        "/v1/tenants/{tenant_id}/actions/{action_id}:approve",
        "/v1/tenants/{tenant_id}/actions/{action_id}:reject",
        "/v1/tenants/{tenant_id}/actions/{action_id}:confirm",
        "/v1/tenants/{tenant_id}/tools",
        "/v1/tenants/{tenant_id}/conversations/{conversation_id}/records:read",
        "/v1/tenants/{tenant_id}/conversations/{conversation_id}/actions",
        "/v1/tenants/{tenant_id}/audit",
        "/v1/tenants/{tenant_id}/audit:export",
        "/v1/tenants/{tenant_id}/outreach/drafts/{draft_id}/review",
        "/v1/tenants/{tenant_id}/releases",
        "/v1/tenants/{tenant_id}/releases/{release_id}",
        "/v1/tenants/{tenant_id}/releases/{release_id}:compare",
        "/v1/tenants/{tenant_id}/releases/{release_id}/suite-runs",
        "/v1/tenants/{tenant_id}/releases/{release_id}:promote",
        "/v1/tenants/{tenant_id}/releases:rollback",
        "/v1/tenants/{tenant_id}/release-events",
        "/v1/tenants/{tenant_id}/releases/{release_id}:shadow",
        "/v1/tenants/{tenant_id}/shadow:stop",
        "/v1/tenants/{tenant_id}/shadow-report",
        "/v1/tenants/{tenant_id}/releases/{release_id}:canary",
        "/v1/tenants/{tenant_id}/canary:stop",
        "/v1/tenants/{tenant_id}/canary",
        "/v1/tenants/{tenant_id}/releases:refit",
    } == {path for path in paths if path != "/"}
    # Every /v1 operation declares the bearer API key; health does not.
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in paths.items():
        for operation in operations.values():
            assert bool(operation.get("security")) == path.startswith("/v1/"), path
    stream = paths["/v1/conversations/{conversation_id}/messages/stream"]["post"]["responses"]["200"]
    assert list(stream["content"]) == ["text/event-stream"]
    assert all(f"`{event}`" in stream["description"] for event in ("delta", "retraction", "outcome", "error"))
    post_message = paths["/v1/conversations/{conversation_id}/messages"]["post"]
    assert post_message["operationId"] == "post_message"
    assert "422" not in post_message["responses"], "validation errors are 400, not FastAPI's 422"
    for status in ("400", "503", "504", "default"):
        content = post_message["responses"][status]["content"]
        assert content["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
    assert post_message["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/MessageReply"
    )


async def test_lifespan_connects_and_closes_its_own_backends(mesh: Mesh) -> None:
    app = create_app(mesh.settings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            response = await client.get("/readyz")
        assert response.status_code == 200, response.text


def test_a_missing_backend_address_fails_the_boot(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RETRIEVAL_ADDR", "TRIAGE_ADDR", "CONCIERGE_ADDR", "ESCALATION_ADDR", "OUTREACH_ADDR"):
        monkeypatch.setenv(name, "127.0.0.1:1")
    monkeypatch.delenv("OUTREACH_ADDR")

    with pytest.raises(ValidationError, match="outreach_addr"):
        GatewaySettings()  # type: ignore[call-arg]
    monkeypatch.setenv("OUTREACH_ADDR", "127.0.0.1:1")
    assert GatewaySettings().outreach_addr == "127.0.0.1:1"  # type: ignore[call-arg]
