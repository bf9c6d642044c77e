"""One client for every OpenAI-compatible LLM server (llama.cpp's server on the
CPU default, `vllm serve` in production). Completions are streamed, so the time
to first token is measured and deltas can reach the customer as they come.
Each call is a span following the OpenTelemetry GenAI conventions, so the LLM
hop shows in the trace with model, token counts and time to first token.

`chat_json` asks for JSON matching a JSON schema, constrained by the server itself: vLLM
takes `response_format: {"type": "json_schema", ...}` (guided decoding), llama-cpp-python's
server only `{"type": "json_object", "schema": ...}` (it builds a grammar from the schema)
and refuses the other form; the client tries vLLM's form first and keeps whichever the
server accepts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import jsonschema
from opentelemetry import metrics, propagate, trace

from servicekit import attributes, deadlines
from servicekit.settings import LlmSettings

tracer = trace.get_tracer("aftercare.llm")
_meter = metrics.get_meter("aftercare.llm")
_token_usage = _meter.create_histogram(attributes.GEN_AI_TOKEN_USAGE, unit="{token}")
_ttft = _meter.create_histogram(attributes.GEN_AI_TTFT, unit="s")
_tokens_per_second = _meter.create_histogram(attributes.LLM_OUTPUT_TOKENS_PER_SECOND, unit="{token}/s")

OnDelta = Callable[[str], Awaitable[None]]


class LlmUnavailable(Exception):
    """The LLM server is down, too slow, or answered with an error."""


class LlmRejected(LlmUnavailable):
    """The server answered the request with an HTTP error (e.g. a field it does not take)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"LLM answered HTTP {status}")
        self.status = status


class LlmInvalidJson(LlmUnavailable):
    """Asked for JSON matching a schema, the model gave something else, also when asked again."""


JsonMode = Literal["auto", "json_schema", "json_object"]


@dataclass(frozen=True)
class JsonCompletion:
    """A chat_json answer: the parsed value (valid against the schema) and its completion."""

    value: Any
    completion: Completion


class LlmBusy(LlmUnavailable):
    """Every LLM slot is taken and the queue for them is full: refused at once, not queued
    until a deadline passes (the caller sheds the request with RESOURCE_EXHAUSTED)."""


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    # Log-probability of each generated token, when the server returned them.
    token_logprobs: list[float] = field(default_factory=list)
    time_to_first_token_s: float = 0.0
    latency_s: float = 0.0


class LlmClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        timeout_s: float = 20.0,
        max_concurrency: int = 4,
        max_waiting: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
        json_mode: JsonMode = "auto",
    ):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = model
        self._timeout_s = timeout_s
        # Calls in flight to the server, and calls allowed to wait for one of those slots.
        self._slots = asyncio.Semaphore(max_concurrency)
        self._max_waiting = max_waiting
        self._waiting = 0
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, transport=transport)
        # How chat_json asks for JSON; "auto" until a server has accepted one of the two forms.
        self.json_mode: JsonMode = json_mode

    @classmethod
    def from_settings(cls, settings: LlmSettings) -> LlmClient:
        return cls(
            settings.llm_base_url,
            settings.llm_model,
            api_key=settings.llm_api_key,
            timeout_s=settings.llm_timeout_s,
            max_concurrency=settings.llm_max_concurrency,
            max_waiting=settings.llm_max_waiting,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def complete(
        self,
        prompt: str,
        *,
        max_tokens: int,
        stop: list[str],
        logprobs: bool = False,
        on_delta: OnDelta | None = None,
        extra_body: dict[str, object] | None = None,
        model: str = "",
    ) -> Completion:
        """Plain completion (`/completions`, streamed): works with base models, which have no chat template.
        `extra_body` adds server-specific fields (e.g. vLLM's `ignore_eos`); `model` replaces the
        client's model for this call (a tenant's release names its own)."""
        body: dict[str, object] = {
            "model": model or self.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stop": stop,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if logprobs:
            body["logprobs"] = 1
        body.update(extra_body or {})
        return await self._call("text_completion", "/completions", body, max_tokens, on_delta)

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        stop: list[str] | None = None,
        logprobs: bool = False,
        on_delta: OnDelta | None = None,
        extra_body: dict[str, object] | None = None,
        model: str = "",
    ) -> Completion:
        """Chat completion (`/chat/completions`, streamed) for instruction-tuned models
        (vLLM applies the model's chat template). `messages` are {"role", "content"} dicts;
        `model` replaces the client's model for this call ("" keeps it)."""
        body: dict[str, object] = {
            "model": model or self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if stop:
            body["stop"] = stop
        if logprobs:
            body["logprobs"] = True
        body.update(extra_body or {})
        return await self._call("chat", "/chat/completions", body, max_tokens, on_delta)

    async def chat_json(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        *,
        name: str = "reply",
        max_tokens: int = 256,
        attempts: int = 2,
        timeout_s: float | None = None,
        model: str = "",
    ) -> JsonCompletion:
        """Chat completion constrained to JSON matching `schema` (draft 2020-12), parsed and
        validated here too (a server may honour a schema only in part: patterns, lengths).
        One retry with the same messages, then LlmInvalidJson: never a half-valid value.
        `timeout_s` replaces the client's timeout for these calls (a long prompt's first read);
        `model` the client's model ("" keeps it)."""
        validator = jsonschema.Draft202012Validator(schema)
        problem = ""
        for _ in range(max(1, attempts)):
            completion = await self._chat_constrained(messages, schema, name, max_tokens, timeout_s, model)
            try:
                value = json.loads(completion.text)
            except ValueError:
                problem = "the reply is not JSON"
                continue
            error = jsonschema.exceptions.best_match(validator.iter_errors(value))
            if error is None:
                return JsonCompletion(value, completion)
            problem = f"the reply does not match the schema: {error.message[:200]}"
        raise LlmInvalidJson(problem)

    async def _chat_constrained(
        self, messages: list[dict[str, str]], schema: dict[str, Any], name: str, max_tokens: int,
        timeout_s: float | None, model: str = "",
    ) -> Completion:
        forms: dict[str, dict[str, object]] = {
            "json_schema": {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}},
            "json_object": {"type": "json_object", "schema": schema},
        }
        tried = ["json_schema", "json_object"] if self.json_mode == "auto" else [self.json_mode]
        for index, mode in enumerate(tried):
            try:
                body: dict[str, object] = {
                    "model": model or self.model,
                    "messages": messages,
                    "max_tokens": max_tokens,
                    "temperature": 0.0,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "response_format": forms[mode],
                }
                completion = await self._call("chat", "/chat/completions", body, max_tokens, None, timeout_s)
            except LlmRejected as rejected:
                # llama-cpp-python's server refuses vLLM's form (HTTP 500, a validation error).
                if index + 1 == len(tried) or rejected.status < 400:
                    raise
                continue
            self.json_mode = "json_schema" if mode == "json_schema" else "json_object"
            return completion
        raise LlmUnavailable("no JSON form was accepted")  # unreachable: the loop returns or raises

    async def _call(
        self, operation: str, path: str, body: dict[str, object], max_tokens: int, on_delta: OnDelta | None,
        timeout_s: float | None = None,
    ) -> Completion:
        requested = str(body["model"])
        with tracer.start_as_current_span(f"{operation} {requested}", kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute("gen_ai.operation.name", operation)
            span.set_attribute("gen_ai.provider.name", "openai")
            span.set_attribute("gen_ai.request.model", requested)
            span.set_attribute("gen_ai.request.max_tokens", max_tokens)
            span.set_attribute("gen_ai.request.temperature", 0.0)
            completion = await self._admitted(path, body, on_delta, timeout_s)
            span.set_attribute("gen_ai.response.model", completion.model)
            span.set_attribute("gen_ai.usage.output_tokens", completion.completion_tokens)
            if completion.prompt_tokens:
                span.set_attribute("gen_ai.usage.input_tokens", completion.prompt_tokens)
            span.set_attribute(attributes.LLM_TIME_TO_FIRST_TOKEN_MS, round(completion.time_to_first_token_s * 1000, 1))
            metric_attributes = {"gen_ai.request.model": requested, "gen_ai.operation.name": operation}
            _ttft.record(completion.time_to_first_token_s, metric_attributes)
            _token_usage.record(completion.completion_tokens, {**metric_attributes, "gen_ai.token.type": "output"})
            if completion.prompt_tokens:
                _token_usage.record(completion.prompt_tokens, {**metric_attributes, "gen_ai.token.type": "input"})
            decode_s = completion.latency_s - completion.time_to_first_token_s
            if completion.completion_tokens > 1 and decode_s > 0:
                _tokens_per_second.record((completion.completion_tokens - 1) / decode_s, metric_attributes)
            return completion

    async def _admitted(
        self, path: str, body: dict[str, object], on_delta: OnDelta | None, timeout_s: float | None = None
    ) -> Completion:
        """The call once a slot is free; refused at once (LlmBusy) when too many already wait."""
        if self._slots.locked() and self._waiting >= self._max_waiting:
            raise LlmBusy(f"{self._waiting} LLM calls already wait for a slot")
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await self._stream(path, body, on_delta, timeout_s)
        finally:
            self._slots.release()

    async def _stream(
        self, path: str, body: dict[str, object], on_delta: OnDelta | None, timeout_s: float | None = None
    ) -> Completion:
        # Never wait longer than the request being served has left.
        left = deadlines.remaining()
        limit = timeout_s or self._timeout_s
        timeout = limit if left is None else max(0.05, min(limit, left))
        headers: dict[str, str] = {}
        propagate.inject(headers)
        started = time.perf_counter()
        first_token_at: float | None = None
        pieces: list[str] = []
        token_logprobs: list[float] = []
        model = str(body["model"])
        prompt_tokens = completion_tokens = 0
        finish_reason = ""
        try:
            async with self._http.stream("POST", path, json=body, headers=headers, timeout=timeout) as reply:
                if reply.status_code != 200:
                    raise LlmRejected(reply.status_code)
                async for line in reply.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:"):].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    model = str(event.get("model") or model)
                    usage = event.get("usage") or {}
                    prompt_tokens = int(usage.get("prompt_tokens") or prompt_tokens)
                    completion_tokens = int(usage.get("completion_tokens") or completion_tokens)
                    for choice in event.get("choices") or []:
                        finish_reason = str(choice.get("finish_reason") or finish_reason)
                        text, returned = _choice_text_and_logprobs(choice)
                        token_logprobs.extend(returned)
                        if not text:
                            continue
                        if first_token_at is None:
                            first_token_at = time.perf_counter()
                        pieces.append(text)
                        if on_delta is not None:
                            await on_delta(text)
                    if time.perf_counter() - started > timeout:
                        raise LlmUnavailable(f"LLM did not finish within {timeout:.1f}s")
        except httpx.TimeoutException as error:
            raise LlmUnavailable(f"LLM did not answer within {timeout:.1f}s") from error
        except httpx.HTTPError as error:
            raise LlmUnavailable(f"LLM unreachable: {type(error).__name__}") from error
        except (ValueError, TypeError, AttributeError) as error:
            raise LlmUnavailable(f"malformed completion stream: {type(error).__name__}") from error
        if not finish_reason:
            # A finished completion says why it stopped. llama-cpp-python's server, for one,
            # ends a stream early with a bare [DONE] when another request comes in
            # (interrupt_requests): a cut-off text must not pass for an answer.
            raise LlmUnavailable("LLM stream ended before the completion finished")
        finished = time.perf_counter()
        return Completion(
            text="".join(pieces),
            model=model,
            prompt_tokens=prompt_tokens,
            # Servers that send no usage in streams (llama.cpp) send one token per event.
            completion_tokens=completion_tokens or len(pieces),
            token_logprobs=token_logprobs,
            time_to_first_token_s=(first_token_at or finished) - started,
            latency_s=finished - started,
        )


def _choice_text_and_logprobs(choice: dict[str, object]) -> tuple[str, list[float]]:
    """Text and token log-probabilities of one streamed choice, for both APIs:
    completions (`text`, `logprobs.token_logprobs`) and chat (`delta.content`,
    `logprobs.content[].logprob`)."""
    delta = choice.get("delta")
    logprobs = choice.get("logprobs") or {}
    if not isinstance(logprobs, dict):
        logprobs = {}
    if isinstance(delta, dict):
        text = str(delta.get("content") or "")
        values = [entry.get("logprob") for entry in (logprobs.get("content") or []) if isinstance(entry, dict)]
    else:
        text = str(choice.get("text") or "")
        values = list(logprobs.get("token_logprobs") or [])
    return text, [float(value) for value in values if value is not None]
