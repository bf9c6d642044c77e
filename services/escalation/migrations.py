"""Schema migrations of the escalation database (servicekit.migrations), applied at start-up.

Never edit a migration that has shipped: add a new one.
"""

from __future__ import annotations

import secrets
from typing import Any

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


# Written out here (not imported from lifecycle.py): a shipped migration must not change with the code.
_V6_REFERENCE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
_V6_OPEN_STATES = ("HANDOFF_STATE_WAITING", "HANDOFF_STATE_ASSIGNED")


def _v6_conversations(op: Operations) -> None:
    """The handoff as a conversation: reference, one open handoff per conversation, thread,
    lifecycle events, CSAT and per-tenant settings. Existing handoffs get a reference, a
    conversation id (their own id when they had none) and the events their timestamps show;
    of several open handoffs of one conversation (made before this rule) the newest holds it."""
    if op.get_bind().dialect.name != "sqlite":
        # HANDOFF_STATE_WAITING_ON_CUSTOMER is 33 characters (SQLite does not enforce lengths).
        op.alter_column("handoffs", "state", type_=sa.String(48), existing_type=sa.String(32), existing_nullable=False)
    op.add_column("handoffs", sa.Column("reference", sa.String(16), nullable=False, server_default=""))
    op.add_column("handoffs", sa.Column("open_conversation_id", sa.String(200), nullable=True))
    op.add_column("handoffs", sa.Column("first_replied_at", UtcDateTime(), nullable=True))
    op.add_column("handoffs", sa.Column("csat_rating", sa.Integer, nullable=False, server_default="0"))
    op.add_column("handoffs", sa.Column("csat_comment", sa.Text, nullable=False, server_default=""))
    op.add_column("handoffs", sa.Column("rated_at", UtcDateTime(), nullable=True))
    op.add_column("agent_replies", sa.Column("message_id", sa.String(36), nullable=True))
    op.create_table(
        "thread_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("conversation_id", sa.String(200), nullable=False),
        sa.Column("handoff_id", sa.String(36), sa.ForeignKey("handoffs.handoff_id"), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("author_id", sa.String(200), nullable=False),
        sa.Column("author_name", sa.String(200), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=False),
        sa.Column("client_message_id", sa.String(200), nullable=False),
        sa.UniqueConstraint("tenant_id", "conversation_id", "sequence", name="uq_thread_messages_sequence"),
        sa.UniqueConstraint(
            "tenant_id", "conversation_id", "client_message_id", name="uq_thread_messages_client_message"
        ),
        sa.UniqueConstraint("message_id", name="uq_thread_messages_message_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_thread_messages_role_channel", "thread_messages", ["role", "channel", "id"])
    op.create_table(
        "handoff_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("handoff_id", sa.String(36), sa.ForeignKey("handoffs.handoff_id"), nullable=False),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(48), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("state", sa.String(48), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_handoff_events_tenant_key"),
    )
    op.create_index("ix_handoff_events_handoff", "handoff_events", ["handoff_id", "id"])
    op.create_table(
        "handoff_settings",
        sa.Column("tenant_id", sa.String(200), primary_key=True),
        sa.Column("reopen_window_s", sa.Integer, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    _v6_backfill(op)
    op.create_index("uq_handoffs_open_conversation", "handoffs", ["tenant_id", "open_conversation_id"], unique=True)
    op.create_index("ix_handoffs_conversation", "handoffs", ["tenant_id", "conversation_id", "created_at"])
    op.create_index("uq_handoffs_reference", "handoffs", ["reference"], unique=True)


def _v6_backfill(op: Operations) -> None:
    handoffs = sa.table(
        "handoffs",
        *(sa.column(name) for name in ("handoff_id", "tenant_id", "conversation_id", "state", "reference")),
        sa.column("open_conversation_id"),
        sa.column("created_at", UtcDateTime()),
        sa.column("assigned_at", UtcDateTime()),
        sa.column("resolved_at", UtcDateTime()),
        sa.column("assigned_agent_id"),
        sa.column("resolved_by"),
    )
    events = sa.table(
        "handoff_events",
        *(sa.column(name) for name in ("handoff_id", "tenant_id", "kind", "actor", "state")),
        sa.column("at", UtcDateTime()),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(handoffs).order_by(handoffs.c.created_at.desc(), handoffs.c.handoff_id)).all()
    used: set[str] = set()
    held: set[tuple[str, str]] = set()
    for row in rows:
        reference = _v6_unique_reference(used)
        conversation_id = row.conversation_id or row.handoff_id
        values = {"reference": reference, "conversation_id": conversation_id}
        if row.state in _V6_OPEN_STATES and (row.tenant_id, conversation_id) not in held:
            held.add((row.tenant_id, conversation_id))
            values["open_conversation_id"] = conversation_id
        bind.execute(sa.update(handoffs).where(handoffs.c.handoff_id == row.handoff_id).values(**values))
        for kind, at, actor, state in _v6_history(row):
            bind.execute(
                sa.insert(events).values(
                    handoff_id=row.handoff_id, tenant_id=row.tenant_id, kind=kind, at=at, actor=actor, state=state
                )
            )


def _v6_unique_reference(used: set[str]) -> str:
    while True:
        reference = "HO-" + "".join(secrets.choice(_V6_REFERENCE_ALPHABET) for _ in range(6))
        if reference not in used:
            used.add(reference)
            return reference


def _v6_history(row: sa.Row[Any]) -> list[tuple[str, Any, str, str]]:
    """The events an existing handoff's timestamps show."""
    history = [("HANDOFF_EVENT_KIND_CREATED", row.created_at, "ai", "HANDOFF_STATE_WAITING")]
    if row.assigned_at is not None:
        history.append(
            ("HANDOFF_EVENT_KIND_ASSIGNED", row.assigned_at, row.assigned_agent_id, "HANDOFF_STATE_ASSIGNED")
        )
    if row.resolved_at is not None:
        history.append(("HANDOFF_EVENT_KIND_RESOLVED", row.resolved_at, row.resolved_by, "HANDOFF_STATE_RESOLVED"))
    return history


def _v7_template_draft(op: Operations) -> None:
    op.add_column("handoffs", sa.Column("template_draft", sa.Text, nullable=False, server_default=""))


def _v8_release(op: Operations) -> None:
    """The concierge release that handed over ("" for older handoffs and API callers without one)."""
    op.add_column("handoffs", sa.Column("release_id", sa.String(32), nullable=False, server_default=""))


def _v9_judgements_by_judged_at(op: Operations) -> None:
    """ListJudgements reads a tenant's judgements in judged order from a time (canary evaluations poll it)."""
    op.create_index(
        "ix_answer_judgements_tenant_judged", "answer_judgements", ["tenant_id", "judged_at", "judgement_id"]
    )


def _v10_pending_outcomes(op: Operations) -> None:
    """Approved actions still running when their decision returned: told to the customer once they settle."""
    op.create_table(
        "pending_outcomes",
        sa.Column("tenant_id", sa.String(200), primary_key=True),
        sa.Column("action_id", sa.String(200), primary_key=True),
        sa.Column("handoff_id", sa.String(36), sa.ForeignKey("handoffs.handoff_id"), nullable=False),
        sa.Column("agent_id", sa.String(200), nullable=False),
        sa.Column("agent_name", sa.String(200), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_check_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_pending_outcomes_next_check", "pending_outcomes", ["next_check_at"])


SCHEMA = Schema(
    "escalation",
    (
        Migration(1, "handoffs", _v1_handoffs),
        Migration(2, "queue tiers, states with who and when, record versions", _v2_states_and_versions),
        Migration(3, "agent replies, intent corrections, topic columns", _v3_feedback_loop),
        Migration(4, "contact outcomes", _v4_contact_outcomes),
        Migration(5, "answer judgements", _v5_answer_judgements),
        Migration(6, "handoff as a conversation: thread, events, reference, CSAT, settings", _v6_conversations),
        Migration(7, "the template draft an LLM draft replaced", _v7_template_draft),
        Migration(8, "the release that handed over", _v8_release),
        Migration(9, "judgements in judged order", _v9_judgements_by_judged_at),
        Migration(10, "outcomes of approved actions still running", _v10_pending_outcomes),
    ),
)
