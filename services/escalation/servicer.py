from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import json
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
import structlog

from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import conversation_pb2
from servicekit import judging
from servicekit.database import utcnow
from servicekit.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Violations,
)
from servicekit.ids import check_customer_id, check_id
from services.escalation import feedback
from services.escalation.background import QuietTurns
from services.escalation.context import ContextBuilder
from services.escalation.insights import InsightsEngine
from services.escalation.lifecycle import DEFAULT_AGENT_NAME
from services.escalation.store import (
    AGENT_JUDGEMENT_KEY_PREFIX,
    AgentMessage,
    ConversationHasOpenHandoff,
    Correction,
    HandoffNotFound,
    HandoffStore,
    NewHandoff,
    PageCursor,
    ReplyRecord,
    StaleHandoff,
    WrongState,
)
from services.escalation.thread import ConversationNotFound, CustomerMessage, ThreadStore
from services.escalation.watch import Notifier, check_owner, watch

log = structlog.get_logger("services.escalation")

T = TypeVar("T")

MAX_ID_CHARS = 200
MAX_QUEUE_CHARS = 100
MAX_LABEL_CHARS = 200
MAX_MESSAGES = 200
MAX_TRANSCRIPT_CHARS = 100_000
MAX_REPLY_CHARS = 10_000
MAX_RESOLUTION_CHARS = 4_000
MAX_QUESTION_CHARS = 4_000
# Passages a caller may pass on from its search (retrieval's own top_k bound).
MAX_RETRIEVED = 50
MAX_RETRIEVED_CHARS = 200_000
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
DEFAULT_GAPS = 20
MAX_GAPS = 100
# ExportFeedback stops here and says where to resume (keeps a response far below 4 MB).
MAX_EXPORT_RECORDS = 1000
# At start, summaries left pending by a stopped process are written for handoffs this recent
# (older ones have likely been read with the extractive summary already), at most this many.
RESUME_SUMMARIES_HOURS = 24
RESUME_SUMMARIES_MAX = 500
DEFAULT_INSIGHT_DAYS = 30
MAX_INSIGHT_DAYS = 366
# Unspecified state in ListHandoffs means "still open" (every state but resolved).
OPEN_STATES = (
    escalation_pb2.HANDOFF_STATE_WAITING,
    escalation_pb2.HANDOFF_STATE_ASSIGNED,
    escalation_pb2.HANDOFF_STATE_WAITING_ON_CUSTOMER,
    escalation_pb2.HANDOFF_STATE_REOPENED,
)
MAX_CLIENT_MESSAGE_ID_CHARS = 128
MAX_CUSTOMER_MESSAGE_CHARS = 4_000
MAX_AGENT_NAME_CHARS = 200
MAX_COMMENT_CHARS = 2_000
# A thread read returns at most this many messages (a client pages with after_sequence).
MAX_THREAD_MESSAGES = 1_000
WATCH_BATCH = 100
DEFAULT_DELIVERIES = 100
MAX_DELIVERIES = 500
MAX_REOPEN_WINDOW = dt.timedelta(days=90)


def _check_id(problems: Violations, value: str, field: str) -> None:
    if not value.strip():
        problems.add(field, "required")
    elif len(value) > MAX_ID_CHARS:
        problems.add(field, f"at most {MAX_ID_CHARS} characters")


def _validate_create(request: escalation_pb2.CreateHandoffRequest) -> None:
    problems = Violations()
    _check_id(problems, request.idempotency_key, "idempotency_key")
    check_id(problems, request.customer.tenant_id, "customer.tenant_id")
    check_customer_id(problems, request.customer.customer_id, "customer.customer_id")
    if request.conversation.conversation_id:
        check_id(problems, request.conversation.conversation_id, "conversation.conversation_id")
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
    problems.check(len(request.intent) <= MAX_LABEL_CHARS, "intent", f"at most {MAX_LABEL_CHARS} characters")
    problems.check(0.0 <= request.intent_confidence <= 1.0, "intent_confidence", "must be between 0 and 1")
    problems.check(-1.0 <= request.sentiment_score <= 1.0, "sentiment_score", "must be between -1 and 1")
    problems.check(request.tier in triage_pb2.Tier.values(), "tier", "unknown tier")
    problems.check(len(request.retrieved) <= MAX_RETRIEVED, "retrieved", f"at most {MAX_RETRIEVED} passages")
    problems.check(
        sum(len(hit.text) for hit in request.retrieved) <= MAX_RETRIEVED_CHARS,
        "retrieved",
        f"at most {MAX_RETRIEVED_CHARS} characters of passage text in total",
    )
    for index, hit in enumerate(request.retrieved):
        problems.check(-1.0 <= hit.similarity <= 1.0, f"retrieved[{index}].similarity", "must be between -1 and 1")
    problems.raise_if_any()


