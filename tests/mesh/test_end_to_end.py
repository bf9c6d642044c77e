"""The whole mesh, each service its own process, started by the same launcher
as `make run`: chat messages through the gateway, answered from the demo
knowledge base's answer units with the shipped confidence fits, traced end to
end."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from devstack.otlp_receiver import OtlpReceiver, ReceivedSpan
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
        # No intent model training in the background: it would load the machine mid-run.
        demo_intents=None,
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


SEARCH = "/aftercare.retrieval.v1.RetrievalService/Search"
CONVERSE = "/aftercare.concierge.v1.ConciergeService/Converse"
# The configuration the mesh serves by default (the unit's own words, no LLM phrasing),
# for which the shipped fits were made.
SERVED_CONFIGURATION = "unit-v2|phrasing=off"


def _assert_reply_invariants(body: dict[str, object]) -> None:
    """What holds for every chat reply, whichever way the gate decides."""
    assert body["decision"] in {"answered", "escalated"}, body
    assert body["reply"]
    assert 0.0 <= body["confidence"] <= 1.0  # type: ignore[operator]
    # The shipped fit of the serving configuration scored it (never the uncalibrated rule).
    assert body["calibrated"] is True and body["configuration_id"] == SERVED_CONFIGURATION
    if body["decision"] == "answered":
        assert body["citations"], "an answer always carries a citation"
        assert body["decision_reason"] == "confident"
    else:
        assert body["handoff_id"] and not body["citations"]
    for citation in body["citations"]:  # type: ignore[attr-defined]
        assert {"doc_id", "title", "score"} <= citation.keys()


def _spans_until(receiver: OtlpReceiver, trace_id: str, done: Callable[[list[ReceivedSpan]], bool]
                 ) -> list[ReceivedSpan]:
    deadline = time.monotonic() + 15
    spans = receiver.spans(trace_id)
    while not done(spans) and time.monotonic() < deadline:
        time.sleep(0.1)
        spans = receiver.spans(trace_id)
    return spans


def test_one_trace_covers_gateway_concierge_triage_and_both_searches(stack: Stack, receiver: OtlpReceiver) -> None:
    response = _post(stack, "How do I enable two-factor authentication for my account?")
    assert response.status_code == 200, response.text
    body = response.json()
    _assert_reply_invariants(body)
    trace_id = body["trace_id"]
    assert len(trace_id) == 32

    spans = receiver.wait_for(trace_id, {"gateway", "concierge", "retrieval", "triage"}, frozenset({CONVERSE, SEARCH}))
    # Each message searches twice, in parallel: answer units, and passages for the agent.
    spans = _spans_until(
        receiver, trace_id, lambda found: sum(s.service == "retrieval" and s.name == SEARCH for s in found) >= 2
    )
    services = {span.service for span in spans}
    assert {"gateway", "concierge", "retrieval", "triage"} <= services, services
    searches = [span for span in spans if span.service == "retrieval" and span.name == SEARCH]
    assert len(searches) == 2, [span.name for span in spans]
    # Phrasing is off: the reply is the unit's own words or a handoff, and the concierge never calls the LLM
    # (its Converse span has arrived, so any LLM span it made before would have too).
    concierge_llm = [s for s in spans if s.service == "concierge" and "gen_ai.operation.name" in s.attributes]
    assert concierge_llm == []
    # Every span of the request hangs off one root: the gateway's HTTP span.
    roots = [span for span in spans if not span.parent_span_id]
    assert len(roots) == 1 and roots[0].service == "gateway"
    assert not any("Health" in span.name for span in receiver), "health checks are not traced"


def test_a_question_the_faq_answers_word_for_word_is_answered_with_its_words(stack: Stack) -> None:
    # An exact FAQ heading of kb/demo (faq-sso.md): the shipped demo fit scores it well above the threshold.
    response = _post(stack, "Which plans include single sign-on?", conversation_id="conv-sso")
    assert response.status_code == 200, response.text
    body = response.json()
    _assert_reply_invariants(body)
    assert body["decision"] == "answered", body
    assert body["reply"].startswith("SAML 2.0 and OpenID Connect (OIDC) single sign-on are included in the Business")
    assert "faq-sso" in {citation["doc_id"] for citation in body["citations"]}


def test_the_stream_sends_the_answers_sentences_then_the_outcome_last(stack: Stack) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    with httpx.stream(
        "POST", f"{stack.gateway_url}/v1/conversations/conv-sso-stream/messages/stream",
        json={"text": "Which plans include single sign-on?", "customer": CUSTOMER},
        headers={"Authorization": f"Bearer {stack.api_keys['channel']}"}, timeout=60,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "outcome" and kinds.count("outcome") == 1, kinds
    outcome = events[-1][1]
    _assert_reply_invariants(outcome)
    assert outcome["decision"] == "answered", outcome
    deltas = [str(data["text"]) for kind, data in events if kind == "delta"]
    assert len(deltas) >= 2, "each sentence of the answer is its own event"
    assert "retraction" not in kinds and "".join(deltas) == outcome["reply"]


def test_metrics_are_exported_over_otlp(stack: Stack, receiver: OtlpReceiver) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not (
        "rpc.server.duration" in receiver.metrics.names.get("retrieval", set())
        and "aftercare.concierge.decisions" in receiver.metrics.names.get("concierge", set())
    ):
        time.sleep(0.2)
    assert "rpc.server.duration" in receiver.metrics.names.get("retrieval", set())
    assert "aftercare.concierge.decisions" in receiver.metrics.names.get("concierge", set())


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
    _assert_reply_invariants(body)
    assert body["decision"] == "escalated" and body["decision_reason"] == "no_knowledge"
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
    # The restarted concierge serves its fit again.
    _assert_reply_invariants(response.json())
