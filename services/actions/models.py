"""Tables of the actions service.

The schema is created and changed by the versioned migrations in
services/actions/migrations.py (applied at start-up); these classes describe
the current head for queries, and a test checks that the two agree.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.database import UtcDateTime

# SQLite numbers rows itself only for an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
SEQUENCE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class ActionRow(Base):
    """One proposed write and its whole life. State changes are compare-and-set
    updates (`WHERE state = ...`), so of concurrent callers exactly one moves it."""

    __tablename__ = "actions"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "conversation_id", "request_id", name="uq_actions_request"),
        sa.Index("ix_actions_conversation", "tenant_id", "conversation_id", "created_at"),
        sa.Index("ix_actions_customer", "tenant_id", "customer_id", "created_at"),
        sa.Index("ix_actions_state", "state", "lease_expires_at"),
    )

    action_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(128))
    conversation_id: Mapped[str] = mapped_column(sa.String(128))
    customer_id: Mapped[str] = mapped_column(sa.String(200))
    request_id: Mapped[str] = mapped_column(sa.String(128))
    tool: Mapped[str] = mapped_column(sa.String(64))
    arguments_json: Mapped[str] = mapped_column(sa.Text)
    summary: Mapped[str] = mapped_column(sa.Text)
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    state: Mapped[str] = mapped_column(sa.String(32))
    needs_approval: Mapped[bool] = mapped_column(sa.Boolean)
    # JSON list of the approval rules that matched, in words.
    approval_reasons: Mapped[str] = mapped_column(sa.Text)
    decided_by: Mapped[str] = mapped_column(sa.String(200), default="")
    decision_note: Mapped[str] = mapped_column(sa.Text, default="")
    decided_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    dry_run: Mapped[bool] = mapped_column(sa.Boolean)
    result_json: Mapped[str] = mapped_column(sa.Text, default="")
    error_reason: Mapped[str] = mapped_column(sa.String(64), default="")
    error_message: Mapped[str] = mapped_column(sa.Text, default="")
    may_have_executed: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    catalog_version: Mapped[str] = mapped_column(sa.String(128))
    # Sent as Idempotency-Key with every attempt: the company's system does it once.
    idempotency_key: Mapped[str] = mapped_column(sa.String(128), unique=True)
    # Also the fencing token of an execution: only the attempt that claimed it may record its outcome.
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    replaces_action_id: Mapped[str] = mapped_column(sa.String(36), default="")
    trace_id: Mapped[str] = mapped_column(sa.String(32), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    # While EXECUTING: past this time the executor is presumed dead and the reconciler re-sends.
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # While RETRYABLE after an answer that may have executed: when the reconciler tries again.
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The concierge release that proposed it (migration 2); "" for the copilot path and older actions.
    release_id: Mapped[str] = mapped_column(sa.String(32), default="")


class AuditEventRow(Base):
    """The audit trail: append-only, one row per step, personal data masked."""

    __tablename__ = "action_audit_events"
    __table_args__ = (
        sa.Index("ix_action_audit_conversation", "tenant_id", "conversation_id", "sequence"),
        sa.Index("ix_action_audit_customer", "tenant_id", "customer_id", "sequence"),
        sa.Index("ix_action_audit_action", "tenant_id", "action_id", "sequence"),
    )

    sequence: Mapped[int] = mapped_column(SEQUENCE, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(128))
    action_id: Mapped[str] = mapped_column(sa.String(36), default="")
    conversation_id: Mapped[str] = mapped_column(sa.String(128), default="")
    customer_id: Mapped[str] = mapped_column(sa.String(200), default="")
    kind: Mapped[str] = mapped_column(sa.String(32))
    actor_kind: Mapped[str] = mapped_column(sa.String(16))
    actor_id: Mapped[str] = mapped_column(sa.String(200), default="")
    tool: Mapped[str] = mapped_column(sa.String(64), default="")
    arguments_json: Mapped[str] = mapped_column(sa.Text, default="")
    result_json: Mapped[str] = mapped_column(sa.Text, default="")
    detail: Mapped[str] = mapped_column(sa.Text, default="")
    trace_id: Mapped[str] = mapped_column(sa.String(32), default="")
    catalog_version: Mapped[str] = mapped_column(sa.String(128), default="")
    dry_run: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class VerificationRow(Base):
    """The customer an identity tool verified for a conversation: one per conversation."""

    __tablename__ = "action_verifications"

    tenant_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    customer_id: Mapped[str] = mapped_column(sa.String(200))
    tool: Mapped[str] = mapped_column(sa.String(64))
    verified_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
