"""Usage events and drafts in the relational store. Sync SQLAlchemy: the
servicer calls these methods via asyncio.to_thread; every write is one
transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from aftercare.outreach.v1 import outreach_pb2
from aftercare.type.v1 import answer_pb2
from servicekit.database import UtcDateTime
from services.outreach.events import is_error
from services.outreach.findings import Finding
from services.outreach.migrations import SCHEMA
from services.outreach.models import (
    AccountRow,
    DraftFeedbackRow,
    FeedCursorRow,
    OutboxRow,
    OutreachDraftRow,
    PassageJson,
    ReplyRouteRow,
    RiskFindingRow,
    UsageDailyErrorRow,
    UsageDailyRow,
    UsageDailyVersionRow,
    UsageEventRow,
)

_EVENTS: sa.Table = UsageEventRow.__table__
_DAILY: sa.Table = UsageDailyRow.__table__
_ERRORS: sa.Table = UsageDailyErrorRow.__table__
_VERSIONS: sa.Table = UsageDailyVersionRow.__table__
_ACCOUNTS: sa.Table = AccountRow.__table__
_OUTBOX: sa.Table = OutboxRow.__table__
_ROUTES: sa.Table = ReplyRouteRow.__table__
_CURSORS: sa.Table = FeedCursorRow.__table__
_DAILY_KEY = ("tenant_id", "account_id", "day", "feature", "endpoint")
_ERRORS_KEY = ("tenant_id", "account_id", "day", "endpoint", "status_code", "error_code")
_VERSIONS_KEY = ("tenant_id", "account_id", "day", "endpoint", "client_version")
_ACCOUNT_FIELDS = (
    "name", "contact_name", "contact_email", "csm_name", "csm_email",
    "timezone", "opted_out", "churned_at", "updated_at",
)
# Findings about the same subject this close together are one episode (one finding, updated).
FINDING_EPISODE_DAYS = 7
_BLANK_ACCOUNT = {
    "name": "", "contact_name": "", "contact_email": "", "csm_name": "", "csm_email": "",
    "timezone": "", "opted_out": False, "churned_at": None,
}

# INSERT ... ON CONFLICT is what makes recording race-free; both databases we run on have it.
_UPSERT_INSERTS: dict[str, Callable[[Any], Any]] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


@dataclass(frozen=True)
class RecordResult:
    """What happened to one batch of valid events."""

    # Newly stored events.
    accepted: int
    # Already stored by an earlier or concurrent stream.
    duplicates: int
    # Events refused because their account is not registered (event ids).
    unknown_account: list[str]
    # Of the accepted, those that arrived late.
    late: int


class OutreachStore:
    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect.name
        if dialect not in _UPSERT_INSERTS:
            raise RuntimeError(f"outreach needs SQLite or PostgreSQL, not {dialect!r}")
        self._engine = engine
        self._insert = _UPSERT_INSERTS[dialect]
        self._postgres = dialect == "postgresql"

    @property
    def engine(self) -> Engine:
        return self._engine

    def migrate(self) -> None:
        SCHEMA.migrate(self._engine)

    def upsert_accounts(self, accounts: Sequence[outreach_pb2.Account], now: dt.datetime) -> tuple[int, int]:
        """Create or replace accounts in one transaction; returns (created, updated)."""
        rows = {
            (a.tenant_id, a.account_id): {
                "tenant_id": a.tenant_id,
                "account_id": a.account_id,
                "name": a.name,
                "contact_name": a.contact_name,
                "contact_email": a.contact_email,
                "csm_name": a.csm_name,
                "csm_email": a.csm_email,
                "timezone": a.timezone,
                "opted_out": a.opted_out,
                "churned_at": a.churned_at.ToDatetime(tzinfo=dt.UTC) if a.HasField("churned_at") else None,
                "updated_at": now,
            }
            for a in accounts
        }
        with Session(self._engine) as session, session.begin():
            existing = 0
            for tenant_id in {key[0] for key in rows}:
                ids = [key[1] for key in rows if key[0] == tenant_id]
                query = sa.select(sa.func.count()).where(
                    _ACCOUNTS.c.tenant_id == tenant_id, _ACCOUNTS.c.account_id.in_(ids)
                )
                existing += session.scalar(query) or 0
            upsert = self._insert(_ACCOUNTS)
            upsert = upsert.on_conflict_do_update(
                index_elements=["tenant_id", "account_id"],
                set_={name: upsert.excluded[name] for name in _ACCOUNT_FIELDS},
            )
            session.execute(upsert, list(rows.values()))
        return len(rows) - existing, existing

    def record_usage(
        self,
        events: Sequence[outreach_pb2.UsageEvent],
        received_at: dt.datetime,
        *,
        register_unknown: bool = False,
        late_after: dt.timedelta = dt.timedelta(hours=24),
    ) -> RecordResult:
        """Store valid events whose (tenant_id, event_id) is new and add them to the daily
        aggregates, in one transaction. `events` must not repeat a key. Events of accounts
        that are not registered are refused (or registered, with `register_unknown`)."""
        if not events:
            return RecordResult(0, 0, [], 0)
        by_key = {(event.tenant_id, event.event_id): event for event in events}
        with Session(self._engine) as session, session.begin():
            accounts = {(e.tenant_id, e.account_id) for e in by_key.values()}
            if register_unknown:
                session.execute(
                    self._insert(_ACCOUNTS).on_conflict_do_nothing(index_elements=["tenant_id", "account_id"]),
                    [
                        {**_BLANK_ACCOUNT, "tenant_id": t, "account_id": a, "updated_at": received_at}
                        for t, a in sorted(accounts)
                    ],
                )
                unknown_accounts: set[tuple[str, str]] = set()
            else:
                unknown_accounts = accounts - self._known_accounts(session, accounts)
            unknown = [e.event_id for e in by_key.values() if (e.tenant_id, e.account_id) in unknown_accounts]
            if unknown_accounts:
                by_key = {k: e for k, e in by_key.items() if (e.tenant_id, e.account_id) not in unknown_accounts}
            if not by_key:
                return RecordResult(0, 0, unknown, 0)
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
            # Only rows this statement inserted come back; only those may be counted.
            returned: sa.Result[str, str]  # (tenant_id, event_id)
            if self._postgres:
                returned = session.execute(*_unnest_insert(_EVENTS, rows, ("tenant_id", "event_id"), returning=True))
            else:
                insert_new = (
                    self._insert(_EVENTS)
                    .on_conflict_do_nothing(index_elements=["tenant_id", "event_id"])
                    .returning(_EVENTS.c.tenant_id, _EVENTS.c.event_id)
                )
                returned = session.execute(insert_new, rows)
            inserted = [by_key[(tenant_id, event_id)] for tenant_id, event_id in returned]
            daily: dict[tuple[str, str, dt.date, str, str], list[int]] = defaultdict(lambda: [0, 0])
            errors: dict[tuple[str, str, dt.date, str, int, str], list[int]] = defaultdict(lambda: [0])
            versions: dict[tuple[str, str, dt.date, str, str], list[int]] = defaultdict(lambda: [0, 0])
            late = 0
            for event in inserted:
                occurred_at = event.occurred_at.ToDatetime(tzinfo=dt.UTC)
                late += occurred_at < received_at - late_after
                day = occurred_at.date()
                failed = event.count if is_error(event) else 0
                total = daily[(event.tenant_id, event.account_id, day, event.feature, event.endpoint)]
                total[0] += event.count
                total[1] += failed
                version = versions[(event.tenant_id, event.account_id, day, event.endpoint, event.client_version)]
                version[0] += event.count
                version[1] += failed
                if failed:
                    key = (event.tenant_id, event.account_id, day, event.endpoint, event.status_code, event.error_code)
                    errors[key][0] += failed
            self._add(session, _DAILY, _DAILY_KEY, ("event_count", "error_count"), daily)
            self._add(session, _VERSIONS, _VERSIONS_KEY, ("event_count", "error_count"), versions)
            self._add(session, _ERRORS, _ERRORS_KEY, ("error_count",), errors)
        return RecordResult(len(inserted), len(by_key) - len(inserted), unknown, late)

    def _known_accounts(self, session: Session, accounts: set[tuple[str, str]]) -> set[tuple[str, str]]:
        known: set[tuple[str, str]] = set()
        for tenant_id in {tenant for tenant, _ in accounts}:
            ids = [account for tenant, account in accounts if tenant == tenant_id]
            query: sa.Select[str] = sa.select(_ACCOUNTS.c.account_id).where(
                _ACCOUNTS.c.tenant_id == tenant_id, _ACCOUNTS.c.account_id.in_(ids)
            )
            known.update((tenant_id, account) for account in session.scalars(query))
        return known

    def _add(
        self,
        session: Session,
        table: sa.Table,
        key_columns: tuple[str, ...],
        value_columns: tuple[str, ...],
        totals: dict[Any, list[int]],
    ) -> None:
        """Add `totals` to an aggregate table (insert, or add to the existing row)."""
        if not totals:
            return
        # Sorted, so concurrent writers lock rows in the same order (no deadlocks on PostgreSQL).
        rows = [
            {**dict(zip(key_columns, key, strict=True)), **dict(zip(value_columns, values, strict=True))}
            for key, values in sorted(totals.items())
        ]
        if self._postgres:
            session.execute(*_unnest_insert(table, rows, key_columns, add=value_columns))
            return
        upsert = self._insert(table)
        upsert = upsert.on_conflict_do_update(
            index_elements=list(key_columns),
            set_={name: table.c[name] + upsert.excluded[name] for name in value_columns},
        )
        session.execute(upsert, rows)

    def save_findings(
        self,
        tenant_id: str,
        findings: Sequence[tuple[Finding, list[PassageJson], str, bool]],
        window_end: dt.date,
        detected_at: dt.datetime,
    ) -> list[RiskFindingRow]:
        """Store findings (each with its passages, suggested fix and whether the knowledge base was
        down) in one transaction. A finding about the same subject as one stored within the last
        FINDING_EPISODE_DAYS is the same episode: it is updated, keeping its id (and its drafts)."""
        saved: list[RiskFindingRow] = []
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            recent = session.scalars(
                sa.select(RiskFindingRow).where(
                    RiskFindingRow.tenant_id == tenant_id,
                    RiskFindingRow.window_end >= window_end - dt.timedelta(days=FINDING_EPISODE_DAYS),
                    RiskFindingRow.window_end <= window_end,
                ).order_by(RiskFindingRow.window_end)
            )
            by_subject = {(row.kind, row.subject_key): row for row in recent}
            for finding, sources, fix, knowledge_unavailable in findings:
                row = by_subject.get((finding.kind, finding.subject_key))
                if row is None:
                    row = RiskFindingRow(finding_id=str(uuid.uuid4()), tenant_id=tenant_id, kind=finding.kind,
                                         subject_key=finding.subject_key)
                    session.add(row)
                row.account_ids = list(finding.account_ids)
                row.feature, row.endpoint, row.error_code = finding.feature, finding.endpoint, finding.error_code
                row.release, row.cause, row.severity = finding.release, finding.cause, finding.severity
                row.evidence = [item.as_json() for item in finding.evidence]
                row.sources = sources
                row.suggested_fix = fix
                row.knowledge_unavailable = knowledge_unavailable
                row.window_end = window_end
                row.detected_at = detected_at
                saved.append(row)
        return saved

    def get_finding(self, tenant_id: str, finding_id: str) -> RiskFindingRow | None:
        with Session(self._engine, expire_on_commit=False) as session:
            row = session.get(RiskFindingRow, finding_id)
            return row if row is not None and row.tenant_id == tenant_id else None

    # --- drafts, review and outbox -------------------------------------------------------------

    def accounts(self, tenant_id: str, account_ids: Sequence[str]) -> dict[str, AccountRow]:
        found: dict[str, AccountRow] = {}
        with Session(self._engine, expire_on_commit=False) as session:
            for start in range(0, len(account_ids), 500):
                chunk = list(account_ids[start : start + 500])
                query = sa.select(AccountRow).where(AccountRow.tenant_id == tenant_id, AccountRow.account_id.in_(chunk))
                found.update((row.account_id, row) for row in session.scalars(query))
        return found

    def messages_since(self, tenant_id: str, account_ids: Sequence[str], since: dt.datetime) -> dict[str, int]:
        """Messages approved for (or sent to) each account since `since`: what frequency caps count."""
        counts: dict[str, int] = defaultdict(int)
        with Session(self._engine) as session:
            for start in range(0, len(account_ids), 500):
                chunk = list(account_ids[start : start + 500])
                rows = session.execute(
                    sa.select(OutboxRow.account_id, sa.func.count())
                    .where(OutboxRow.tenant_id == tenant_id, OutboxRow.account_id.in_(chunk),
                           OutboxRow.created_at >= since, OutboxRow.status != "cancelled",
                           OutboxRow.kind == "outreach")
                    .group_by(OutboxRow.account_id)
                )
                counts.update({account: int(n) for account, n in rows})
        return counts

    def drafts_for_finding(self, finding_id: str) -> dict[str, OutreachDraftRow]:
        with Session(self._engine, expire_on_commit=False) as session:
            rows = session.scalars(sa.select(OutreachDraftRow).where(OutreachDraftRow.finding_id == finding_id))
            return {row.account_id: row for row in rows}

    def add_draft(self, row: OutreachDraftRow) -> OutreachDraftRow:
        """Insert a draft; when one for the same finding and account exists (a retried or
        concurrent call), that one is returned instead."""
        try:
            with Session(self._engine, expire_on_commit=False) as session, session.begin():
                session.add(row)
            return row
        except sa.exc.IntegrityError:
            existing = self.drafts_for_finding(row.finding_id).get(row.account_id)
            if existing is None:
                raise
            return existing

    def get_draft(self, tenant_id: str, draft_id: str) -> OutreachDraftRow | None:
        with Session(self._engine, expire_on_commit=False) as session:
            row = session.get(OutreachDraftRow, draft_id)
            return row if row is not None and row.tenant_id == tenant_id else None

    def review(
        self,
        draft: OutreachDraftRow,
        *,
        state: str,
        final_body: str,
        action: str,
        reviewer_id: str,
        edit_ratio: float,
        outbox: Sequence[dict[str, Any]],
        now: dt.datetime,
    ) -> OutreachDraftRow | None:
        """Record a review in one transaction: the draft's new state, the feedback row and the
        outbox rows. None when the draft was no longer pending (someone else reviewed it)."""
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            updated = _changed(
                session,
                sa.update(OutreachDraftRow)
                .where(OutreachDraftRow.draft_id == draft.draft_id,
                       OutreachDraftRow.state == "DRAFT_STATE_PENDING_REVIEW")
                .values(state=state, body=final_body, reviewer_id=reviewer_id, reviewed_at=now),
            )
            if updated != 1:
                return None
            session.add(DraftFeedbackRow(
                feedback_id=str(uuid.uuid4()), draft_id=draft.draft_id, tenant_id=draft.tenant_id, action=action,
                reviewer_id=reviewer_id, draft_body=draft.original_body or draft.body, final_body=final_body,
                edit_ratio=edit_ratio, generator=draft.generator, created_at=now,
            ))
            if outbox:
                session.execute(
                    self._insert(_OUTBOX).on_conflict_do_nothing(index_elements=["draft_id", "account_id"]),
                    [{"attempts": 0, "claimed_at": None, "sent_at": None, "last_error": "", "status": "pending",
                      "created_at": now, **row} for row in outbox],
                )
            return session.get(OutreachDraftRow, draft.draft_id)

    def claim_due(self, now: dt.datetime, stale_before: dt.datetime, limit: int) -> list[OutboxRow]:
        """Claim up to `limit` messages that are due. A claim is a conditional update, so of two
        senders only one gets a message; a claim older than `stale_before` (a sender that died
        mid-send) can be taken over."""
        claimable = sa.or_(
            sa.and_(OutboxRow.status == "pending", OutboxRow.not_before <= now),
            sa.and_(OutboxRow.status == "sending", OutboxRow.claimed_at < stale_before),
        )
        with self._engine.connect() as connection:
            candidates = connection.execute(
                sa.select(OutboxRow.draft_id, OutboxRow.account_id).where(claimable)
                .order_by(OutboxRow.not_before).limit(limit)
            ).all()
        claimed: list[OutboxRow] = []
        for draft_id, account_id in candidates:
            with Session(self._engine, expire_on_commit=False) as session, session.begin():
                claimed_now = _changed(
                    session,
                    sa.update(OutboxRow)
                    .where(OutboxRow.draft_id == draft_id, OutboxRow.account_id == account_id, claimable)
                    .values(status="sending", claimed_at=now, attempts=OutboxRow.attempts + 1)
                    .execution_options(synchronize_session=False),
                )
                if claimed_now == 1:
                    row = session.get(OutboxRow, (draft_id, account_id))
                    if row is not None:
                        claimed.append(row)
        return claimed

    def finish(self, row: OutboxRow, status: str, now: dt.datetime, *, error: str = "",
               retry_at: dt.datetime | None = None) -> None:
        """After a send attempt: sent, cancelled, or back to pending for a retry. The draft becomes
        SENT once none of its messages is still waiting."""
        with Session(self._engine) as session, session.begin():
            values: dict[str, Any] = {"status": status, "last_error": error[:500]}
            if status == "sent":
                values["sent_at"] = now
            if retry_at is not None:
                values["not_before"] = retry_at
            session.execute(
                sa.update(OutboxRow)
                .where(OutboxRow.draft_id == row.draft_id, OutboxRow.account_id == row.account_id)
                .values(**values)
            )
            if row.kind != "outreach":
                return
            waiting = session.scalar(
                sa.select(sa.func.count()).where(OutboxRow.draft_id == row.draft_id,
                                                 OutboxRow.status.in_(["pending", "sending"]))
            )
            any_sent = session.scalar(
                sa.select(sa.func.count()).where(OutboxRow.draft_id == row.draft_id, OutboxRow.status == "sent")
            )
            if not waiting and any_sent:
                session.execute(
                    sa.update(OutreachDraftRow).where(OutreachDraftRow.draft_id == row.draft_id)
                    .values(state="DRAFT_STATE_SENT")
                )

    # --- agents' replies ------------------------------------------------------------------------

    def record_reply_route(self, route: dict[str, Any], now: dt.datetime) -> tuple[bool, bool]:
        """Create or refresh a conversation's reply route in one transaction; returns (created,
        recorded). The route stays with the customer who first wrote in the conversation: a mail
        from another customer changes nothing (recorded False). A refresh keeps the thread's
        first subject and first Message-ID and moves the latest Message-ID on."""
        key = (_ROUTES.c.tenant_id == route["tenant_id"]) & (_ROUTES.c.conversation_id == route["conversation_id"])
        with Session(self._engine) as session, session.begin():
            columns = {name: route[name] for name in ("tenant_id", "conversation_id", "customer_id", "address",
                                                      "subject")}
            inserted = session.execute(
                self._insert(_ROUTES)
                .values(**columns, first_message_id=route["message_id"], last_message_id=route["message_id"],
                        created_at=now, updated_at=now)
                .on_conflict_do_nothing(index_elements=["tenant_id", "conversation_id"])
                .returning(_ROUTES.c.conversation_id)
            ).first()
            if inserted is not None:
                return True, True
            values: dict[str, Any] = {"address": route["address"], "updated_at": now}
            if route["message_id"]:
                values["last_message_id"] = route["message_id"]
                values["first_message_id"] = sa.case(
                    (_ROUTES.c.first_message_id == "", route["message_id"]), else_=_ROUTES.c.first_message_id)
            if route["subject"]:
                values["subject"] = sa.case((_ROUTES.c.subject == "", route["subject"]), else_=_ROUTES.c.subject)
            updated = _changed(
                session, sa.update(_ROUTES).where(key, _ROUTES.c.customer_id == route["customer_id"]).values(**values)
            )
            return False, updated == 1

    def delete_reply_routes(self, tenant_id: str, customer_id: str) -> int:
        """Erase a customer's reply routes and the addresses of their replies in the outbox."""
        with Session(self._engine) as session, session.begin():
            deleted = _changed(
                session,
                sa.delete(_ROUTES).where(_ROUTES.c.tenant_id == tenant_id, _ROUTES.c.customer_id == customer_id),
            )
            session.execute(
                sa.delete(_OUTBOX).where(_OUTBOX.c.tenant_id == tenant_id, _OUTBOX.c.account_id == customer_id,
                                         _OUTBOX.c.kind == "reply")
            )
        return deleted

    def reply_routes(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], ReplyRouteRow]:
        """Routes of (tenant, conversation) pairs."""
        found: dict[tuple[str, str], ReplyRouteRow] = {}
        with Session(self._engine, expire_on_commit=False) as session:
            for tenant_id in {tenant for tenant, _ in keys}:
                ids = sorted(conversation for tenant, conversation in keys if tenant == tenant_id)
                query = sa.select(ReplyRouteRow).where(
                    ReplyRouteRow.tenant_id == tenant_id, ReplyRouteRow.conversation_id.in_(ids))
                found.update(((row.tenant_id, row.conversation_id), row) for row in session.scalars(query))
        return found

    def feed_cursor(self, feed: str) -> str:
        with Session(self._engine) as session:
            return session.scalar(sa.select(_CURSORS.c.cursor).where(_CURSORS.c.feed == feed)) or ""

    def queue_replies(
        self, feed: str, rows: Sequence[dict[str, Any]], cursor: str, now: dt.datetime
    ) -> list[dict[str, Any]]:
        """Add agents' replies to the outbox and move the feed's cursor past them, in one
        transaction: a crash before it commits reads the same page again, and a row already
        there (the same message read twice) is skipped. Returns the rows that were new."""
        with Session(self._engine) as session, session.begin():
            added = []
            insert = self._insert(_OUTBOX).on_conflict_do_nothing(index_elements=["draft_id", "account_id"])
            for row in rows:  # a page is small: one statement per row keeps RETURNING simple on both databases
                values = {"attempts": 0, "claimed_at": None, "sent_at": None, "created_at": now, "kind": "reply", **row}
                if session.execute(insert.values(**values).returning(_OUTBOX.c.draft_id)).first() is not None:
                    added.append(row)
            upsert = self._insert(_CURSORS).values(feed=feed, cursor=cursor, updated_at=now)
            session.execute(upsert.on_conflict_do_update(
                index_elements=["feed"], set_={"cursor": upsert.excluded.cursor, "updated_at": now}))
        return added

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
            return [draft_to_proto(row) for row in session.scalars(query)]


