"""Tables of the escalation service.

The schema is created with metadata.create_all at start-up for now; a later
issue replaces that with migrations.
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
