"""Checks on one usage event. Each problem has a stable reason code that
producers can count and alert on; an event gets the first one that applies."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from aftercare.outreach.v1 import outreach_pb2

# Producers' clocks drift; more than this in the future is a bug, not drift.
MAX_FUTURE_SKEW = dt.timedelta(minutes=5)
# Detectors compare at most a year with the previous one's tail; older events are backfill noise.
MAX_AGE = dt.timedelta(days=400)
MAX_ID_CHARS = 200
MAX_ENDPOINT_CHARS = 500

MISSING_EVENT = "missing_event"
MISSING_EVENT_ID = "missing_event_id"
MISSING_TENANT_ID = "missing_tenant_id"
MISSING_ACCOUNT_ID = "missing_account_id"
FIELD_TOO_LONG = "field_too_long"
MISSING_COUNT = "missing_count"
NEGATIVE_COUNT = "negative_count"
MISSING_OCCURRED_AT = "missing_occurred_at"
INVALID_TIMESTAMP = "invalid_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
STALE_TIMESTAMP = "stale_timestamp"
# Decided by the store: the account is not registered (UpsertAccounts).
UNKNOWN_ACCOUNT = "unknown_account"

MAX_ACCOUNTS_PER_CALL = 5_000
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def rejection_reason(event: outreach_pb2.UsageEvent, now: dt.datetime) -> str | None:
    """Why the event cannot be stored, or None when it is valid."""
    if not event.event_id.strip():
        return MISSING_EVENT_ID
    if not event.tenant_id.strip():
        return MISSING_TENANT_ID
    if not event.account_id.strip():
        return MISSING_ACCOUNT_ID
    short_fields = (
        event.event_id,
        event.tenant_id,
        event.account_id,
        event.feature,
        event.error_code,
        event.client_version,
    )
    if any(len(value) > MAX_ID_CHARS for value in short_fields) or len(event.endpoint) > MAX_ENDPOINT_CHARS:
        return FIELD_TOO_LONG
    # count is proto3 int32: 0 is also "not set".
    if event.count == 0:
        return MISSING_COUNT
    if event.count < 0:
        return NEGATIVE_COUNT
    if not event.HasField("occurred_at"):
        return MISSING_OCCURRED_AT
    try:
        occurred_at = event.occurred_at.ToDatetime(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        # Seconds or nanos outside what a Timestamp may hold.
        return INVALID_TIMESTAMP
    if occurred_at > now + MAX_FUTURE_SKEW:
        return FUTURE_TIMESTAMP
    if occurred_at < now - MAX_AGE:
        return STALE_TIMESTAMP
    return None


def is_error(event: outreach_pb2.UsageEvent) -> bool:
    """An HTTP failure status or any error code counts the event as an error."""
    return event.status_code >= 400 or bool(event.error_code)


def account_problems(account: outreach_pb2.Account) -> list[tuple[str, str]]:
    """Field violations of one account to register (field name, description)."""
    problems: list[tuple[str, str]] = []
    if not account.tenant_id.strip():
        problems.append(("tenant_id", "required"))
    if not account.account_id.strip():
        problems.append(("account_id", "required"))
    for name in ("tenant_id", "account_id", "name", "contact_name", "csm_name"):
        if len(getattr(account, name)) > MAX_ID_CHARS:
            problems.append((name, f"at most {MAX_ID_CHARS} characters"))
    for name in ("contact_email", "csm_email"):
        value = getattr(account, name)
        if value and (len(value) > 320 or not _EMAIL.match(value)):
            problems.append((name, "not an email address"))
    if account.timezone:
        try:
            zoneinfo.ZoneInfo(account.timezone)
        # A path-like name ("../x") reaches the file system: OSError, not "not found".
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            problems.append(("timezone", "not an IANA time zone, e.g. Europe/Paris"))
    return problems
