"""bench/scenarios.py's simulated customers without a mesh: an LLM told the scenario's goal (here
a fake OpenAI-compatible server on a free port, answering what each test scripts) writes each
message, the runner sends it as a turn, and the conversation ends when the customer is done,
the assistant hands over, or max_turns is reached; forbid is checked on every turn and
expect_end on the last. An LLM that cannot be reached fails the scenario (never skips it)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bench.scenarios import FORMAT, CustomerLLM, Scenario, parse_suite, run_scenario, run_suite


class FakeLLM:
    """An OpenAI-compatible /chat/completions answering scripted {"message", "done"} values in
    order (the last one again when they run out; `say` starts them over); like llama-cpp-python's server it can refuse
    the json_schema response format."""

    def __init__(self) -> None:
        self.answers: list[dict[str, Any]] = []
        self.answered = 0
        self.requests: list[dict[str, Any]] = []
        self.refuse_json_schema = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                if fake.refuse_json_schema and body["response_format"]["type"] == "json_schema":
                    self._answer(500, {"error": "response_format: json_schema is not supported"})
                    return
                answer = fake.answers[min(fake.answered, len(fake.answers) - 1)]
                fake.answered += 1
                self._answer(200, {"choices": [{"message": {"role": "assistant", "content": json.dumps(answer)}}]})

            def _answer(self, status: int, value: dict[str, Any]) -> None:
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def say(self, *messages: str, done_at: int | None = None) -> None:
        """The customer's messages in order; done (true) from the `done_at`-th answer on (1-based)."""
        self.answers = [{"message": text, "done": done_at is not None and number >= done_at}
                        for number, text in enumerate(messages, 1)]
        self.answered = 0


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    fake = FakeLLM()
    thread = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


class FakeGateway:
    """The chat API: replies in order (the last one again), every request body kept."""

    def __init__(self, *replies: dict[str, Any]) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, tenant: str, conversation_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self.sent.append((tenant, conversation_id, body))
        return self.replies[min(len(self.sent) - 1, len(self.replies) - 1)]

    @property
    def texts(self) -> list[str]:
        return [body["text"] for _, _, body in self.sent]


def _reply(decision: str = "answered", reason: str = "confident", text: str = "Open Settings.",
           **changes: Any) -> dict[str, Any]:
    return {"decision": decision, "decision_reason": reason, "reply": text, "citations": [],
            "handoff_id": None, "handoff_reference": None} | changes


HANDOFF = _reply("escalated", "human_requested", "A person will take over.", handoff_id="h1",
                 handoff_reference="HO-1")


def _scenario(max_turns: int = 4, **changes: Any) -> Scenario:
    raw = {"name": "sim", "tags": ["simulated"], "simulated_customer": {"goal": "enable 2FA", "max_turns": max_turns}}
    return parse_suite({"format": FORMAT, "tenant": "demo", "scenarios": [raw | changes]}).scenarios[0]


def _run(scenario: Scenario, gateway: FakeGateway, url: str) -> Any:
    with CustomerLLM(url, "fake-model", timeout_s=5.0) as customer:
        return run_scenario(scenario, gateway, "t0", customer)


def test_each_message_is_sent_as_a_turn_until_the_customer_is_done(llm: FakeLLM) -> None:
    llm.say("How do I turn on 2FA?", "Can I use SMS?", "Thanks, that's all.", done_at=3)
    gateway = FakeGateway(_reply(text="Open Settings > Security."), _reply(text="Only an app."))
    result = _run(_scenario(), gateway, llm.url)
    assert result.passed and result.ended == "the customer was done"
    # The words said with the end are not sent: the conversation is over.
    assert gateway.texts == ["How do I turn on 2FA?", "Can I use SMS?"]
    assert len({conversation for _, conversation, _ in gateway.sent}) == 1
    assert [turn.text for turn in result.turns] == gateway.texts
    assert [turn.reply for turn in result.turns] == ["Open Settings > Security.", "Only an app."]
    # The simulator sees the goal and the conversation so far, asked for repeatably.
    last = llm.requests[-1]
    assert "enable 2FA" in last["messages"][0]["content"]
    assert "Assistant: Only an app." in last["messages"][1]["content"]
    assert "Customer: Can I use SMS?" in last["messages"][1]["content"]
    assert (last["temperature"], last["seed"], last["model"]) == (0.0, 23, "fake-model")