def _changed(session: Session, statement: sa.Executable) -> int:
    """How many rows an UPDATE or DELETE changed. Session.execute is typed to return a Result;
    for these statements it is a CursorResult, which has the rowcount."""
    return cast(sa.CursorResult[Any], session.execute(statement)).rowcount


_PG_TYPES = {sa.String: "text", sa.Text: "text", sa.Integer: "integer", sa.BigInteger: "bigint", sa.Date: "date"}


def _pg_type(column: sa.Column[Any]) -> str:
    if isinstance(column.type, UtcDateTime):
        return "timestamp"
    for kind, name in _PG_TYPES.items():
        if type(column.type) is kind:
            return name
    raise TypeError(f"no array type for {column.type!r}")


def _unnest_insert(
    table: sa.Table,
    rows: list[dict[str, Any]],
    key: Sequence[str],
    *,
    add: Sequence[str] = (),
    returning: bool = False,
) -> tuple[sa.TextClause, dict[str, list[Any]]]:
    """One INSERT ... SELECT FROM unnest(arrays) for PostgreSQL: a whole batch as one statement
    with one parameter per column (a multi-row VALUES list of thousands of rows costs the
    driver more to build than the server to run). Conflicts on `key` are skipped, or the
    `add` columns are added to the existing row."""
    columns = list(rows[0])
    arrays = ", ".join(f"CAST(:{c} AS {_pg_type(table.c[c])}[])" for c in columns)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "
    sql += f"ON CONFLICT ({', '.join(key)}) "
    if add:
        sql += "DO UPDATE SET " + ", ".join(f"{c} = {table.name}.{c} + EXCLUDED.{c}" for c in add)
    else:
        sql += "DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(key)}"

    def naive_utc(value: dt.datetime | None) -> dt.datetime | None:
        # What UtcDateTime stores.
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value is not None else None

    params = {
        c: [naive_utc(row[c]) for row in rows] if isinstance(table.c[c].type, UtcDateTime) else [row[c] for row in rows]
        for c in columns
    }
    return sa.text(sql), params


