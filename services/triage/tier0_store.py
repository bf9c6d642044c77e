"""Tier-0 state per user: suggestions shown (for the rate limit) and dismissals.

Sync SQLAlchemy (SQLite under data_dir by default, DATABASE_URL for
PostgreSQL): the servicer calls these methods via asyncio.to_thread. The
check-and-record of a shown suggestion is one transaction, so a suggestion
is either counted against the user's limit and returned, or neither.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from servicekit.database import UtcDateTime
from services.triage.migrations import SCHEMA

MAX_ID_CHARS = 200


class Base(DeclarativeBase):
    pass


class ShownRow(Base):
    __tablename__ = "tier0_shown"
    __table_args__ = (sa.Index("ix_tier0_shown_user_time", "tenant_id", "customer_id", "shown_at"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(MAX_ID_CHARS))
    customer_id: Mapped[str] = mapped_column(sa.String(MAX_ID_CHARS))
    doc_id: Mapped[str] = mapped_column(sa.String(MAX_ID_CHARS))
    shown_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class DismissalRow(Base):
    __tablename__ = "tier0_dismissals"

    tenant_id: Mapped[str] = mapped_column(sa.String(MAX_ID_CHARS), primary_key=True)
    customer_id: Mapped[str] = mapped_column(sa.String(MAX_ID_CHARS), primary_key=True)
    doc_id: Mapped[str] = mapped_column(sa.String(MAX_ID_CHARS), primary_key=True)
    dismissed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


@dataclass(frozen=True)
class RateLimit:
    """At most `max_per_window` suggestions per user in `window`, at least `min_interval` apart."""

    max_per_window: int
    window: dt.timedelta
    min_interval: dt.timedelta
    # A document shown to a user is not shown again to them before this has passed.
    repeat_after: dt.timedelta


@dataclass(frozen=True)
class UserState:
    dismissed: frozenset[str]
    recently_shown: frozenset[str]
    # Seconds until the rate limit lets a suggestion through; 0 when it does now.
    wait_seconds: int


class Tier0Store:
    def __init__(self, engine: Engine, limit: RateLimit) -> None:
        self._engine = engine
        self.limit = limit

    def migrate(self) -> None:
        """Bring the schema to the latest migration (a no-op when it is there)."""
        SCHEMA.migrate(self._engine)

    def _wait(self, session: Session, tenant_id: str, customer_id: str, now: dt.datetime) -> int:
        since = now - max(self.limit.window, self.limit.min_interval)
        times = sorted(
            session.scalars(
                sa.select(ShownRow.shown_at).where(
                    ShownRow.tenant_id == tenant_id, ShownRow.customer_id == customer_id, ShownRow.shown_at > since
                )
            ).all()
        )
        waits = [0.0]
        if times:
            waits.append((times[-1] + self.limit.min_interval - now).total_seconds())
        in_window = [t for t in times if t > now - self.limit.window]
        if len(in_window) >= self.limit.max_per_window:
            # The oldest one that must leave the window before one more fits.
            oldest = in_window[len(in_window) - self.limit.max_per_window]
            waits.append((oldest + self.limit.window - now).total_seconds())
        wait = max(waits)
        return 0 if wait <= 0 else max(1, int(wait + 0.999))

    def user_state(self, tenant_id: str, customer_id: str, now: dt.datetime) -> UserState:
        with Session(self._engine) as session:
            dismissed = session.scalars(
                sa.select(DismissalRow.doc_id).where(
                    DismissalRow.tenant_id == tenant_id, DismissalRow.customer_id == customer_id
                )
            ).all()
            shown = session.scalars(
                sa.select(ShownRow.doc_id).where(
                    ShownRow.tenant_id == tenant_id,
                    ShownRow.customer_id == customer_id,
                    ShownRow.shown_at > now - self.limit.repeat_after,
                )
            ).all()
            return UserState(frozenset(dismissed), frozenset(shown), self._wait(session, tenant_id, customer_id, now))

    def record_shown(self, tenant_id: str, customer_id: str, doc_id: str, now: dt.datetime) -> int:
        """Count a shown suggestion if the limit still allows it: 0, or the seconds to wait (nothing recorded)."""
        with Session(self._engine) as session, session.begin():
            # Re-checked inside the write transaction: another request of the
            # same user may have shown one since user_state was read.
            wait = self._wait(session, tenant_id, customer_id, now)
            if wait:
                return wait
            session.add(ShownRow(tenant_id=tenant_id, customer_id=customer_id, doc_id=doc_id, shown_at=now))
            # Old rows serve neither the window nor the repeat rule any more.
            horizon = now - max(self.limit.window, self.limit.min_interval, self.limit.repeat_after)
            session.execute(
                sa.delete(ShownRow).where(
                    ShownRow.tenant_id == tenant_id, ShownRow.customer_id == customer_id, ShownRow.shown_at < horizon
                )
            )
        return 0

    def dismiss(self, tenant_id: str, customer_id: str, doc_id: str, now: dt.datetime) -> bool:
        """Remember a dismissal; False when it was already remembered."""
        try:
            with Session(self._engine) as session, session.begin():
                exists = session.get(DismissalRow, (tenant_id, customer_id, doc_id))
                if exists is not None:
                    return False
                session.add(DismissalRow(tenant_id=tenant_id, customer_id=customer_id, doc_id=doc_id, dismissed_at=now))
        except IntegrityError:  # the same dismissal raced in from another request
            return False
        return True
