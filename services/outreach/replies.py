"""Agents' replies to email conversations: where they go, and the worker that hands them to
the outbox.

The email intake records a reply route per conversation (RecordReplyRoute): the customer's
address, the thread's subject and its Message-IDs. The worker, started with the service,
reads escalation's delivery feed (ListDeliveries, email channel, every tenant) from a cursor
kept in outreach's database and turns each agent message into one outbox row keyed by the
message id; the sender (outbox.py) then mails it, threaded.

Exactly once: the rows of a page and the cursor after it are written in one transaction, and
a row whose key exists is skipped, so a replayed page, a restarted worker or two workers add
nothing. A message whose conversation has no route (or whose route belongs to another
customer) is recorded as undeliverable, logged and counted, never retried.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import grpc
import structlog
from opentelemetry import metrics

from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.outreach.v1 import outreach_pb2
from aftercare.type.v1 import conversation_pb2
from servicekit import attributes
from servicekit.database import utcnow
from servicekit.errors import Violations
from servicekit.ids import check_customer_id, check_id
from services.outreach.models import ReplyRouteRow
from services.outreach.settings import OutreachSettings
from services.outreach.store import OutreachStore

log = structlog.get_logger(__name__)
FEED = "escalation.deliveries.email"
PAGE_SIZE = 100
MAX_ID_CHARS = 200
MAX_SUBJECT_CHARS = 300
MAX_MESSAGE_ID_CHARS = 900
NO_ROUTE = "no_reply_route"
_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")
_MESSAGE_ID = re.compile(r"^<?([^<>\s]+@[^<>\s]+)>?$")
_REPLY_PREFIX = re.compile(r"^\s*(re|fwd?|aw|wg|tr)\s*:\s*", re.IGNORECASE)
# The handoff reference a reply's subject carries; an answer to that reply repeats it.
_HANDOFF_TAG = re.compile(r"\s*\[HO-[0-9A-Z]{4,12}\]\s*$", re.IGNORECASE)
# Transient: the next round reads the same cursor again.
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED,
              grpc.StatusCode.RESOURCE_EXHAUSTED)

_replies = metrics.get_meter("aftercare.outreach").create_counter(attributes.OUTREACH_AGENT_REPLIES)


def message_id_header(raw: str) -> str | None:
    """`raw` as a Message-ID header value ("<local@domain>"); "" for none, None when malformed."""
    raw = raw.strip()
    if not raw:
        return ""
    match = _MESSAGE_ID.match(raw)
    if match is None or len(raw) > MAX_MESSAGE_ID_CHARS:
        return None
    return f"<{match.group(1)}>"


def thread_subject(subject: str) -> str:
    """The subject without "Re:"/"Fwd:" prefixes, on one line."""
    subject = " ".join(subject.split())
    while (stripped := _REPLY_PREFIX.sub("", subject, count=1)) != subject:
        subject = stripped
    return _HANDOFF_TAG.sub("", subject)[:MAX_SUBJECT_CHARS]


def reply_subject(subject: str, reference: str) -> str:
    tag = f" [{reference}]" if reference else ""
    return f"Re: {subject or 'Your message'}{tag}"


def route_from_request(request: outreach_pb2.RecordReplyRouteRequest) -> dict[str, str]:
    """The route a RecordReplyRoute request records; InvalidArgument listing every problem."""
    problems = Violations()
    customer = request.customer
    check_id(problems, customer.tenant_id, "customer.tenant_id")
    check_customer_id(problems, customer.customer_id, "customer.customer_id")
    check_id(problems, request.conversation_id, "conversation_id")
    # The address goes into a To: header: one plain address, nothing that could add a header.
    problems.check(len(request.address) <= 320 and bool(_ADDRESS.match(request.address)), "address",
                   "one email address, e.g. ann@example.com")
    message_id = message_id_header(request.message_id)
    problems.check(message_id is not None, "message_id", "a Message-ID such as <id@host>, or empty")
    problems.raise_if_any()
    return {
        "tenant_id": customer.tenant_id,
        "customer_id": customer.customer_id,
        "conversation_id": request.conversation_id,
        "address": request.address.strip(),
        "subject": thread_subject(request.subject),
        "message_id": message_id or "",
    }


def _body(delivery: escalation_pb2.Delivery) -> str:
    text = delivery.message.message.text.strip()
    name = delivery.message.author_name.strip()
    return f"{text}\n\n-- \n{name}\n" if name else f"{text}\n"


def outbox_row(delivery: escalation_pb2.Delivery, route: ReplyRouteRow | None, now: dt.datetime) -> dict[str, Any]:
    """The outbox row of one delivery: a message to send, or an undeliverable record."""
    message = delivery.message
    row: dict[str, Any] = {
        "draft_id": message.message_id, "account_id": delivery.customer.customer_id,
        "tenant_id": delivery.customer.tenant_id, "not_before": now,
    }
    if route is None or route.customer_id != delivery.customer.customer_id:
        return row | {"to_address": "", "subject": "", "body": "", "status": "undeliverable", "last_error": NO_ROUTE,
                      "in_reply_to": "", "thread_references": ""}
    references = " ".join(dict.fromkeys(i for i in (route.first_message_id, route.last_message_id) if i))
    return row | {
        "to_address": route.address, "subject": reply_subject(route.subject, delivery.reference),
        "body": _body(delivery), "status": "pending", "last_error": "",
        "in_reply_to": route.last_message_id, "thread_references": references,
    }


def _deliverable(delivery: escalation_pb2.Delivery) -> bool:
    message = delivery.message
    return (
        message.message.role == conversation_pb2.ROLE_AGENT
        and 0 < len(message.message_id) <= MAX_ID_CHARS
        and bool(delivery.customer.tenant_id and delivery.customer.customer_id)
    )


class ReplyDeliveryWorker:
    """Reads escalation's email delivery feed into the outbox; wakes the sender when it added mail."""

    def __init__(
        self,
        store: OutreachStore,
        escalation: escalation_pb2_grpc.EscalationServiceStub,
        settings: OutreachSettings,
        *,
        on_queued: Callable[[], None] = lambda: None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._store = store
        self._escalation = escalation
        self._settings = settings
        self._on_queued = on_queued
        self._clock = clock

    async def poll_once(self) -> int:
        """Read one page of the feed into the outbox; returns how many deliveries it held."""
        cursor = await asyncio.to_thread(self._store.feed_cursor, FEED)
        page = await self._escalation.ListDeliveries(escalation_pb2.ListDeliveriesRequest(
            channel=conversation_pb2.CHANNEL_EMAIL, after_cursor=cursor, page_size=PAGE_SIZE))
        deliveries = [d for d in page.deliveries if _deliverable(d)]
        if len(deliveries) < len(page.deliveries):
            log.warning("agent_replies_skipped", skipped=len(page.deliveries) - len(deliveries))
        keys = {(d.customer.tenant_id, d.message.conversation_id) for d in deliveries}
        routes = await asyncio.to_thread(self._store.reply_routes, keys) if keys else {}
        now = self._clock()
        rows = [outbox_row(d, routes.get((d.customer.tenant_id, d.message.conversation_id)), now)
                for d in deliveries]
        next_cursor = page.next_cursor or cursor
        if rows or next_cursor != cursor:
            added = await asyncio.to_thread(self._store.queue_replies, FEED, rows, next_cursor, now)
            self._report(added)
        return len(page.deliveries)

    def _report(self, added: list[dict[str, Any]]) -> None:
        """Log and count the rows this round added (a replayed message is neither)."""
        undeliverable = [r for r in added if r["status"] == "undeliverable"]
        queued = len(added) - len(undeliverable)
        if undeliverable:
            # The ids name the messages for an operator; no address, no text.
            log.warning("agent_replies_undeliverable", reason=NO_ROUTE, messages=len(undeliverable),
                        message_ids=",".join(r["draft_id"] for r in undeliverable[:10]))
            _replies.add(len(undeliverable), {attributes.OUTREACH_REPLY_OUTCOME: "undeliverable"})
        if queued:
            log.info("agent_replies_queued", messages=queued)
            _replies.add(queued, {attributes.OUTREACH_REPLY_OUTCOME: "queued"})
            self._on_queued()

    async def run(self) -> None:
        while True:
            try:
                if await self.poll_once() >= PAGE_SIZE:
                    continue  # more waiting: read on at once
            except grpc.aio.AioRpcError as error:
                if error.code() not in _RETRYABLE:
                    log.error("agent_reply_feed_failed", code=error.code().name)
                else:
                    log.warning("agent_reply_feed_unavailable", code=error.code().name)
            except Exception:  # the loop must outlive one bad round (database restart, escalation bug)
                log.exception("agent_reply_feed_failed")
            await asyncio.sleep(self._settings.reply_poll_interval_s)
