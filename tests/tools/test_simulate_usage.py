"""The usage simulator: files, ground truth consistent with the events, determinism."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import pytest

from tools import simulate_usage

END = dt.date(2026, 11, 24)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, simulate_usage.Simulation]:
    out = tmp_path_factory.mktemp("sim")
    return out, simulate_usage.simulate(300, 8, 7, out, end=END)


def events(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def test_files_hold_accounts_events_and_truth(run: tuple[Path, simulate_usage.Simulation]) -> None:
    out, result = run
    accounts = [json.loads(line) for line in (out / "accounts.jsonl").read_text().splitlines()]
    truth = json.loads((out / "truth.json").read_text())
    assert len(accounts) == 300 == truth["accounts"]
    assert len(events(out)) == result.events_written == truth["stream"]["lines"]
    days = {str(e["occurred_at"])[:10] for e in events(out) if not str(e["event_id"]).startswith("bad-")}
    assert min(days) == str(END - dt.timedelta(days=56)) and max(days) == str(END - dt.timedelta(days=1))


def test_the_stream_has_the_counted_duplicates_and_bad_events(run: tuple[Path, simulate_usage.Simulation]) -> None:
    out, result = run
    stream = result.truth["stream"]
    ids = Counter(str(e["event_id"]) for e in events(out))
    assert sum(n - 1 for n in ids.values()) == stream["duplicates"] > 0
    bad = [e for e in events(out) if str(e["event_id"]).startswith("bad-")]
    assert sum(1 for e in bad if int(str(e["count"])) < 0) == stream["negative_count"]
    assert sum(1 for e in bad if str(e["account_id"]).startswith("ghost-")) == stream["unknown_account"]


def test_planted_incidents_show_in_the_events(run: tuple[Path, simulate_usage.Simulation]) -> None:
    out, result = run
    truth = result.truth
    stream = events(out)
    release = truth["release_incidents"][0]
    failing = {
        str(e["account_id"]) for e in stream
        if e["error_code"] == "E-1042" and str(e["occurred_at"]) >= release["day"]
    }
    assert failing and failing <= set(release["account_ids"])
    assert all(e["client_version"] in release["client_versions"] for e in stream if e["error_code"] == "E-1042")
    codes = {(e["account_id"], e["error_code"]) for e in stream}
    for spike in truth["error_spikes"]:
        assert (spike["account_id"], spike["error_code"]) in codes or spike["baseline_daily_requests"] < 5
    # Drops in the truth really are >= 30% against last week and the baseline.
    assert truth["activity_drops"]
    assert all(d["drop_vs_last_week"] >= 0.3 and d["drop_vs_baseline"] >= 0.3 for d in truth["activity_drops"])


def test_the_same_seed_gives_the_same_stream(tmp_path: Path, run: tuple[Path, simulate_usage.Simulation]) -> None:
    out, _ = run
    simulate_usage.simulate(300, 8, 7, tmp_path, end=END)
    assert (tmp_path / "events.jsonl").read_bytes() == (out / "events.jsonl").read_bytes()


def test_the_cli_writes_csv_and_refuses_too_few_weeks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate_usage.main(["--accounts", "20", "--weeks", "8", "--seed", "3", "--out", str(tmp_path),
                          "--format", "csv"]) == 0
    assert (tmp_path / "events.csv").read_text().startswith("event_id,tenant_id,account_id,occurred_at")
    with pytest.raises(SystemExit):
        simulate_usage.main(["--accounts", "20", "--weeks", "4", "--out", str(tmp_path)])
