"""Usage simulator: realistic event streams for many accounts with planted
incidents, and the ground truth of what was planted, to measure the detectors.

    python -m tools.simulate_usage --accounts 2000 --weeks 8 --seed 1 --out var/sim
    python -m services.outreach.importer --accounts var/sim/accounts.jsonl var/sim/events.jsonl

Writes accounts.jsonl, events.jsonl (or events.csv) and truth.json into --out.

The model: each account has a size (log-normal: many small accounts, a few
very large), a weekly rhythm (business accounts rest at weekends), some a
4-weekly billing-cycle peak, a set of endpoints it uses with its own shares, one
client version, and a low background error rate. Daily traffic gets shared and
per-endpoint noise, then Poisson counts; errors are binomial. Planted on top:
  - activity drops in the last week (35-75%, concentrated on one feature),
    and small dips (5-18%) that must not fire;
  - error spikes on one endpoint of an account (a specific error code);
  - one release that breaks POST /v2/events/batch with 429 E-1042 for the old
    JavaScript SDK versions (the Beacon 4.3.0 incident of the demo knowledge base);
  - churn trends (sustained weekly decline) and accounts that already churned.
The stream also has producer retries (duplicate ids), late arrivals (events
appended out of order) and a few bad events, all counted in the truth.

Ground truth of activity drops is computed from the noise-free expected
successful volume with the same rule the detector applies (>= 30% below last
week and below the account's baseline), so side effects of other incidents
(a broken endpoint) are counted where they really are drops.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# (feature, endpoint, background error (status, code))
ENDPOINTS: list[tuple[str, str, tuple[int, str]]] = [
    ("ingestion", "POST /v2/events/batch", (503, "E-1503")),
    ("identity", "POST /v2/identify", (500, "E-1500")),
    ("dashboards", "GET /v2/dashboards", (500, "E-1500")),
    ("exports", "GET /v2/exports", (500, "E-1500")),
    ("alerts", "POST /v2/alerts", (500, "E-1500")),
    ("funnels", "GET /v2/funnels", (500, "E-1500")),
]
# Error an account-level spike produces on each endpoint (a real cause from the knowledge base).
SPIKE_ERRORS: dict[str, tuple[int, str]] = {
    "POST /v2/events/batch": (401, "E-1002"),
    "POST /v2/identify": (429, "E-1101"),
    "GET /v2/dashboards": (403, "E-1003"),
    "GET /v2/exports": (403, "E-3001"),
    "POST /v2/alerts": (400, "E-1000"),
    "GET /v2/funnels": (429, "E-1101"),
}
VERSIONS = ["js-3.6.2", "js-3.7.0", "js-3.7.2", "js-3.8.1", "py-2.3.1", "py-2.4.0", "ios-5.2.0", "android-5.1.3"]
VERSION_WEIGHTS = [0.08, 0.08, 0.1, 0.3, 0.08, 0.16, 0.1, 0.1]
RELEASE = {
    "release": "4.3.0",
    "endpoint": "POST /v2/events/batch",
    "status_code": 429,
    "error_code": "E-1042",
    "client_versions": ["js-3.6.2", "js-3.7.0", "js-3.7.2"],
}
TIMEZONES = ["UTC", "Europe/Paris", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo"]
FIRST_NAMES = ["Ana", "Ben", "Chloe", "Dev", "Elif", "Femi", "Gus", "Hana", "Ivan", "Jia", "Kofi", "Lena"]
CSMS = [("Maya Lin", "maya.lin@northwind.example"), ("Omar Haddad", "omar.haddad@northwind.example")]

# The detection rule the truth mirrors (kept equal to detectors.default.json).
DROP_RATIO = 0.7
BASELINE_WEEKS = 6
WEEKDAY_BUSINESS = np.array([1.0, 1.05, 1.05, 1.0, 0.95, 0.35, 0.3])
WEEKDAY_CONSUMER = np.array([0.95, 0.95, 0.95, 1.0, 1.05, 1.1, 1.1])


@dataclass(frozen=True)
class Simulation:
    accounts: list[dict[str, Any]]
    truth: dict[str, Any]
    events_written: int


def _median_baseline(weekly: np.ndarray) -> np.ndarray:
    """Median of weeks 1..BASELINE_WEEKS before the last (column 0 is the last week)."""
    return np.median(weekly[:, 1 : 1 + BASELINE_WEEKS], axis=1)


def simulate(accounts: int, weeks: int, seed: int, out: Path, *, tenant: str = "demo",
             end: dt.date | None = None, fmt: str = "jsonl") -> Simulation:
    if weeks < 8:
        raise ValueError("at least 8 weeks: the detectors compare the last week with a 6-week baseline")
    rng = np.random.default_rng(seed)
    end = end or dt.datetime.now(dt.UTC).date()
    days = weeks * 7
    start = end - dt.timedelta(days=days)
    dates = [start + dt.timedelta(days=d) for d in range(days)]
    weekday = np.array([d.weekday() for d in dates])
    n, m = accounts, len(ENDPOINTS)
    ids = [f"acct-{seed}-{i:05d}" for i in range(n)]

    # --- accounts: size, rhythm, endpoints, version --------------------------------------
    size = rng.lognormal(mean=5.3, sigma=1.2, size=n)  # expected requests per weekday
    business = rng.random(n) < 0.7
    rhythm = np.where(business[:, None], WEEKDAY_BUSINESS[weekday][None, :], WEEKDAY_CONSUMER[weekday][None, :])
    uses = rng.random((n, m)) < np.array([1.0, 0.5, 0.6, 0.35, 0.3, 0.3])
    shares = rng.gamma(shape=2.0, size=(n, m)) * uses
    shares[:, 0] += 1.5  # ingestion carries most of every account's traffic
    shares /= shares.sum(axis=1, keepdims=True)
    version = rng.choice(len(VERSIONS), size=n, p=VERSION_WEIGHTS)
    background = rng.uniform(0.001, 0.006, size=(n, 1)) * np.ones((1, m))

    multiplier = np.ones((n, days, m))
    error_rate = np.repeat(background[:, None, :], days, axis=1)
    # (account, endpoint) -> (status, error code, first day): what its errors are from that day on.
    spike_error: dict[tuple[int, int], tuple[int, str, int]] = {}
    last_week = slice(days - 7, days)

    # Billing-cycle accounts: every 4th week is 60% busier; a quarter of them peaked last week.
    cycle = rng.random(n) < 0.1
    phase = rng.integers(0, 4, size=n)
    week_of_day = (days - 1 - np.arange(days)) // 7  # 0 = last week
    peak = cycle[:, None] & (((week_of_day[None, :] - 1 - phase[:, None]) % 4) == 0)
    multiplier *= np.where(peak, 1.6, 1.0)[:, :, None]

    # --- planted incidents -------------------------------------------------------------------
    planted: list[dict[str, Any]] = []
    release_day = days - 4
    affected_version = np.isin(version, [VERSIONS.index(v) for v in RELEASE["client_versions"]])
    release_hit = affected_version & (rng.random(n) < 0.8)
    release_rate = rng.uniform(0.3, 0.6, size=n)
    for a in np.flatnonzero(release_hit):
        error_rate[a, release_day:, 0] = release_rate[a]
        spike_error[(int(a), 0)] = (int(RELEASE["status_code"]), str(RELEASE["error_code"]), release_day)
    candidates = rng.permutation(np.flatnonzero(~release_hit & ~cycle))
    take = {"drop": 0.06, "dip": 0.05, "spike": 0.04, "churn_trend": 0.03, "churned": 0.03}
    groups: dict[str, np.ndarray] = {}
    offset = 0
    for kind, share in take.items():
        count = round(share * n)
        groups[kind] = candidates[offset : offset + count]
        offset += count

    for a in groups["drop"]:
        magnitude = rng.uniform(0.35, 0.75)
        feature = int(np.argmax(shares[a] * (rng.random(m) + 0.5)))
        # Concentrated on one feature: it loses up to all of its traffic, the rest covers the remainder.
        on_feature = min(1.0, magnitude / shares[a, feature])
        rest = max(0.0, magnitude - on_feature * shares[a, feature]) / max(1e-9, 1 - shares[a, feature])
        multiplier[a, last_week, :] *= 1 - rest
        multiplier[a, last_week, feature] *= (1 - on_feature) / max(1e-9, 1 - rest)
        planted.append({"kind": "activity_drop", "account_id": ids[a], "feature": ENDPOINTS[feature][0],
                        "endpoint": ENDPOINTS[feature][1], "magnitude": round(float(magnitude), 3)})
    for a in groups["dip"]:
        magnitude = rng.uniform(0.05, 0.18)
        multiplier[a, last_week, :] *= 1 - magnitude
        planted.append({"kind": "dip", "account_id": ids[a], "magnitude": round(float(magnitude), 3)})
    spikes: list[dict[str, Any]] = []
    for a in groups["spike"]:
        used = np.flatnonzero(uses[a])
        e = int(rng.choice(used))
        onset = int(rng.integers(days - 6, days - 1))
        rate = float(rng.uniform(0.15, 0.6))
        error_rate[a, onset:, e] = rate
        spike_error[(int(a), e)] = (*SPIKE_ERRORS[ENDPOINTS[e][1]], onset)
        spikes.append({"account_id": ids[a], "endpoint": ENDPOINTS[e][1], "feature": ENDPOINTS[e][0],
                       "error_code": SPIKE_ERRORS[ENDPOINTS[e][1]][1], "onset": str(dates[onset]),
                       "rate_after": round(rate, 3)})
    churn_trends: list[dict[str, Any]] = []
    for a in groups["churn_trend"]:
        decline = rng.uniform(0.12, 0.2)
        start_day = days - 35
        weeks_in = np.clip((np.arange(days) - start_day) / 7.0, 0, None)
        multiplier[a, :, :] *= ((1 - decline) ** weeks_in)[:, None]
        churn_trends.append({"account_id": ids[a], "weekly_decline": round(float(decline), 3)})
    churned_at: dict[int, dt.date] = {}
    for a in groups["churned"]:
        churn_day = int(rng.integers(28, days - 21))
        weeks_in = np.clip((np.arange(days) - (churn_day - 28)) / 7.0, 0, None)
        multiplier[a, :, :] *= ((1 - 0.15) ** weeks_in)[:, None]
        multiplier[a, churn_day:, :] = 0.0
        churned_at[int(a)] = dates[churn_day]

    # --- expected and sampled traffic --------------------------------------------------------
    expected = size[:, None, None] * rhythm[:, :, None] * shares[:, None, :] * multiplier
    expected_success = expected * (1 - error_rate)
    day_noise = rng.lognormal(0.0, 0.1, size=(n, days, 1))
    endpoint_noise = rng.lognormal(0.0, 0.05, size=(n, days, m))
    requests = rng.poisson(expected * day_noise * endpoint_noise)
    errors = rng.binomial(requests, np.clip(error_rate, 0, 1))

    # --- ground truth ------------------------------------------------------------------------
    weekly = expected_success.sum(axis=2).reshape(n, weeks, 7)[:, ::-1, :].sum(axis=2)  # column 0 = last week
    baseline = _median_baseline(weekly)
    drops = []
    cause = {p["account_id"]: p for p in planted if p["kind"] == "activity_drop"}
    for a in range(n):
        if a in churned_at:
            continue
        if weekly[a, 0] <= DROP_RATIO * weekly[a, 1] and weekly[a, 0] <= DROP_RATIO * baseline[a]:
            planted_cause = cause.get(ids[a], {})
            drops.append({
                "account_id": ids[a],
                "feature": planted_cause.get("feature", ""),
                "drop_vs_last_week": round(float(1 - weekly[a, 0] / weekly[a, 1]), 3),
                "drop_vs_baseline": round(float(1 - weekly[a, 0] / baseline[a]), 3),
                "baseline_weekly": round(float(baseline[a]), 1),
            })
    for spike in spikes:
        a = ids.index(spike["account_id"])
        e = [ep for _, ep, _ in ENDPOINTS].index(spike["endpoint"])
        spike["baseline_daily_requests"] = round(float(expected[a, : days - 7, e].mean()), 1)
        # Expected calls on each of the last 7 days, oldest first (for the detector's volume guard).
        spike["last_days_requests"] = [round(float(x), 1) for x in expected[a, days - 7 :, e]]
    weekly_volume = {ids[a]: round(float(baseline[a]), 1) for a in range(n)}
    for item in churn_trends:
        a = ids.index(item["account_id"])
        item["baseline_weekly"] = weekly_volume[item["account_id"]]
        # The level before the decline began (weeks 5 to 7 before the end).
        item["reference_weekly"] = round(float(np.median(weekly[a, 5:8])), 1)
    release_accounts = [ids[a] for a in np.flatnonzero(release_hit)]
    release_volume = {
        ids[a]: round(float(expected[a, :release_day, 0].mean()), 1) for a in np.flatnonzero(release_hit)
    }

    account_rows = []
    for a in range(n):
        csm_name, csm_email = CSMS[a % len(CSMS)]
        account_rows.append({
            "tenant_id": tenant, "account_id": ids[a], "name": f"Customer {seed}-{a:05d}",
            "contact_name": FIRST_NAMES[a % len(FIRST_NAMES)],
            "contact_email": f"ops+{seed}-{a:05d}@customer.example", "csm_name": csm_name, "csm_email": csm_email,
            "timezone": TIMEZONES[a % len(TIMEZONES)], "opted_out": bool(a % 97 == 13),
            "churned_at": (dt.datetime.combine(churned_at[a], dt.time(), dt.UTC).isoformat()
                           if a in churned_at else None),
        })

    out.mkdir(parents=True, exist_ok=True)
    with (out / "accounts.jsonl").open("w") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in account_rows)
    stream = _write_events(out, fmt, rng, tenant, ids, dates, requests, errors, version, spike_error, seed)
    truth = {
        "tenant_id": tenant, "seed": seed, "accounts": n, "weeks": weeks, "end": str(end),
        "activity_drops": drops,
        "error_spikes": spikes,
        "release_incidents": [{**RELEASE, "day": str(dates[release_day]), "account_ids": release_accounts,
                               "daily_requests_before": release_volume}],
        "churn_trends": churn_trends,
        "churned_accounts": [ids[a] for a in churned_at],
        "planted": planted,
        "baseline_weekly": weekly_volume,
        "stream": stream,
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    return Simulation(accounts=account_rows, truth=truth, events_written=stream["lines"])


def _write_events(out: Path, fmt: str, rng: np.random.Generator, tenant: str, ids: list[str],
                  dates: list[dt.date], requests: np.ndarray, errors: np.ndarray, version: np.ndarray,
                  spike_error: dict[tuple[int, int], tuple[int, str, int]], seed: int) -> dict[str, int]:
    fields = ["event_id", "tenant_id", "account_id", "occurred_at", "feature", "endpoint", "status_code",
              "error_code", "count", "client_version"]
    rows: list[list[Any]] = []
    hours = rng.integers(0, 24, size=requests.shape)
    for a, d, e in zip(*np.nonzero(requests), strict=True):
        total, failed = int(requests[a, d, e]), int(errors[a, d, e])
        when = f"{dates[d].isoformat()}T{hours[a, d, e]:02d}:17:00+00:00"
        feature, endpoint, background = ENDPOINTS[e]
        base = [tenant, ids[a], when, feature, endpoint]
        if total - failed:
            rows.append([f"{ids[a]}-{d}-{e}-ok", *base, 200, "", total - failed, VERSIONS[version[a]]])
        if failed:
            status, code, since = spike_error.get((int(a), int(e)), (*background, 0))
            if d < since:
                status, code = background
            rows.append([f"{ids[a]}-{d}-{e}-err", *base, status, code, failed, VERSIONS[version[a]]])
    valid = len(rows)
    # Producer retries resend some events; some events arrive late, after later days.
    duplicates = [list(rows[i]) for i in rng.choice(valid, size=valid // 200, replace=False)]
    late_index = set(rng.choice(valid, size=valid // 100, replace=False).tolist())
    ordered = [row for i, row in enumerate(rows) if i not in late_index] + [rows[i] for i in sorted(late_index)]
    bad_count = max(3, valid // 2000)
    # Far in the future of any clock that reads this file (and fixed by --end, so runs repeat).
    future = f"{dates[-1] + dt.timedelta(days=3650)}T00:00:00+00:00"
    bad = []
    for i in range(bad_count):
        row = list(rows[int(rng.integers(valid))])
        row[0] = f"bad-{seed}-{i}"
        kind = i % 3
        if kind == 0:
            row[8] = -int(row[8])
        elif kind == 1:
            row[3] = future
        else:
            row[2] = f"ghost-{seed}-{i}"
        bad.append(row)
    stream = ordered + duplicates + bad
    # Mix the extras in, keeping days roughly in order (a producer's retries come soon after).
    positions = rng.random(len(duplicates) + len(bad))
    extras = sorted(zip(positions, duplicates + bad, strict=True), key=lambda pair: pair[0])
    merged: list[list[Any]] = []
    step = max(1, len(ordered) // (len(extras) + 1))
    extra_iter = iter(extras)
    for i, row in enumerate(ordered):
        merged.append(row)
        if i % step == step - 1:
            nxt = next(extra_iter, None)
            if nxt is not None:
                merged.append(nxt[1])
    merged.extend(row for _, row in extra_iter)
    assert len(merged) == len(stream)
    path = out / f"events.{fmt}"
    with path.open("w", newline="") as handle:
        if fmt == "csv":
            writer = csv.writer(handle)
            writer.writerow(fields)
            writer.writerows(merged)
        else:
            handle.writelines(json.dumps(dict(zip(fields, row, strict=True))) + "\n" for row in merged)
    return {
        "lines": len(merged),
        "valid_events": valid,
        "duplicates": len(duplicates),
        "late": len(late_index),
        "negative_count": len(range(0, bad_count, 3)),
        "future_timestamp": len(range(1, bad_count, 3)),
        "unknown_account": len(range(2, bad_count, 3)),
        "total_count": int(requests.sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.simulate_usage", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--end", type=dt.date.fromisoformat, help="first day after the simulation (default today, UTC)")
    parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    args = parser.parse_args(argv)
    if args.accounts < 1:
        parser.error("--accounts must be at least 1")
    try:
        result = simulate(args.accounts, args.weeks, args.seed, args.out, tenant=args.tenant, end=args.end,
                          fmt=args.format)
    except ValueError as error:
        parser.error(str(error))
    truth = result.truth
    print(
        f"{args.out}: {len(result.accounts)} accounts, {result.events_written} event lines "
        f"({truth['stream']['duplicates']} duplicates, {truth['stream']['late']} late, "
        f"{result.events_written - truth['stream']['valid_events'] - truth['stream']['duplicates']} bad); "
        f"planted: {len(truth['activity_drops'])} activity drops, {len(truth['error_spikes'])} error spikes, "
        f"1 release incident on {len(truth['release_incidents'][0]['account_ids'])} accounts, "
        f"{len(truth['churn_trends'])} churn trends, {len(truth['churned_accounts'])} churned accounts"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
