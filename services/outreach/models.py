"""Tables of the outreach service.

The schema is created with metadata.create_all at start-up for now; a later
issue replaces that with migrations.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.database import UtcDateTime


class Base(DeclarativeBase):
    pass


class UsageEventRow(Base):
    """Every accepted event as received; the key makes a repeated event_id a no-op."""

    __tablename__ = "usage_events"
    __table_args__ = (sa.Index("ix_usage_events_account_time", "tenant_id", "account_id", "occurred_at"),)

    tenant_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    account_id: Mapped[str] = mapped_column(sa.String(200))
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    feature: Mapped[str] = mapped_column(sa.String(200), default="")
    endpoint: Mapped[str] = mapped_column(sa.String(500), default="")
    status_code: Mapped[int] = mapped_column(sa.Integer, default=0)
    error_code: Mapped[str] = mapped_column(sa.String(200), default="")
    count: Mapped[int] = mapped_column(sa.Integer)
    client_version: Mapped[str] = mapped_column(sa.String(200), default="")
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class UsageDailyRow(Base):
    """Usage per account, UTC day, feature and endpoint: what the risk detectors read.

    Updated in the same transaction as the raw insert, so it always equals the
    sum of the stored events.
    """

    __tablename__ = "usage_daily"

    tenant_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    account_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    day: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    # Empty string, not NULL, when an event names no feature/endpoint: NULLs never collide in a key.
    feature: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    endpoint: Mapped[str] = mapped_column(sa.String(500), primary_key=True)
    event_count: Mapped[int] = mapped_column(sa.BigInteger)
    error_count: Mapped[int] = mapped_column(sa.BigInteger)


class OutreachDraftRow(Base):
    """Proposed messages awaiting or past human review (written by DraftOutreach, a later issue)."""

    __tablename__ = "outreach_drafts"
    __table_args__ = (sa.Index("ix_outreach_drafts_tenant_state", "tenant_id", "state", "created_at"),)

    draft_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(200))
    account_id: Mapped[str] = mapped_column(sa.String(200))
    finding_id: Mapped[str] = mapped_column(sa.String(36))
    subject: Mapped[str] = mapped_column(sa.String(500))
    body: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
