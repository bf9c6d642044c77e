"""The escalation service's RPCs: handoffs and agents' changes, the feedback loop,
insights, the handoff as a conversation (thread, watch, deliveries, CSAT, settings),
and agents' approvals of the customer's actions (through the actions service).
Each RPC checks its request (validation.py), calls the stores in a worker thread and
maps their refusals to status codes; a new handoff's late summary and draft are left to
the Enricher, and watchers of the conversation are woken after each write."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc
import structlog

from aftercare.actions.v1 import actions_pb2
from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import verdict_pb2
from servicekit import judging
from servicekit.database import utcnow
from servicekit.errors import Aborted, FailedPrecondition, NotFound, ResourceExhausted
from services.escalation import feedback, validation
from services.escalation.account_activity import AccountActivityReader, account_action
from services.escalation.approvals import Approvals, outcome_message, outcome_text
from services.escalation.background import QuietTurns
from services.escalation.context import ContextBuilder, caller_verdict
from services.escalation.enrichment import Enricher
from services.escalation.feedback_store import FeedbackStore
from services.escalation.insights import InsightsEngine
from services.escalation.late_outcomes import LateOutcomes
from services.escalation.lifecycle import DEFAULT_AGENT_NAME
from services.escalation.page_tokens import (
    decode_judgements_token,
    decode_page_token,
    encode_judgements_token,
    encode_page_token,
    judgements_fingerprint,
    query_fingerprint,
)
from services.escalation.store import (
    AgentMessage,
    ConversationHasOpenHandoff,
    HandoffNotFound,
    HandoffStore,
    NewHandoff,
    ReplyRecord,
    StaleHandoff,
    WrongState,
)
from services.escalation.thread import ConversationNotFound, CustomerMessage, ThreadStore
from services.escalation.watch import Notifier, check_owner, watch

log = structlog.get_logger("services.escalation")

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
DEFAULT_GAPS = 20
MAX_GAPS = 100
# ExportFeedback stops here and says where to resume (keeps a response far below 4 MB).
MAX_EXPORT_RECORDS = 1000
# ListJudgements' pages (a record is a few hundred bytes).
DEFAULT_JUDGEMENTS_PAGE = 500
MAX_JUDGEMENTS_PAGE = 1000
# Unspecified state in ListHandoffs means "still open" (every state but resolved).
OPEN_STATES = (
    escalation_pb2.HANDOFF_STATE_WAITING,
    escalation_pb2.HANDOFF_STATE_ASSIGNED,
    escalation_pb2.HANDOFF_STATE_WAITING_ON_CUSTOMER,
    escalation_pb2.HANDOFF_STATE_REOPENED,
)
# A thread read returns at most this many messages (a client pages with after_sequence).
MAX_THREAD_MESSAGES = 1_000
WATCH_BATCH = 100
DEFAULT_DELIVERIES = 100
MAX_DELIVERIES = 500


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
        enricher: Enricher,
        feedback_store: FeedbackStore,
        notifier: Notifier,
        *,
        approvals: Approvals | None = None,
        late_outcomes: LateOutcomes | None = None,
        account_activity: AccountActivityReader | None = None,
        watch_poll_s: float = 0.5,
        watch_max_streams: int = 1000,
    ) -> None:
        self._store = store
        # Without an actions service there is no account activity and no approval to decide.
        self._approvals = approvals
        # Outcomes of approved actions still running, told once they settle.
        self._late_outcomes = late_outcomes
        self._account_activity = account_activity or AccountActivityReader(None)
        self._thread = thread
        self._feedback = feedback_store
        # Wakes this process's watchers after its own writes (other replicas' are polled).
        self._notifier = notifier
        self._watch_poll_s = watch_poll_s
        self._watch_max_streams = watch_max_streams
        # Customers' contacts tell the background LLM work to wait its turn (see background.py).
        self._background = background
        self._default_queue = default_queue
        self._context = context_builder
        self._insights = insights
        # Writes a new handoff's LLM summary and draft in the background.
        self._enricher = enricher
        # The judge's stop words load now (about a second), not in the first reply's transaction.
        judging.judge_words("")

    # --- handoffs ----------------------------------------------------------------

    async def CreateHandoff(
        self,
        request: escalation_pb2.CreateHandoffRequest,
        context: grpc.aio.ServicerContext[escalation_pb2.CreateHandoffRequest, escalation_pb2.CreateHandoffResponse],
    ) -> escalation_pb2.CreateHandoffResponse:
        validation.validate_create(request)
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
        verdict = caller_verdict(request)
        new = NewHandoff(
            queue=request.queue.strip() or self._default_queue,
            context=built.package,
            tier=verdict.tier if verdict is not None else verdict_pb2.TIER_UNSPECIFIED,
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
        # Pending exactly when there is background LLM work to do for it.
        summary_pending = built.summarize is not None
        draft_pending = built.write_draft is not None
        if created and (summary_pending or draft_pending):
            self._enricher.start(
                tenant_id,
                handoff.handoff_id,
                built.summarize,
                built.write_draft,
                summary_pending=summary_pending,
                draft_pending=draft_pending,
            )
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
            summary_origin=escalation_pb2.SummaryOrigin.Name(handoff.context.summary_origin),
            draft_origin=escalation_pb2.DraftOrigin.Name(handoff.context.draft_origin),
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

    async def GetHandoff(
        self,
        request: escalation_pb2.GetHandoffRequest,
        context: grpc.aio.ServicerContext[escalation_pb2.GetHandoffRequest, escalation_pb2.GetHandoffResponse],
    ) -> escalation_pb2.GetHandoffResponse:
        validation.validate_get(request)
        handoff = await asyncio.to_thread(self._store.get, request.tenant_id, request.handoff_id)
        if handoff is None:
            raise NotFound(f"handoff {request.handoff_id!r} not found", reason="HANDOFF_NOT_FOUND")
        # Read live each time (actions change state after the handoff was made), next to the thread.
        thread, activity = await asyncio.gather(
            asyncio.to_thread(self._thread.thread_of, request.tenant_id, request.handoff_id, MAX_THREAD_MESSAGES),
            self._account_activity.read(request.tenant_id, handoff.conversation_id),
        )
        if activity is not None:
            handoff.context.account_activity.CopyFrom(activity)
        return escalation_pb2.GetHandoffResponse(handoff=handoff, thread=thread)

    async def ListHandoffs(
        self,
        request: escalation_pb2.ListHandoffsRequest,
        context: grpc.aio.ServicerContext[escalation_pb2.ListHandoffsRequest, escalation_pb2.ListHandoffsResponse],
    ) -> escalation_pb2.ListHandoffsResponse:
        validation.validate_list(request)
        states = (request.state,) if request.state else OPEN_STATES
        # Too large a page is coerced to the maximum rather than refused (AIP-158).
        page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        # A v1 client names the tier in the deprecated field (the same numbers).
        tier = request.routing_tier or request.tier
        fingerprint = query_fingerprint(request.tenant_id, request.queue, states, tier)
        after = decode_page_token(request.page_token, fingerprint) if request.page_token else None
        handoffs, cursor = await asyncio.to_thread(
            self._store.list_page, request.tenant_id, request.queue, states, page_size, after, tier
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
        self,
        request: escalation_pb2.AssignHandoffRequest,
        context: grpc.aio.ServicerContext[escalation_pb2.AssignHandoffRequest, escalation_pb2.AssignHandoffResponse],
    ) -> escalation_pb2.AssignHandoffResponse:
        validation.validate_assign(request)
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
        self,
        request: escalation_pb2.SubmitAgentReplyRequest,
        context: grpc.aio.ServicerContext[
            escalation_pb2.SubmitAgentReplyRequest, escalation_pb2.SubmitAgentReplyResponse
        ],
    ) -> escalation_pb2.SubmitAgentReplyResponse:
        correction = validation.validate_reply(request)
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
        self,
        request: escalation_pb2.ResolveHandoffRequest,
        context: grpc.aio.ServicerContext[escalation_pb2.ResolveHandoffRequest, escalation_pb2.ResolveHandoffResponse],
    ) -> escalation_pb2.ResolveHandoffResponse:
        validation.validate_resolve(request)
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

    # --- approvals of the customer's actions ---------------------------------------------

    async def DecideActionApproval(
        self,
        request: escalation_pb2.DecideActionApprovalRequest,
        context: grpc.aio.ServicerContext[
            escalation_pb2.DecideActionApprovalRequest, escalation_pb2.DecideActionApprovalResponse
        ],
    ) -> escalation_pb2.DecideActionApprovalResponse:
        validation.validate_decide_approval(request)
        if self._approvals is None:
            raise FailedPrecondition(
                "escalation has no actions service (ACTIONS_ADDR is empty): there is no action to decide",
                reason="ACTIONS_NOT_CONFIGURED",
            )
        tenant_id = request.tenant_id
        # The action first: its conversation says which handoff tells the customer.
        action = await self._approvals.action(tenant_id, request.action_id)
        handoff = await self._handoff_of(request, action)
        decided = await self._approvals.decide(request)
        response = escalation_pb2.DecideActionApprovalResponse(action=account_action(decided))
        text = outcome_text(decided, request.note)
        if handoff is not None and text is None and self._late_outcomes is not None:
            # Still running (the company's system is slow): told once the actions service settles it.
            await self._late_outcomes.remember(request, decided.action_id, handoff.handoff_id)
        if handoff is not None and text is not None:
            # Stored and delivered as an agent's reply is; its fixed id makes a retried decision a no-op here.
            message = outcome_message(decided.action_id, request.agent_name)
            handoff_id = handoff.handoff_id
            posted, sent = await self._change(
                handoff_id,
                request.agent_id,
                lambda: self._store.post_agent_message(tenant_id, handoff_id, request.agent_id, text, message),
            )
            self._notifier.notify(tenant_id, posted.conversation_id)
            handoff = posted
            response.message.CopyFrom(sent)
        if handoff is not None:
            response.handoff.CopyFrom(handoff)
        log.info(
            "action_approval_decided",
            tenant_id=tenant_id,
            action_id=decided.action_id,
            choice=escalation_pb2.ApprovalChoice.Name(request.choice),
            state=actions_pb2.ActionState.Name(decided.state),
            handoff_id=handoff.handoff_id if handoff is not None else "",
            message_id=response.message.message_id,
        )
        return response

    async def _handoff_of(
        self, request: escalation_pb2.DecideActionApprovalRequest, action: actions_pb2.Action
    ) -> escalation_pb2.Handoff | None:
        """The handoff named, which must be of the action's conversation; else the conversation's newest, if any."""
        if not request.handoff_id:
            return await asyncio.to_thread(self._thread.newest_handoff, request.tenant_id, action.conversation_id)
        handoff = await asyncio.to_thread(self._store.get, request.tenant_id, request.handoff_id)
        if handoff is None:
            raise NotFound(f"handoff {request.handoff_id!r} not found", reason="HANDOFF_NOT_FOUND")
        if handoff.conversation_id != action.conversation_id:
            raise FailedPrecondition(
                f"action {request.action_id!r} is not of handoff {request.handoff_id!r}'s conversation",
                reason="ACTION_OF_ANOTHER_CONVERSATION",
                metadata={"action_id": request.action_id, "handoff_id": request.handoff_id},
            )
        return handoff

    # --- feedback loop ----------------------------------------------------------------

    async def ExportFeedback(
        self,
        request: escalation_pb2.ExportFeedbackRequest,
        context: grpc.aio.ServicerContext[escalation_pb2.ExportFeedbackRequest, escalation_pb2.ExportFeedbackResponse],
    ) -> escalation_pb2.ExportFeedbackResponse:
        validation.validate_tenant(request.tenant_id)
        records = await asyncio.to_thread(
            self._feedback.feedback, request.tenant_id, _time_or_none(request), MAX_EXPORT_RECORDS + 1
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
        self,
        request: escalation_pb2.ExportIntentCorrectionsRequest,
        context: grpc.aio.ServicerContext[
            escalation_pb2.ExportIntentCorrectionsRequest, escalation_pb2.ExportIntentCorrectionsResponse
        ],
    ) -> escalation_pb2.ExportIntentCorrectionsResponse:
        validation.validate_tenant(request.tenant_id)
        rows = await asyncio.to_thread(self._feedback.corrections, request.tenant_id, _time_or_none(request))
        examples = feedback.masked_examples(rows)
        return escalation_pb2.ExportIntentCorrectionsResponse(
            jsonl=feedback.labelled_jsonl(examples),
            example_count=len(examples),
            examples=[triage_pb2.LabeledExample(text=text, label=label) for text, label in examples],
        )

    async def RecordOutcome(
        self,
        request: escalation_pb2.RecordOutcomeRequest,
        context: grpc.aio.ServicerContext[escalation_pb2.RecordOutcomeRequest, escalation_pb2.RecordOutcomeResponse],
    ) -> escalation_pb2.RecordOutcomeResponse:
        self._background.contact()
        validation.validate_outcome(request)
        occurred_at = request.occurred_at.ToDatetime(dt.UTC) if request.HasField("occurred_at") else utcnow()
        recorded = await asyncio.to_thread(
            self._feedback.record_outcome,
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
        self,
        request: escalation_pb2.RecordJudgementRequest,
        context: grpc.aio.ServicerContext[
            escalation_pb2.RecordJudgementRequest, escalation_pb2.RecordJudgementResponse
        ],
    ) -> escalation_pb2.RecordJudgementResponse:
        answered_at = validation.validate_judgement(request)
        changed = await asyncio.to_thread(
            self._feedback.record_judgement,
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

    async def ListJudgements(
        self,
        request: escalation_pb2.ListJudgementsRequest,
        context: grpc.aio.ServicerContext[escalation_pb2.ListJudgementsRequest, escalation_pb2.ListJudgementsResponse],
    ) -> escalation_pb2.ListJudgementsResponse:
        since = validation.validate_list_judgements(request)
        # Too large a page is coerced to the maximum rather than refused (AIP-158), as ListHandoffs does.
        page_size = min(request.page_size or DEFAULT_JUDGEMENTS_PAGE, MAX_JUDGEMENTS_PAGE)
        fingerprint = judgements_fingerprint(request.tenant_id, since)
        after = decode_judgements_token(request.page_token, fingerprint) if request.page_token else None
        records, cursor = await asyncio.to_thread(
            self._feedback.judgements_page, request.tenant_id, since, after, page_size
        )
        return escalation_pb2.ListJudgementsResponse(
            judgements=records,
            next_page_token=encode_judgements_token(cursor, fingerprint) if cursor else "",
        )

    # --- insights --------------------------------------------------------------------------

    async def GetTopicInsights(
        self,
        request: escalation_pb2.GetTopicInsightsRequest,
        context: grpc.aio.ServicerContext[
            escalation_pb2.GetTopicInsightsRequest, escalation_pb2.GetTopicInsightsResponse
        ],
    ) -> escalation_pb2.GetTopicInsightsResponse:
        start, end = validation.validate_insights_period(request)
        return await asyncio.to_thread(self._insights.topic_insights, request.tenant_id, start, end)

    async def ListKnowledgeGaps(
        self,
        request: escalation_pb2.ListKnowledgeGapsRequest,
        context: grpc.aio.ServicerContext[
            escalation_pb2.ListKnowledgeGapsRequest, escalation_pb2.ListKnowledgeGapsResponse
        ],
    ) -> escalation_pb2.ListKnowledgeGapsResponse:
        validation.validate_gaps(request)
        limit = min(request.limit or DEFAULT_GAPS, MAX_GAPS)
        gaps = await asyncio.to_thread(self._insights.knowledge_gaps, request.tenant_id, limit)
        return escalation_pb2.ListKnowledgeGapsResponse(gaps=gaps)

    # --- the handoff as a conversation ----------------------------------------------------

    async def AppendCustomerMessage(
        self,
        request: escalation_pb2.AppendCustomerMessageRequest,
        context: grpc.aio.ServicerContext[
            escalation_pb2.AppendCustomerMessageRequest, escalation_pb2.AppendCustomerMessageResponse
        ],
    ) -> escalation_pb2.AppendCustomerMessageResponse:
        self._background.contact()
        validation.validate_customer_message(request)
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
        self,
        request: escalation_pb2.ListConversationMessagesRequest,
        context: grpc.aio.ServicerContext[
            escalation_pb2.ListConversationMessagesRequest, escalation_pb2.ListConversationMessagesResponse
        ],
    ) -> escalation_pb2.ListConversationMessagesResponse:
        validation.validate_conversation_read(request)
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
        self,
        request: escalation_pb2.WatchConversationRequest,
        context: grpc.aio.ServicerContext[
            escalation_pb2.WatchConversationRequest, escalation_pb2.WatchConversationResponse
        ],
    ) -> AsyncIterator[escalation_pb2.WatchConversationResponse]:
        validation.validate_conversation_read(request)
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
        self,
        request: escalation_pb2.ListDeliveriesRequest,
        context: grpc.aio.ServicerContext[escalation_pb2.ListDeliveriesRequest, escalation_pb2.ListDeliveriesResponse],
    ) -> escalation_pb2.ListDeliveriesResponse:
        after_id = validation.validate_deliveries(request)
        page_size = min(request.page_size or DEFAULT_DELIVERIES, MAX_DELIVERIES)
        deliveries = await asyncio.to_thread(
            self._thread.deliveries, request.tenant_id, request.channel, after_id, page_size
        )
        next_cursor = deliveries[-1].cursor if deliveries else request.after_cursor
        return escalation_pb2.ListDeliveriesResponse(deliveries=deliveries, next_cursor=next_cursor)

    async def RateHandoff(
        self,
        request: escalation_pb2.RateHandoffRequest,
        context: grpc.aio.ServicerContext[escalation_pb2.RateHandoffRequest, escalation_pb2.RateHandoffResponse],
    ) -> escalation_pb2.RateHandoffResponse:
        validation.validate_rating(request)
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
        self,
        request: escalation_pb2.GetHandoffSettingsRequest,
        context: grpc.aio.ServicerContext[
            escalation_pb2.GetHandoffSettingsRequest, escalation_pb2.GetHandoffSettingsResponse
        ],
    ) -> escalation_pb2.GetHandoffSettingsResponse:
        validation.validate_tenant(request.tenant_id)
        window = await asyncio.to_thread(self._thread.reopen_window, request.tenant_id)
        return escalation_pb2.GetHandoffSettingsResponse(settings=_settings_proto(window))

    async def UpdateHandoffSettings(
        self,
        request: escalation_pb2.UpdateHandoffSettingsRequest,
        context: grpc.aio.ServicerContext[
            escalation_pb2.UpdateHandoffSettingsRequest, escalation_pb2.UpdateHandoffSettingsResponse
        ],
    ) -> escalation_pb2.UpdateHandoffSettingsResponse:
        window = validation.validate_settings_update(request)
        window = await asyncio.to_thread(self._thread.set_reopen_window, request.tenant_id, window)
        log.info("handoff_settings_updated", tenant_id=request.tenant_id, reopen_window_s=int(window.total_seconds()))
        return escalation_pb2.UpdateHandoffSettingsResponse(settings=_settings_proto(window))


def _conversation_not_found(conversation_id: str) -> NotFound:
    return NotFound(f"conversation {conversation_id!r} not found", reason="CONVERSATION_NOT_FOUND")


def _settings_proto(window: dt.timedelta) -> escalation_pb2.HandoffSettings:
    settings = escalation_pb2.HandoffSettings()
    settings.reopen_window.FromTimedelta(window)
    return settings
