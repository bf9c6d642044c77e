"""The whole mesh, each service its own process, started by the same launcher
as `make run`: one chat message through the gateway, traced end to end."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.otlp_receiver import OtlpReceiver
from devstack.stack import REPO_ROOT, Stack, StackConfig
from tests.conftest import free_port

pytestmark = pytest.mark.mesh

CUSTOMER = {"tenant_id": "demo", "customer_id": "cust-e2e"}


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("mesh")
    # The model file is reused between runs; everything else starts empty.
    (data_dir / "models").symlink_to(_models_dir(), target_is_directory=True)
    config = StackConfig(
        data_dir=data_dir,
        gateway_port=free_port(),
        service_ports=tuple(free_port() for _ in range(5)),
        llm_port=free_port(),
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            # The machine running the tests may be busy: a slow LLM must not fail the trace test.
            "LLM_TIMEOUT_S": "120",
        },
    )
    with Stack(config) as running:
        yield running


def _models_dir() -> Path:
    models = REPO_ROOT / "var" / "models"
    models.mkdir(parents=True, exist_ok=True)
    return models


def _post(stack: Stack, text: str, conversation_id: str = "conv-e2e", **extra: object) -> httpx.Response:
    return httpx.post(
        f"{stack.gateway_url}/v1/conversations/{conversation_id}/messages",
        json={"text": text, "customer": CUSTOMER, **extra},
        headers={"Authorization": f"Bearer {stack.api_keys['channel']}"},
        timeout=60,
    )


def test_readyz_reports_every_backend_serving(stack: Stack) -> None:
    response = httpx.get(f"{stack.gateway_url}/readyz", timeout=5)
    assert response.status_code == 200


def test_one_trace_covers_gateway_concierge_retrieval_and_llm(stack: Stack, receiver: OtlpReceiver) -> None:
    response = _post(stack, "How do I enable two-factor authentication for my account?")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"] in {"answered", "escalated"}
    assert 0.0 <= body["confidence"] <= 1.0
    assert body["reply"]
    if body["decision"] == "answered":
        assert body["citations"], "an answer always carries a citation"
    for citation in body["citations"]:
        assert {"doc_id", "title", "score"} <= citation.keys()
    trace_id = body["trace_id"]
    assert len(trace_id) == 32

    expected_names = frozenset(
        {"/aftercare.concierge.v1.ConciergeService/Converse", "/aftercare.retrieval.v1.RetrievalService/Search",
         f"text_completion {stack.config.llm_model}"}
    )
    spans = receiver.wait_for(trace_id, {"gateway", "concierge", "retrieval", "triage"}, expected_names)
    services = {span.service for span in spans}
    assert {"gateway", "concierge", "retrieval", "triage"} <= services, services
    names = {span.name for span in spans}
    assert "/aftercare.concierge.v1.ConciergeService/Converse" in names
    assert "/aftercare.retrieval.v1.RetrievalService/Search" in names
    llm_spans = [span for span in spans if span.attributes.get("gen_ai.operation.name") == "text_completion"]
    assert llm_spans and llm_spans[0].service == "concierge"
    assert llm_spans[0].attributes["gen_ai.request.model"] == stack.config.llm_model
    assert llm_spans[0].attributes["gen_ai.usage.output_tokens"] >= 1
    assert "aftercare.llm.time_to_first_token_ms" in llm_spans[0].attributes
    # Every span of the request hangs off one root: the gateway's HTTP span.
    roots = [span for span in spans if not span.parent_span_id]
    assert len(roots) == 1 and roots[0].service == "gateway"
    assert not any("Health" in span.name for span in receiver), "health checks are not traced"


def test_metrics_are_exported_over_otlp(stack: Stack, receiver: OtlpReceiver) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "rpc.server.duration" not in receiver.metrics.names.get("retrieval", set()):
        time.sleep(0.2)
    assert "rpc.server.duration" in receiver.metrics.names.get("retrieval", set())
    assert "gen_ai.client.token.usage" in receiver.metrics.names.get("concierge", set())


def test_malformed_message_is_400_problem_json(stack: Stack) -> None:
    response = _post(stack, "")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 400 and problem["errors"]
    assert "Traceback" not in response.text


def test_unknown_knowledge_escalates_honestly(stack: Stack) -> None:
    response = _post(stack, "What is the airspeed velocity of an unladen swallow?", conversation_id="conv-oos")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"] == "escalated"
    assert body["handoff_id"]
    handoff = httpx.get(
        f"{stack.gateway_url}/v1/tenants/demo/handoffs/{body['handoff_id']}",
        headers={"Authorization": f"Bearer {stack.api_keys['agent']}"},
        timeout=10,
    )
    assert handoff.status_code == 200, handoff.text


def test_backend_down_is_503_not_a_hang(stack: Stack) -> None:
    # Last test of the module: it stops the concierge.
    concierge = stack.processes["concierge"]
    concierge.send_signal(signal.SIGTERM)
    concierge.wait(timeout=15)
    started = time.monotonic()
    response = _post(stack, "How do I rotate an API key?", conversation_id="conv-down")
    assert response.status_code == 503, response.text
    assert time.monotonic() - started < 10
    assert response.headers["content-type"].startswith("application/problem+json")
    ready = httpx.get(f"{stack.gateway_url}/readyz", timeout=5)
    assert ready.status_code == 503


def test_the_supervisor_restarts_a_dead_service_and_the_gateway_reconnects(stack: Stack) -> None:
    # Runs after the concierge was stopped above; kill -9 another one too.
    stack.processes["triage"].send_signal(signal.SIGKILL)
    stack.processes["triage"].wait(timeout=15)
    assert set(stack.supervise()) == {"concierge", "triage"}
    stack.wait_ready(120)
    response = _post(stack, "How do I rotate an API key?", conversation_id="conv-after-restart")
    assert response.status_code == 200, response.text
    assert response.json()["decision"] in {"answered", "escalated", "clarify"}
