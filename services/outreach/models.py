"""Tables of the outreach service.

The schema itself is created and changed by the versioned migrations in
services/outreach/migrations.py (applied at start-up); these classes describe the
current head for queries, and a test checks that the two agree.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, ClassVar, TypedDict

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.database import UtcDateTime


class EvidenceJson(TypedDict):
    """One piece of a finding's evidence as its JSON column keeps it (findings.EvidenceItem)."""

    statement: str
    metric: str
    before: float
    after: float


class PassageJson(TypedDict):
    """One knowledge-base passage as the JSON columns keep it (knowledge.Passage)."""

    doc_id: str
    chunk_id: str
    title: str
    url: str
    text: str
    score: float
    version: str


class Base(DeclarativeBase):
    if TYPE_CHECKING:
        # DeclarativeBase types it as any FromClause; every class here maps a plain Table,
        # and the store's Core statements use it as one (insert, upsert, columns).
        __table__: ClassVar[sa.Table]


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


class UsageDailyErrorRow(Base):
    """Errors per account, day, endpoint, status and error code: which errors appeared."""

    __tablename__ = "usage_daily_errors"

    tenant_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    account_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    day: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    endpoint: Mapped[str] = mapped_column(sa.String(500), primary_key=True)
    status_code: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    error_code: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    error_count: Mapped[int] = mapped_column(sa.BigInteger)


class UsageDailyVersionRow(Base):
    """Usage per account, day, endpoint and client version: which version correlates with errors."""

    __tablename__ = "usage_daily_versions"

    tenant_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    account_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    day: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    endpoint: Mapped[str] = mapped_column(sa.String(500), primary_key=True)
    client_version: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    event_count: Mapped[int] = mapped_column(sa.BigInteger)
    error_count: Mapped[int] = mapped_column(sa.BigInteger)


class AccountRow(Base):
    """A tenant's customer account: who messages go to, opt-out, churn."""

    __tablename__ = "accounts"

    tenant_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    account_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    contact_name: Mapped[str] = mapped_column(sa.String(200), default="")
    contact_email: Mapped[str] = mapped_column(sa.String(320), default="")
    csm_name: Mapped[str] = mapped_column(sa.String(200), default="")
    csm_email: Mapped[str] = mapped_column(sa.String(320), default="")
    timezone: Mapped[str] = mapped_column(sa.String(64), default="")
    opted_out: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    churned_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class RiskFindingRow(Base):
    """One detected risk with its evidence and analysed cause (JSON columns keep the lists)."""

    __tablename__ = "risk_findings"
    __table_args__ = (
        sa.Index("ix_risk_findings_subject", "tenant_id", "kind", "subject_key", "window_end"),
        sa.Index("ix_risk_findings_tenant_time", "tenant_id", "detected_at"),
    )

    finding_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(40))
    # What the finding is about (account, or endpoint + error code for a cluster): a re-run
    # within the same episode updates the finding instead of adding another.
    subject_key: Mapped[str] = mapped_column(sa.String(800))
    account_ids: Mapped[list[str]] = mapped_column(sa.JSON)
    feature: Mapped[str] = mapped_column(sa.String(200), default="")
    endpoint: Mapped[str] = mapped_column(sa.String(500), default="")
    error_code: Mapped[str] = mapped_column(sa.String(200), default="")
    release: Mapped[str] = mapped_column(sa.String(500), default="")
    cause: Mapped[str] = mapped_column(sa.Text, default="")
    severity: Mapped[float] = mapped_column(sa.Float, default=0.0)
    evidence: Mapped[list[EvidenceJson]] = mapped_column(sa.JSON)
    sources: Mapped[list[PassageJson]] = mapped_column(sa.JSON)
    suggested_fix: Mapped[str] = mapped_column(sa.Text, default="")
    knowledge_unavailable: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    window_end: Mapped[dt.date] = mapped_column(sa.Date)
    detected_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class OutreachDraftRow(Base):
    """Proposed messages awaiting or past human review, with their lineage."""

    __tablename__ = "outreach_drafts"
    __table_args__ = (
        sa.Index("ix_outreach_drafts_tenant_state", "tenant_id", "state", "created_at"),
        sa.Index("ux_outreach_drafts_finding_account", "finding_id", "account_id", unique=True),
    )

    draft_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(200))
    account_id: Mapped[str] = mapped_column(sa.String(200))
    finding_id: Mapped[str] = mapped_column(sa.String(36))
    subject: Mapped[str] = mapped_column(sa.String(500))
    body: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    original_body: Mapped[str] = mapped_column(sa.Text, default="")
    generator: Mapped[str] = mapped_column(sa.String(16), default="")
    model: Mapped[str] = mapped_column(sa.String(200), default="")
    prompt_version: Mapped[str] = mapped_column(sa.String(100), default="")
    sources: Mapped[list[PassageJson]] = mapped_column(sa.JSON, default=list)
    trace_id: Mapped[str] = mapped_column(sa.String(32), default="")
    reviewer_id: Mapped[str] = mapped_column(sa.String(200), default="")
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Accounts a cross-customer incident draft goes to (account_id is then empty).
    recipients: Mapped[list[str]] = mapped_column(sa.JSON, default=list)


