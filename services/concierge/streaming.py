"""A streamed turn's events: each checked sentence as it is produced, and the retraction
of what was shown when the phrasing fails its check. StreamConverse reads the queue."""

from __future__ import annotations

import asyncio

from aftercare.concierge.v1 import concierge_pb2


class Events:
    """Where a streamed turn's checked sentences go as they are produced (StreamConverse
    reads the queue); a unary Converse has none."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[concierge_pb2.StreamConverseResponse] = asyncio.Queue()
        self.shown = ""

    def sentence(self, text: str) -> None:
        self.shown += text
        self.queue.put_nowait(concierge_pb2.StreamConverseResponse(delta=text))

    def retract(self, reason: concierge_pb2.DecisionReason, replacement: str) -> None:
        """Withdraw what was shown (nothing to do when nothing was)."""
        if self.shown:
            self.shown = ""
            self.queue.put_nowait(
                concierge_pb2.StreamConverseResponse(
                    retraction=concierge_pb2.Retraction(reason=reason, replacement=replacement)
                )
            )
