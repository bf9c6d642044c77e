"""WatchConversation: a conversation's new thread messages and handoff changes, as
they happen.

Any replica may have stored the change (an agent's Send lands on one pod, the
customer's stream is held by another), so a watcher reads the database: every
`poll_s`, or at once when a write in this process wakes it. Per stream it holds
one event and reads at most `batch` messages at a time: nothing grows with a
slow reader (gRPC's flow control holds the next read until the client took the
last).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator

from aftercare.escalation.v1 import escalation_pb2
from servicekit.errors import NotFound
from services.escalation.thread import Marker, ThreadStore

# A waiting customer's queue position and expected wait change without their handoff
# changing: re-read it this often while it waits.
WAIT_REFRESH_S = 10.0


class Notifier:
    """Wakes this process's watchers of a conversation as soon as a write here touched it."""

    def __init__(self) -> None:
        self._waiters: dict[tuple[str, str], set[asyncio.Event]] = defaultdict(set)

    @contextlib.contextmanager
    def subscribe(self, tenant_id: str, conversation_id: str) -> Iterator[asyncio.Event]:
        key = (tenant_id, conversation_id)
        event = asyncio.Event()
        self._waiters[key].add(event)
        try:
            yield event
        finally:
            self._waiters[key].discard(event)
            if not self._waiters[key]:
                del self._waiters[key]

    def notify(self, tenant_id: str, conversation_id: str) -> None:
        for event in self._waiters.get((tenant_id, conversation_id), ()):
            event.set()

    @property
    def watchers(self) -> int:
        return sum(len(events) for events in self._waiters.values())


def _wait_view(handoff: escalation_pb2.Handoff) -> tuple[int, int]:
    return handoff.queue_position, handoff.expected_wait.seconds


async def check_owner(store: ThreadStore, request: escalation_pb2.WatchConversationRequest) -> None:
    """NOT_FOUND when the request names a customer and the conversation is another's."""
    marker, owner = await asyncio.to_thread(store.marker, request.tenant_id, request.conversation_id)
    if marker is not None and request.customer_id and owner != request.customer_id:
        raise NotFound(f"conversation {request.conversation_id!r} not found", reason="CONVERSATION_NOT_FOUND")


async def watch(
    store: ThreadStore,
    notifier: Notifier,
    request: escalation_pb2.WatchConversationRequest,
    *,
    poll_s: float,
    batch: int,
) -> AsyncIterator[escalation_pb2.WatchConversationResponse]:
    """The backlog after request.after_sequence, then changes until the caller cancels."""
    tenant_id, conversation_id = request.tenant_id, request.conversation_id
    after = request.after_sequence
    sent_marker: Marker | None = None
    sent_wait: tuple[int, int] | None = None
    wait_checked = time.monotonic()
    with notifier.subscribe(tenant_id, conversation_id) as woken:
        while True:
            woken.clear()
            marker, owner = await asyncio.to_thread(store.marker, tenant_id, conversation_id)
            if marker is not None and request.customer_id and owner != request.customer_id:
                raise NotFound(f"conversation {conversation_id!r} not found", reason="CONVERSATION_NOT_FOUND")
            messages = await asyncio.to_thread(store.messages_after, tenant_id, conversation_id, after, batch)
            for message in messages:
                yield escalation_pb2.WatchConversationResponse(message=message)
                after = message.sequence
            refresh_wait = sent_wait is not None and time.monotonic() - wait_checked >= WAIT_REFRESH_S
            if marker is not None and (marker != sent_marker or refresh_wait):
                handoff = await asyncio.to_thread(store.handoff, tenant_id, marker.handoff_id)
                wait_checked = time.monotonic()
                if handoff is not None and (marker != sent_marker or _wait_view(handoff) != sent_wait):
                    yield escalation_pb2.WatchConversationResponse(handoff=handoff)
                sent_marker = marker
                waiting = handoff is not None and handoff.state == escalation_pb2.HANDOFF_STATE_WAITING
                sent_wait = _wait_view(handoff) if waiting and handoff is not None else None
            if len(messages) == batch:
                continue  # more backlog to send
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), poll_s)