class DraftFeedbackRow(Base):
    """A reviewer's decision on a draft: the training signal (draft vs final text, edit size)."""

    __tablename__ = "outreach_feedback"
    __table_args__ = (sa.Index("ix_outreach_feedback_tenant_time", "tenant_id", "created_at"),)

    feedback_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    draft_id: Mapped[str] = mapped_column(sa.String(36))
    tenant_id: Mapped[str] = mapped_column(sa.String(200))
    action: Mapped[str] = mapped_column(sa.String(32))
    reviewer_id: Mapped[str] = mapped_column(sa.String(200))
    draft_body: Mapped[str] = mapped_column(sa.Text)
    final_body: Mapped[str] = mapped_column(sa.Text)
    # Character-level edit size (1 - similarity ratio) in [0, 1]; 0 for an unchanged approval.
    edit_ratio: Mapped[float] = mapped_column(sa.Float)
    generator: Mapped[str] = mapped_column(sa.String(16), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class OutboxRow(Base):
    """Messages waiting to be sent; the (draft, account) key makes it one message per draft and
    recipient, however often approval or the sender is retried. An agent's reply (kind "reply")
    is keyed by (escalation message id, customer id): one email per reply, however often the
    delivery feed is replayed."""

    __tablename__ = "outreach_outbox"
    __table_args__ = (
        sa.Index("ix_outreach_outbox_due", "status", "not_before"),
        sa.Index("ix_outreach_outbox_account", "tenant_id", "account_id", "created_at"),
    )

    draft_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    account_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(200))
    to_address: Mapped[str] = mapped_column(sa.String(320))
    subject: Mapped[str] = mapped_column(sa.String(500))
    body: Mapped[str] = mapped_column(sa.Text)
    # pending -> sending (claimed by one sender) -> sent | cancelled (opted out meanwhile)
    # | failed (gave up); an agent's reply with nowhere to go is "undeliverable" from the start.
    status: Mapped[str] = mapped_column(sa.String(16))
    not_before: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_error: Mapped[str] = mapped_column(sa.String(500), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    # "outreach" (an approved draft) or "reply" (an agent's reply to an email conversation).
    kind: Mapped[str] = mapped_column(sa.String(16), default="outreach", server_default="outreach")
    # Threading headers of a reply: the customer's Message-ID it answers, and the thread's ids.
    in_reply_to: Mapped[str] = mapped_column(sa.String(1000), default="", server_default="")
    thread_references: Mapped[str] = mapped_column(sa.String(2000), default="", server_default="")


class ReplyRouteRow(Base):
    """Where agents' replies to an email conversation go, and how they thread.

    The customer's address is kept here, and only here, because a reply has to reach it (the
    gateway stores only a pseudonym of it); it is erased with the customer's data
    (DeleteReplyRoutes) and never logged."""

    __tablename__ = "reply_routes"
    __table_args__ = (sa.Index("ix_reply_routes_customer", "tenant_id", "customer_id"),)

    tenant_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    customer_id: Mapped[str] = mapped_column(sa.String(200))
    address: Mapped[str] = mapped_column(sa.String(320))
    # The thread's subject (its first non-empty one, without "Re:").
    subject: Mapped[str] = mapped_column(sa.String(500))
    # Message-IDs of the thread's first and latest inbound mail (References, In-Reply-To).
    first_message_id: Mapped[str] = mapped_column(sa.String(1000))
    last_message_id: Mapped[str] = mapped_column(sa.String(1000))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class FeedCursorRow(Base):
    """How far outreach has read a feed of another service (escalation's deliveries)."""

    __tablename__ = "feed_cursors"

    feed: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    cursor: Mapped[str] = mapped_column(sa.String(500))
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
