from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.exc import SQLAlchemyError

from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import conversation_pb2, customer_pb2
from servicekit.errors import FailedPrecondition, NotFound, Violations
from servicekit.ids import check_customer_id, check_id
from servicekit.operation_runner import Handler, OperationContext, wait_until_done
from servicekit.operations import (
    OperationError,
    OperationFailed,
    OperationRecord,
    OperationStore,
    State,
    status_code,
    to_proto,
)
from services.triage.contacts import ContactLog
from services.triage.intent_model import EncoderMismatch
from services.triage.intent_service import IntentEngine
from services.triage.intent_store import VERSION_PATTERN
from services.triage.intent_training import example_violations
from services.triage.policy import TriagePolicy
from services.triage.priority import score_priority
from services.triage.risk import SentimentCourse, detect_risks
from services.triage.risk_flags import NAME_BY_FLAG
from services.triage.routing import route
from services.triage.sentiment import SentimentScorer
from services.triage.tier0 import Suggester

log = structlog.get_logger("services.triage")

MAX_MESSAGE_CHARS = 8000
# Tier-0 browsing context limits: what a product page can sensibly report.
MAX_PAGE_CHARS = 2048
MAX_FEATURE_CHARS = 256
MAX_SEARCH_CHARS = 500
MAX_ERRORS = 20
MAX_ERROR_CHARS = 500
MAX_DISMISSED = 1000
# The kind of a retrain operation in the operations table (servicekit.operations).
RETRAIN_KIND = "intent_retrain"
_RETRAIN_STATE = {
    State.QUEUED: triage_pb2.RETRAIN_STATE_QUEUED,
    State.RUNNING: triage_pb2.RETRAIN_STATE_RUNNING,
    State.SUCCEEDED: triage_pb2.RETRAIN_STATE_SUCCEEDED,
    State.FAILED: triage_pb2.RETRAIN_STATE_FAILED,
    State.CANCELLED: triage_pb2.RETRAIN_STATE_CANCELLED,
}


def _customer_texts(conversation: conversation_pb2.Conversation) -> list[str]:
    return [
        message.text
        for message in conversation.messages
        if message.role == conversation_pb2.ROLE_CUSTOMER and message.text.strip()
    ]


def _validate(request: triage_pb2.TriageContactRequest) -> None:
    problems = Violations()
    check_id(problems, request.customer.tenant_id, "customer.tenant_id")
    for index, message in enumerate(request.conversation.messages):
        problems.check(
            message.role != conversation_pb2.ROLE_UNSPECIFIED,
            f"conversation.messages[{index}].role",
            "must be set",
        )
        problems.check(
            len(message.text) <= MAX_MESSAGE_CHARS,
            f"conversation.messages[{index}].text",
            f"at most {MAX_MESSAGE_CHARS} characters",
        )
    problems.check(
        bool(_customer_texts(request.conversation)),
        "conversation.messages",
        "needs at least one customer message with text",
    )
    problems.raise_if_any()


def _validate_tenant(problems: Violations, tenant_id: str, field_path: str = "tenant_id") -> None:
    check_id(problems, tenant_id, field_path)


def _validate_user(problems: Violations, customer: customer_pb2.CustomerRef) -> None:
    _validate_tenant(problems, customer.tenant_id, "customer.tenant_id")
    check_customer_id(problems, customer.customer_id, "customer.customer_id")


def _validate_suggest(request: triage_pb2.SuggestForContextRequest) -> None:
    problems = Violations()
    _validate_user(problems, request.customer)
    ctx = request.context
    for name, value, limit in (
        ("context.page", ctx.page, MAX_PAGE_CHARS),
        ("context.feature", ctx.feature, MAX_FEATURE_CHARS),
        ("context.search_query", ctx.search_query, MAX_SEARCH_CHARS),
    ):
        problems.check(len(value) <= limit, name, f"at most {limit} characters")
        problems.check("\x00" not in value, name, "must not contain NUL characters")
    problems.check(ctx.dwell_seconds >= 0, "context.dwell_seconds", "must not be negative")
    if len(ctx.recent_errors) > MAX_ERRORS:
        problems.add("context.recent_errors", f"at most {MAX_ERRORS} errors")
    for index, error in enumerate(ctx.recent_errors):
        problems.check(
            len(error) <= MAX_ERROR_CHARS, f"context.recent_errors[{index}]", f"at most {MAX_ERROR_CHARS} characters"
        )
        problems.check("\x00" not in error, f"context.recent_errors[{index}]", "must not contain NUL characters")
    problems.check(
        any(text.strip() for text in (ctx.page, ctx.feature, ctx.search_query, *ctx.recent_errors)),
        "context",
        "needs a page, feature, search query or recent error",
    )
    if len(request.dismissed_doc_ids) > MAX_DISMISSED:
        problems.add("dismissed_doc_ids", f"at most {MAX_DISMISSED} ids")
    problems.raise_if_any()


