"""The context package an agent reads instead of scrolling the transcript.

For now it is built deterministically from what the CreateHandoff request
carries: the summary is the newest customer message, the detail the last
three. The LLM summary, intent/sentiment, suggested resolutions grounded in
retrieval and the draft reply come in a later issue.
"""

from __future__ import annotations

import re

from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import conversation_pb2

SUMMARY_MAX_CHARS = 200
DETAIL_MESSAGES = 3
_ELLIPSIS = "…"
_SPACES = re.compile(r"\s+")


def shorten(text: str, limit: int = SUMMARY_MAX_CHARS) -> str:
    """`text` on one line, cut at a word boundary to at most `limit` characters."""
    text = _SPACES.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    room = limit - len(_ELLIPSIS)
    cut = text[:room]
    # Cut at the last space, unless that throws away most of the text (one very long word).
    space = cut.rfind(" ")
    if space >= room // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + _ELLIPSIS


def build_context_package(request: escalation_pb2.CreateHandoffRequest) -> escalation_pb2.ContextPackage:
    customer_texts = [
        message.text.strip()
        for message in request.conversation.messages
        if message.role == conversation_pb2.ROLE_CUSTOMER and message.text.strip()
    ]
    return escalation_pb2.ContextPackage(
        summary=shorten(customer_texts[-1]) if customer_texts else "",
        detail="\n".join(customer_texts[-DETAIL_MESSAGES:]),
        account=request.account,
        ai_attempt=request.ai_attempt,
    )
