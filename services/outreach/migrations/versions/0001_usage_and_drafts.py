"""Usage events, daily aggregates and drafts: the schema before migrations existed."""

import sqlalchemy as sa
from alembic import op

from servicekit.database import UtcDateTime

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "usage_events",
        sa.Column("tenant_id", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("feature", sa.String(200), nullable=False),
        sa.Column("endpoint", sa.String(500), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("error_code", sa.String(200), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("client_version", sa.String(200), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_usage_events_account_time", "usage_events", ["tenant_id", "account_id", "occurred_at"])
    op.create_table(
        "usage_daily",
        sa.Column("tenant_id", sa.String(200), primary_key=True),
        sa.Column("account_id", sa.String(200), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("feature", sa.String(200), primary_key=True),
        sa.Column("endpoint", sa.String(500), primary_key=True),
        sa.Column("event_count", sa.BigInteger, nullable=False),
        sa.Column("error_count", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "outreach_drafts",
        sa.Column("draft_id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("finding_id", sa.String(36), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_outreach_drafts_tenant_state", "outreach_drafts", ["tenant_id", "state", "created_at"])
