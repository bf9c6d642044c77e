"""Tables of the escalation service, as the ORM reads and writes them.

The database schema itself is made by the numbered migrations in
migrations.py (applied at start-up); a test checks that migrating an empty
database gives exactly these tables and columns.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.database import UtcDateTime


class Base(DeclarativeBase):
    pass


class HandoffRow(Base):
    __tablename__ = "handoffs"
    __table_args__ = (
        # Idempotency is enforced by the database, so two racing creates cannot both insert.
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_handoffs_tenant_idempotency_key"),
        # Serves ListHandoffs: one tenant's queue by priority, then age.
        sa.Index("ix_handoffs_queue_order", "tenant_id", "state", "priority", "created_at"),
        # Insights and knowledge gaps scan one tenant's handoffs by time.
        sa.Index("ix_handoffs_tenant_created", "tenant_id", "created_at"),
        # Recent contacts of one customer (the context package's customer summary).
        sa.Index("ix_handoffs_customer", "tenant_id", "customer_id", "created_at"),
        # One open handoff per conversation: open_conversation_id is the conversation id while
        # the handoff is open and NULL once resolved (NULLs never collide), so of two racing
        # creates for one conversation the database lets exactly one insert.
        sa.Index("uq_handoffs_open_conversation", "tenant_id", "open_conversation_id", unique=True),
        # A conversation's handoffs, newest first (appends, reopen, watch).
        sa.Index("ix_handoffs_conversation", "tenant_id", "conversation_id", "created_at"),
        sa.Index("uq_handoffs_reference", "reference", unique=True),
    )

    handoff_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(200))
    customer_id: Mapped[str] = mapped_column(sa.String(200))
    idempotency_key: Mapped[str] = mapped_column(sa.String(200))
    conversation_id: Mapped[str] = mapped_column(sa.String(200), default="")
    # Protobuf messages as their canonical JSON mapping: readable in SQL, portable across databases.
    # Values typed as object, not Any: a reader checks what it takes out (and with Any in a
    # column's type, SQLAlchemy's typed select of it loses every column's type).
    conversation: Mapped[dict[str, object]] = mapped_column(sa.JSON)
    reason: Mapped[str] = mapped_column(sa.String(64))
    ai_attempt: Mapped[dict[str, object]] = mapped_column(sa.JSON)
    account: Mapped[dict[str, object]] = mapped_column(sa.JSON)
    context: Mapped[dict[str, object]] = mapped_column(sa.JSON)
    queue: Mapped[str] = mapped_column(sa.String(100))
    priority: Mapped[int] = mapped_column(sa.Integer)
    state: Mapped[str] = mapped_column(sa.String(48))
    assigned_agent_id: Mapped[str] = mapped_column(sa.String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    # --- migration 2: tiers, states with who and when, optimistic versioning
    tier: Mapped[str] = mapped_column(sa.String(32), default="TIER_UNSPECIFIED")
    # Incremented by every change; an update names the version it read (optimistic locking).
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    assigned_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    resolved_by: Mapped[str] = mapped_column(sa.String(200), default="")
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    resolution: Mapped[str] = mapped_column(sa.Text, default="")
    # --- migration 3: what insights, gaps and similar cases read without parsing JSON
    intent: Mapped[str] = mapped_column(sa.String(200), default="")
    intent_confidence: Mapped[float] = mapped_column(sa.Float, default=0.0)
    # Confidence of the AI's attempt; NULL when it made none (customer asked for a human).
    ai_confidence: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    # The newest customer message: the question the AI could not answer.
    question: Mapped[str] = mapped_column(sa.Text, default="")
    # The prompt a draft is (or would be) generated from: the "prompt" of ExportFeedback.
    draft_prompt: Mapped[str] = mapped_column(sa.Text, default="")
    # --- migration 6: the handoff as a conversation
    # Human-readable reference the customer is given, e.g. "HO-7KQ2M9".
    reference: Mapped[str] = mapped_column(sa.String(16), default="")
    open_conversation_id: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    first_replied_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Customer's satisfaction rating 1-5; 0 when not rated.
    csat_rating: Mapped[int] = mapped_column(sa.Integer, default=0)
    csat_comment: Mapped[str] = mapped_column(sa.Text, default="")
    rated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # --- migration 7: the template shown until the LLM's draft replaced it ("" otherwise): an
    # agent's reply is measured against whichever of the two it is nearer (they may have
    # started from the template).
    template_draft: Mapped[str] = mapped_column(sa.Text, default="")
    # --- migration 8: the concierge release that handed over (lineage); "" when none was named.
    release_id: Mapped[str] = mapped_column(sa.String(32), default="")


class AgentReplyRow(Base):
    """What an agent sent, next to the AI draft: the feedback loop's raw material."""

    __tablename__ = "agent_replies"
    __table_args__ = (sa.Index("ix_agent_replies_tenant_created", "tenant_id", "created_at"),)

    reply_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    handoff_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("handoffs.handoff_id"))
    tenant_id: Mapped[str] = mapped_column(sa.String(200))
    agent_id: Mapped[str] = mapped_column(sa.String(200))
    draft: Mapped[str] = mapped_column(sa.Text)
    final_text: Mapped[str] = mapped_column(sa.Text)
    edit_ratio: Mapped[float] = mapped_column(sa.Float)
    draft_use: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    # The thread message this reply was stored as (migration 6); NULL for older replies.
    message_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)


