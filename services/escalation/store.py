"""Handoffs in the relational store: created once per idempotency key, read and paged
for the queue, changed by agents (assign, reply, resolve), and looked up by the context
package (the customer's recent contacts, similar resolved cases). Sync SQLAlchemy: the
servicer calls these methods via asyncio.to_thread; every write is one transaction.
The package's late parts are settled in enrichment_store.py, the feedback loop's records
in feedback_store.py, the thread in thread.py.

Changes to a handoff are optimistic: each one names the version it read and
the UPDATE only applies `WHERE version = <read>`, so of two agents acting on
the same handoff at once exactly one wins and the other gets StaleHandoff.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
import structlog
from google.protobuf import json_format
from google.protobuf.message import Message
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import conversation_pb2, verdict_pb2
from servicekit.database import utcnow
from servicekit.judging import agrees
from services.escalation import judgements, lifecycle, origins
from services.escalation.judgements import AGENT_JUDGEMENT, AGENT_JUDGEMENT_KEY_PREFIX
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
    HandoffEventRow,
    HandoffRow,
    IntentCorrectionRow,
    ThreadMessageRow,
)

log = structlog.get_logger("services.escalation.store")

# Attempts at a write that lost a race it can retry (a reference or thread sequence taken meanwhile).
WRITE_ATTEMPTS = 5


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
    # Tier the caller's triage routed the contact to (aftercare.type.v1.Tier).
    tier: int = verdict_pb2.TIER_UNSPECIFIED
    intent: str = ""
    intent_confidence: float = 0.0
    question: str = ""
    draft_prompt: str = ""


@dataclass(frozen=True)
class ReplyRecord:
    draft: str
    final_text: str
    edit_ratio: float
    draft_use: escalation_pb2.DraftUse


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


def _to_json(message: Message) -> dict[str, object]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


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


def _send_agent_message(
    session: Session,
    row: HandoffRow,
    now: dt.datetime,
    text: str,
    agent_id: str,
    message: AgentMessage,
    state: str,
) -> ThreadMessageRow:
    """An agent's message in the conversation's thread (ListDeliveries and watchers take it
    from there) and its AGENT_REPLIED event; the caller holds the thread lock."""
    sent = lifecycle.add_message(
        session,
        row,
        role=AGENT_ROLE,
        text=text,
        channel=_conversation_channel(row),
        client_message_id=_agent_key(message.client_message_id),
        at=now,
        author_id=agent_id,
        author_name=message.author_name,
    )
    replied = escalation_pb2.HANDOFF_EVENT_KIND_AGENT_REPLIED
    session.add(event_row(row, replied, now, agent_id, state, message_id=sent.message_id))
    return sent


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
            context=_to_json(origins.as_stored(new.context)),
            queue=new.queue,
            priority=request.priority,
            state=WAITING,
            assigned_agent_id="",
            created_at=now,
            updated_at=now,
            # Stored by name: the same names in aftercare.triage.v1.Tier, which wrote the older rows.
            tier=verdict_pb2.Tier.Name(new.tier),
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
            release_id=request.release_id,
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
            query = query.where(HandoffRow.tier == verdict_pb2.Tier.Name(tier))
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
            changed = lifecycle.changed_rows(
                session,
                sa.update(HandoffRow)
                .where(HandoffRow.handoff_id == handoff_id, HandoffRow.version == read_version)
                .values(version=read_version + 1, updated_at=now, **values)
                .execution_options(synchronize_session=False),
            )
            if changed != 1:
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
            # protoc's stubs type Enum.Value as a plain int, not as the enum's own int subclass.
            draft_use = cast(escalation_pb2.DraftUse, escalation_pb2.DraftUse.Value(reply.draft_use))
            record = ReplyRecord(reply.draft, reply.final_text, reply.edit_ratio, draft_use)
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
            sent = _send_agent_message(session, row, now, reply.final_text, agent_id, message, WAITING_ON_CUSTOMER)
            stored.append(sent)
            session.add(
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
                )
            )
            if verdicts:
                intent, confidence, correct, answered_at = verdicts[-1]
                key = f"{AGENT_JUDGEMENT_KEY_PREFIX}{handoff_id}"
                judgements.upsert_judgement(
                    session, tenant_id, key, AGENT_JUDGEMENT, intent, confidence, correct, answered_at, now
                )

        handoff = self._change(tenant_id, handoff_id, expected_version, decide, store_and_judge, writes_thread=True)
        return StoredReply(handoff, recorded[-1], lifecycle.message_proto(stored[-1]))

    def post_agent_message(
        self, tenant_id: str, handoff_id: str, agent_id: str, text: str, message: AgentMessage
    ) -> tuple[escalation_pb2.Handoff, escalation_pb2.ThreadMessage]:
        """An agent's message that answers no draft (an approval's outcome, written by
        escalation in the agent's name): stored in the thread and delivered as a reply is,
        exactly once per client_message_id (a retry returns the first), without a feedback
        record or a judgement of the AI. An open handoff then waits on the customer (assigned
        to the agent if nobody was on it); a resolved one stays resolved: the customer is
        still told."""
        for _ in range(WRITE_ATTEMPTS):
            first = self._stored_message(tenant_id, handoff_id, message.client_message_id)
            if first is not None:
                return first
            try:
                return self._post_agent_message_once(tenant_id, handoff_id, agent_id, text, message)
            except (StaleHandoff, IntegrityError):
                # A racing retry of this message (read back above), or another change of the handoff meanwhile.
                log.info("agent_message_raced", tenant_id=tenant_id, handoff_id=handoff_id)
        raise RuntimeError("agent message kept conflicting")

    def _stored_message(
        self, tenant_id: str, handoff_id: str, client_message_id: str
    ) -> tuple[escalation_pb2.Handoff, escalation_pb2.ThreadMessage] | None:
        with Session(self._engine) as session:
            row = session.get(HandoffRow, handoff_id)
            if row is None or row.tenant_id != tenant_id:
                return None
            message = lifecycle.find_message(session, tenant_id, row.conversation_id, _agent_key(client_message_id))
            if message is None:
                return None
            return describe(session, [row])[0], lifecycle.message_proto(message)

    def _post_agent_message_once(
        self, tenant_id: str, handoff_id: str, agent_id: str, text: str, message: AgentMessage
    ) -> tuple[escalation_pb2.Handoff, escalation_pb2.ThreadMessage]:
        stored: list[ThreadMessageRow] = []

        def decide(row: HandoffRow, now: dt.datetime) -> tuple[dict[str, Any], list[Any]]:
            if row.state == RESOLVED:
                return {}, []
            values: dict[str, Any] = {"state": WAITING_ON_CUSTOMER, "first_replied_at": row.first_replied_at or now}
            rows: list[Any] = []
            if not row.assigned_agent_id:
                values.update(assigned_agent_id=agent_id, assigned_at=now)
                rows.append(event_row(row, escalation_pb2.HANDOFF_EVENT_KIND_ASSIGNED, now, agent_id, ASSIGNED))
            return values, rows

        def send(session: Session, now: dt.datetime, row: HandoffRow) -> None:
            state = RESOLVED if row.state == RESOLVED else WAITING_ON_CUSTOMER
            stored.append(_send_agent_message(session, row, now, text, agent_id, message, state))

        handoff = self._change(tenant_id, handoff_id, 0, decide, send, writes_thread=True)
        return handoff, lifecycle.message_proto(stored[-1])

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
            # Always set: resolving sets it, and reopening clears it with the state.
            if resolved_at is not None
        ]
