"""Schema migrations of the outreach database (servicekit.migrations), applied at start-up.

Never edit a migration that has shipped: add a new one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations
from sqlalchemy.engine import Connection

from servicekit.database import UtcDateTime
from servicekit.migrations import Migration, Schema

# Outreach's migrations were Alembic revisions before every service shared one migrator;
# a database they migrated records its revision here.
_ALEMBIC_VERSION_TABLE = "outreach_schema_version"
_ALEMBIC_REVISIONS = {"0001": 1, "0002": 2}


def _v1_usage_and_drafts(op: Operations) -> None:
    # A database made before migrations existed (metadata.create_all) has these tables.
    if sa.inspect(op.get_bind()).has_table("usage_events"):
        return
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


def _v2_accounts_findings_outbox(op: Operations) -> None:
    op.create_table(
        "usage_daily_errors",
        sa.Column("tenant_id", sa.String(200), primary_key=True),
        sa.Column("account_id", sa.String(200), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("endpoint", sa.String(500), primary_key=True),
        sa.Column("status_code", sa.Integer, primary_key=True),
        sa.Column("error_code", sa.String(200), primary_key=True),
        sa.Column("error_count", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "usage_daily_versions",
        sa.Column("tenant_id", sa.String(200), primary_key=True),
        sa.Column("account_id", sa.String(200), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("endpoint", sa.String(500), primary_key=True),
        sa.Column("client_version", sa.String(200), primary_key=True),
        sa.Column("event_count", sa.BigInteger, nullable=False),
        sa.Column("error_count", sa.BigInteger, nullable=False),
    )
    # Existing events predate these aggregates: fill them from the raw events once.
    day = "date(occurred_at)" if op.get_bind().dialect.name == "sqlite" else "CAST(occurred_at AS DATE)"
    op.execute(
        "INSERT INTO usage_daily_errors (tenant_id, account_id, day, endpoint, status_code, error_code, error_count) "
        f"SELECT tenant_id, account_id, {day}, endpoint, status_code, error_code, SUM(count) "
        "FROM usage_events WHERE status_code >= 400 OR error_code <> '' "
        f"GROUP BY tenant_id, account_id, {day}, endpoint, status_code, error_code"
    )
    op.execute(
        "INSERT INTO usage_daily_versions "
        "(tenant_id, account_id, day, endpoint, client_version, event_count, error_count) "
        f"SELECT tenant_id, account_id, {day}, endpoint, client_version, SUM(count), "
        "SUM(CASE WHEN status_code >= 400 OR error_code <> '' THEN count ELSE 0 END) "
        f"FROM usage_events GROUP BY tenant_id, account_id, {day}, endpoint, client_version"
    )
    op.create_table(
        "accounts",
        sa.Column("tenant_id", sa.String(200), primary_key=True),
        sa.Column("account_id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("contact_name", sa.String(200), nullable=False),
        sa.Column("contact_email", sa.String(320), nullable=False),
        sa.Column("csm_name", sa.String(200), nullable=False),
        sa.Column("csm_email", sa.String(320), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("opted_out", sa.Boolean, nullable=False),
        sa.Column("churned_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    # Accounts that already sent usage stay known.
    op.execute(
        "INSERT INTO accounts (tenant_id, account_id, name, contact_name, contact_email, csm_name, csm_email, "
        "timezone, opted_out, churned_at, updated_at) "
        "SELECT tenant_id, account_id, '', '', '', '', '', '', false, NULL, MAX(received_at) "
        "FROM usage_events GROUP BY tenant_id, account_id"
    )
    op.create_table(
        "risk_findings",
        sa.Column("finding_id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("subject_key", sa.String(800), nullable=False),
        sa.Column("account_ids", sa.JSON, nullable=False),
        sa.Column("feature", sa.String(200), nullable=False),
        sa.Column("endpoint", sa.String(500), nullable=False),
        sa.Column("error_code", sa.String(200), nullable=False),
        sa.Column("release", sa.String(500), nullable=False),
        sa.Column("cause", sa.Text, nullable=False),
        sa.Column("severity", sa.Float, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("sources", sa.JSON, nullable=False),
        sa.Column("suggested_fix", sa.Text, nullable=False),
        sa.Column("knowledge_unavailable", sa.Boolean, nullable=False),
        sa.Column("window_end", sa.Date, nullable=False),
        sa.Column("detected_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_risk_findings_subject", "risk_findings", ["tenant_id", "kind", "subject_key", "window_end"])
    op.create_index("ix_risk_findings_tenant_time", "risk_findings", ["tenant_id", "detected_at"])
    with op.batch_alter_table("outreach_drafts") as batch:
        batch.add_column(sa.Column("original_body", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("generator", sa.String(16), nullable=False, server_default=""))
        batch.add_column(sa.Column("model", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("prompt_version", sa.String(100), nullable=False, server_default=""))
        batch.add_column(sa.Column("sources", sa.JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("trace_id", sa.String(32), nullable=False, server_default=""))
        batch.add_column(sa.Column("reviewer_id", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("reviewed_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("recipients", sa.JSON, nullable=False, server_default="[]"))
    op.create_index(
        "ux_outreach_drafts_finding_account", "outreach_drafts", ["finding_id", "account_id"], unique=True
    )
    op.create_table(
        "outreach_feedback",
        sa.Column("feedback_id", sa.String(36), primary_key=True),
        sa.Column("draft_id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("reviewer_id", sa.String(200), nullable=False),
        sa.Column("draft_body", sa.Text, nullable=False),
        sa.Column("final_body", sa.Text, nullable=False),
        sa.Column("edit_ratio", sa.Float, nullable=False),
        sa.Column("generator", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_outreach_feedback_tenant_time", "outreach_feedback", ["tenant_id", "created_at"])
    op.create_table(
        "outreach_outbox",
        sa.Column("draft_id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(200), primary_key=True),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("to_address", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("not_before", UtcDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("claimed_at", UtcDateTime(), nullable=True),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_outreach_outbox_due", "outreach_outbox", ["status", "not_before"])
    op.create_index("ix_outreach_outbox_account", "outreach_outbox", ["tenant_id", "account_id", "created_at"])


def _v3_agent_replies(op: Operations) -> None:
    op.create_table(
        "reply_routes",
        sa.Column("tenant_id", sa.String(200), primary_key=True),
        sa.Column("conversation_id", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("first_message_id", sa.String(1000), nullable=False),
        sa.Column("last_message_id", sa.String(1000), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_reply_routes_customer", "reply_routes", ["tenant_id", "customer_id"])
    op.create_table(
        "feed_cursors",
        sa.Column("feed", sa.String(100), primary_key=True),
        sa.Column("cursor", sa.String(500), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    # An agent's reply is an outbox row keyed by its message id (in draft_id, which grows to
    # hold any id) and its customer; kind tells it from an outreach draft's message.
    with op.batch_alter_table("outreach_outbox") as batch:
        batch.alter_column("draft_id", existing_type=sa.String(36), type_=sa.String(200), existing_nullable=False)
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="outreach"))
        batch.add_column(sa.Column("in_reply_to", sa.String(1000), nullable=False, server_default=""))
        batch.add_column(sa.Column("thread_references", sa.String(2000), nullable=False, server_default=""))


def _applied_by_alembic(connection: Connection) -> list[int]:
    if not sa.inspect(connection).has_table(_ALEMBIC_VERSION_TABLE):
        return []
    revision = connection.scalar(sa.text(f"SELECT version_num FROM {_ALEMBIC_VERSION_TABLE}"))
    return list(range(1, _ALEMBIC_REVISIONS.get(str(revision), 0) + 1))


SCHEMA = Schema(
    "outreach",
    (
        Migration(1, "usage events, daily aggregates, drafts", _v1_usage_and_drafts),
        Migration(2, "accounts, error and version aggregates, findings, draft lineage, feedback, outbox",
                  _v2_accounts_findings_outbox),
        Migration(3, "agents' replies: reply routes, feed cursors, reply rows in the outbox", _v3_agent_replies),
    ),
    adopted=_applied_by_alembic,
)
