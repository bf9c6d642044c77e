"""Schema migrations of the actions database (servicekit.migrations), applied at start-up.

Never edit a migration that has shipped: add a new one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from servicekit.database import UtcDateTime
from servicekit.migrations import Migration, Schema, create_table_once


def _v1_actions_audit_verifications(op: Operations) -> None:
    create_table_once(
        op,
        "actions",
        sa.Column("action_id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("arguments_json", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("needs_approval", sa.Boolean, nullable=False),
        sa.Column("approval_reasons", sa.Text, nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=False),
        sa.Column("decision_note", sa.Text, nullable=False),
        sa.Column("decided_at", UtcDateTime(), nullable=True),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("result_json", sa.Text, nullable=False),
        sa.Column("error_reason", sa.String(64), nullable=False),
        sa.Column("error_message", sa.Text, nullable=False),
        sa.Column("may_have_executed", sa.Boolean, nullable=False),
        sa.Column("catalog_version", sa.String(128), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False, unique=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("replaces_action_id", sa.String(36), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("lease_expires_at", UtcDateTime(), nullable=True),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
        sa.UniqueConstraint("tenant_id", "conversation_id", "request_id", name="uq_actions_request"),
    )
    op.create_index("ix_actions_conversation", "actions", ["tenant_id", "conversation_id", "created_at"])
    op.create_index("ix_actions_customer", "actions", ["tenant_id", "customer_id", "created_at"])
    op.create_index("ix_actions_state", "actions", ["state", "lease_expires_at"])
    create_table_once(
        op,
        "action_audit_events",
        sa.Column(
            "sequence", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("action_id", sa.String(36), nullable=False),
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(200), nullable=False),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("arguments_json", sa.Text, nullable=False),
        sa.Column("result_json", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("catalog_version", sa.String(128), nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_action_audit_conversation", "action_audit_events", ["tenant_id", "conversation_id", "sequence"])
    op.create_index("ix_action_audit_customer", "action_audit_events", ["tenant_id", "customer_id", "sequence"])
    op.create_index("ix_action_audit_action", "action_audit_events", ["tenant_id", "action_id", "sequence"])
    create_table_once(
        op,
        "action_verifications",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("conversation_id", sa.String(128), primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("verified_at", UtcDateTime(), nullable=False),
    )


def _v2_release(op: Operations) -> None:
    """The concierge release that proposed an action ("" for the copilot path and older actions)."""
    op.add_column("actions", sa.Column("release_id", sa.String(32), nullable=False, server_default=""))


SCHEMA = Schema(
    "actions",
    [
        Migration(1, "actions, audit events and verifications", _v1_actions_audit_verifications),
        Migration(2, "the release that proposed an action", _v2_release),
    ],
)
