from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import json

import grpc
import structlog

from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.type.v1 import conversation_pb2
from servicekit.errors import InvalidArgument, NotFound, Violations
from services.escalation.context import build_context_package
from services.escalation.store import HandoffStore, PageCursor

log = structlog.get_logger("services.escalation")

MAX_ID_CHARS = 200
MAX_QUEUE_CHARS = 100
MAX_MESSAGES = 200
MAX_TRANSCRIPT_CHARS = 100_000
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Unspecified state in ListHandoffs means "still open".
OPEN_STATES = (escalation_pb2.HANDOFF_STATE_WAITING, escalation_pb2.HANDOFF_STATE_ASSIGNED)


def _check_id(problems: Violations, value: str, field: str) -> None:
    if not value.strip():
        problems.add(field, "required")
    elif len(value) > MAX_ID_CHARS:
        problems.add(field, f"at most {MAX_ID_CHARS} characters")


def _validate_create(request: escalation_pb2.CreateHandoffRequest) -> None:
    problems = Violations()
    _check_id(problems, request.idempotency_key, "idempotency_key")
    _check_id(problems, request.customer.tenant_id, "customer.tenant_id")
    _check_id(problems, request.customer.customer_id, "customer.customer_id")
    problems.check(
        len(request.conversation.conversation_id) <= MAX_ID_CHARS,
        "conversation.conversation_id",
        f"at most {MAX_ID_CHARS} characters",
    )
    messages = request.conversation.messages
    problems.check(len(messages) > 0, "conversation.messages", "at least one message is required")
    problems.check(len(messages) <= MAX_MESSAGES, "conversation.messages", f"at most {MAX_MESSAGES} messages")
    problems.check(
        sum(len(message.text) for message in messages) <= MAX_TRANSCRIPT_CHARS,
        "conversation.messages",
        f"at most {MAX_TRANSCRIPT_CHARS} characters of text in total",
    )
    for index, message in enumerate(messages):
        problems.check(
            message.role != conversation_pb2.ROLE_UNSPECIFIED,
            f"conversation.messages[{index}].role",
            "must be set",
        )
    problems.check(0 <= request.priority <= 100, "priority", "must be between 0 and 100")
    problems.check(len(request.queue) <= MAX_QUEUE_CHARS, "queue", f"at most {MAX_QUEUE_CHARS} characters")
    problems.raise_if_any()


def _query_fingerprint(tenant_id: str, queue: str, states: tuple[int, ...]) -> str:
    """Ties a page token to the query it came from (a token is only valid for the same filters)."""
    raw = json.dumps([tenant_id, queue, list(states)])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def encode_page_token(cursor: PageCursor, fingerprint: str) -> str:
    payload = {
        "p": cursor.priority,
        "c": cursor.created_at.isoformat(),
        "i": cursor.handoff_id,
        "q": fingerprint,
    }
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode_page_token(token: str, fingerprint: str) -> PageCursor:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
        if payload["q"] != fingerprint:
            raise ValueError("token from another query")
        created_at = dt.datetime.fromisoformat(payload["c"])
        if created_at.tzinfo is None:
            raise ValueError("naive timestamp")
        return PageCursor(priority=int(payload["p"]), created_at=created_at, handoff_id=str(payload["i"]))
    except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise InvalidArgument([("page_token", "invalid, or from a request with other filters")]) from error


class EscalationServicer(escalation_pb2_grpc.EscalationServiceServicer):
    def __init__(self, store: HandoffStore, default_queue: str) -> None:
        self._store = store
        self._default_queue = default_queue

    async def CreateHandoff(
        self, request: escalation_pb2.CreateHandoffRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.CreateHandoffResponse:
        _validate_create(request)
        package = build_context_package(request)
        queue = request.queue.strip() or self._default_queue
        handoff, created = await asyncio.to_thread(self._store.create, request, queue, package)
        log.info(
            "handoff_created" if created else "handoff_replayed",
            tenant_id=handoff.customer.tenant_id,
            handoff_id=handoff.handoff_id,
            queue=handoff.queue,
            priority=handoff.priority,
            reason=escalation_pb2.HandoffReason.Name(handoff.reason),
        )
        return escalation_pb2.CreateHandoffResponse(handoff=handoff, created=created)

    async def GetHandoff(
        self, request: escalation_pb2.GetHandoffRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.GetHandoffResponse:
        problems = Violations()
        _check_id(problems, request.tenant_id, "tenant_id")
        _check_id(problems, request.handoff_id, "handoff_id")
        problems.raise_if_any()
        handoff = await asyncio.to_thread(self._store.get, request.tenant_id, request.handoff_id)
        if handoff is None:
            raise NotFound(f"handoff {request.handoff_id!r} not found", reason="HANDOFF_NOT_FOUND")
        return escalation_pb2.GetHandoffResponse(handoff=handoff)

    async def ListHandoffs(
        self, request: escalation_pb2.ListHandoffsRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.ListHandoffsResponse:
        problems = Violations()
        _check_id(problems, request.tenant_id, "tenant_id")
        problems.check(request.page_size >= 0, "page_size", "must not be negative")
        problems.raise_if_any()
        states = (request.state,) if request.state else OPEN_STATES
        # Too large a page is coerced to the maximum rather than refused (AIP-158).
        page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        fingerprint = _query_fingerprint(request.tenant_id, request.queue, states)
        after = decode_page_token(request.page_token, fingerprint) if request.page_token else None
        handoffs, cursor = await asyncio.to_thread(
            self._store.list_page, request.tenant_id, request.queue, states, page_size, after
        )
        return escalation_pb2.ListHandoffsResponse(
            handoffs=handoffs,
            next_page_token=encode_page_token(cursor, fingerprint) if cursor else "",
        )
