"""Batch import from JSONL and CSV files through RecordUsage, and the CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest

from servicekit.server import serving
from services.outreach import importer
from services.outreach.app import servicers
from tests.services.outreach.conftest import NOW, YESTERDAY, running_stub, settings_for


def line(event_id: str, **fields: object) -> dict[str, object]:
    return {
        "event_id": event_id,
        "tenant_id": "demo",
        "account_id": "acct-1",
        "occurred_at": YESTERDAY.isoformat(),
        "feature": "ingestion",
        "endpoint": "POST /v2/events/batch",
        "status_code": 200,
        "count": 3,
        "client_version": "js-3.7.2",
        **fields,
    }


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


@pytest.fixture
def accounts_file(tmp_path: Path) -> Path:
    return write_jsonl(
        tmp_path / "accounts.jsonl",
        [{"tenant_id": "demo", "account_id": "acct-1", "name": "Acme", "contact_email": "ops@acme.example",
          "timezone": "Europe/Paris", "opted_out": False}],
    )


async def test_a_jsonl_import_stores_good_events_and_explains_the_rest(tmp_path: Path, accounts_file: Path) -> None:
    events = write_jsonl(
        tmp_path / "events.jsonl",
        [
            line("e1"),
            line("e2", status_code=429, error_code="E-1042"),
            line("e1"),  # the producer's retry
            line("neg", count=-4),
            line("future", occurred_at=(NOW + dt.timedelta(days=30)).isoformat()),
            line("who", account_id="nobody"),
            "{not json",
            line("badcount", count="many"),
            line("badtime", occurred_at="yesterday"),
        ],
    )
    async with running_stub(tmp_path / "data") as stub:
        assert await importer.import_accounts(stub, accounts_file) == (1, 0)
        summary = await importer.import_events(stub, events, stream_size=2)
        again = await importer.import_events(stub, events)

    assert (summary.sent, summary.accepted, summary.duplicates) == (6, 2, 1)
    assert dict(summary.rejected) == {"negative_count": 1, "future_timestamp": 1, "unknown_account": 1}
    assert [number for number, _ in summary.malformed] == [7, 8, 9]
    # Importing the same file again stores nothing new.
    assert (again.accepted, again.duplicates) == (0, 3)


async def test_a_csv_import_reads_the_same_fields(tmp_path: Path, accounts_file: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text(
        "event_id,tenant_id,account_id,occurred_at,feature,endpoint,status_code,error_code,count,client_version\n"
        f"c1,demo,acct-1,{YESTERDAY.replace(tzinfo=None).isoformat()},exports,GET /v2/exports,200,,5,py-2.4.0\n"
        f"c2,demo,acct-1,{YESTERDAY.isoformat()},exports,GET /v2/exports,403,E-3001,2,py-2.4.0\n"
    )
    async with running_stub(tmp_path / "data") as stub:
        await importer.import_accounts(stub, accounts_file)
        summary = await importer.import_events(stub, events)
    assert (summary.accepted, summary.malformed) == (2, [])


async def test_the_cli_imports_accounts_then_events(
    tmp_path: Path, accounts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = write_jsonl(tmp_path / "events.jsonl", [line("e1"), line("e2", count=0)])
    async with serving(settings_for(tmp_path / "data"), servicers) as running:
        code = await asyncio.to_thread(
            importer.main, ["--target", f"127.0.0.1:{running.port}", "--accounts", str(accounts_file), str(events)]
        )
    out = capsys.readouterr().out
    assert code == 0
    assert "accounts created 1" in out
    assert "accepted 1" in out and "missing_count 1" in out


def test_the_cli_needs_something_to_import(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        importer.main([])