def _timestamp(moment: dt.datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def retrain_metadata(record: OperationRecord) -> triage_pb2.RetrainMetadata:
    """A retrain operation's progress: what it knew at the start, and where it stands in the store."""
    metadata = triage_pb2.RetrainMetadata.FromString(record.metadata)
    metadata.state = _RETRAIN_STATE[record.state]
    metadata.progress_percent = record.progress_percent
    metadata.step = record.step
    metadata.attempts = record.attempts
    metadata.replica = (record.owner or "") if record.state is State.RUNNING else ""
    if record.started_at is not None:
        metadata.start_time.FromDatetime(record.started_at)
    if record.finished_at is not None:
        metadata.end_time.FromDatetime(record.finished_at)
    return metadata


def retrain_work(intents: IntentEngine) -> Handler:
    """The work of a retrain operation, run by the replica that claims it (from the stored request,
    so another replica can run it again after a takeover)."""

    async def run(context: OperationContext) -> triage_pb2.RetrainResponse:
        request = triage_pb2.StartRetrainRequest.FromString(context.record.request)
        context.progress(0, "loading the encoders")
        try:
            outcome = await intents.retrain(
                request.tenant_id,
                [example.text for example in request.examples],
                [example.label for example in request.examples],
                progress=context.progress,
                cancelled=context.cancelled,
            )
        except ValueError as error:  # the examples were checked when it started; a newer rule may differ
            raise OperationFailed(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        return triage_pb2.RetrainResponse(
            model_version=outcome.version,
            promoted=outcome.promoted,
            validation_accuracy=outcome.accuracy,
            validation_ece=outcome.ece,
        )

    return run


class TriageServicer(triage_pb2_grpc.TriageServiceServicer):
    def __init__(
        self,
        policy: TriagePolicy,
        sentiment: SentimentScorer,
        intents: IntentEngine,
        suggester: Suggester,
        *,
        operations: OperationStore,
        contacts: ContactLog | None = None,
        max_examples: int = 100_000,
        operation_created: Callable[[], None] = lambda: None,
    ) -> None:
        """`operation_created` is told when a retrain operation was stored (this replica's runner
        then claims it at once instead of at its next poll)."""
        self._policy = policy
        self._sentiment = sentiment
        self._intents = intents
        self._suggester = suggester
        self._operations = operations
        self._contacts = contacts
        self._max_examples = max_examples
        self._operation_created = operation_created

    async def _other_contacts(self, request: triage_pb2.TriageContactRequest) -> int:
        """The customer's other conversations in the last 7 days that triage saw (0 if unknown)."""
        if self._contacts is None:
            return 0
        try:
            return await asyncio.to_thread(
                self._contacts.record,
                request.customer.tenant_id,
                request.customer.customer_id,
                request.conversation.conversation_id,
                dt.datetime.now(dt.UTC),
            )
        except SQLAlchemyError as error:
            # Priority still counts what the caller says; the contact is triaged either way.
            log.warning("contact_log_failed", error=type(error).__name__)
            return 0

    async def SuggestForContext(
        self, request: triage_pb2.SuggestForContextRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> triage_pb2.SuggestForContextResponse:
        _validate_suggest(request)
        return await self._suggester.suggest(request)

    async def DismissSuggestion(
        self, request: triage_pb2.DismissSuggestionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> triage_pb2.DismissSuggestionResponse:
        problems = Violations()
        _validate_user(problems, request.customer)
        check_id(problems, request.doc_id, "doc_id")
        problems.raise_if_any()
        return await self._suggester.dismiss(request)

    def _understand(self, tenant_id: str, texts: list[str]) -> tuple[triage_pb2.Sentiment, triage_pb2.IntentPrediction]:
        """Sentiment and intent (blocking: the encoder runs once for both). The newest message is
        embedded as the sentiment model reads it (handles and links replaced, spaces collapsed),
        which leaves a plain customer message as it was."""
        embeddings = self._intents.encode(self._sentiment.ends(texts)) if self._sentiment.model else None
        sentiment = self._sentiment.score(texts, None if embeddings is None else self._intents.primary(embeddings))
        # Empty when no model is trained for the tenant (or its model was trained with other
        # encoders than this service runs); routing then says "no_intent_model".
        intent = self._intents.predict(tenant_id, texts[-1], None if embeddings is None else embeddings[-1:])
        return sentiment, intent

    async def TriageContact(
        self, request: triage_pb2.TriageContactRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> triage_pb2.TriageContactResponse:
        _validate(request)
        texts = _customer_texts(request.conversation)
        sentiment, intent = await asyncio.to_thread(self._understand, request.customer.tenant_id, texts)
        flags = detect_risks(
            texts,
            SentimentCourse(newest_compound=sentiment.score, trajectory=sentiment.trajectory),
            request.account,
            self._policy.risk,
            contacts_seen_7d=await self._other_contacts(request),
        )
        priority = score_priority(flags, sentiment, request.account, self._policy.priority)
        decision = route(flags, intent, self._policy.routing)
        log.info(
            "contact_triaged",
            tenant_id=request.customer.tenant_id,
            intent=intent.label,
            intent_confidence=round(intent.confidence, 4),
            intent_out_of_scope=intent.out_of_scope,
            model_version=intent.model_version,
            tier=triage_pb2.Tier.Name(decision.tier),
            queue=decision.queue,
            priority=priority.score,
            risk_flags=[NAME_BY_FLAG[flag] for flag in flags],
            reasons=list(decision.reason_codes),
            policy_version=self._policy.version,
            sentiment_model=self._sentiment.version,
        )
        return triage_pb2.TriageContactResponse(
            intent=intent, sentiment=sentiment, risk_flags=flags, priority=priority, route=decision
        )

    def _validate_retrain(self, tenant_id: str, examples: Sequence[triage_pb2.LabeledExample]) -> None:
        problems = Violations()
        _validate_tenant(problems, tenant_id)
        if len(examples) > self._max_examples:
            problems.add("examples", f"at most {self._max_examples} examples")
        else:
            problems.items.extend(
                example_violations(
                    [example.text for example in examples],
                    [example.label for example in examples],
                    min_per_label=self._intents.config.min_examples_per_label,
                )
            )
        problems.raise_if_any()

    async def _start_retrain(self, request: triage_pb2.StartRetrainRequest) -> OperationRecord:
        """Validated, stored as a QUEUED operation; ALREADY_EXISTS while the tenant has one not done."""
        self._validate_retrain(request.tenant_id, request.examples)
        metadata = triage_pb2.RetrainMetadata(tenant_id=request.tenant_id, examples=len(request.examples))
        record = await asyncio.to_thread(
            self._operations.create,
            request.tenant_id,
            RETRAIN_KIND,
            request.SerializeToString(),
            metadata.SerializeToString(),
        )
        self._operation_created()
        log.info("retrain_started", tenant_id=request.tenant_id, operation=record.name, examples=len(request.examples))
        return record

    async def StartRetrain(
        self, request: triage_pb2.StartRetrainRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> triage_pb2.StartRetrainResponse:
        record = await self._start_retrain(request)
        return triage_pb2.StartRetrainResponse(operation=to_proto(record, retrain_metadata))

    async def Retrain(
        self, request: triage_pb2.RetrainRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> triage_pb2.RetrainResponse:
        """Deprecated: the same operation as StartRetrain, waited for (it goes on if the caller leaves)."""
        started = await self._start_retrain(
            triage_pb2.StartRetrainRequest(tenant_id=request.tenant_id, examples=request.examples)
        )
        done = await wait_until_done(self._operations, started)
        if done.state is State.SUCCEEDED:
            response = triage_pb2.RetrainResponse()
            to_proto(done).response.Unpack(response)
            return response
        reason = "RETRAIN_CANCELLED" if done.state is State.CANCELLED else "RETRAIN_FAILED"
        raise OperationError(status_code(done.error_code or 2), done.error_message or "retrain failed", reason)

    async def GetIntentModel(
        self, request: triage_pb2.GetIntentModelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> triage_pb2.GetIntentModelResponse:
        problems = Violations()
        _validate_tenant(problems, request.tenant_id)
        problems.raise_if_any()
        info = await self._intents.serving_info(request.tenant_id)
        return triage_pb2.GetIntentModelResponse(
            serving_version=info.serving_version,
            current_version=info.current_version,
            versions=info.versions,
            replica=info.replica,
            loaded_at=_timestamp(info.loaded_at),
        )

    async def RollbackModel(
        self, request: triage_pb2.RollbackModelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> triage_pb2.RollbackModelResponse:
        problems = Violations()
        _validate_tenant(problems, request.tenant_id)
        if request.model_version and not VERSION_PATTERN.match(request.model_version):
            problems.add("model_version", "not a model version (like v20261124T101500Z-3fa2c1)")
        problems.raise_if_any()
        try:
            serving, previous = await self._intents.rollback(request.tenant_id, request.model_version)
        except FileNotFoundError:
            raise NotFound(
                f"tenant {request.tenant_id} has no intent model version {request.model_version}",
                reason="MODEL_VERSION_NOT_FOUND",
            ) from None
        except LookupError as error:
            raise FailedPrecondition(str(error), reason="NOTHING_TO_ROLL_BACK") from None
        except EncoderMismatch as error:
            raise FailedPrecondition(str(error), reason="INTENT_ENCODER_MISMATCH") from None
        log.info("intent_model_rolled_back", tenant_id=request.tenant_id, serving=serving, previous=previous)
        return triage_pb2.RollbackModelResponse(model_version=serving, previous_version=previous)
