"""chat_json: JSON matching a schema, asked in the form the server takes (vLLM's
json_schema, else llama-cpp-python's json_object with a schema), parsed and
validated, retried once, then an honest failure. A server double here; the real
llama.cpp server is exercised by tests/services/concierge/test_account_real_llm.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from servicekit.llm import LlmClient, LlmInvalidJson, LlmUnavailable
from tests.llm_stream import completion

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"tool": {"enum": ["get_order_details", "none"]}, "order_id": {"type": "string"}},
    "required": ["tool"],
    "additionalProperties": False,
}
MESSAGES = [{"role": "user", "content": "Where is my order #W2611340?"}]


class Server:
    """Answers each chat request with the next scripted reply; `llama`: refuses vLLM's form as
    llama-cpp-python's server does (HTTP 500, a validation error)."""

    def __init__(self, *replies: str, llama: bool = False) -> None:
        self.replies = list(replies)
        self.bodies: list[dict[str, Any]] = []
        self.read_timeouts: list[float] = []
        self.llama = llama

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.read_timeouts.append(request.extensions["timeout"]["read"])
        if self.llama and body["response_format"]["type"] != "json_object":
            return httpx.Response(500, json={"error": {"message": "Input should be 'text' or 'json_object'"}})
        text = self.replies.pop(0)
        return completion([text[:5], text[5:]], chat=True)

    def client(self) -> LlmClient:
        return LlmClient("http://llm.test/v1", "m", transport=httpx.MockTransport(self.handler), timeout_s=2)

    @property
    def forms(self) -> list[str]:
        return [body["response_format"]["type"] for body in self.bodies]


async def test_vllm_takes_the_json_schema_form_with_the_schema() -> None:
    server = Server('{"tool": "get_order_details", "order_id": "#W2611340"}')
    llm = server.client()
    answer = await llm.chat_json(MESSAGES, SCHEMA, name="plan")
    assert answer.value == {"tool": "get_order_details", "order_id": "#W2611340"}
    assert server.bodies[0]["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "plan", "schema": SCHEMA, "strict": True}
    }
    assert llm.json_mode == "json_schema"
    await llm.aclose()


async def test_llama_cpp_refuses_json_schema_so_json_object_with_the_schema_is_used_and_kept() -> None:
    server = Server('{"tool": "none"}', '{"tool": "none"}', llama=True)
    llm = server.client()
    assert (await llm.chat_json(MESSAGES, SCHEMA)).value == {"tool": "none"}
    assert server.bodies[1]["response_format"] == {"type": "json_object", "schema": SCHEMA}
    await llm.chat_json(MESSAGES, SCHEMA)
    # Remembered: the second call asks in the accepted form at once.
    assert server.forms == ["json_schema", "json_object", "json_object"]
    await llm.aclose()


@pytest.mark.parametrize("bad", ['{"tool": "get_order', '{"tool": "refund_everything"}', '["none"]'])
async def test_a_reply_that_is_not_valid_is_asked_again_once(bad: str) -> None:
    server = Server(bad, '{"tool": "none"}')
    llm = server.client()
    assert (await llm.chat_json(MESSAGES, SCHEMA)).value == {"tool": "none"}
    assert len(server.bodies) == 2
    await llm.aclose()


async def test_two_invalid_replies_fail_honestly() -> None:
    server = Server('{"tool": "refund_everything"}', "not json")
    llm = server.client()
    with pytest.raises(LlmInvalidJson, match="not JSON"):
        await llm.chat_json(MESSAGES, SCHEMA)
    assert len(server.bodies) == 2
    await llm.aclose()


async def test_a_server_error_in_the_only_form_is_unavailable() -> None:
    server = Server(llama=True)
    llm = LlmClient("http://llm.test/v1", "m", transport=httpx.MockTransport(server.handler), json_mode="json_schema")
    with pytest.raises(LlmUnavailable):
        await llm.chat_json(MESSAGES, SCHEMA)
    assert server.forms == ["json_schema"]
    await llm.aclose()


async def test_a_call_may_wait_longer_than_the_clients_timeout() -> None:
    server = Server('{"tool": "none"}', '{"tool": "none"}')
    llm = server.client()  # 2 s
    await llm.chat_json(MESSAGES, SCHEMA)
    await llm.chat_json(MESSAGES, SCHEMA, timeout_s=45.0)
    assert server.read_timeouts == [2.0, 45.0]
    await llm.aclose()
