"""Tables of the escalation service, as the ORM reads and writes them.

The database schema itself is made by the numbered migrations in
migrations.py (applied at start-up); a test checks that migrating an empty
database gives exactly these tables and columns.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

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
    )

    handoff_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(200))
    customer_id: Mapped[str] = mapped_column(sa.String(200))
    idempotency_key: Mapped[str] = mapped_column(sa.String(200))
    conversation_id: Mapped[str] = mapped_column(sa.String(200), default="")
    # Protobuf messages as their canonical JSON mapping: readable in SQL, portable across databases.
    conversation: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    reason: Mapped[str] = mapped_column(sa.String(64))
    ai_attempt: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    account: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    context: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    queue: Mapped[str] = mapped_column(sa.String(100))
    priority: Mapped[int] = mapped_column(sa.Integer)
    state: Mapped[str] = mapped_column(sa.String(32))
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