class IntentCorrectionRow(Base):
    """An agent's fix of triage's intent: a labelled example for triage's retraining."""

    __tablename__ = "intent_corrections"
    __table_args__ = (sa.Index("ix_intent_corrections_tenant_created", "tenant_id", "created_at"),)

    correction_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    handoff_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("handoffs.handoff_id"))
    tenant_id: Mapped[str] = mapped_column(sa.String(200))
    agent_id: Mapped[str] = mapped_column(sa.String(200))
    text: Mapped[str] = mapped_column(sa.Text)
    original_label: Mapped[str] = mapped_column(sa.String(200))
    corrected_label: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class ContactOutcomeRow(Base):
    """A contact the AI handled without a human (RecordOutcome): the other half of automation rates."""

    __tablename__ = "contact_outcomes"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_contact_outcomes_tenant_key"),
        sa.Index("ix_contact_outcomes_tenant_occurred", "tenant_id", "occurred_at"),
    )

    outcome_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(200))
    idempotency_key: Mapped[str] = mapped_column(sa.String(200))
    decision: Mapped[str] = mapped_column(sa.String(32))
    intent: Mapped[str] = mapped_column(sa.String(200))
    confidence: Mapped[float] = mapped_column(sa.Float)
    question: Mapped[str] = mapped_column(sa.Text)
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class AnswerJudgementRow(Base):
    """Whether one AI answer was right, as an agent (SubmitAgentReply) or the customer
    (RecordJudgement) judged it: the reliability diagram's points."""

    __tablename__ = "answer_judgements"
    __table_args__ = (
        # A repeated key replaces the verdict; the database decides racing first writes.
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_answer_judgements_tenant_key"),
        sa.Index("ix_answer_judgements_tenant_answered", "tenant_id", "answered_at"),
        # ListJudgements' order, from a time.
        sa.Index("ix_answer_judgements_tenant_judged", "tenant_id", "judged_at", "judgement_id"),
    )

    judgement_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(200))
    idempotency_key: Mapped[str] = mapped_column(sa.String(200))
    source: Mapped[str] = mapped_column(sa.String(32))
    intent: Mapped[str] = mapped_column(sa.String(200))
    confidence: Mapped[float] = mapped_column(sa.Float)
    correct: Mapped[bool] = mapped_column(sa.Boolean)
    answered_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    judged_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class ThreadMessageRow(Base):
    """One message of a conversation's human part: a customer's while a human had it, or an
    agent's reply. `id` is global and only grows in commit order (writers serialize on it):
    the deliveries feed's cursor."""

    __tablename__ = "thread_messages"
    __table_args__ = (
        # Gapless per conversation; the database refuses a second writer of the same number.
        sa.UniqueConstraint("tenant_id", "conversation_id", "sequence", name="uq_thread_messages_sequence"),
        # A retried append or Send stores nothing new.
        sa.UniqueConstraint(
            "tenant_id", "conversation_id", "client_message_id", name="uq_thread_messages_client_message"
        ),
        sa.UniqueConstraint("message_id", name="uq_thread_messages_message_id"),
        # The deliveries feed reads agents' messages by id, per channel.
        sa.Index("ix_thread_messages_role_channel", "role", "channel", "id"),
        # Ids never reused, even after the newest row were deleted: the cursor only grows.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(sa.String(36))
    tenant_id: Mapped[str] = mapped_column(sa.String(200))
    conversation_id: Mapped[str] = mapped_column(sa.String(200))
    handoff_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("handoffs.handoff_id"))
    sequence: Mapped[int] = mapped_column(sa.Integer)
    role: Mapped[str] = mapped_column(sa.String(32))
    author_id: Mapped[str] = mapped_column(sa.String(200))
    author_name: Mapped[str] = mapped_column(sa.String(200))
    text: Mapped[str] = mapped_column(sa.Text)
    channel: Mapped[str] = mapped_column(sa.String(32))
    sent_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    client_message_id: Mapped[str] = mapped_column(sa.String(200))


class HandoffEventRow(Base):
    """One timestamped step of a handoff's life (Handoff.history)."""

    __tablename__ = "handoff_events"
    __table_args__ = (
        sa.Index("ix_handoff_events_handoff", "handoff_id", "id"),
        # A CreateHandoff that was added to an open handoff is remembered by its key here
        # (NULL for every other event; NULLs never collide).
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_handoff_events_tenant_key"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    handoff_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("handoffs.handoff_id"))
    tenant_id: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(48))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(sa.String(200))
    state: Mapped[str] = mapped_column(sa.String(48))
    # The thread message that caused it, if any (a customer's or an agent's).
    message_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)


class HandoffSettingsRow(Base):
    """A tenant's handoff settings; a tenant without a row has the defaults."""

    __tablename__ = "handoff_settings"

    tenant_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    reopen_window_s: Mapped[int] = mapped_column(sa.Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class PendingOutcomeRow(Base):
    """An approved action still running when its decision returned (the company's system was
    slow): its outcome is told to the customer once it settles (late_outcomes.py), then the
    row goes."""

    __tablename__ = "pending_outcomes"
    __table_args__ = (
        # The poll's scan: due rows of every tenant, soonest first.
        sa.Index("ix_pending_outcomes_next_check", "next_check_at"),
    )

    # One row per action: a retried decision stores nothing new.
    tenant_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    action_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    # The handoff whose thread tells the customer, in the deciding agent's name.
    handoff_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("handoffs.handoff_id"))
    agent_id: Mapped[str] = mapped_column(sa.String(200))
    agent_name: Mapped[str] = mapped_column(sa.String(200))
    note: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    # Checks of the action so far (each without a final state backs the next one off).
    attempts: Mapped[int] = mapped_column(sa.Integer)
    # When the action is next read; a replica that claims the row moves it forward first.
    next_check_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
