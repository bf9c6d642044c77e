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


SCHEMA = Schema(
    "concierge",
    (
        Migration(1, "conversations, turns, ratings", _v1_conversations_turns_ratings),
        Migration(2, "messages pending forwarding to the agent", _v2_pending_forwards),
        Migration(3, "verified customer and pending action of a conversation", _v3_account_state),
        Migration(4, "the account request waiting for a detail", _v4_account_draft),
    ),
)
