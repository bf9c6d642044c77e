"""Tables of the concierge: conversations, their acknowledged turns, the
customers' ratings of answered turns, the messages still to forward to the
human who has a conversation, and each tenant's releases with their events and
golden-conversation suite runs (releases.py).

Each turn row holds what an auditor needs to replay the decision: the
standalone query that was searched, the decision and its reason, the
confidence with its signals, the cited sources and the lineage (model,
prompt-template and calibration versions, release, trace id). The schema itself is
created and changed by services/concierge/migrations.py at start-up, as in
the other services; a test checks that the two agree.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.database import UtcDateTime
from services.concierge.migrations import ACTIVE_SHADOW, LIVE_RELEASE, RUNNING_CANARY


class Base(DeclarativeBase):
    pass


class ConversationRow(Base):
    __tablename__ = "concierge_conversations"

    tenant_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    customer_id: Mapped[str] = mapped_column(sa.String(200))
    channel: Mapped[str] = mapped_column(sa.String(32))
    # Number of stored turns; the next turn's index. Bumped in the turn's transaction.
    turn_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    # The customer the actions service verified in this conversation (its id in the company's
    # system); "" before. One per conversation: set once, never replaced.
    verified_customer_id: Mapped[str] = mapped_column(sa.String(200), default="", server_default="")
    # The action awaiting the customer's yes (PendingAction as its JSON mapping); NULL when none.
    # Written with the turn that proposed it, cleared by the next turn's outcome.
    pending_action: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    # The request the assistant asked a missing detail of: {"tool", "arguments"} with the arguments
    # already settled from the customer's words (earlier messages are stored masked, and an item id
    # reads as a phone number there). Written with each turn; NULL when no detail is awaited.
    account_draft: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)


class TurnRow(Base):
    __tablename__ = "concierge_turns"
    __table_args__ = (
        # Two racing messages of one conversation cannot take the same position.
        sa.UniqueConstraint("tenant_id", "conversation_id", "turn_index", name="uq_concierge_turns_position"),
        # A retried message (same client_message_id) is stored once; NULLs (no id) never clash.
        sa.UniqueConstraint(
            "tenant_id", "conversation_id", "client_message_id", name="uq_concierge_turns_client_message"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "conversation_id"],
            ["concierge_conversations.tenant_id", "concierge_conversations.conversation_id"],
            ondelete="CASCADE",
        ),
        # Turns per release (suite, shadow and canary reports).
        sa.Index("ix_concierge_turns_release", "tenant_id", "release_id", "created_at"),
    )

    turn_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(128))
    conversation_id: Mapped[str] = mapped_column(sa.String(128))
    turn_index: Mapped[int] = mapped_column(sa.Integer)
    client_message_id: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    customer_text: Mapped[str] = mapped_column(sa.Text)
    standalone_query: Mapped[str] = mapped_column(sa.Text)
    reply: Mapped[str] = mapped_column(sa.Text)
    decision: Mapped[str] = mapped_column(sa.String(32))
    decision_reason: Mapped[str] = mapped_column(sa.String(64))
    confidence: Mapped[float] = mapped_column(sa.Float)
    handoff_id: Mapped[str] = mapped_column(sa.String(64), default="")
    # Lineage columns, queryable without parsing the full outcome.
    model: Mapped[str] = mapped_column(sa.String(200), default="")
    prompt_template_version: Mapped[str] = mapped_column(sa.String(100), default="")
    calibration_version: Mapped[str] = mapped_column(sa.String(100), default="")
    # The release that served the turn (releases.py); "" for turns stored before releases.
    release_id: Mapped[str] = mapped_column(sa.String(32), default="", server_default="")
    # The intent triage gave the turn (the topic of release reports and per-topic thresholds);
    # "" when triage did not answer, and for turns stored before migration 7.
    intent: Mapped[str] = mapped_column(sa.String(200), default="", server_default="")
    trace_id: Mapped[str] = mapped_column(sa.String(32), default="")
    # Cited sources and the full ConverseResponse as their canonical JSON mapping.
    sources: Mapped[list[Any]] = mapped_column(sa.JSON)
    outcome: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class TurnRatingRow(Base):
    """The customer's verdict on an answered turn; one per turn, a new rating replaces it.
    A table of its own so that turns stay write-once."""

    __tablename__ = "concierge_turn_ratings"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["tenant_id", "conversation_id"],
            ["concierge_conversations.tenant_id", "concierge_conversations.conversation_id"],
            ondelete="CASCADE",
        ),
    )

    tenant_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    turn_index: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    # TurnRating value name, e.g. TURN_RATING_HELPFUL.
    rating: Mapped[str] = mapped_column(sa.String(32))
    rated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class PendingForwardRow(Base):
    """A customer's message for the human who has the conversation that escalation could not
    take when it arrived: an outbox row, written in the turn's transaction and deleted once
    escalation has the message, so the promise "it will reach the team" is kept."""

    __tablename__ = "concierge_pending_forwards"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["tenant_id", "conversation_id"],
            ["concierge_conversations.tenant_id", "concierge_conversations.conversation_id"],
            ondelete="CASCADE",
        ),
    )

    tenant_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    turn_index: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    customer_id: Mapped[str] = mapped_column(sa.String(200))
    channel: Mapped[str] = mapped_column(sa.String(32))
    # The turn's idempotency key: escalation appends the message once however often it is sent.
    message_key: Mapped[str] = mapped_column(sa.String(128))
    # The message as the customer wrote it, personal data masked.
    text: Mapped[str] = mapped_column(sa.Text)
    # The serialized CreateHandoffRequest when the handoff itself could not be made; else NULL
    # (the message is appended to the conversation's handoff).
    handoff_request: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class ReleaseRow(Base):
    """One immutable release of a tenant: what it fixes (components) and the persona and
    confidence fit it serves with, as snapshots. Only state and promoted_at ever change."""

    __tablename__ = "concierge_releases"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "release_id", name="uq_concierge_releases_id"),
        # A retried CreateRelease (same request_id) finds its release; NULLs (the first release) never clash.
        sa.UniqueConstraint("tenant_id", "request_id", name="uq_concierge_releases_request"),
        sa.Index(
            "ux_concierge_releases_one_live", "tenant_id", unique=True,
            sqlite_where=LIVE_RELEASE, postgresql_where=LIVE_RELEASE,
        ),
    )

    tenant_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    number: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    # "r<number>".
    release_id: Mapped[str] = mapped_column(sa.String(32))
    # ReleaseState value name without its prefix: CANDIDATE, LIVE or RETIRED.
    state: Mapped[str] = mapped_column(sa.String(16))
    # ReleaseComponents as its JSON mapping.
    components: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    # The persona file as merged (default under the tenant's), threshold overrides applied.
    persona: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    # The confidence fit (Calibrator.snapshot()); NULL: no fit, the gate stays closed.
    fit: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    # sha256 of components, persona and fit.
    digest: Mapped[str] = mapped_column(sa.String(64))
    description: Mapped[str] = mapped_column(sa.Text)
    created_by: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    promoted_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    request_id: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)


class ReleaseEventRow(Base):
    """One entry of a tenant's release history (created, promoted, rolled back, suite recorded)."""

    __tablename__ = "concierge_release_events"
    __table_args__ = (sa.Index("ix_concierge_release_events_tenant", "tenant_id", "sequence"),)

    sequence: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(128))
    # ReleaseEventKind value name without its prefix, e.g. PROMOTED_WITH_OVERRIDE.
    kind: Mapped[str] = mapped_column(sa.String(48))
    release_id: Mapped[str] = mapped_column(sa.String(32))
    # The release live before (promotions and rollbacks); "" otherwise.
    previous_release_id: Mapped[str] = mapped_column(sa.String(32))
    actor: Mapped[str] = mapped_column(sa.String(200))
    detail: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class SuiteRunRow(Base):
    """One run of a tenant's golden conversations against a release; the newest (by sequence)
    is what promotion checks."""

    __tablename__ = "concierge_suite_runs"
    __table_args__ = (
        sa.UniqueConstraint("run_id", name="uq_concierge_suite_runs_id"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "release_id"],
            ["concierge_releases.tenant_id", "concierge_releases.release_id"],
            ondelete="CASCADE",
        ),
        sa.Index("ix_concierge_suite_runs_release", "tenant_id", "release_id", "sequence"),
    )

    sequence: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.String(64))
    tenant_id: Mapped[str] = mapped_column(sa.String(128))
    release_id: Mapped[str] = mapped_column(sa.String(32))
    suite_digest: Mapped[str] = mapped_column(sa.String(128))
    total: Mapped[int] = mapped_column(sa.Integer)
    passed: Mapped[int] = mapped_column(sa.Integer)
    # [{"name", "passed", "failures": [...]}], failures first.
    results: Mapped[list[Any]] = mapped_column(sa.JSON)
    # Only part of the suite ran: it cannot clear a release for promotion.
    partial: Mapped[bool] = mapped_column(sa.Boolean)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    run_by: Mapped[str] = mapped_column(sa.String(200))