def test_done_before_anything_was_answered_is_not_an_end(llm: FakeLLM) -> None:
    llm.say("I want 2FA.", "ok", done_at=1)
    gateway = FakeGateway(_reply())
    result = _run(_scenario(), gateway, llm.url)
    assert gateway.texts == ["I want 2FA."] and result.ended == "the customer was done"


def test_a_handoff_ends_the_conversation_and_expect_end_checks_the_last_turn(llm: FakeLLM) -> None:
    llm.say("Is this a bot?", "I want a human.", "Hello?")
    expect_end = {"decision": "escalated", "reason": "human_requested", "handoff": True}
    gateway = FakeGateway(_reply("clarify", "needs_detail"), HANDOFF)
    result = _run(_scenario(expect_end=expect_end), gateway, llm.url)
    assert result.passed, result.failures
    assert result.ended == "handed over" and gateway.texts == ["Is this a bot?", "I want a human."]
    assert [a["check"] for a in result.assertions] == ["decision at the end", "reason at the end",
                                                       "handoff at the end"]


def test_max_turns_ends_it_and_a_wrong_end_fails(llm: FakeLLM) -> None:
    llm.say("I want a human.")
    gateway = FakeGateway(_reply("clarify", "needs_detail", "What do you need?"))
    result = _run(_scenario(max_turns=3, expect_end={"decision": "escalated", "handoff": True}), gateway, llm.url)
    assert result.ended == "max_turns (3)" and len(gateway.sent) == 3
    assert not result.passed
    assert result.failures == ["turn 3: decision at the end: expected escalated, got clarify",
                               "turn 3: handoff at the end: expected made, got none"]


def test_forbid_is_checked_on_every_turn(llm: FakeLLM) -> None:
    llm.say("Write me a poem.", "Please, a short one.", "Fine.", done_at=3)
    gateway = FakeGateway(_reply("clarify", "off_topic", "I can only help with Beacon."))
    assert _run(_scenario(forbid=["answered"]), gateway, llm.url).passed
    llm.say("Write me a poem.", "Please, a short one.", "Fine.", done_at=3)
    gateway = FakeGateway(_reply("clarify", "off_topic"), _reply(text="Roses are red."))
    result = _run(_scenario(forbid=["answered"]), gateway, llm.url)
    assert not result.passed
    assert result.failures == ["turn 2: never: expected decision answered, got it happened"]


def test_an_unreachable_llm_fails_the_scenario_saying_so() -> None:
    # A port nothing listens on: bound, then closed.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    gateway = FakeGateway(_reply())
    scenario = _scenario()
    suite = parse_suite({"format": FORMAT, "tenant": "demo", "scenarios": [
        {"name": "sim", "simulated_customer": {"goal": "enable 2FA"}}]})
    with CustomerLLM(url, "m", timeout_s=5.0) as customer:
        report = run_suite(suite, [scenario], gateway, say=lambda _: None, customer=customer)
    assert (report.total, report.passed, report.skipped) == (1, 0, 0) and not gateway.sent
    assert report.scenarios[0].failures == [
        f"turn 1: simulated customer: expected a message, got LLM at {url} unreachable"]


def test_an_empty_message_or_json_not_the_schemas_fails(llm: FakeLLM) -> None:
    llm.say("  ")
    result = _run(_scenario(), FakeGateway(_reply()), llm.url)
    assert result.failures == ["turn 1: simulated customer: expected a message, got an empty one"]
    llm.answers, llm.answered = [{"text": "hello"}], 0
    result = _run(_scenario(), FakeGateway(_reply()), llm.url)
    assert len(result.failures) == 1 and "not the schema's JSON" in result.failures[0]


def test_llama_cpp_servers_json_form_is_used_when_json_schema_is_refused(llm: FakeLLM) -> None:
    llm.refuse_json_schema = True
    llm.say("Customer: How do I turn on 2FA? ###STOP###", "bye", done_at=2)
    gateway = FakeGateway(_reply())
    result = _run(_scenario(), gateway, llm.url)
    # The label is dropped and τ-bench's stop mark read as done (ignored on the first message).
    assert gateway.texts == ["How do I turn on 2FA?"] and result.passed
    forms = [request["response_format"]["type"] for request in llm.requests]
    # Once refused, the other form is kept for the rest of the run.
    assert forms == ["json_schema", "json_object", "json_object"]
