"""The reads of the daily usage aggregates that the risk detectors share: the
tables, successful events, churned accounts, and each account's successful
events week by week. Account ids are sent to the database in chunks (`chunks`)
so an IN list stays a reasonable size.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from services.outreach.models import AccountRow, UsageDailyErrorRow, UsageDailyRow, UsageDailyVersionRow

DAILY: sa.Table = UsageDailyRow.__table__
ERRORS: sa.Table = UsageDailyErrorRow.__table__
VERSIONS: sa.Table = UsageDailyVersionRow.__table__
ACCOUNTS: sa.Table = AccountRow.__table__


def successful(table: sa.Table) -> sa.ColumnElement[Any]:
    return table.c.event_count - table.c.error_count


def chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def churned_accounts(connection: sa.Connection, tenant_id: str, as_of: dt.datetime) -> dict[str, dt.datetime]:
    """Accounts of the tenant that had churned by `as_of`, and when."""
    query: sa.Select[str, dt.datetime] = sa.select(ACCOUNTS.c.account_id, ACCOUNTS.c.churned_at).where(
        ACCOUNTS.c.tenant_id == tenant_id, ACCOUNTS.c.churned_at.is_not(None)
    )
    rows = connection.execute(query)
    return {account: when for account, when in rows if when <= as_of}


def weekly_successes(
    connection: sa.Connection, tenant_id: str, end: dt.date, weeks: int
) -> tuple[dict[str, list[float]], dict[str, dt.date]]:
    """Successful events per account per week (index 0 = the last complete week)."""
    starts = [end - dt.timedelta(days=7 * (k + 1)) for k in range(weeks)]
    columns = [
        sa.func.sum(
            sa.case((sa.and_(DAILY.c.day >= start, DAILY.c.day < start + dt.timedelta(days=7)),
                     successful(DAILY)), else_=0)
        ).label(f"w{k}")
        for k, start in enumerate(starts)
    ]
    query = (
        sa.select(DAILY.c.account_id, sa.func.min(DAILY.c.day).label("first_day"), *columns)
        .where(DAILY.c.tenant_id == tenant_id, DAILY.c.day >= starts[-1], DAILY.c.day < end)
        .group_by(DAILY.c.account_id)
    )
    weekly: dict[str, list[float]] = {}
    first_day: dict[str, dt.date] = {}
    for row in connection.execute(query):
        weekly[row.account_id] = [float(row._mapping[f"w{k}"] or 0) for k in range(weeks)]
        first = row.first_day
        first_day[row.account_id] = first if isinstance(first, dt.date) else dt.date.fromisoformat(str(first))
    return weekly, first_day
