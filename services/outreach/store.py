"""Usage events and drafts in the relational store. Sync SQLAlchemy: the
servicer calls these methods via asyncio.to_thread; every write is one
transaction."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from aftercare.outreach.v1 import outreach_pb2
from services.outreach.events import is_error
from services.outreach.models import Base, OutreachDraftRow, UsageDailyRow, UsageEventRow

_EVENTS = UsageEventRow.__table__
_DAILY = UsageDailyRow.__table__
_DAILY_KEY = ("tenant_id", "account_id", "day", "feature", "endpoint")

# INSERT ... ON CONFLICT is what makes recording race-free; both databases we run on have it.
_UPSERT_INSERTS: dict[str, Callable[[Any], Any]] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def _draft_to_proto(row: OutreachDraftRow) -> outreach_pb2.OutreachDraft:
    draft = outreach_pb2.OutreachDraft(
        draft_id=row.draft_id,
        tenant_id=row.tenant_id,
        account_id=row.account_id,
        finding_id=row.finding_id,
        subject=row.subject,
        body=row.body,
        state=outreach_pb2.DraftState.Value(row.state),
    )
    draft.created_at.FromDatetime(row.created_at)
    return draft


class OutreachStore:
    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect.name
        if dialect not in _UPSERT_INSERTS:
            raise RuntimeError(f"outreach needs SQLite or PostgreSQL, not {dialect!r}")
        self._engine = engine
        self._insert = _UPSERT_INSERTS[dialect]

    def create_schema(self) -> None:
        # Schema by create_all for now; a later issue replaces this with migrations.
        Base.metadata.create_all(self._engine)

    def record_usage(self, events: Sequence[outreach_pb2.UsageEvent], received_at: dt.datetime) -> int:
        """Store valid events whose (tenant_id, event_id) is new and add them to the daily
        aggregate, in one transaction. `events` must not repeat a key. Returns how many
        were new; the others were already stored (by an earlier or a concurrent stream)."""
        if not events:
            return 0
        by_key = {(event.tenant_id, event.event_id): event for event in events}
        rows = [
            {
                "tenant_id": event.tenant_id,
                "event_id": event.event_id,
                "account_id": event.account_id,
                "occurred_at": event.occurred_at.ToDatetime(tzinfo=dt.UTC),
                "feature": event.feature,
                "endpoint": event.endpoint,
                "status_code": event.status_code,
                "error_code": event.error_code,
                "count": event.count,
                "client_version": event.client_version,
                "received_at": received_at,
            }
            for event in by_key.values()
        ]
        insert_new = (
            self._insert(_EVENTS)
            .on_conflict_do_nothing(index_elements=["tenant_id", "event_id"])
            .returning(_EVENTS.c.tenant_id, _EVENTS.c.event_id)
        )
        with Session(self._engine) as session, session.begin():
            # Only rows this statement inserted come back; only those may be counted.
            inserted = session.execute(insert_new, rows).all()
            totals: dict[tuple[str, str, dt.date, str, str], list[int]] = defaultdict(lambda: [0, 0])
            for tenant_id, event_id in inserted:
                event = by_key[(tenant_id, event_id)]
                day = event.occurred_at.ToDatetime(tzinfo=dt.UTC).date()
                total = totals[(tenant_id, event.account_id, day, event.feature, event.endpoint)]
                total[0] += event.count
                total[1] += event.count if is_error(event) else 0
            if totals:
                upsert = self._insert(_DAILY)
                upsert = upsert.on_conflict_do_update(
                    index_elements=list(_DAILY_KEY),
                    set_={
                        "event_count": _DAILY.c.event_count + upsert.excluded.event_count,
                        "error_count": _DAILY.c.error_count + upsert.excluded.error_count,
                    },
                )
                session.execute(
                    upsert,
                    [
                        {**dict(zip(_DAILY_KEY, key, strict=True)), "event_count": count, "error_count": errors}
                        for key, (count, errors) in totals.items()
                    ],
                )
        return len(inserted)

    def list_drafts(self, tenant_id: str, state: int) -> list[outreach_pb2.OutreachDraft]:
        """A tenant's drafts in one review state, newest first."""
        query = (
            sa.select(OutreachDraftRow)
            .where(
                OutreachDraftRow.tenant_id == tenant_id,
                OutreachDraftRow.state == outreach_pb2.DraftState.Name(state),
            )
            .order_by(OutreachDraftRow.created_at.desc(), OutreachDraftRow.draft_id.desc())
        )
        with Session(self._engine) as session:
            return [_draft_to_proto(row) for row in session.scalars(query)]
