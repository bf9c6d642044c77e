"""Schema migrations of the concierge database (servicekit.migrations), applied at start-up.

Never edit a migration that has shipped: add a new one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from servicekit.database import UtcDateTime
from servicekit.migrations import Migration, Schema, create_table_once


def _of_a_conversation() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "conversation_id"],
        ["concierge_conversations.tenant_id", "concierge_conversations.conversation_id"],
        ondelete="CASCADE",
    )


def _v1_conversations_turns_ratings(op: Operations) -> None:
    # Each table on its own: create_all made the ratings table later than the other two.
    create_table_once(
        op,
        "concierge_conversations",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("conversation_id", sa.String(128), primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("turn_count", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    create_table_once(
        op,
        "concierge_turns",
        sa.Column("turn_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("turn_index", sa.Integer, nullable=False),
        sa.Column("client_message_id", sa.String(128), nullable=True),
        sa.Column("customer_text", sa.Text, nullable=False),
        sa.Column("standalone_query", sa.Text, nullable=False),
        sa.Column("reply", sa.Text, nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("decision_reason", sa.String(64), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("handoff_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("prompt_template_version", sa.String(100), nullable=False),
        sa.Column("calibration_version", sa.String(100), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("sources", sa.JSON, nullable=False),
        sa.Column("outcome", sa.JSON, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "conversation_id", "turn_index", name="uq_concierge_turns_position"),
        sa.UniqueConstraint(
            "tenant_id", "conversation_id", "client_message_id", name="uq_concierge_turns_client_message"
        ),
        _of_a_conversation(),
    )
    create_table_once(
        op,
        "concierge_turn_ratings",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("conversation_id", sa.String(128), primary_key=True),
        sa.Column("turn_index", sa.Integer, primary_key=True),
        sa.Column("rating", sa.String(32), nullable=False),
        sa.Column("rated_at", UtcDateTime(), nullable=False),
        _of_a_conversation(),
    )


def _v2_pending_forwards(op: Operations) -> None:
    op.create_table(
        "concierge_pending_forwards",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("conversation_id", sa.String(128), primary_key=True),
        sa.Column("turn_index", sa.Integer, primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("message_key", sa.String(128), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("handoff_request", sa.LargeBinary, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        _of_a_conversation(),
    )


def _v3_account_state(op: Operations) -> None:
    # The account assistant's state of a conversation: whom it verified, what awaits a yes.
    op.add_column(
        "concierge_conversations", sa.Column("verified_customer_id", sa.String(200), nullable=False, server_default="")
    )
    op.add_column("concierge_conversations", sa.Column("pending_action", sa.JSON, nullable=True))


def _v4_account_draft(op: Operations) -> None:
    # The request the account assistant asked a detail of, with the details already settled.
    op.add_column("concierge_conversations", sa.Column("account_draft", sa.JSON, nullable=True))


# One LIVE release per tenant, held by the database across replicas (releases.py also
# serializes a tenant's release changes, so this never fires in normal use).
LIVE_RELEASE = sa.text("state = 'LIVE'")


def _v5_releases(op: Operations) -> None:
    # Lineage: the release that served each turn ("" for turns stored before releases).
    op.add_column("concierge_turns", sa.Column("release_id", sa.String(32), nullable=False, server_default=""))
    op.create_index("ix_concierge_turns_release", "concierge_turns", ["tenant_id", "release_id", "created_at"])
    op.create_table(
        "concierge_releases",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("release_id", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("components", sa.JSON, nullable=False),
        sa.Column("persona", sa.JSON, nullable=False),
        sa.Column("fit", sa.JSON, nullable=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("promoted_at", UtcDateTime(), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.UniqueConstraint("tenant_id", "release_id", name="uq_concierge_releases_id"),
        sa.UniqueConstraint("tenant_id", "request_id", name="uq_concierge_releases_request"),
    )
    op.create_index(
        "ux_concierge_releases_one_live", "concierge_releases", ["tenant_id"], unique=True,
        sqlite_where=LIVE_RELEASE, postgresql_where=LIVE_RELEASE,
    )
    op.create_table(
        "concierge_release_events",
        sa.Column("sequence", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(48), nullable=False),
        sa.Column("release_id", sa.String(32), nullable=False),
        sa.Column("previous_release_id", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_concierge_release_events_tenant", "concierge_release_events", ["tenant_id", "sequence"])
    op.create_table(
        "concierge_suite_runs",
        sa.Column("sequence", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("release_id", sa.String(32), nullable=False),
        sa.Column("suite_digest", sa.String(128), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("passed", sa.Integer, nullable=False),
        sa.Column("results", sa.JSON, nullable=False),
        sa.Column("partial", sa.Boolean, nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=False),
        sa.Column("run_by", sa.String(200), nullable=False),
        sa.UniqueConstraint("run_id", name="uq_concierge_suite_runs_id"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "release_id"],
            ["concierge_releases.tenant_id", "concierge_releases.release_id"],
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_concierge_suite_runs_release", "concierge_suite_runs", ["tenant_id", "release_id", "sequence"]
    )


# One running shadow and one running canary per tenant.
ACTIVE_SHADOW = sa.text("active")
RUNNING_CANARY = sa.text("state = 'RUNNING'")


def _v6_shadows_canaries(op: Operations) -> None:
    op.create_table(
        "concierge_shadows",
        sa.Column("shadow_id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("release_id", sa.String(32), nullable=False),
        sa.Column("live_release_id", sa.String(32), nullable=False),
        sa.Column("sample_rate", sa.Float, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("started_by", sa.String(200), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("stopped_at", UtcDateTime(), nullable=True),
        sa.Column("shadowed_turns", sa.Integer, nullable=False),
        sa.Column("skipped_turns", sa.Integer, nullable=False),
    )
    op.create_index(
        "ux_concierge_shadows_one_active", "concierge_shadows", ["tenant_id"], unique=True,
        sqlite_where=ACTIVE_SHADOW, postgresql_where=ACTIVE_SHADOW,
    )
    op.create_index("ix_concierge_shadows_tenant", "concierge_shadows", ["tenant_id", "started_at"])
    op.create_table(
        "concierge_shadow_decisions",
        sa.Column("shadow_id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("conversation_id", sa.String(128), primary_key=True),
        sa.Column("turn_index", sa.Integer, primary_key=True),
        sa.Column("release_id", sa.String(32), nullable=False),
        sa.Column("live_release_id", sa.String(32), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("decision_reason", sa.String(64), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("intent", sa.String(200), nullable=False),
        sa.Column("reply", sa.Text, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["shadow_id"], ["concierge_shadows.shadow_id"], ondelete="CASCADE"),
    )
    op.create_table(
        "concierge_canaries",
        sa.Column("canary_id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("release_id", sa.String(32), nullable=False),
        sa.Column("live_release_id", sa.String(32), nullable=False),
        sa.Column("percent", sa.Integer, nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("started_by", sa.String(200), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("ended_at", UtcDateTime(), nullable=True),
        sa.Column("end_reason", sa.Text, nullable=False),
        sa.Column("evaluation", sa.JSON, nullable=True),
        sa.Column("evaluated_at", UtcDateTime(), nullable=True),
    )
    op.create_index(
        "ux_concierge_canaries_one_running", "concierge_canaries", ["tenant_id"], unique=True,
        sqlite_where=RUNNING_CANARY, postgresql_where=RUNNING_CANARY,
    )
    op.create_index("ix_concierge_canaries_tenant", "concierge_canaries", ["tenant_id", "started_at"])


def _v7_turn_intent(op: Operations) -> None:
    op.add_column("concierge_turns", sa.Column("intent", sa.String(200), nullable=False, server_default=""))


SCHEMA = Schema(
    "concierge",
    (
        Migration(1, "conversations, turns, ratings", _v1_conversations_turns_ratings),
        Migration(2, "messages pending forwarding to the agent", _v2_pending_forwards),
        Migration(3, "verified customer and pending action of a conversation", _v3_account_state),
        Migration(4, "the account request waiting for a detail", _v4_account_draft),
        Migration(5, "releases, their events and suite runs", _v5_releases),
        Migration(6, "shadows with their decisions, canaries", _v6_shadows_canaries),
        Migration(7, "the intent triage gave each turn", _v7_turn_intent),
    ),
)
