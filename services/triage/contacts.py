"""The conversations triage has seen per customer, so that repeated contact counts
even when the caller knows no account.contacts_last_7_days (the chat widget
sends no CRM facts).

Only ids and times are kept (no text), one row per conversation, refreshed on
each message; rows older than the window are deleted as the customer's next
contact is recorded. Sync SQLAlchemy, called via asyncio.to_thread.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from servicekit.database import UtcDateTime
from services.triage.tier0_store import MAX_ID_CHARS

WINDOW = dt.timedelta(days=7)


class Base(DeclarativeBase):
    pass


class ContactRow(Base):
    __tablename__ = "triage_contacts"
    __table_args__ = (sa.Index("ix_triage_contacts_customer_seen", "tenant_id", "customer_id", "last_seen"),)

    tenant_id: Mapped[str] = mapped_column(sa.String(MAX_ID_CHARS), primary_key=True)
    customer_id: Mapped[str] = mapped_column(sa.String(MAX_ID_CHARS), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(sa.String(MAX_ID_CHARS), primary_key=True)
    first_seen: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    last_seen: Mapped[dt.datetime] = mapped_column(UtcDateTime())


def _recordable(*ids: str) -> bool:
    return all(0 < len(value) <= MAX_ID_CHARS for value in ids)


class ContactLog:
    def __init__(self, engine: Engine, window: dt.timedelta = WINDOW) -> None:
        self._engine = engine
        self.window = window

    def record(self, tenant_id: str, customer_id: str, conversation_id: str, now: dt.datetime) -> int:
        """Remember this conversation; returns the customer's other conversations within the window.
        Without a customer id nothing is remembered or counted (0)."""
        if not _recordable(tenant_id, customer_id):
            return 0
        for attempt in range(2):
            try:
                return self._record_once(tenant_id, customer_id, conversation_id, now)
            except IntegrityError:  # the same conversation's first row raced in from another request
                if attempt:
                    raise
        return 0  # unreachable

    def _record_once(self, tenant_id: str, customer_id: str, conversation_id: str, now: dt.datetime) -> int:
        mine = ContactRow.tenant_id == tenant_id, ContactRow.customer_id == customer_id
        with Session(self._engine) as session, session.begin():
            if _recordable(conversation_id):
                row = session.get(ContactRow, (tenant_id, customer_id, conversation_id))
                if row is None:
                    session.add(
                        ContactRow(
                            tenant_id=tenant_id,
                            customer_id=customer_id,
                            conversation_id=conversation_id,
                            first_seen=now,
                            last_seen=now,
                        )
                    )
                elif row.last_seen < now:
                    row.last_seen = now
            session.execute(sa.delete(ContactRow).where(*mine, ContactRow.last_seen < now - self.window))
            others = sa.select(sa.func.count()).where(
                *mine, ContactRow.last_seen >= now - self.window, ContactRow.conversation_id != conversation_id
            )
            return int(session.scalar(others) or 0)
