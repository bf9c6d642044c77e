"""Handoffs, agent replies, intent corrections, contact outcomes and answer
judgements in the relational store. Sync SQLAlchemy: the servicer calls these methods via
asyncio.to_thread; every write is one transaction.

Changes to a handoff are optimistic: each one names the version it read and
the UPDATE only applies `WHERE version = <read>`, so of two agents acting on
the same handoff at once exactly one wins and the other gets StaleHandoff.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import structlog
from google.protobuf import json_format
from google.protobuf.message import Message
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aftercare.escalation.v1 import escalation_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import conversation_pb2
from servicekit.database import utcnow
from servicekit.judging import agrees
from services.escalation import lifecycle, summaries
from services.escalation.lifecycle import (
    AGENT_ROLE,
    AI_ACTOR,
    ASSIGNED,
    RESOLVED,
    WAITING,
    WAITING_ON_CUSTOMER,
    describe,
    event_row,
)
from services.escalation.migrations import SCHEMA
from services.escalation.models import (
    AgentReplyRow,
    AnswerJudgementRow,
    ContactOutcomeRow,
    HandoffEventRow,
    HandoffRow,
    IntentCorrectionRow,
    ThreadMessageRow,
)

log = structlog.get_logger("services.escalation.store")

# Attempts at a write that lost a race it can retry (a reference or thread sequence taken meanwhile).
WRITE_ATTEMPTS = 5
AGENT_JUDGEMENT = escalation_pb2.JudgementSource.Name(escalation_pb2.JUDGEMENT_SOURCE_AGENT)
CUSTOMER_JUDGEMENT = escalation_pb2.JudgementSource.Name(escalation_pb2.JUDGEMENT_SOURCE_CUSTOMER)
# Agents' judgements are keyed by handoff (a later reply replaces the verdict); RecordJudgement refuses the prefix.
AGENT_JUDGEMENT_KEY_PREFIX = "handoff:"


class HandoffNotFound(Exception):
    """No such handoff for this tenant (another tenant's is reported the same way)."""


class StaleHandoff(Exception):
    """The handoff changed since the caller read it (another agent acted first)."""

    def __init__(self, current_version: int) -> None:
        super().__init__(f"handoff is at version {current_version}")
        self.current_version = current_version


class ConversationHasOpenHandoff(Exception):
    """Another handoff of the conversation is open (it was created meanwhile): append to it."""


class WrongState(Exception):
    """The handoff's state does not allow the change (e.g. it is resolved)."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


@dataclass(frozen=True)
class PageCursor:
    """Where the previous page ended, in ListHandoffs order (keyset pagination: stable under inserts)."""

    priority: int
    created_at: dt.datetime
    handoff_id: str


@dataclass(frozen=True)
class NewHandoff:
    """What CreateHandoff stores besides the request itself."""

    queue: str
    context: escalation_pb2.ContextPackage
    intent: str = ""
    intent_confidence: float = 0.0
    question: str = ""
    draft_prompt: str = ""


@dataclass(frozen=True)
class PendingPackage:
    """A stored package whose background LLM work (summary, draft or both) never settled."""

    tenant_id: str
    handoff_id: str
    conversation: conversation_pb2.Conversation
    summary_pending: bool
    draft_pending: bool
    # What the draft is generated from and checked against (the suggestions' texts).
    draft_prompt: str
    notes: list[str]


@dataclass(frozen=True)
class ReplyRecord:
    draft: str
    final_text: str
    edit_ratio: float
    draft_use: int


@dataclass(frozen=True)
class AgentMessage:
    """How an agent's reply is stored in the conversation's thread."""

    client_message_id: str
    author_name: str


@dataclass(frozen=True)
class StoredReply:
    handoff: escalation_pb2.Handoff
    reply: ReplyRecord
    message: escalation_pb2.ThreadMessage


@dataclass(frozen=True)
class Correction:
    original_label: str
    corrected_label: str


@dataclass(frozen=True)
class PastContact:
    handoff_id: str
    created_at: dt.datetime
    state: str
    summary: str


@dataclass(frozen=True)
class ResolvedCase:
    handoff_id: str
    intent: str
    question: str
    summary: str
    resolution: str
    resolved_at: dt.datetime


@dataclass(frozen=True)
class FeedbackRecord:
    prompt: str
    draft: str
    final_text: str
    draft_use: str
    edit_ratio: float
    created_at: dt.datetime


@dataclass(frozen=True)
class ContactRecord:
    """One contact for insights: a handoff (escalated) or a RecordOutcome (handled by the AI)."""

    at: dt.datetime
    intent: str
    confidence: float | None
    # "escalated" (a handoff), or the RecordOutcome decision: "answered", "clarified".
    kind: str


@dataclass(frozen=True)
class ReplyStat:
    at: dt.datetime
    intent: str
    draft_use: str


@dataclass(frozen=True)
class CsatStat:
    """A customer's satisfaction rating (1 to 5) of a resolved handoff, when it was given."""

    at: dt.datetime
    intent: str
    rating: int


@dataclass(frozen=True)
class GapQuestion:
    text: str
    at: dt.datetime


@dataclass(frozen=True)
class JudgementRecord:
    """One judged AI answer: a point of the reliability diagram."""

    answered_at: dt.datetime
    source: str
    confidence: float
    correct: bool


@dataclass
class InsightData:
    contacts: list[ContactRecord] = field(default_factory=list)
    replies: list[ReplyStat] = field(default_factory=list)
    ratings: list[CsatStat] = field(default_factory=list)
    judgements: list[JudgementRecord] = field(default_factory=list)


def _to_json(message: Message) -> dict[str, object]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _upsert_judgement(
    session: Session,
    tenant_id: str,
    key: str,
    source: str,
    intent: str,
    confidence: float,
    correct: bool,
    answered_at: dt.datetime | None,
    now: dt.datetime,
) -> bool:
    """Write the judgement under `key` in the session's transaction, replacing the one there;
    False when that one already said the same. answered_at None keeps the stored time (now
    for a new one). A racing first write of the key fails here with IntegrityError."""
    row = session.scalars(
        sa.select(AnswerJudgementRow)
        .where(AnswerJudgementRow.tenant_id == tenant_id, AnswerJudgementRow.idempotency_key == key)
        .with_for_update()
    ).one_or_none()
    if row is None:
        session.add(
            AnswerJudgementRow(
                judgement_id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                idempotency_key=key,
                source=source,
                intent=intent,
                confidence=confidence,
                correct=correct,
                answered_at=answered_at or now,
                judged_at=now,
            )
        )
        session.flush()
        return True
    values: dict[str, Any] = {"source": source, "intent": intent, "confidence": confidence, "correct": correct}
    if answered_at is not None:
        values["answered_at"] = answered_at
    if all(getattr(row, name) == value for name, value in values.items()):
        return False
    for name, value in values.items():
        setattr(row, name, value)
    row.judged_at = now
    session.flush()
    return True


def _attempt_confidence(attempt: escalation_pb2.AiAttempt) -> float | None:
    """The AI's confidence, or None when it made no attempt (a zero score without an
    answer, e.g. the customer asked for a human): topic means must not count those as 0."""
    if not attempt.HasField("confidence"):
        return None
    if attempt.confidence.score == 0.0 and not attempt.candidate_answer:
        return None
    return attempt.confidence.score


def _agent_key(client_message_id: str) -> str:
    """Agents' and customers' client ids live apart in a conversation's one unique index."""
    return f"agent:{client_message_id}"


def _nearest_draft_use(row: HandoffRow, classify: Callable[[str], ReplyRecord]) -> ReplyRecord:
    """The reply measured against the draft it is nearer to: the package's draft, or the
    template the LLM's draft replaced (an agent who opened the handoff before the LLM's draft
    came has the template in their editor)."""
    current = classify(str((row.context or {}).get("draft_reply", "")))
    if not row.template_draft:
        return current
    earlier = classify(row.template_draft)
    return earlier if earlier.edit_ratio < current.edit_ratio else current


def _conversation_channel(row: HandoffRow) -> str:
    return lifecycle.channel_name(
        conversation_pb2.Channel.Value(str((row.conversation or {}).get("channel", "CHANNEL_UNSPECIFIED")))
    )


class HandoffStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def migrate(self) -> None:
        """Bring the schema to the latest migration (a no-op when it is there)."""
        SCHEMA.migrate(self._engine)

    # --- handoffs -----------------------------------------------------------

    def find_by_key(self, tenant_id: str, idempotency_key: str) -> escalation_pb2.Handoff | None:
        """The handoff a CreateHandoff with this key made (not one it was added to)."""
        with Session(self._engine) as session:
            row = session.scalars(
                sa.select(HandoffRow).where(
                    HandoffRow.tenant_id == tenant_id, HandoffRow.idempotency_key == idempotency_key
                )
            ).one_or_none()
            return None if row is None else describe(session, [row])[0]

    def find_request(self, tenant_id: str, idempotency_key: str) -> tuple[escalation_pb2.Handoff, bool] | None:
        """What a CreateHandoff with this key did: (handoff, appended), or None when it never ran.
        appended is True when it was added to the conversation's open handoff."""
        made = self.find_by_key(tenant_id, idempotency_key)
        if made is not None:
            return made, False
        with Session(self._engine) as session:
            handoff_id = session.scalar(
                sa.select(HandoffEventRow.handoff_id).where(
                    HandoffEventRow.tenant_id == tenant_id, HandoffEventRow.idempotency_key == idempotency_key
                )
            )
            if handoff_id is None:
                return None
            return describe(session, [session.get_one(HandoffRow, handoff_id)])[0], True

    def create(
        self, request: escalation_pb2.CreateHandoffRequest, new: NewHandoff
    ) -> tuple[escalation_pb2.Handoff, bool]:
        """Store a new handoff, or return the one already stored under the idempotency key.

        Returns (handoff, created). The unique constraints decide races: the loser's insert
        fails and it reads back the winner's row, or (another key, the same conversation)
        raises ConversationHasOpenHandoff so that the caller appends to the winner.
        """
        tenant_id, key = request.customer.tenant_id, request.idempotency_key
        for _ in range(WRITE_ATTEMPTS):
            existing = self.find_by_key(tenant_id, key)
            if existing is not None:
                return existing, False
            row = self._new_row(request, new)
            try:
                with Session(self._engine, expire_on_commit=False) as session, session.begin():
                    session.add(row)
                    session.flush()
                    session.add(
                        event_row(row, escalation_pb2.HANDOFF_EVENT_KIND_CREATED, row.created_at, AI_ACTOR, WAITING)
                    )
            except IntegrityError:
                existing = self.find_by_key(tenant_id, key)
                if existing is not None:
                    return existing, False
                if self._has_open_handoff(tenant_id, row.conversation_id):
                    raise ConversationHasOpenHandoff(row.conversation_id) from None
                log.info("handoff_reference_taken", tenant_id=tenant_id)
                continue
            with Session(self._engine) as session:
                return describe(session, [session.get_one(HandoffRow, row.handoff_id)])[0], True
        raise RuntimeError("handoff insert kept conflicting")

    def _new_row(self, request: escalation_pb2.CreateHandoffRequest, new: NewHandoff) -> HandoffRow:
        now = utcnow()
        attempt = request.ai_attempt
        handoff_id = str(uuid.uuid4())
        # A conversation without an id is a conversation of its own.
        conversation_id = request.conversation.conversation_id or handoff_id
        conversation = conversation_pb2.Conversation()
        conversation.CopyFrom(request.conversation)
        conversation.conversation_id = conversation_id
        return HandoffRow(
            handoff_id=handoff_id,
            tenant_id=request.customer.tenant_id,
            customer_id=request.customer.customer_id,
            idempotency_key=request.idempotency_key,
            conversation_id=conversation_id,
            open_conversation_id=conversation_id,
            reference=lifecycle.new_reference(),
            conversation=_to_json(conversation),
            reason=escalation_pb2.HandoffReason.Name(request.reason),
            ai_attempt=_to_json(attempt),
            account=_to_json(request.account),
            context=_to_json(new.context),
            queue=new.queue,
            priority=request.priority,
            state=WAITING,
            assigned_agent_id="",
            created_at=now,
            updated_at=now,
            tier=triage_pb2.Tier.Name(request.tier),
            version=1,
            assigned_at=None,
            resolved_by="",
            resolved_at=None,
            resolution="",
            intent=new.intent,
            intent_confidence=new.intent_confidence,
            ai_confidence=_attempt_confidence(attempt),
            question=new.question,
            draft_prompt=new.draft_prompt,
            csat_rating=0,
            csat_comment="",
            template_draft="",
        )

    def _has_open_handoff(self, tenant_id: str, conversation_id: str) -> bool:
        with Session(self._engine) as session:
            found = session.scalar(
                sa.select(HandoffRow.handoff_id).where(
                    HandoffRow.tenant_id == tenant_id, HandoffRow.open_conversation_id == conversation_id
                )
            )
        return found is not None

    def waiting_by_queue(self) -> dict[tuple[str, str], int]:
        """Handoffs waiting for an agent, per (tenant, queue): the queue-depth metric."""
        with Session(self._engine) as session:
            rows = session.execute(
                sa.select(HandoffRow.tenant_id, HandoffRow.queue, sa.func.count())
                .where(HandoffRow.state == WAITING)
                .group_by(HandoffRow.tenant_id, HandoffRow.queue)
            ).all()
        return {(tenant, queue): int(count) for tenant, queue, count in rows}

    def get(self, tenant_id: str, handoff_id: str) -> escalation_pb2.Handoff | None:
        with Session(self._engine) as session:
            row = session.get(HandoffRow, handoff_id)
            # Another tenant's handoff is reported exactly like a missing one.
            if row is None or row.tenant_id != tenant_id:
                return None
            return describe(session, [row])[0]

    def list_page(
        self,
        tenant_id: str,
        queue: str,
        states: Sequence[int],
        page_size: int,
        after: PageCursor | None,
        tier: int = 0,
    ) -> tuple[list[escalation_pb2.Handoff], PageCursor | None]:
        """One page by priority (high first), then age (old first); the cursor of the next page or None."""
        query = sa.select(HandoffRow).where(
            HandoffRow.tenant_id == tenant_id,
            HandoffRow.state.in_([escalation_pb2.HandoffState.Name(state) for state in states]),
        )
        if queue:
            query = query.where(HandoffRow.queue == queue)
        if tier:
            query = query.where(HandoffRow.tier == triage_pb2.Tier.Name(tier))
        if after is not None:
            query = query.where(
                sa.or_(
                    HandoffRow.priority < after.priority,
                    sa.and_(HandoffRow.priority == after.priority, HandoffRow.created_at > after.created_at),
                    sa.and_(
                        HandoffRow.priority == after.priority,
                        HandoffRow.created_at == after.created_at,
                        HandoffRow.handoff_id > after.handoff_id,
                    ),
                )
            )
        query = query.order_by(
            HandoffRow.priority.desc(), HandoffRow.created_at.asc(), HandoffRow.handoff_id.asc()
        ).limit(page_size + 1)
        with Session(self._engine) as session:
            rows = list(session.scalars(query))
            page = rows[:page_size]
            cursor = None
            if len(rows) > page_size:
                last = page[-1]
                cursor = PageCursor(last.priority, last.created_at, last.handoff_id)
            return describe(session, page), cursor

    def pending_background(self, since: dt.datetime, limit: int) -> list[PendingPackage]:
        """Handoffs created since `since` whose LLM summary or draft never settled: the
        process writing them stopped first. Oldest first."""
        context = HandoffRow.context
        with Session(self._engine) as session:
            rows = session.execute(
                sa.select(
                    HandoffRow.tenant_id,
                    HandoffRow.handoff_id,
                    HandoffRow.conversation,
                    HandoffRow.draft_prompt,
                    HandoffRow.context,
                )
                .where(
                    HandoffRow.created_at >= since,
                    sa.or_(
                        context["summary_method"].as_string() == "pending",
                        context["draft_method"].as_string() == "pending",
                    ),
                )
                .order_by(HandoffRow.created_at)
                .limit(limit)
            ).all()
        return [
            PendingPackage(
                tenant_id=tenant_id,
                handoff_id=handoff_id,
                conversation=json_format.ParseDict(conversation, conversation_pb2.Conversation()),
                summary_pending=package.get("summary_method") == "pending",
                draft_pending=package.get("draft_method") == "pending",
                draft_prompt=draft_prompt,
                notes=[str(s.get("text", "")) for s in package.get("suggested_resolutions") or []],
            )
            for tenant_id, handoff_id, conversation, draft_prompt, package in rows
        ]

    def update_summary(
        self, tenant_id: str, handoff_id: str, summary: str, detail: str, method: str, model: str
    ) -> bool:
        """Settle a package's pending summary (it is written after the handoff): the LLM's
        (method "llm") or the extractive one it has (method "extractive"). Not an agent's
        change: the version stays, so a reply based on what an agent read is not refused
        for it. False when the handoff is gone."""
        with Session(self._engine) as session, session.begin():
            row = session.scalars(
                sa.select(HandoffRow)
                .where(HandoffRow.tenant_id == tenant_id, HandoffRow.handoff_id == handoff_id)
                .with_for_update()
            ).one_or_none()
            if row is None:
                return False
            settled: dict[str, Any] = {"summary_method": method}
            if method == "llm":
                lineage = {**(row.context.get("lineage") or {}), "model": model}
                settled |= {"summary": summary, "detail": detail, "lineage": lineage}
            # A new dict, so that the JSON column is seen as changed.
            row.context = {**row.context, **settled}
        return True

    def update_draft(self, tenant_id: str, handoff_id: str, draft: str, method: str, model: str) -> str | None:
        """Settle a package's pending draft: the LLM's (method "llm") replaces the template
        shown meanwhile, or the template stays (method "template"). Like the summary, not an
        agent's change: the version stays, so an agent's Send is not refused because a draft
        arrived. Once an agent has replied (or resolved), what they worked from stays: the
        LLM's draft is dropped and the template settles. Returns the method stored, None
        when the handoff is gone."""
        with Session(self._engine) as session, session.begin():
            row = session.scalars(
                sa.select(HandoffRow)
                .where(HandoffRow.tenant_id == tenant_id, HandoffRow.handoff_id == handoff_id)
                .with_for_update()
            ).one_or_none()
            if row is None:
                return None
            if method == "llm" and (row.first_replied_at is not None or row.state == RESOLVED):
                log.info("llm_draft_too_late", tenant_id=tenant_id, handoff_id=handoff_id)
                method = "template"
            lineage = dict(row.context.get("lineage") or {})
            lineage["prompt_template_version"] = summaries.prompt_versions(method)
            settled: dict[str, Any] = {"draft_method": method}
            if method == "llm":
                lineage["model"] = model
                settled["draft_reply"] = draft
                # An agent with the handoff open may still be working from it.
                row.template_draft = str(row.context.get("draft_reply", ""))
            # A new dict, so that the JSON column is seen as changed.
            row.context = {**row.context, **settled, "lineage": lineage}
        return method

    def draft_still_wanted(self, tenant_id: str, handoff_id: str) -> bool:
        """Whether an LLM draft could still be stored (no agent reply yet, not resolved):
        otherwise the LLM is not asked at all."""
        with Session(self._engine) as session:
            found = session.execute(
                sa.select(HandoffRow.first_replied_at, HandoffRow.state).where(
                    HandoffRow.tenant_id == tenant_id, HandoffRow.handoff_id == handoff_id
                )
            ).one_or_none()
        return found is not None and found.first_replied_at is None and found.state != RESOLVED

    # --- changes with optimistic versioning ----------------------------------

    def _change(
        self,
        tenant_id: str,
        handoff_id: str,
        expected_version: int,
        decide: Callable[[HandoffRow, dt.datetime], tuple[dict[str, Any], list[Any]]],
        after: Callable[[Session, dt.datetime, HandoffRow], None] | None = None,
        *,
        writes_thread: bool = False,
    ) -> escalation_pb2.Handoff:
        """Read, decide, then UPDATE ... WHERE version = <read> with the decided values and
        insert the decided rows, in one transaction. `decide` raises to refuse. `after` writes
        more once the version check passed, so a loser of a race never writes (nor blocks) there.
        A change that writes the thread takes the thread lock first (always before the row's)."""
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            if writes_thread:
                lifecycle.lock_thread_writes(session)
            row = session.get(HandoffRow, handoff_id)
            if row is None or row.tenant_id != tenant_id:
                raise HandoffNotFound(handoff_id)
            if expected_version and row.version != expected_version:
                raise StaleHandoff(row.version)
            read_version = row.version
            now = utcnow()
            values, extra_rows = decide(row, now)
            result = session.execute(
                sa.update(HandoffRow)
                .where(HandoffRow.handoff_id == handoff_id, HandoffRow.version == read_version)
                .values(version=read_version + 1, updated_at=now, **values)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                # Someone committed a change between our read and our write.
                raise StaleHandoff(read_version + 1)
            session.add_all(extra_rows)
            if after is not None:
                after(session, now, row)
            session.flush()
            session.expire(row)
            session.refresh(row)
            return describe(session, [row])[0]

    def assign(self, tenant_id: str, handoff_id: str, agent_id: str, expected_version: int) -> escalation_pb2.Handoff:
        def decide(row: HandoffRow, now: dt.datetime) -> tuple[dict[str, Any], list[Any]]:
            if row.state == RESOLVED:
                raise WrongState(row.state)
            # Another agent's handoff stays theirs, except a reopened one (its agent may be gone).
            held = row.state in (ASSIGNED, WAITING_ON_CUSTOMER)
            if held and row.assigned_agent_id != agent_id:
                raise WrongState(row.state)
            state = WAITING_ON_CUSTOMER if row.state == WAITING_ON_CUSTOMER else ASSIGNED
            events = []
            if row.state != state or row.assigned_agent_id != agent_id:
                events.append(event_row(row, escalation_pb2.HANDOFF_EVENT_KIND_ASSIGNED, now, agent_id, state))
            assigned_at = row.assigned_at if row.assigned_agent_id == agent_id and row.assigned_at else now
            return {"state": state, "assigned_agent_id": agent_id, "assigned_at": assigned_at}, events

        return self._change(tenant_id, handoff_id, expected_version, decide)

    def submit_reply(
        self,
        tenant_id: str,
        handoff_id: str,
        agent_id: str,
        expected_version: int,
        classify: Callable[[str], ReplyRecord],
        correction: Correction | None,
        message: AgentMessage | None = None,
    ) -> StoredReply:
        """Record the agent's reply next to the draft (and an intent correction) and store it
        in the conversation's thread for delivery, exactly once per client_message_id: a
        retried Send returns what the first one stored. The handoff then waits on the
        customer (assigned to the agent if nobody was on it). When the AI had a candidate
        answer, the agent's reply judges it (the handoff's judgement, replaced by a later reply).
        Without a message id the reply is a new message (a retry cannot be recognised)."""
        message = message or AgentMessage(str(uuid.uuid4()), lifecycle.DEFAULT_AGENT_NAME)
        for _ in range(WRITE_ATTEMPTS):
            first = self._stored_reply(tenant_id, handoff_id, message.client_message_id)
            if first is not None:
                return first
            try:
                return self._submit_reply_once(
                    tenant_id, handoff_id, agent_id, expected_version, classify, correction, message
                )
            except StaleHandoff:
                first = self._stored_reply(tenant_id, handoff_id, message.client_message_id)
                if first is not None:
                    return first  # a racing retry of this same Send won
                raise
            except IntegrityError:
                # A racing retry of this Send (read back above), or a thread sequence taken meanwhile.
                log.info("agent_reply_raced", tenant_id=tenant_id, handoff_id=handoff_id)
        raise RuntimeError("agent reply kept conflicting")

    def _stored_reply(self, tenant_id: str, handoff_id: str, client_message_id: str) -> StoredReply | None:
        with Session(self._engine) as session:
            row = session.get(HandoffRow, handoff_id)
            if row is None or row.tenant_id != tenant_id:
                return None
            message = lifecycle.find_message(session, tenant_id, row.conversation_id, _agent_key(client_message_id))
            if message is None:
                return None
            reply = session.scalars(
                sa.select(AgentReplyRow).where(AgentReplyRow.message_id == message.message_id)
            ).one()
            record = ReplyRecord(
                reply.draft, reply.final_text, reply.edit_ratio, escalation_pb2.DraftUse.Value(reply.draft_use)
            )
            return StoredReply(describe(session, [row])[0], record, lifecycle.message_proto(message))

    def _submit_reply_once(
        self,
        tenant_id: str,
        handoff_id: str,
        agent_id: str,
        expected_version: int,
        classify: Callable[[str], ReplyRecord],
        correction: Correction | None,
        message: AgentMessage,
    ) -> StoredReply:
        recorded: list[ReplyRecord] = []
        stored: list[ThreadMessageRow] = []
        verdicts: list[tuple[str, float, bool, dt.datetime]] = []

        def decide(row: HandoffRow, now: dt.datetime) -> tuple[dict[str, Any], list[Any]]:
            if row.state == RESOLVED:
                raise WrongState(row.state)
            recorded.append(_nearest_draft_use(row, classify))
            rows: list[Any] = []
            values: dict[str, Any] = {"state": WAITING_ON_CUSTOMER, "first_replied_at": row.first_replied_at or now}
            if not row.assigned_agent_id:
                values.update(assigned_agent_id=agent_id, assigned_at=now)
                rows.append(event_row(row, escalation_pb2.HANDOFF_EVENT_KIND_ASSIGNED, now, agent_id, ASSIGNED))
            if correction is not None:
                rows.append(
                    IntentCorrectionRow(
                        correction_id=str(uuid.uuid4()),
                        handoff_id=row.handoff_id,
                        tenant_id=tenant_id,
                        agent_id=agent_id,
                        text=row.question,
                        original_label=correction.original_label or row.intent,
                        corrected_label=correction.corrected_label,
                        created_at=now,
                    )
                )
                values["intent"] = correction.corrected_label
            candidate = str((row.ai_attempt or {}).get("candidate_answer", ""))
            if candidate.strip() and row.ai_confidence is not None:
                intent = values.get("intent", row.intent)
                verdict = agrees(candidate, recorded[-1].final_text)
                verdicts.append((intent, row.ai_confidence, verdict, row.created_at))
            return values, rows

        def store_and_judge(session: Session, now: dt.datetime, row: HandoffRow) -> None:
            reply = recorded[-1]
            sent = lifecycle.add_message(
                session,
                row,
                role=AGENT_ROLE,
                text=reply.final_text,
                channel=_conversation_channel(row),
                client_message_id=_agent_key(message.client_message_id),
                at=now,
                author_id=agent_id,
                author_name=message.author_name,
            )
            stored.append(sent)
            session.add_all(
                [
                    AgentReplyRow(
                        reply_id=str(uuid.uuid4()),
                        handoff_id=row.handoff_id,
                        tenant_id=tenant_id,
                        agent_id=agent_id,
                        draft=reply.draft,
                        final_text=reply.final_text,
                        edit_ratio=reply.edit_ratio,
                        draft_use=escalation_pb2.DraftUse.Name(reply.draft_use),
                        created_at=now,
                        message_id=sent.message_id,
                    ),
                    event_row(
                        row,
                        escalation_pb2.HANDOFF_EVENT_KIND_AGENT_REPLIED,
                        now,
                        agent_id,
                        WAITING_ON_CUSTOMER,
                        message_id=sent.message_id,
                    ),
                ]
            )
            if verdicts:
                intent, confidence, correct, answered_at = verdicts[-1]
                key = f"{AGENT_JUDGEMENT_KEY_PREFIX}{handoff_id}"
                _upsert_judgement(
                    session, tenant_id, key, AGENT_JUDGEMENT, intent, confidence, correct, answered_at, now
                )

        handoff = self._change(tenant_id, handoff_id, expected_version, decide, store_and_judge, writes_thread=True)
        return StoredReply(handoff, recorded[-1], lifecycle.message_proto(stored[-1]))

    def resolve(
        self, tenant_id: str, handoff_id: str, agent_id: str, resolution: str, expected_version: int
    ) -> escalation_pb2.Handoff:
        def decide(row: HandoffRow, now: dt.datetime) -> tuple[dict[str, Any], list[Any]]:
            if row.state == RESOLVED:
                raise WrongState(row.state)
            values: dict[str, Any] = {
                "state": RESOLVED,
                "resolved_by": agent_id,
                "resolved_at": now,
                "resolution": resolution,
                # The conversation is free for a new handoff (or this one's reopening).
                "open_conversation_id": None,
            }
            if not row.assigned_agent_id:
                values.update(assigned_agent_id=agent_id, assigned_at=now)
            return values, [event_row(row, escalation_pb2.HANDOFF_EVENT_KIND_RESOLVED, now, agent_id, RESOLVED)]

        return self._change(tenant_id, handoff_id, expected_version, decide)

    # --- what the context package reads ---------------------------------------

    def recent_contacts(
        self, tenant_id: str, customer_id: str, since: dt.datetime, limit: int = 5
    ) -> list[PastContact]:
        with Session(self._engine) as session:
            rows = session.execute(
                sa.select(HandoffRow.handoff_id, HandoffRow.created_at, HandoffRow.state, HandoffRow.context)
                .where(
                    HandoffRow.tenant_id == tenant_id,
                    HandoffRow.customer_id == customer_id,
                    HandoffRow.created_at >= since,
                )
                .order_by(HandoffRow.created_at.desc())
                .limit(limit)
            ).all()
        return [
            PastContact(handoff_id, created_at, state, str((context or {}).get("summary", "")))
            for handoff_id, created_at, state, context in rows
        ]

    def resolved_cases(self, tenant_id: str, limit: int) -> list[ResolvedCase]:
        """The tenant's most recently resolved handoffs (candidates for "similar resolved cases")."""
        with Session(self._engine) as session:
            rows = session.execute(
                sa.select(
                    HandoffRow.handoff_id,
                    HandoffRow.intent,
                    HandoffRow.question,
                    HandoffRow.context,
                    HandoffRow.resolution,
                    HandoffRow.resolved_at,
                )
                .where(HandoffRow.tenant_id == tenant_id, HandoffRow.state == RESOLVED, HandoffRow.resolution != "")
                .order_by(HandoffRow.resolved_at.desc())
                .limit(limit)
            ).all()
        return [
            ResolvedCase(handoff_id, intent, question, str((context or {}).get("summary", "")), resolution, resolved_at)
            for handoff_id, intent, question, context, resolution, resolved_at in rows
        ]

    # --- feedback loop ----------------------------------------------------------

    def feedback(self, tenant_id: str, since: dt.datetime | None, limit: int) -> list[FeedbackRecord]:
        query = (
            sa.select(
                HandoffRow.draft_prompt,
                AgentReplyRow.draft,
                AgentReplyRow.final_text,
                AgentReplyRow.draft_use,
                AgentReplyRow.edit_ratio,
                AgentReplyRow.created_at,
            )
            .join(HandoffRow, HandoffRow.handoff_id == AgentReplyRow.handoff_id)
            .where(AgentReplyRow.tenant_id == tenant_id)
            .order_by(AgentReplyRow.created_at.asc(), AgentReplyRow.reply_id.asc())
            .limit(limit)
        )
        if since is not None:
            query = query.where(AgentReplyRow.created_at >= since)
        with Session(self._engine) as session:
            return [FeedbackRecord(*row) for row in session.execute(query).all()]

    def corrections(self, tenant_id: str, since: dt.datetime | None) -> list[tuple[str, str]]:
        """(text, corrected label) of every intent correction, oldest first."""
        query = (
            sa.select(IntentCorrectionRow.text, IntentCorrectionRow.corrected_label)
            .where(IntentCorrectionRow.tenant_id == tenant_id, IntentCorrectionRow.text != "")
            .order_by(IntentCorrectionRow.created_at.asc(), IntentCorrectionRow.correction_id.asc())
        )
        if since is not None:
            query = query.where(IntentCorrectionRow.created_at >= since)
        with Session(self._engine) as session:
            return [(text, label) for text, label in session.execute(query).all()]

    def record_outcome(
        self,
        tenant_id: str,
        key: str,
        decision: str,
        intent: str,
        confidence: float,
        question: str,
        occurred_at: dt.datetime,
    ) -> bool:
        row = ContactOutcomeRow(
            outcome_id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            idempotency_key=key,
            decision=decision,
            intent=intent,
            confidence=confidence,
            question=question,
            occurred_at=occurred_at,
        )
        try:
            with Session(self._engine) as session, session.begin():
                session.add(row)
        except IntegrityError:
            return False  # the same key again: recorded once
        return True

    def record_judgement(
        self,
        tenant_id: str,
        key: str,
        source: str,
        intent: str,
        confidence: float,
        correct: bool,
        answered_at: dt.datetime | None,
    ) -> bool:
        """Store a verdict under `key`, replacing the one there; False when it said the same."""
        try:
            with Session(self._engine) as session, session.begin():
                return _upsert_judgement(
                    session, tenant_id, key, source, intent, confidence, correct, answered_at, utcnow()
                )
        except IntegrityError:
            # Another call inserted the key first: now there is a row to compare with and replace.
            log.info("judgement_insert_raced", tenant_id=tenant_id)
        with Session(self._engine) as session, session.begin():
            return _upsert_judgement(
                session, tenant_id, key, source, intent, confidence, correct, answered_at, utcnow()
            )

    # --- insights and knowledge gaps ----------------------------------------------

    def insight_data(
        self, tenant_id: str, start: dt.datetime, end: dt.datetime, judged_from: dt.datetime | None = None
    ) -> InsightData:
        """Contacts and replies in [start, end); judgements answered in [judged_from or start, end)."""
        data = InsightData()
        with Session(self._engine) as session:
            for created_at, intent, ai_confidence in session.execute(
                sa.select(HandoffRow.created_at, HandoffRow.intent, HandoffRow.ai_confidence).where(
                    HandoffRow.tenant_id == tenant_id, HandoffRow.created_at >= start, HandoffRow.created_at < end
                )
            ):
                data.contacts.append(ContactRecord(created_at, intent, ai_confidence, "escalated"))
            for occurred_at, intent, confidence, decision in session.execute(
                sa.select(
                    ContactOutcomeRow.occurred_at,
                    ContactOutcomeRow.intent,
                    ContactOutcomeRow.confidence,
                    ContactOutcomeRow.decision,
                ).where(
                    ContactOutcomeRow.tenant_id == tenant_id,
                    ContactOutcomeRow.occurred_at >= start,
                    ContactOutcomeRow.occurred_at < end,
                )
            ):
                kind = "answered" if decision == "OUTCOME_DECISION_ANSWERED" else "clarified"
                data.contacts.append(ContactRecord(occurred_at, intent, confidence, kind))
            for created_at, intent, draft_use in session.execute(
                sa.select(AgentReplyRow.created_at, HandoffRow.intent, AgentReplyRow.draft_use)
                .join(HandoffRow, HandoffRow.handoff_id == AgentReplyRow.handoff_id)
                .where(
                    AgentReplyRow.tenant_id == tenant_id,
                    AgentReplyRow.created_at >= start,
                    AgentReplyRow.created_at < end,
                )
            ):
                data.replies.append(ReplyStat(created_at, intent, draft_use))
            for rated_at, intent, rating in session.execute(
                sa.select(HandoffRow.rated_at, HandoffRow.intent, HandoffRow.csat_rating).where(
                    HandoffRow.tenant_id == tenant_id,
                    HandoffRow.csat_rating > 0,
                    HandoffRow.rated_at >= start,
                    HandoffRow.rated_at < end,
                )
            ):
                data.ratings.append(CsatStat(rated_at, intent, rating))
            for answered_at, source, confidence, correct in session.execute(
                sa.select(
                    AnswerJudgementRow.answered_at,
                    AnswerJudgementRow.source,
                    AnswerJudgementRow.confidence,
                    AnswerJudgementRow.correct,
                ).where(
                    AnswerJudgementRow.tenant_id == tenant_id,
                    AnswerJudgementRow.answered_at >= (judged_from or start),
                    AnswerJudgementRow.answered_at < end,
                )
            ):
                data.judgements.append(JudgementRecord(answered_at, source, confidence, bool(correct)))
        return data

    def gap_questions(self, tenant_id: str, since: dt.datetime, limit: int) -> list[GapQuestion]:
        """Questions the knowledge base could not answer, newest first: escalated because it had
        nothing on them (NO_KNOWLEDGE), or answered by the AI and judged wrong by the agent who
        took over. A low confidence alone is no gap (the customer may have asked for a person,
        or said "yes please" to an offer)."""
        no_knowledge = escalation_pb2.HandoffReason.Name(escalation_pb2.HANDOFF_REASON_NO_KNOWLEDGE)
        judged_wrong = (
            sa.select(AnswerJudgementRow.judgement_id)
            .where(
                AnswerJudgementRow.tenant_id == HandoffRow.tenant_id,
                AnswerJudgementRow.idempotency_key == sa.literal(AGENT_JUDGEMENT_KEY_PREFIX) + HandoffRow.handoff_id,
                AnswerJudgementRow.correct.is_(False),
            )
            .exists()
        )
        with Session(self._engine) as session:
            handoffs = session.execute(
                sa.select(HandoffRow.question, HandoffRow.created_at)
                .where(
                    HandoffRow.tenant_id == tenant_id,
                    HandoffRow.created_at >= since,
                    HandoffRow.question != "",
                    sa.or_(HandoffRow.reason == no_knowledge, judged_wrong),
                )
                .order_by(HandoffRow.created_at.desc())
                .limit(limit)
            ).all()
        return [GapQuestion(text, at) for text, at in handoffs]