class ShadowRow(Base):
    """A release deciding in shadow on a tenant's live turns (shadow.py); only `active`,
    `stopped_at` and the counters change."""

    __tablename__ = "concierge_shadows"
    __table_args__ = (
        sa.Index(
            "ux_concierge_shadows_one_active", "tenant_id", unique=True,
            sqlite_where=ACTIVE_SHADOW, postgresql_where=ACTIVE_SHADOW,
        ),
        sa.Index("ix_concierge_shadows_tenant", "tenant_id", "started_at"),
    )

    shadow_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(128))
    release_id: Mapped[str] = mapped_column(sa.String(32))
    live_release_id: Mapped[str] = mapped_column(sa.String(32))
    sample_rate: Mapped[float] = mapped_column(sa.Float)
    active: Mapped[bool] = mapped_column(sa.Boolean)
    started_by: Mapped[str] = mapped_column(sa.String(200))
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    shadowed_turns: Mapped[int] = mapped_column(sa.Integer, default=0)
    skipped_turns: Mapped[int] = mapped_column(sa.Integer, default=0)


class ShadowDecisionRow(Base):
    """What the shadowed release would have done on one live turn (the live decision is the
    turn's own row). Never shown to the customer."""

    __tablename__ = "concierge_shadow_decisions"
    __table_args__ = (sa.ForeignKeyConstraint(["shadow_id"], ["concierge_shadows.shadow_id"], ondelete="CASCADE"),)

    shadow_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    turn_index: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    release_id: Mapped[str] = mapped_column(sa.String(32))
    # The release that served the turn live.
    live_release_id: Mapped[str] = mapped_column(sa.String(32))
    # Decision value name without its prefix, lower case ("answered"), and the reason code.
    decision: Mapped[str] = mapped_column(sa.String(32))
    decision_reason: Mapped[str] = mapped_column(sa.String(64))
    confidence: Mapped[float] = mapped_column(sa.Float)
    threshold: Mapped[float] = mapped_column(sa.Float)
    intent: Mapped[str] = mapped_column(sa.String(200))
    # What it would have said (masked).
    reply: Mapped[str] = mapped_column(sa.Text)
    # How long the shadow decision took.
    duration_ms: Mapped[float] = mapped_column(sa.Float)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class CanaryRow(Base):
    """A release served to a share of a tenant's conversations (canary.py): assignment by a hash
    of the conversation id with `salt`, the rollback policy, and its latest evaluation."""

    __tablename__ = "concierge_canaries"
    __table_args__ = (
        sa.Index(
            "ux_concierge_canaries_one_running", "tenant_id", unique=True,
            sqlite_where=RUNNING_CANARY, postgresql_where=RUNNING_CANARY,
        ),
        sa.Index("ix_concierge_canaries_tenant", "tenant_id", "started_at"),
    )

    canary_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(128))
    release_id: Mapped[str] = mapped_column(sa.String(32))
    live_release_id: Mapped[str] = mapped_column(sa.String(32))
    percent: Mapped[int] = mapped_column(sa.Integer)
    # Random per canary, so the draw is fixed for a conversation and unrelated to who the customer is.
    salt: Mapped[str] = mapped_column(sa.String(64))
    # CanaryState value name without its prefix: RUNNING, STOPPED, ROLLED_BACK or PROMOTED.
    state: Mapped[str] = mapped_column(sa.String(16))
    # CanaryPolicy as its JSON mapping, defaults filled in.
    policy: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    started_by: Mapped[str] = mapped_column(sa.String(200))
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    end_reason: Mapped[str] = mapped_column(sa.Text, default="")
    # The latest evaluation: {"canary": CanaryArm, "live": CanaryArm, "verdict": str} as JSON mappings.
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    evaluated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
