"""Schema migrations of the triage database (servicekit.migrations), applied at start-up.

Never edit a migration that has shipped: add a new one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from servicekit.database import UtcDateTime
from servicekit.migrations import Migration, Schema, create_table_once

# Ids as the tier-0 store bounds them (services.triage.tier0_store.MAX_ID_CHARS when v1 shipped).
_ID = 200


def _v1_tier0(op: Operations) -> None:
    if create_table_once(
        op,
        "tier0_shown",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(_ID), nullable=False),
        sa.Column("customer_id", sa.String(_ID), nullable=False),
        sa.Column("doc_id", sa.String(_ID), nullable=False),
        sa.Column("shown_at", UtcDateTime(), nullable=False),
    ):
        op.create_index("ix_tier0_shown_user_time", "tier0_shown", ["tenant_id", "customer_id", "shown_at"])
    create_table_once(
        op,
        "tier0_dismissals",
        sa.Column("tenant_id", sa.String(_ID), primary_key=True),
        sa.Column("customer_id", sa.String(_ID), primary_key=True),
        sa.Column("doc_id", sa.String(_ID), primary_key=True),
        sa.Column("dismissed_at", UtcDateTime(), nullable=False),
    )


def _v2_contacts(op: Operations) -> None:
    op.create_table(
        "triage_contacts",
        sa.Column("tenant_id", sa.String(_ID), primary_key=True),
        sa.Column("customer_id", sa.String(_ID), primary_key=True),
        sa.Column("conversation_id", sa.String(_ID), primary_key=True),
        sa.Column("first_seen", UtcDateTime(), nullable=False),
        sa.Column("last_seen", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_triage_contacts_customer_seen", "triage_contacts", ["tenant_id", "customer_id", "last_seen"])


SCHEMA = Schema(
    "triage",
    (
        Migration(1, "tier-0 suggestions shown and dismissed", _v1_tier0),
        Migration(2, "conversations seen per customer (repeated contact)", _v2_contacts),
    ),
)