def _validate_change(problems: Violations, tenant_id: str, handoff_id: str, agent_id: str, version: int) -> None:
    check_id(problems, tenant_id, "tenant_id")
    _check_id(problems, handoff_id, "handoff_id")
    _check_id(problems, agent_id, "agent_id")
    problems.check(version >= 0, "expected_version", "must not be negative")


def _check_text(problems: Violations, value: str, field: str, limit: int) -> None:
    if not value.strip():
        problems.add(field, "required")
    elif len(value) > limit:
        problems.add(field, f"at most {limit} characters")
    _check_no_nul(problems, value, field)


def _check_no_nul(problems: Violations, value: str, field: str) -> None:
    # PostgreSQL cannot store NUL in text: refuse it here rather than fail on write.
    problems.check("\x00" not in value, field, "must not contain NUL characters")


def _query_fingerprint(tenant_id: str, queue: str, states: tuple[int, ...], tier: int = 0) -> str:
    """Ties a page token to the query it came from (a token is only valid for the same filters)."""
    raw = json.dumps([tenant_id, queue, list(states)] + ([tier] if tier else []))
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


def _time_or_none(
    message: escalation_pb2.ExportFeedbackRequest | escalation_pb2.ExportIntentCorrectionsRequest,
) -> dt.datetime | None:
    return message.since.ToDatetime(dt.UTC) if message.HasField("since") else None


