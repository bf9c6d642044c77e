from __future__ import annotations

import grpc
import structlog

from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import conversation_pb2
from servicekit.errors import Violations
from services.triage.policy import TriagePolicy
from services.triage.priority import score_priority
from services.triage.risk import NAME_BY_FLAG, SentimentCourse, detect_risks
from services.triage.routing import route
from services.triage.sentiment import SentimentScorer

log = structlog.get_logger("services.triage")

MAX_MESSAGE_CHARS = 8000


def _customer_texts(conversation: conversation_pb2.Conversation) -> list[str]:
    return [
        message.text
        for message in conversation.messages
        if message.role == conversation_pb2.ROLE_CUSTOMER and message.text.strip()
    ]


def _validate(request: triage_pb2.TriageContactRequest) -> None:
    problems = Violations()
    problems.check(bool(request.customer.tenant_id.strip()), "customer.tenant_id", "required")
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


class TriageServicer(triage_pb2_grpc.TriageServiceServicer):
    def __init__(self, policy: TriagePolicy, sentiment: SentimentScorer) -> None:
        self._policy = policy
        self._sentiment = sentiment

    async def TriageContact(
        self, request: triage_pb2.TriageContactRequest, context: grpc.aio.ServicerContext
    ) -> triage_pb2.TriageContactResponse:
        _validate(request)
        texts = _customer_texts(request.conversation)
        sentiment = self._sentiment.score(texts)
        flags = detect_risks(
            texts,
            SentimentCourse(newest_compound=sentiment.score, trajectory=sentiment.trajectory),
            request.account,
            self._policy.risk,
        )
        # No intent model exists yet (a later issue trains one): the prediction stays empty.
        intent = triage_pb2.IntentPrediction()
        priority = score_priority(flags, sentiment, request.account, self._policy.priority)
        decision = route(flags, intent, self._policy.routing)
        log.info(
            "contact_triaged",
            tenant_id=request.customer.tenant_id,
            tier=triage_pb2.Tier.Name(decision.tier),
            queue=decision.queue,
            priority=priority.score,
            risk_flags=[NAME_BY_FLAG[flag] for flag in flags],
            reasons=list(decision.reason_codes),
            policy_version=self._policy.version,
        )
        return triage_pb2.TriageContactResponse(
            intent=intent, sentiment=sentiment, risk_flags=flags, priority=priority, route=decision
        )
