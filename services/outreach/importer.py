"""Batch import of usage events (and the accounts they belong to) from files,
through the service's own RecordUsage stream, so a file gets exactly the checks,
deduplication and aggregation that live producers get.

    python -m services.outreach.importer --target 127.0.0.1:50055 --accounts accounts.jsonl events.jsonl
    python -m services.outreach.importer --target 127.0.0.1:50055 events.csv

Files are JSON Lines or CSV (by extension) with the fields of UsageEvent:
event_id, tenant_id, account_id, occurred_at (ISO 8601; no offset means UTC),
feature, endpoint, status_code, error_code, count, client_version. Accounts
files carry the fields of Account. Lines that cannot be parsed are reported
with their line number and not sent. Re-running an import is safe: events
already stored come back as duplicates.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from aftercare.outreach.v1 import outreach_pb2, outreach_pb2_grpc
from servicekit.clients import connect
from servicekit.errors import details_from_rpc_error
from services.outreach.events import MAX_ACCOUNTS_PER_CALL

SERVICE = "aftercare.outreach.v1.OutreachService"
# One RecordUsage stream carries at most this many events: a failure costs at most one
# stream, and each stream stays well inside the method's deadline.
DEFAULT_STREAM_SIZE = 100_000
# Events per stream message: per-message overhead dominates single-event messages.
MESSAGE_EVENTS = 500
MALFORMED = "malformed_line"

_INT_FIELDS = ("status_code", "count")
_TEXT_FIELDS = ("event_id", "tenant_id", "account_id", "feature", "endpoint", "error_code", "client_version")


@dataclass
class ImportSummary:
    accepted: int = 0
    duplicates: int = 0
    late: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    # (line number, problem) of lines that were not sent.
    malformed: list[tuple[int, str]] = field(default_factory=list)
    sent: int = 0

    def add(self, response: outreach_pb2.RecordUsageResponse) -> None:
        self.accepted += response.accepted
        self.duplicates += response.duplicates
        self.late += response.late
        self.rejected.update(r.reason for r in response.rejected)


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, record or problem) for every data line of a JSONL or CSV file."""
    with path.open(newline="", encoding="utf-8") as handle:
        if path.suffix.lower() == ".csv":
            reader = csv.DictReader(handle)
            for row in reader:
                yield reader.line_num, dict(row)
            return
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield number, f"not JSON: {error.msg}"
                continue
            yield number, record if isinstance(record, dict) else "not a JSON object"


def _timestamp(value: Any) -> dt.datetime:
    when = dt.datetime.fromisoformat(str(value))
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when


def parse_event(record: dict[str, Any]) -> outreach_pb2.UsageEvent:
    """A UsageEvent from one record; ValueError when a field has the wrong type.
    Business rules (negative counts, future timestamps...) are the service's to check."""
    event = outreach_pb2.UsageEvent()
    for name in _TEXT_FIELDS:
        value = record.get(name)
        setattr(event, name, "" if value is None else str(value))
    for name in _INT_FIELDS:
        value = record.get(name)
        if value is not None and value != "":
            number = int(value)
            if not -(2**31) <= number < 2**31:
                raise ValueError(f"{name} out of range")
            setattr(event, name, number)
    if record.get("occurred_at") not in (None, ""):
        try:
            event.occurred_at.FromDatetime(_timestamp(record["occurred_at"]))
        except (OverflowError, ValueError) as error:
            raise ValueError(f"occurred_at: {error}") from error
    return event


def parse_account(record: dict[str, Any]) -> outreach_pb2.Account:
    account = outreach_pb2.Account()
    for name in ("tenant_id", "account_id", "name", "contact_name", "contact_email", "csm_name", "csm_email",
                 "timezone"):
        value = record.get(name)
        setattr(account, name, "" if value is None else str(value))
    opted_out = record.get("opted_out")
    account.opted_out = opted_out is True or str(opted_out).lower() in ("true", "1", "yes")
    if record.get("churned_at") not in (None, ""):
        account.churned_at.FromDatetime(_timestamp(record["churned_at"]))
    return account


