"""Schema migrations of the escalation database (servicekit.migrations), applied at start-up.

Never edit a migration that has shipped: add a new one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from servicekit.database import UtcDateTime
from servicekit.migrations import Migration, Schema, create_table_once


def _v1_handoffs(op: Operations) -> None:
    created = create_table_once(
        op,
        "handoffs",
        sa.Column("handoff_id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("conversation_id", sa.String(200), nullable=False),
        sa.Column("conversation", sa.JSON, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("ai_attempt", sa.JSON, nullable=False),
        sa.Column("account", sa.JSON, nullable=False),
        sa.Column("context", sa.JSON, nullable=False),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("assigned_agent_id", sa.String(200), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_handoffs_tenant_idempotency_key"),
    )
    if created:
        op.create_index("ix_handoffs_queue_order", "handoffs", ["tenant_id", "state", "priority", "created_at"])


def _v2_states_and_versions(op: Operations) -> None:
    op.add_column("handoffs", sa.Column("tier", sa.String(32), nullable=False, server_default="TIER_UNSPECIFIED"))
    op.add_column("handoffs", sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    op.add_column("handoffs", sa.Column("assigned_at", UtcDateTime(), nullable=True))
    op.add_column("handoffs", sa.Column("resolved_by", sa.String(200), nullable=False, server_default=""))
    op.add_column("handoffs", sa.Column("resolved_at", UtcDateTime(), nullable=True))
    op.add_column("handoffs", sa.Column("resolution", sa.Text, nullable=False, server_default=""))


def _v3_feedback_loop(op: Operations) -> None:
    op.add_column("handoffs", sa.Column("intent", sa.String(200), nullable=False, server_default=""))
    op.add_column("handoffs", sa.Column("intent_confidence", sa.Float, nullable=False, server_default="0"))
    op.add_column("handoffs", sa.Column("ai_confidence", sa.Float, nullable=True))
    op.add_column("handoffs", sa.Column("question", sa.Text, nullable=False, server_default=""))
    op.add_column("handoffs", sa.Column("draft_prompt", sa.Text, nullable=False, server_default=""))
    op.create_index("ix_handoffs_tenant_created", "handoffs", ["tenant_id", "created_at"])
    op.create_index("ix_handoffs_customer", "handoffs", ["tenant_id", "customer_id", "created_at"])
    op.create_table(
        "agent_replies",
        sa.Column("reply_id", sa.String(36), primary_key=True),
        sa.Column("handoff_id", sa.String(36), sa.ForeignKey("handoffs.handoff_id"), nullable=False),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("agent_id", sa.String(200), nullable=False),
        sa.Column("draft", sa.Text, nullable=False),
        sa.Column("final_text", sa.Text, nullable=False),
        sa.Column("edit_ratio", sa.Float, nullable=False),
        sa.Column("draft_use", sa.String(32), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_agent_replies_tenant_created", "agent_replies", ["tenant_id", "created_at"])
    op.create_table(
        "intent_corrections",
        sa.Column("correction_id", sa.String(36), primary_key=True),
        sa.Column("handoff_id", sa.String(36), sa.ForeignKey("handoffs.handoff_id"), nullable=False),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("agent_id", sa.String(200), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("original_label", sa.String(200), nullable=False),
        sa.Column("corrected_label", sa.String(200), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_intent_corrections_tenant_created", "intent_corrections", ["tenant_id", "created_at"])


def _v4_contact_outcomes(op: Operations) -> None:
    op.create_table(
        "contact_outcomes",
        sa.Column("outcome_id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("intent", sa.String(200), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_contact_outcomes_tenant_key"),
    )
    op.create_index("ix_contact_outcomes_tenant_occurred", "contact_outcomes", ["tenant_id", "occurred_at"])


def _v5_answer_judgements(op: Operations) -> None:
    op.create_table(
        "answer_judgements",
        sa.Column("judgement_id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("intent", sa.String(200), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("correct", sa.Boolean, nullable=False),
        sa.Column("answered_at", UtcDateTime(), nullable=False),
        sa.Column("judged_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_answer_judgements_tenant_key"),
    )
    op.create_index("ix_answer_judgements_tenant_answered", "answer_judgements", ["tenant_id", "answered_at"])


SCHEMA = Schema(
    "escalation",
    (
        Migration(1, "handoffs", _v1_handoffs),
        Migration(2, "queue tiers, states with who and when, record versions", _v2_states_and_versions),
        Migration(3, "agent replies, intent corrections, topic columns", _v3_feedback_loop),
        Migration(4, "contact outcomes", _v4_contact_outcomes),
        Migration(5, "answer judgements", _v5_answer_judgements),
    ),
)
