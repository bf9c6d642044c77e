from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import structlog
from sqlalchemy.exc import SQLAlchemyError

from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import conversation_pb2, customer_pb2
from servicekit.errors import FailedPrecondition, NotFound, Violations
from servicekit.ids import check_customer_id, check_id
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


class TriageServicer(triage_pb2_grpc.TriageServiceServicer):
    def __init__(
        self,
        policy: TriagePolicy,
        sentiment: SentimentScorer,
        intents: IntentEngine,
        suggester: Suggester,
        *,
        contacts: ContactLog | None = None,
        max_examples: int = 100_000,
    ) -> None:
        self._policy = policy
        self._sentiment = sentiment
        self._intents = intents
        self._suggester = suggester
        self._contacts = contacts
        self._max_examples = max_examples

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
        self, request: triage_pb2.SuggestForContextRequest, context: grpc.aio.ServicerContext
    ) -> triage_pb2.SuggestForContextResponse:
        _validate_suggest(request)
        return await self._suggester.suggest(request)

    async def DismissSuggestion(
        self, request: triage_pb2.DismissSuggestionRequest, context: grpc.aio.ServicerContext
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
        self, request: triage_pb2.TriageContactRequest, context: grpc.aio.ServicerContext
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

    async def Retrain(
        self, request: triage_pb2.RetrainRequest, context: grpc.aio.ServicerContext
    ) -> triage_pb2.RetrainResponse:
        problems = Violations()
        _validate_tenant(problems, request.tenant_id)
        if len(request.examples) > self._max_examples:
            problems.add("examples", f"at most {self._max_examples} examples")
        else:
            problems.items.extend(
                example_violations(
                    [example.text for example in request.examples],
                    [example.label for example in request.examples],
                    min_per_label=self._intents.config.min_examples_per_label,
                )
            )
        problems.raise_if_any()
        outcome = await self._intents.retrain(
            request.tenant_id,
            [example.text for example in request.examples],
            [example.label for example in request.examples],
        )
        return triage_pb2.RetrainResponse(
            model_version=outcome.version,
            promoted=outcome.promoted,
            validation_accuracy=outcome.accuracy,
            validation_ece=outcome.ece,
        )

    async def RollbackModel(
        self, request: triage_pb2.RollbackModelRequest, context: grpc.aio.ServicerContext
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