async def import_events(
    stub: outreach_pb2_grpc.OutreachServiceStub, path: Path, stream_size: int = DEFAULT_STREAM_SIZE
) -> ImportSummary:
    summary = ImportSummary()
    records = _records(path)
    exhausted = False

    async def chunk() -> AsyncIterator[outreach_pb2.RecordUsageRequest]:
        nonlocal exhausted
        sent = 0
        message = outreach_pb2.RecordUsageRequest()
        for number, record in records:
            if isinstance(record, str):
                summary.malformed.append((number, record))
                continue
            try:
                message.events.append(parse_event(record))
            except (ValueError, TypeError) as error:
                summary.malformed.append((number, str(error)))
                continue
            summary.sent += 1
            sent += 1
            if len(message.events) >= MESSAGE_EVENTS:
                yield message
                message = outreach_pb2.RecordUsageRequest()
            if sent >= stream_size:
                break
        else:
            exhausted = True
        if message.events:
            yield message

    while not exhausted:
        summary.add(await stub.RecordUsage(chunk()))
    return summary


async def import_accounts(stub: outreach_pb2_grpc.OutreachServiceStub, path: Path) -> tuple[int, int]:
    accounts: list[outreach_pb2.Account] = []
    for number, record in _records(path):
        if isinstance(record, str):
            raise ValueError(f"{path}:{number}: {record}")
        try:
            accounts.append(parse_account(record))
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}:{number}: {error}") from error
    created = updated = 0
    for start in range(0, len(accounts), MAX_ACCOUNTS_PER_CALL):
        response = await stub.UpsertAccounts(
            outreach_pb2.UpsertAccountsRequest(accounts=accounts[start : start + MAX_ACCOUNTS_PER_CALL])
        )
        created += response.created
        updated += response.updated
    return created, updated


def _print_summary(path: Path, summary: ImportSummary) -> None:
    rejected = ", ".join(f"{reason} {n}" for reason, n in summary.rejected.most_common()) or "none"
    print(
        f"{path}: sent {summary.sent}, accepted {summary.accepted} (late {summary.late}), "
        f"duplicates {summary.duplicates}, rejected {sum(summary.rejected.values())} ({rejected}), "
        f"malformed lines {len(summary.malformed)}"
    )
    for number, problem in summary.malformed[:20]:
        print(f"  {path}:{number}: {problem}", file=sys.stderr)


async def _run(args: argparse.Namespace) -> int:
    async with connect(args.target, SERVICE) as channel:
        stub = outreach_pb2_grpc.OutreachServiceStub(channel)
        try:
            if args.accounts:
                created, updated = await import_accounts(stub, args.accounts)
                print(f"{args.accounts}: accounts created {created}, updated {updated}")
            for path in args.files:
                _print_summary(path, await import_events(stub, path, args.stream_size))
        except ValueError as error:
            print(error, file=sys.stderr)
            return 1
        except grpc.aio.AioRpcError as error:
            details = details_from_rpc_error(error)
            print(f"import failed: {details.code.name}: {details.message}", file=sys.stderr)
            for name, problem in details.field_violations[:20]:
                print(f"  {name}: {problem}", file=sys.stderr)
            return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.outreach.importer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--target", default="127.0.0.1:50055", help="outreach service address (host:port)")
    parser.add_argument("--accounts", type=Path, help="accounts file (JSONL or CSV), registered first")
    parser.add_argument("--stream-size", type=int, default=DEFAULT_STREAM_SIZE, help="events per RecordUsage stream")
    parser.add_argument("files", nargs="*", type=Path, help="event files (JSONL or CSV)")
    args = parser.parse_args(argv)
    if not args.files and not args.accounts:
        parser.error("give an accounts file, event files, or both")
    return asyncio.run(_run(args))


if __name__ == "__main__":
    raise SystemExit(main())
