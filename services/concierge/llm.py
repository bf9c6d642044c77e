"""One client for every OpenAI-compatible LLM server (llama.cpp's server on the
CPU default, `vllm serve` in production). Each call is a span following the
OpenTelemetry GenAI conventions, so the LLM hop shows in the trace."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx
from opentelemetry import propagate, trace

from servicekit import deadlines

tracer = trace.get_tracer("aftercare.concierge.llm")


class LlmUnavailable(Exception):
    """The LLM server is down, too slow, or answered with an error."""


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    # Log-probability of each generated token, when the server returned them.
    token_logprobs: list[float] = field(default_factory=list)
    latency_s: float = 0.0


class LlmClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        timeout_s: float = 20.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = model
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def complete(
        self, prompt: str, *, max_tokens: int, stop: list[str], logprobs: bool = False
    ) -> Completion:
        """Plain completion (`/completions`): works with base models, which have no chat template."""
        body: dict[str, object] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stop": stop,
        }
        if logprobs:
            body["logprobs"] = 1
        with tracer.start_as_current_span("llm.completion", kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute("gen_ai.operation.name", "text_completion")
            span.set_attribute("gen_ai.request.model", self.model)
            span.set_attribute("gen_ai.request.max_tokens", max_tokens)
            span.set_attribute("gen_ai.request.temperature", 0.0)
            payload = await self._post("/completions", body)
            try:
                choice = payload["choices"][0]
                usage = payload.get("usage") or {}
                token_logprobs = [
                    float(x) for x in ((choice.get("logprobs") or {}).get("token_logprobs") or []) if x is not None
                ]
                completion = Completion(
                    text=str(choice["text"]),
                    model=str(payload.get("model", self.model)),
                    prompt_tokens=int(usage.get("prompt_tokens", 0)),
                    completion_tokens=int(usage.get("completion_tokens", 0)),
                    token_logprobs=token_logprobs,
                )
            except (KeyError, IndexError, TypeError, ValueError) as error:
                raise LlmUnavailable(f"malformed completion response: {error}") from error
            span.set_attribute("gen_ai.response.model", completion.model)
            span.set_attribute("gen_ai.usage.input_tokens", completion.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", completion.completion_tokens)
            return completion

    async def _post(self, path: str, body: dict[str, object]) -> dict:  # type: ignore[type-arg]
        # Never wait longer than the request being served has left.
        left = deadlines.remaining()
        timeout = self._timeout_s if left is None else max(0.05, min(self._timeout_s, left))
        headers: dict[str, str] = {}
        propagate.inject(headers)
        started = time.perf_counter()
        try:
            response = await self._http.post(path, json=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException as error:
            raise LlmUnavailable(f"LLM did not answer within {timeout:.1f}s") from error
        except httpx.HTTPError as error:
            raise LlmUnavailable(f"LLM unreachable: {type(error).__name__}") from error
        if response.status_code != 200:
            raise LlmUnavailable(f"LLM answered HTTP {response.status_code}")
        trace.get_current_span().set_attribute(
            "aftercare.llm.latency_ms", round((time.perf_counter() - started) * 1000, 1)
        )
        return response.json()  # type: ignore[no-any-return]