class EscalationServicer(escalation_pb2_grpc.EscalationServiceServicer):
    def __init__(
        self,
        store: HandoffStore,
        default_queue: str,
        context_builder: ContextBuilder,
        insights: InsightsEngine,
        background: QuietTurns,
        thread: ThreadStore,
        *,
        watch_poll_s: float = 0.5,
        watch_max_streams: int = 1000,
    ) -> None:
        self._store = store
        self._thread = thread
        # Wakes this process's watchers after its own writes (other replicas' are polled).
        self._notifier = Notifier()
        self._watch_poll_s = watch_poll_s
        self._watch_max_streams = watch_max_streams
        # LLM summaries and drafts take turns after customers (see background.py).
        self._background = background
        self._default_queue = default_queue
        self._context = context_builder
        self._insights = insights
        # LLM summaries and drafts being written into packages already stored (kept referenced until done).
        self._summaries: set[asyncio.Task[None]] = set()
        # The judge's stop words load now (about a second), not in the first reply's transaction.
        judging.judge_words("")

    def resume_summaries(self) -> None:
        """Write the LLM summaries and drafts a stopped process left pending (recent handoffs
        only), one at a time in the background, behind the new handoffs' own."""
        self._keep(asyncio.create_task(self._resume_summaries()))

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._summaries.add(task)
        task.add_done_callback(self._summaries.discard)

    async def _resume_summaries(self) -> None:
        since = utcnow() - dt.timedelta(hours=RESUME_SUMMARIES_HOURS)
        pending = await asyncio.to_thread(self._store.pending_background, since, RESUME_SUMMARIES_MAX)
        if pending:
            log.info("summaries_resumed", handoffs=len(pending))
        for left in pending:
            summarize = self._context.summarizer(left.conversation) if left.summary_pending else None
            write_draft = (
                self._context.drafter(left.draft_prompt, left.conversation, left.notes) if left.draft_pending else None
            )
            await self._enrich_later(
                left.tenant_id,
                left.handoff_id,
                summarize,
                write_draft,
                summary_pending=left.summary_pending,
                draft_pending=left.draft_pending,
            )

    async def close(self) -> None:
        """Stop summaries and drafts still being written: they stay pending until the next start."""
        for task in self._summaries:
            task.cancel()
        await asyncio.gather(*self._summaries, return_exceptions=True)

    # --- handoffs ----------------------------------------------------------------

    async def CreateHandoff(
        self, request: escalation_pb2.CreateHandoffRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.CreateHandoffResponse:
        _validate_create(request)
        self._background.contact()
        tenant_id = request.customer.tenant_id
        # A retry must not pay for (or change) the context package again.
        replayed = await asyncio.to_thread(self._store.find_request, tenant_id, request.idempotency_key)
        if replayed is not None:
            handoff, appended = replayed
            log.info("handoff_replayed", tenant_id=tenant_id, handoff_id=handoff.handoff_id, appended=appended)
            return escalation_pb2.CreateHandoffResponse(handoff=handoff, created=False, appended=appended)
        # The conversation already has a human: no second ticket (and no second package).
        added = await self._append_escalation(request)
        if added is not None:
            return added
        built = await self._context.build(request)
        new = NewHandoff(
            queue=request.queue.strip() or self._default_queue,
            context=built.package,
            intent=built.package.intent,
            intent_confidence=built.package.intent_confidence,
            question=built.question,
            draft_prompt=built.draft_prompt,
        )
        for _ in range(3):
            try:
                handoff, created = await asyncio.to_thread(self._store.create, request, new)
                break
            except ConversationHasOpenHandoff:
                # Another escalation of this conversation won the race: add this one to it.
                added = await self._append_escalation(request)
                if added is not None:
                    return added
        else:
            raise Aborted("the conversation's handoff changed while handing over; retry", reason="HANDOFF_RACE")
        summary_pending = built.package.summary_method == "pending"
        draft_pending = built.package.draft_method == "pending"
        if created and (summary_pending or draft_pending):
            enrich = self._enrich_later(
                tenant_id,
                handoff.handoff_id,
                built.summarize,
                built.write_draft,
                summary_pending=summary_pending,
                draft_pending=draft_pending,
            )
            self._keep(asyncio.create_task(enrich))
        if created:
            self._notifier.notify(tenant_id, handoff.conversation_id)
        log.info(
            "handoff_created" if created else "handoff_replayed",
            tenant_id=tenant_id,
            handoff_id=handoff.handoff_id,
            reference=handoff.reference,
            queue=handoff.queue,
            priority=handoff.priority,
            reason=escalation_pb2.HandoffReason.Name(handoff.reason),
            summary_method=handoff.context.summary_method,
            draft_method=handoff.context.draft_method,
        )
        return escalation_pb2.CreateHandoffResponse(handoff=handoff, created=created)

    async def _append_escalation(
        self, request: escalation_pb2.CreateHandoffRequest
    ) -> escalation_pb2.CreateHandoffResponse | None:
        handoff = await asyncio.to_thread(self._thread.append_escalation, request)
        if handoff is None:
            return None
        self._notifier.notify(handoff.customer.tenant_id, handoff.conversation_id)
        return escalation_pb2.CreateHandoffResponse(handoff=handoff, created=False, appended=True)

    async def _enrich_later(
        self,
        tenant_id: str,
        handoff_id: str,
        summarize: Callable[[], Awaitable[tuple[str, str, str, str]]] | None,
        write_draft: Callable[[], Awaitable[tuple[str, str, str]]] | None,
        *,
        summary_pending: bool,
        draft_pending: bool,
    ) -> None:
        """A stored package's background LLM work: the summary, then the draft, each in a turn
        of its own (a customer who comes in between goes first). Without a job for a part
        that is pending, that part settles on what it has (extractive summary, template)."""
        if summary_pending:
            await self._summarize_later(tenant_id, handoff_id, summarize)
        if draft_pending:
            await self._draft_later(tenant_id, handoff_id, write_draft)

    async def _summarize_later(
        self, tenant_id: str, handoff_id: str, summarize: Callable[[], Awaitable[tuple[str, str, str, str]]] | None
    ) -> None:
        summary, detail, method, model = "", "", "extractive", ""
        if summarize is not None:
            try:
                async with self._background.turn():
                    summary, detail, method, model = await summarize()
            except Exception as error:  # a summary is an extra: the handoff is stored already
                log.warning("summary_failed", handoff_id=handoff_id, error=type(error).__name__)
        # Not "llm": it failed its grounding check or did not come; the extractive summary stays.
        method = "llm" if method == "llm" else "extractive"
        await asyncio.to_thread(self._store.update_summary, tenant_id, handoff_id, summary, detail, method, model)
        log.info("summary_settled", tenant_id=tenant_id, handoff_id=handoff_id, summary_method=method)

    async def _draft_later(
        self, tenant_id: str, handoff_id: str, write_draft: Callable[[], Awaitable[tuple[str, str, str]]] | None
    ) -> None:
        draft, method, model = "", "template", ""
        try:
            if write_draft is not None:
                async with self._background.turn():
                    # Checked inside the turn: an agent may have replied while it waited.
                    if await asyncio.to_thread(self._store.draft_still_wanted, tenant_id, handoff_id):
                        draft, method, model = await write_draft()
        except Exception as error:  # a draft is an extra: the template stays
            log.warning("draft_failed", handoff_id=handoff_id, error=type(error).__name__)
            draft, method, model = "", "template", ""
        method = "llm" if method == "llm" and draft else "template"
        stored = await asyncio.to_thread(self._store.update_draft, tenant_id, handoff_id, draft, method, model)
        log.info("draft_settled", tenant_id=tenant_id, handoff_id=handoff_id, draft_method=stored)

    async def GetHandoff(
        self, request: escalation_pb2.GetHandoffRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.GetHandoffResponse:
        problems = Violations()
        check_id(problems, request.tenant_id, "tenant_id")
        _check_id(problems, request.handoff_id, "handoff_id")
        problems.raise_if_any()
        handoff = await asyncio.to_thread(self._store.get, request.tenant_id, request.handoff_id)
        if handoff is None:
            raise NotFound(f"handoff {request.handoff_id!r} not found", reason="HANDOFF_NOT_FOUND")
        thread = await asyncio.to_thread(
            self._thread.thread_of, request.tenant_id, request.handoff_id, MAX_THREAD_MESSAGES
        )
        return escalation_pb2.GetHandoffResponse(handoff=handoff, thread=thread)

    async def ListHandoffs(
        self, request: escalation_pb2.ListHandoffsRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.ListHandoffsResponse:
        problems = Violations()
        check_id(problems, request.tenant_id, "tenant_id")
        problems.check(request.page_size >= 0, "page_size", "must not be negative")
        problems.check(request.tier in triage_pb2.Tier.values(), "tier", "unknown tier")
        problems.check(request.state in escalation_pb2.HandoffState.values(), "state", "unknown state")
        problems.raise_if_any()
        states = (request.state,) if request.state else OPEN_STATES
        # Too large a page is coerced to the maximum rather than refused (AIP-158).
        page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        fingerprint = _query_fingerprint(request.tenant_id, request.queue, states, request.tier)
        after = decode_page_token(request.page_token, fingerprint) if request.page_token else None
        handoffs, cursor = await asyncio.to_thread(
            self._store.list_page, request.tenant_id, request.queue, states, page_size, after, request.tier
        )
        return escalation_pb2.ListHandoffsResponse(
            handoffs=handoffs,
            next_page_token=encode_page_token(cursor, fingerprint) if cursor else "",
        )

    async def _change(self, handoff_id: str, agent_id: str, change: Callable[[], T]) -> T:
        """Run a store change, turning its refusals into status codes."""
        try:
            return await asyncio.to_thread(change)
        except HandoffNotFound:
            raise NotFound(f"handoff {handoff_id!r} not found", reason="HANDOFF_NOT_FOUND") from None
        except StaleHandoff as stale:
            raise Aborted(
                f"handoff {handoff_id!r} changed since it was read (now version {stale.current_version}); "
                "reload it and try again",
                reason="HANDOFF_VERSION_CONFLICT",
                metadata={"current_version": str(stale.current_version)},
            ) from None
        except WrongState as wrong:
            if wrong.state == "HANDOFF_STATE_RESOLVED":
                raise FailedPrecondition(
                    f"handoff {handoff_id!r} is already resolved", reason="HANDOFF_RESOLVED"
                ) from None
            raise FailedPrecondition(
                f"handoff {handoff_id!r} is assigned to another agent than {agent_id!r}",
                reason="HANDOFF_ASSIGNED_TO_ANOTHER_AGENT",
            ) from None

    async def AssignHandoff(
        self, request: escalation_pb2.AssignHandoffRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.AssignHandoffResponse:
        problems = Violations()
        _validate_change(problems, request.tenant_id, request.handoff_id, request.agent_id, request.expected_version)
        problems.raise_if_any()
        handoff = await self._change(
            request.handoff_id,
            request.agent_id,
            lambda: self._store.assign(
                request.tenant_id, request.handoff_id, request.agent_id, request.expected_version
            ),
        )
        self._notifier.notify(request.tenant_id, handoff.conversation_id)
        log.info(
            "handoff_assigned", tenant_id=request.tenant_id, handoff_id=handoff.handoff_id, version=handoff.version
        )
        return escalation_pb2.AssignHandoffResponse(handoff=handoff)

    async def SubmitAgentReply(
        self, request: escalation_pb2.SubmitAgentReplyRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.SubmitAgentReplyResponse:
        problems = Violations()
        _validate_change(problems, request.tenant_id, request.handoff_id, request.agent_id, request.expected_version)
        _check_text(problems, request.final_text, "final_text", MAX_REPLY_CHARS)
        correction = None
        if request.HasField("intent_correction"):
            fix = request.intent_correction
            problems.check(
                len(fix.original_label) <= MAX_LABEL_CHARS,
                "intent_correction.original_label",
                f"at most {MAX_LABEL_CHARS} characters",
            )
            _check_text(problems, fix.corrected_label, "intent_correction.corrected_label", MAX_LABEL_CHARS)
            correction = Correction(fix.original_label.strip(), fix.corrected_label.strip())
        problems.check(
            len(request.client_message_id) <= MAX_CLIENT_MESSAGE_ID_CHARS,
            "client_message_id",
            f"at most {MAX_CLIENT_MESSAGE_ID_CHARS} characters",
        )
        problems.check(
            len(request.agent_name) <= MAX_AGENT_NAME_CHARS, "agent_name", f"at most {MAX_AGENT_NAME_CHARS} characters"
        )
        _check_no_nul(problems, request.agent_name, "agent_name")
        _check_no_nul(problems, request.client_message_id, "client_message_id")
        problems.raise_if_any()
        final_text = request.final_text
        # Without the console's id a retried Send cannot be recognised: it is a new message.
        message = AgentMessage(
            client_message_id=request.client_message_id or str(uuid.uuid4()),
            author_name=" ".join(request.agent_name.split()) or DEFAULT_AGENT_NAME,
        )

        def classify(draft: str) -> ReplyRecord:
            ratio = feedback.edit_ratio(draft, final_text)
            return ReplyRecord(draft, final_text, round(ratio, 4), feedback.draft_use(draft, ratio))

        stored = await self._change(
            request.handoff_id,
            request.agent_id,
            lambda: self._store.submit_reply(
                request.tenant_id,
                request.handoff_id,
                request.agent_id,
                request.expected_version,
                classify,
                correction,
                message,
            ),
        )
        handoff, reply = stored.handoff, stored.reply
        self._notifier.notify(request.tenant_id, handoff.conversation_id)
        log.info(
            "agent_reply_recorded",
            tenant_id=request.tenant_id,
            handoff_id=handoff.handoff_id,
            message_id=stored.message.message_id,
            draft_use=escalation_pb2.DraftUse.Name(reply.draft_use),
            edit_ratio=reply.edit_ratio,
            intent_corrected=correction is not None,
        )
        return escalation_pb2.SubmitAgentReplyResponse(
            draft_use=reply.draft_use, edit_ratio=reply.edit_ratio, handoff=handoff, message=stored.message
        )

    async def ResolveHandoff(
        self, request: escalation_pb2.ResolveHandoffRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.ResolveHandoffResponse:
        problems = Violations()
        _validate_change(problems, request.tenant_id, request.handoff_id, request.agent_id, request.expected_version)
        _check_text(problems, request.resolution, "resolution", MAX_RESOLUTION_CHARS)
        problems.raise_if_any()
        handoff = await self._change(
            request.handoff_id,
            request.agent_id,
            lambda: self._store.resolve(
                request.tenant_id,
                request.handoff_id,
                request.agent_id,
                request.resolution.strip(),
                request.expected_version,
            ),
        )
        self._notifier.notify(request.tenant_id, handoff.conversation_id)
        log.info("handoff_resolved", tenant_id=request.tenant_id, handoff_id=handoff.handoff_id)
        return escalation_pb2.ResolveHandoffResponse(handoff=handoff)

    # --- feedback loop ----------------------------------------------------------------

    async def ExportFeedback(
        self, request: escalation_pb2.ExportFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.ExportFeedbackResponse:
        problems = Violations()
        check_id(problems, request.tenant_id, "tenant_id")
        problems.raise_if_any()
        records = await asyncio.to_thread(
            self._store.feedback, request.tenant_id, _time_or_none(request), MAX_EXPORT_RECORDS + 1
        )
        response = escalation_pb2.ExportFeedbackResponse()
        if len(records) > MAX_EXPORT_RECORDS:
            records = records[:MAX_EXPORT_RECORDS]
            # Replies at exactly this instant are exported again by the next call, never lost.
            response.resume_since.FromDatetime(records[-1].created_at)
        jsonl, count = feedback.preference_jsonl((r.prompt, r.draft, r.final_text) for r in records)
        response.jsonl, response.record_count = jsonl, count
        return response

    async def ExportIntentCorrections(
        self, request: escalation_pb2.ExportIntentCorrectionsRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.ExportIntentCorrectionsResponse:
        problems = Violations()
        check_id(problems, request.tenant_id, "tenant_id")
        problems.raise_if_any()
        rows = await asyncio.to_thread(self._store.corrections, request.tenant_id, _time_or_none(request))
        examples = feedback.masked_examples(rows)
        return escalation_pb2.ExportIntentCorrectionsResponse(
            jsonl=feedback.labelled_jsonl(examples),
            example_count=len(examples),
            examples=[triage_pb2.LabeledExample(text=text, label=label) for text, label in examples],
        )

    async def RecordOutcome(
        self, request: escalation_pb2.RecordOutcomeRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.RecordOutcomeResponse:
        self._background.contact()
        problems = Violations()
        _check_id(problems, request.idempotency_key, "idempotency_key")
        check_id(problems, request.customer.tenant_id, "customer.tenant_id")
        problems.check(
            request.decision in (escalation_pb2.OUTCOME_DECISION_ANSWERED, escalation_pb2.OUTCOME_DECISION_CLARIFIED),
            "decision",
            "must be ANSWERED or CLARIFIED",
        )
        problems.check(len(request.intent) <= MAX_LABEL_CHARS, "intent", f"at most {MAX_LABEL_CHARS} characters")
        problems.check(0.0 <= request.confidence <= 1.0, "confidence", "must be between 0 and 1")
        problems.check(
            len(request.question) <= MAX_QUESTION_CHARS, "question", f"at most {MAX_QUESTION_CHARS} characters"
        )
        problems.raise_if_any()
        occurred_at = request.occurred_at.ToDatetime(dt.UTC) if request.HasField("occurred_at") else utcnow()
        recorded = await asyncio.to_thread(
            self._store.record_outcome,
            request.customer.tenant_id,
            request.idempotency_key,
            escalation_pb2.OutcomeDecision.Name(request.decision),
            request.intent.strip(),
            request.confidence,
            request.question.strip(),
            occurred_at,
        )
        return escalation_pb2.RecordOutcomeResponse(recorded=recorded)

    async def RecordJudgement(
        self, request: escalation_pb2.RecordJudgementRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.RecordJudgementResponse:
        problems = Violations()
        _check_id(problems, request.idempotency_key, "idempotency_key")
        problems.check(
            not request.idempotency_key.startswith(AGENT_JUDGEMENT_KEY_PREFIX),
            "idempotency_key",
            f"the prefix {AGENT_JUDGEMENT_KEY_PREFIX!r} is reserved for agents' judgements",
        )
        # Like RecordOutcome, only the tenant is an id here: customer ids are the channel's, in any form.
        check_id(problems, request.customer.tenant_id, "customer.tenant_id")
        problems.check(
            request.source == escalation_pb2.JUDGEMENT_SOURCE_CUSTOMER,
            "source",
            "must be CUSTOMER (agents judge through SubmitAgentReply)",
        )
        problems.check(len(request.intent) <= MAX_LABEL_CHARS, "intent", f"at most {MAX_LABEL_CHARS} characters")
        problems.check(
            math.isfinite(request.confidence) and 0.0 <= request.confidence <= 1.0,
            "confidence",
            "must be between 0 and 1",
        )
        answered_at = None
        if request.HasField("answered_at"):
            try:
                answered_at = request.answered_at.ToDatetime(dt.UTC)
            except (ValueError, OverflowError):
                problems.add("answered_at", "not a valid timestamp")
        problems.raise_if_any()
        changed = await asyncio.to_thread(
            self._store.record_judgement,
            request.customer.tenant_id,
            request.idempotency_key,
            escalation_pb2.JudgementSource.Name(request.source),
            request.intent.strip(),
            request.confidence,
            request.correct,
            answered_at,
        )
        log.info("judgement_recorded", tenant_id=request.customer.tenant_id, changed=changed)
        return escalation_pb2.RecordJudgementResponse(changed=changed)

    # --- insights --------------------------------------------------------------------------

    async def GetTopicInsights(
        self, request: escalation_pb2.GetTopicInsightsRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.GetTopicInsightsResponse:
        problems = Violations()
        check_id(problems, request.tenant_id, "tenant_id")
        end = request.end_time.ToDatetime(dt.UTC) if request.HasField("end_time") else utcnow()
        start = (
            request.start_time.ToDatetime(dt.UTC)
            if request.HasField("start_time")
            else end - dt.timedelta(days=DEFAULT_INSIGHT_DAYS)
        )
        problems.check(start < end, "start_time", "must be before end_time")
        problems.check(
            end - start <= dt.timedelta(days=MAX_INSIGHT_DAYS),
            "start_time",
            f"at most {MAX_INSIGHT_DAYS} days before end_time",
        )
        problems.raise_if_any()
        return await asyncio.to_thread(self._insights.topic_insights, request.tenant_id, start, end)

    async def ListKnowledgeGaps(
        self, request: escalation_pb2.ListKnowledgeGapsRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.ListKnowledgeGapsResponse:
        problems = Violations()
        check_id(problems, request.tenant_id, "tenant_id")
        problems.check(request.limit >= 0, "limit", "must not be negative")
        problems.raise_if_any()
        limit = min(request.limit or DEFAULT_GAPS, MAX_GAPS)
        gaps = await asyncio.to_thread(self._insights.knowledge_gaps, request.tenant_id, limit)
        return escalation_pb2.ListKnowledgeGapsResponse(gaps=gaps)

    # --- the handoff as a conversation ----------------------------------------------------

    async def AppendCustomerMessage(
        self, request: escalation_pb2.AppendCustomerMessageRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.AppendCustomerMessageResponse:
        self._background.contact()
        problems = Violations()
        check_id(problems, request.customer.tenant_id, "customer.tenant_id")
        check_customer_id(problems, request.customer.customer_id, "customer.customer_id")
        check_id(problems, request.conversation_id, "conversation_id")
        _check_text(problems, request.text, "text", MAX_CUSTOMER_MESSAGE_CHARS)
        _check_client_message_id(problems, request.client_message_id)
        problems.check(request.channel in conversation_pb2.Channel.values(), "channel", "unknown channel")
        problems.raise_if_any()
        incoming = CustomerMessage(
            tenant_id=request.customer.tenant_id,
            customer_id=request.customer.customer_id,
            conversation_id=request.conversation_id,
            text=request.text,
            client_message_id=request.client_message_id,
            channel=request.channel,
        )
        try:
            appended = await asyncio.to_thread(self._thread.append_customer_message, incoming)
        except ConversationNotFound:
            raise _conversation_not_found(request.conversation_id) from None
        response = escalation_pb2.AppendCustomerMessageResponse(appended=appended.appended, reopened=appended.reopened)
        if appended.handoff is not None and appended.message is not None:
            response.handoff.CopyFrom(appended.handoff)
            response.message.CopyFrom(appended.message)
            self._notifier.notify(incoming.tenant_id, incoming.conversation_id)
        return response

    async def ListConversationMessages(
        self, request: escalation_pb2.ListConversationMessagesRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.ListConversationMessagesResponse:
        _validate_conversation_read(request)
        try:
            messages, handoff = await asyncio.to_thread(
                self._thread.conversation,
                request.tenant_id,
                request.conversation_id,
                request.after_sequence,
                request.customer_id,
                MAX_THREAD_MESSAGES,
            )
        except ConversationNotFound:
            raise _conversation_not_found(request.conversation_id) from None
        response = escalation_pb2.ListConversationMessagesResponse(messages=messages)
        if handoff is not None:
            response.handoff.CopyFrom(handoff)
        return response

    async def WatchConversation(
        self, request: escalation_pb2.WatchConversationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[escalation_pb2.WatchConversationResponse]:
        _validate_conversation_read(request)
        if self._notifier.watchers >= self._watch_max_streams:
            raise ResourceExhausted(
                f"at most {self._watch_max_streams} conversations are watched at once here; retry later",
                reason="TOO_MANY_WATCHERS",
            )
        await check_owner(self._thread, request)
        # Headers now, so that a caller learns the stream is open before the first event
        # (a conversation without a handoff yet may have none for a long time).
        await context.send_initial_metadata(())
        async for event in watch(self._thread, self._notifier, request, poll_s=self._watch_poll_s, batch=WATCH_BATCH):
            yield event

    async def ListDeliveries(
        self, request: escalation_pb2.ListDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.ListDeliveriesResponse:
        problems = Violations()
        if request.tenant_id:
            check_id(problems, request.tenant_id, "tenant_id")
        problems.check(request.channel in conversation_pb2.Channel.values(), "channel", "unknown channel")
        problems.check(request.page_size >= 0, "page_size", "must not be negative")
        cursor = request.after_cursor.strip()
        problems.check(
            not cursor or (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18),
            "after_cursor",
            "must be a cursor from a previous response",
        )
        problems.raise_if_any()
        after_id = int(cursor) if cursor else 0
        page_size = min(request.page_size or DEFAULT_DELIVERIES, MAX_DELIVERIES)
        deliveries = await asyncio.to_thread(
            self._thread.deliveries, request.tenant_id, request.channel, after_id, page_size
        )
        next_cursor = deliveries[-1].cursor if deliveries else request.after_cursor
        return escalation_pb2.ListDeliveriesResponse(deliveries=deliveries, next_cursor=next_cursor)

    async def RateHandoff(
        self, request: escalation_pb2.RateHandoffRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.RateHandoffResponse:
        problems = Violations()
        check_id(problems, request.customer.tenant_id, "customer.tenant_id")
        check_customer_id(problems, request.customer.customer_id, "customer.customer_id")
        _check_id(problems, request.handoff_id, "handoff_id")
        problems.check(1 <= request.rating <= 5, "rating", "must be between 1 and 5")
        problems.check(len(request.comment) <= MAX_COMMENT_CHARS, "comment", f"at most {MAX_COMMENT_CHARS} characters")
        _check_no_nul(problems, request.comment, "comment")
        problems.raise_if_any()
        tenant_id = request.customer.tenant_id
        try:
            handoff, changed = await asyncio.to_thread(
                self._thread.rate,
                tenant_id,
                request.customer.customer_id,
                request.handoff_id,
                request.rating,
                request.comment.strip(),
            )
        except HandoffNotFound:
            raise NotFound(f"handoff {request.handoff_id!r} not found", reason="HANDOFF_NOT_FOUND") from None
        except WrongState:
            raise FailedPrecondition(
                f"handoff {request.handoff_id!r} is not resolved yet; only a resolved handoff is rated",
                reason="HANDOFF_NOT_RESOLVED",
            ) from None
        if changed:
            self._notifier.notify(tenant_id, handoff.conversation_id)
        log.info("handoff_rated", tenant_id=tenant_id, handoff_id=handoff.handoff_id, changed=changed)
        return escalation_pb2.RateHandoffResponse(handoff=handoff, changed=changed)

    async def GetHandoffSettings(
        self, request: escalation_pb2.GetHandoffSettingsRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.GetHandoffSettingsResponse:
        problems = Violations()
        check_id(problems, request.tenant_id, "tenant_id")
        problems.raise_if_any()
        window = await asyncio.to_thread(self._thread.reopen_window, request.tenant_id)
        return escalation_pb2.GetHandoffSettingsResponse(settings=_settings_proto(window))

    async def UpdateHandoffSettings(
        self, request: escalation_pb2.UpdateHandoffSettingsRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.UpdateHandoffSettingsResponse:
        problems = Violations()
        check_id(problems, request.tenant_id, "tenant_id")
        window = dt.timedelta(0)
        if not request.settings.HasField("reopen_window"):
            problems.add("settings.reopen_window", "required")
        else:
            reopen = request.settings.reopen_window
            window = dt.timedelta(seconds=reopen.seconds)
            problems.check(
                reopen.nanos == 0 and dt.timedelta(0) <= window <= MAX_REOPEN_WINDOW,
                "settings.reopen_window",
                f"whole seconds from 0 to {MAX_REOPEN_WINDOW.days} days",
            )
        problems.raise_if_any()
        window = await asyncio.to_thread(self._thread.set_reopen_window, request.tenant_id, window)
        log.info("handoff_settings_updated", tenant_id=request.tenant_id, reopen_window_s=int(window.total_seconds()))
        return escalation_pb2.UpdateHandoffSettingsResponse(settings=_settings_proto(window))


def _check_client_message_id(problems: Violations, value: str) -> None:
    if not value.strip():
        problems.add("client_message_id", "required")
    elif len(value) > MAX_CLIENT_MESSAGE_ID_CHARS:
        problems.add("client_message_id", f"at most {MAX_CLIENT_MESSAGE_ID_CHARS} characters")
    _check_no_nul(problems, value, "client_message_id")


def _validate_conversation_read(
    request: escalation_pb2.ListConversationMessagesRequest | escalation_pb2.WatchConversationRequest,
) -> None:
    problems = Violations()
    check_id(problems, request.tenant_id, "tenant_id")
    check_id(problems, request.conversation_id, "conversation_id")
    problems.check(request.after_sequence >= 0, "after_sequence", "must not be negative")
    if request.customer_id:
        check_customer_id(problems, request.customer_id, "customer_id")
    problems.raise_if_any()


def _conversation_not_found(conversation_id: str) -> NotFound:
    return NotFound(f"conversation {conversation_id!r} not found", reason="CONVERSATION_NOT_FOUND")


def _settings_proto(window: dt.timedelta) -> escalation_pb2.HandoffSettings:
    settings = escalation_pb2.HandoffSettings()
    settings.reopen_window.FromTimedelta(window)
    return settings