def draft_to_proto(row: OutreachDraftRow) -> outreach_pb2.OutreachDraft:
    draft = outreach_pb2.OutreachDraft(
        draft_id=row.draft_id,
        tenant_id=row.tenant_id,
        account_id=row.account_id,
        finding_id=row.finding_id,
        subject=row.subject,
        body=row.body,
        state=row.state,  # the enum's label; an unknown one raises ValueError
        lineage=answer_pb2.Lineage(
            sources=[
                answer_pb2.Citation(doc_id=str(p["doc_id"]), chunk_id=str(p["chunk_id"]), title=str(p["title"]),
                                    url=str(p["url"]), score=float(p["score"]), doc_version=str(p["version"]))
                for p in row.sources or []
            ],
            model=row.model or "",
            prompt_template_version=row.prompt_version or "",
            trace_id=row.trace_id or "",
        ),
        generator=row.generator or "",
        reviewer_id=row.reviewer_id or "",
        original_body=row.original_body or "",
        recipient_account_ids=row.recipients or [],
    )
    draft.created_at.FromDatetime(row.created_at)
    return draft


def finding_to_proto(row: RiskFindingRow) -> outreach_pb2.RiskFinding:
    finding = outreach_pb2.RiskFinding(
        finding_id=row.finding_id,
        tenant_id=row.tenant_id,
        account_ids=row.account_ids,
        kind=row.kind,
        feature=row.feature,
        endpoint=row.endpoint,
        error_code=row.error_code,
        release=row.release,
        evidence=[
            outreach_pb2.Evidence(statement=str(e["statement"]), metric=str(e["metric"]),
                                  before=float(e["before"]), after=float(e["after"]))
            for e in row.evidence
        ],
        sources=[
            answer_pb2.Citation(doc_id=str(p["doc_id"]), chunk_id=str(p["chunk_id"]), title=str(p["title"]),
                                url=str(p["url"]), score=float(p["score"]), doc_version=str(p["version"]))
            for p in row.sources
        ],
        cause=row.cause,
        severity=row.severity,
        knowledge_unavailable=row.knowledge_unavailable,
        suggested_fix=row.suggested_fix,
    )
    finding.detected_at.FromDatetime(row.detected_at)
    return finding
