"""What an OpenAI-compatible server streams, for LLM doubles in tests: one SSE
event per token, the last one with its finish_reason, usage when asked, then
[DONE]."""

from __future__ import annotations

import json
from collections.abc import Sequence

import httpx


def sse(events: Sequence[dict[str, object]]) -> httpx.Response:
    """A streamed reply of these events, then [DONE]."""
    stream = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
    return httpx.Response(200, text=stream, headers={"content-type": "text/event-stream"})


def completion(
    pieces: Sequence[str],
    *,
    chat: bool = False,
    model: str = "test-model",
    usage: dict[str, int] | None = None,
    finish_reason: str = "stop",
) -> httpx.Response:
    """`pieces` streamed as /completions (`text`) or /chat/completions (`delta`) events."""

    def choice(text: str) -> dict[str, object]:
        return {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}

    events: list[dict[str, object]] = [{"model": model, "choices": [choice(piece)]} for piece in pieces]
    last = choice("")
    last["finish_reason"] = finish_reason
    events.append({"model": model, "choices": [last]})
    if usage is not None:
        events.append({"model": model, "choices": [], "usage": usage})
    return sse(events)
