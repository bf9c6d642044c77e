"""Sending approved messages: quiet hours, the sinks (a local maildir by default,
SMTP by setting) and the sender that drains the outbox, started with the service.

Exactly once per approved draft and recipient: approval inserts one outbox row
per (draft, account) (a primary key, so a retried approval adds nothing); a
sender claims a row with a conditional update, so two senders never both take
it; the maildir sink delivers by an atomic link to a name derived from the row,
so a send retried after a crash finds the message already delivered. SMTP
carries a Message-ID derived from the row, which receiving servers use to drop
a copy resent after a crash between sending and recording it.

Agents' replies to email conversations (services/outreach/replies.py) go through
the same outbox as rows of kind "reply", keyed by the escalation message id: one
email per reply. They were written by a person for a customer who is waiting, so
none of outreach's rules apply to them (no review, no opt-out, no quiet hours);
they carry In-Reply-To and References so the customer's mail client threads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import smtplib
import ssl
import zoneinfo
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol

import structlog

from servicekit.database import utcnow
from services.outreach.models import OutboxRow
from services.outreach.settings import OutreachSettings
from services.outreach.store import OutreachStore

log = structlog.get_logger(__name__)
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
CLAIM_BATCH = 50
MAX_ATTEMPTS = 5


def next_send_time(now: dt.datetime, timezone: str, quiet_start: int, quiet_end: int) -> dt.datetime:
    """`now`, or the end of the contact's quiet hours when `now` falls inside them."""
    if quiet_start == quiet_end:
        return now
    try:
        zone = zoneinfo.ZoneInfo(timezone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo("UTC")
    local = now.astimezone(zone)
    hour = local.hour
    quiet = (quiet_start <= hour or hour < quiet_end) if quiet_start > quiet_end else quiet_start <= hour < quiet_end
    if not quiet:
        return now
    day = local.date() if hour < quiet_end else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(quiet_end), zone).astimezone(dt.UTC)


def message_key(row: OutboxRow) -> str:
    if row.kind == "reply":
        return _SAFE.sub("_", f"reply.{row.draft_id}")
    return _SAFE.sub("_", f"{row.draft_id}.{row.account_id}")


def build_email(row: OutboxRow, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row.to_address
    message["Subject"] = row.subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = f"<{message_key(row)}@aftercare.outreach>"
    if row.in_reply_to:
        message["In-Reply-To"] = row.in_reply_to
    if row.thread_references:
        message["References"] = row.thread_references
    message.set_content(row.body)
    return message


class Sink(Protocol):
    def deliver(self, row: OutboxRow) -> bool:
        """Deliver one message; False when it had been delivered already."""


class MaildirSink:
    """Writes each message into a maildir (tmp/ then an atomic link into new/)."""

    def __init__(self, root: Path, sender: str, reply_sender: str = "") -> None:
        self.root = root
        self._sender = sender
        self._reply_sender = reply_sender or sender
        for sub in ("tmp", "new", "cur"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def deliver(self, row: OutboxRow) -> bool:
        name = f"{message_key(row)}.eml"
        final = self.root / "new" / name
        if final.exists():
            return False
        temporary = self.root / "tmp" / f"{name}.{os.getpid()}"
        sender = self._reply_sender if row.kind == "reply" else self._sender
        temporary.write_bytes(bytes(build_email(row, sender)))
        try:
            os.link(temporary, final)
        except FileExistsError:
            return False
        finally:
            temporary.unlink(missing_ok=True)
        return True


class SmtpSink:
    def __init__(self, settings: OutreachSettings) -> None:
        if not settings.smtp_host:
            raise ValueError("SENDER=smtp needs SMTP_HOST")
        self._settings = settings

    def deliver(self, row: OutboxRow) -> bool:
        s = self._settings
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=30) as smtp:
            if s.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password)
            smtp.send_message(build_email(row, (s.reply_from or s.smtp_from) if row.kind == "reply" else s.smtp_from))
        return True


def make_sink(settings: OutreachSettings) -> Sink | None:
    if settings.sender == "off":
        return None
    if settings.sender == "smtp":
        return SmtpSink(settings)
    return MaildirSink(settings.outbox_dir or settings.data_dir / "outreach-outbox", settings.smtp_from,
                       settings.reply_from)


class Sender:
    """Drains the outbox: claims due messages, re-checks opt-out, delivers, records."""

    def __init__(
        self, store: OutreachStore, sink: Sink, settings: OutreachSettings, clock: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self._store = store
        self._sink = sink
        self._settings = settings
        self._clock = clock
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """Send now rather than at the next interval (an agent's reply was queued)."""
        self._woken.set()

    def drain_once(self) -> int:
        """Send what is due now; returns how many were delivered."""
        now = self._clock()
        stale = now - dt.timedelta(seconds=self._settings.sender_claim_timeout_s)
        delivered = 0
        for row in self._store.claim_due(now, stale, CLAIM_BATCH):
            if row.kind == "outreach" and self._opted_out(row):
                # Opted out after approval: the message is not sent.
                self._store.finish(row, "cancelled", now, error="opted_out")
                continue
            try:
                fresh = self._sink.deliver(row)
            except (OSError, smtplib.SMTPException) as error:
                give_up = row.attempts >= MAX_ATTEMPTS
                retry_at = now + dt.timedelta(seconds=min(3600, 30 * 2 ** row.attempts))
                self._store.finish(row, "failed" if give_up else "pending", now, error=type(error).__name__,
                                   retry_at=None if give_up else retry_at)
                log.warning("outreach_send_failed", attempts=row.attempts, error=type(error).__name__)
                continue
            self._store.finish(row, "sent", now)
            delivered += fresh
        if delivered:
            log.info("outreach_sent", messages=delivered)
        return delivered

    def _opted_out(self, row: OutboxRow) -> bool:
        account = self._store.accounts(row.tenant_id, [row.account_id]).get(row.account_id)
        return account is None or account.opted_out

    async def run(self) -> None:
        while True:
            self._woken.clear()
            try:
                await asyncio.to_thread(self.drain_once)
            except Exception:  # the loop must outlive one bad round (database restart, full disk)
                log.exception("outreach_sender_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self._settings.sender_interval_s)
