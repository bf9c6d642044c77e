"""Outreach risk detection against planted ground truth, through the service's own paths.

    python bench/outreach_detection.py --seeds 1 2 3 --accounts 2000 --weeks 8 --json var/bench/outreach.json

For each seed: the usage simulator (tools/simulate_usage.py) writes
accounts, an event stream (with duplicates, late and bad events) and the truth
of what it planted; the outreach service runs in this process on a free port
with a throw-away SQLite database (or --database-url); the importer registers
the accounts and streams the events through RecordUsage over a real gRPC
channel; DetectRisks runs the detectors as of the end of the simulation. The
knowledge base is not started (retrieval down: findings keep their evidence
without passages), so detection time is the detectors' own.

Figures (summed over seeds):
  - per detector precision / recall against the planted truth, counting only
    incidents above the detector's volume guard for recall:
      activity_drop   accounts whose expected (noise-free) successful volume fell
                      >= 30% week over week and against their baseline;
      error_spike     planted per-account spikes (account, endpoint); a spike found on
                      a release-affected account that the cluster missed counts as
                      correct but is reported as `unclustered_release_spikes`;
      release_cluster one finding per planted release (a second one is a false positive);
      churn_trend     planted sustained declines;
  - cluster grouping: precision, recall and Jaccard of the accounts in the cluster
    finding against the release's affected accounts (those with >= 5 calls a day
    on the broken endpoint, i.e. with failures to see); affected versions named;
  - drop cause accuracy: share of found planted drops whose top feature is the planted one;
  - ingestion: events per second through RecordUsage, and whether accepted /
    duplicate / rejected counts equal the truth (never double-counted);
  - detection run time per seed (the DetectRisks RPC).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from aftercare.outreach.v1 import outreach_pb2, outreach_pb2_grpc
from servicekit.logging import configure_logging
from servicekit.server import serving
from services.outreach import importer
from services.outreach.app import servicers
from services.outreach.detector_config import DetectorConfig
from services.outreach.settings import DEFAULT_DETECTORS_FILE, OutreachSettings
from tools import simulate_usage

DETECTORS = ("activity_drop", "error_spike", "release_cluster", "churn_trend")
KIND = {
    outreach_pb2.RISK_KIND_ACTIVITY_DROP: "activity_drop",
    outreach_pb2.RISK_KIND_ERROR_SPIKE: "error_spike",
    outreach_pb2.RISK_KIND_RELEASE_CLUSTER: "release_cluster",
    outreach_pb2.RISK_KIND_CHURN_TREND: "churn_trend",
}
DETECTABLE_RELEASE_CALLS = 5.0


def _counts() -> dict[str, int]:
    return {"tp_precision": 0, "predicted": 0, "tp_recall": 0, "truth": 0}


def evaluate(truth: dict[str, Any], findings: list[outreach_pb2.RiskFinding], config: DetectorConfig,
             totals: dict[str, dict[str, int]], extra: dict[str, Any]) -> None:
    by_kind: dict[str, list[outreach_pb2.RiskFinding]] = {name: [] for name in DETECTORS}
    for finding in findings:
        by_kind[KIND[finding.kind]].append(finding)

    # activity drop
    guard = config.activity_drop.min_weekly_events
    drops_all = {d["account_id"]: d for d in truth["activity_drops"]}
    drops_guarded = {a for a, d in drops_all.items() if d["baseline_weekly"] >= guard}
    found = {f.account_ids[0]: f for f in by_kind["activity_drop"]}
    c = totals["activity_drop"]
    c["predicted"] += len(found)
    c["tp_precision"] += len(set(found) & set(drops_all))
    c["truth"] += len(drops_guarded)
    c["tp_recall"] += len(set(found) & drops_guarded)
    for account, finding in found.items():
        planted = drops_all.get(account, {}).get("feature")
        if planted:
            extra["drop_cause_checked"] += 1
            extra["drop_cause_right"] += finding.feature == planted

    # error spike
    spike_config = config.error_spike
    planted_spikes = {(s["account_id"], s["endpoint"]) for s in truth["error_spikes"]}
    guarded_spikes = {
        (s["account_id"], s["endpoint"]) for s in truth["error_spikes"]
        if sum(s["last_days_requests"][-spike_config.recent_days :]) >= spike_config.min_requests
    }
    release = truth["release_incidents"][0]
    release_accounts = set(release["account_ids"])
    spikes = {(f.account_ids[0], f.endpoint) for f in by_kind["error_spike"]}
    unclustered = {s for s in spikes if s[0] in release_accounts and s[1] == release["endpoint"]}
    c = totals["error_spike"]
    c["predicted"] += len(spikes)
    c["tp_precision"] += len(spikes & planted_spikes) + len(unclustered - planted_spikes)
    c["truth"] += len(guarded_spikes)
    c["tp_recall"] += len(spikes & guarded_spikes)
    extra["unclustered_release_spikes"] += len(unclustered)

    # release cluster
    matching = [f for f in by_kind["release_cluster"]
                if f.endpoint == release["endpoint"] and f.error_code == release["error_code"]]
    c = totals["release_cluster"]
    c["predicted"] += len(by_kind["release_cluster"])
    c["tp_precision"] += min(1, len(matching))
    c["truth"] += 1
    c["tp_recall"] += min(1, len(matching))
    detectable = {a for a, calls in release["daily_requests_before"].items() if calls >= DETECTABLE_RELEASE_CALLS}
    grouped = set(matching[0].account_ids) if matching else set()
    extra["grouping"].append({
        "seed": truth["seed"],
        "clusters_for_the_release": len(matching),
        "accounts_in_cluster": len(grouped),
        "affected_detectable": len(detectable),
        "precision": len(grouped & release_accounts) / len(grouped) if grouped else 0.0,
        "recall": len(grouped & detectable) / len(detectable) if detectable else 0.0,
        "jaccard": len(grouped & release_accounts & detectable) / len(grouped | detectable) if detectable else 0.0,
        "versions_right": bool(matching) and set(matching[0].release.split(", ")) == set(release["client_versions"]),
    })

    # churn trend
    churn_guard = config.churn_trend.min_weekly_events
    trends_all = {t["account_id"] for t in truth["churn_trends"]}
    trends_guarded = {t["account_id"] for t in truth["churn_trends"] if t["reference_weekly"] >= churn_guard}
    churn = {f.account_ids[0] for f in by_kind["churn_trend"]}
    c = totals["churn_trend"]
    c["predicted"] += len(churn)
    c["tp_precision"] += len(churn & trends_all)
    c["truth"] += len(trends_guarded)
    c["tp_recall"] += len(churn & trends_guarded)


async def run_seed(seed: int, args: argparse.Namespace, work: Path, config: DetectorConfig,
                   totals: dict[str, dict[str, int]], extra: dict[str, Any]) -> dict[str, Any]:
    sim_dir = work / f"sim-{seed}"
    started = time.perf_counter()
    result = simulate_usage.simulate(args.accounts, args.weeks, seed, sim_dir, tenant=f"bench-{seed}")
    simulate_s = time.perf_counter() - started
    truth = result.truth
    settings = OutreachSettings(  # type: ignore[call-arg]
        port=0, data_dir=work / f"data-{seed}", database_url=args.database_url, llm_base_url="http://127.0.0.1:9/v1",
        retrieval_addr="127.0.0.1:9", escalation_addr="127.0.0.1:9", sender="off", usage_batch_size=args.batch_size,
        detectors_file=args.detectors,
    )
    async with serving(settings, servicers) as running, grpc.aio.insecure_channel(
        f"127.0.0.1:{running.port}", options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    ) as channel:
        stub = outreach_pb2_grpc.OutreachServiceStub(channel)
        await importer.import_accounts(stub, sim_dir / "accounts.jsonl")
        started = time.perf_counter()
        summary = await importer.import_events(stub, sim_dir / "events.jsonl")
        ingest_s = time.perf_counter() - started
        (sim_dir / "events.jsonl").unlink()
        as_of = dt.datetime.fromisoformat(truth["end"]).replace(tzinfo=dt.UTC)
        request = outreach_pb2.DetectRisksRequest(tenant_id=truth["tenant_id"])
        request.as_of.FromDatetime(as_of)
        started = time.perf_counter()
        response = await stub.DetectRisks(request, timeout=600)
        detect_s = time.perf_counter() - started
    stream = truth["stream"]
    expected_rejected = {k: stream[k] for k in ("negative_count", "future_timestamp", "unknown_account")}
    accounting_ok = (
        summary.accepted == stream["valid_events"]
        and summary.duplicates == stream["duplicates"]
        and dict(summary.rejected) == expected_rejected
        and not summary.malformed
    )
    evaluate(truth, list(response.findings), config, totals, extra)
    row = {
        "seed": seed, "accounts": args.accounts, "weeks": args.weeks, "event_lines": stream["lines"],
        "accepted": summary.accepted, "duplicates": summary.duplicates, "rejected": dict(summary.rejected),
        "late": summary.late, "accounting_ok": accounting_ok, "simulate_s": round(simulate_s, 2),
        "ingest_s": round(ingest_s, 2), "events_per_s": round(stream["lines"] / ingest_s, 1),
        "detect_s": round(detect_s, 3), "findings": len(response.findings),
    }
    print(f"seed {seed}: {stream['lines']} lines ingested in {ingest_s:.1f}s "
          f"({row['events_per_s']:.0f}/s, accounting {'ok' if accounting_ok else 'WRONG'}), "
          f"{len(response.findings)} findings in {detect_s:.2f}s", flush=True)
    return row


def _ratio(a: int, b: int) -> float:
    return round(a / b, 4) if b else 0.0


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    config = DetectorConfig.load(args.detectors)
    totals = {name: _counts() for name in DETECTORS}
    extra: dict[str, Any] = {"drop_cause_checked": 0, "drop_cause_right": 0, "unclustered_release_spikes": 0,
                             "grouping": []}
    work = Path(tempfile.mkdtemp(prefix="outreach-bench-"))
    started = time.perf_counter()
    try:
        runs = [await run_seed(seed, args, work, config, totals, extra) for seed in args.seeds]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    detectors = {
        name: {
            "precision": _ratio(c["tp_precision"], c["predicted"]),
            "recall": _ratio(c["tp_recall"], c["truth"]),
            "predicted": c["predicted"], "truth_above_guard": c["truth"],
        }
        for name, c in totals.items()
    }
    grouping = extra["grouping"]
    events = sum(r["event_lines"] for r in runs)
    ingest_s = sum(r["ingest_s"] for r in runs)
    return {
        "config": {"seeds": args.seeds, "accounts": args.accounts, "weeks": args.weeks,
                   "detectors_file": str(args.detectors), "database": args.database_url or "sqlite"},
        "detectors": detectors,
        "cluster_grouping": {
            "precision": round(statistics.fmean(g["precision"] for g in grouping), 4),
            "recall": round(statistics.fmean(g["recall"] for g in grouping), 4),
            "jaccard": round(statistics.fmean(g["jaccard"] for g in grouping), 4),
            "one_cluster_per_release": all(g["clusters_for_the_release"] == 1 for g in grouping),
            "versions_right": all(g["versions_right"] for g in grouping),
            "unclustered_release_spikes": extra["unclustered_release_spikes"],
            "per_seed": grouping,
        },
        "drop_cause_accuracy": _ratio(extra["drop_cause_right"], extra["drop_cause_checked"]),
        "ingest": {"events": events, "seconds": round(ingest_s, 2), "events_per_s": round(events / ingest_s, 1),
                   "accounting_ok": all(r["accounting_ok"] for r in runs)},
        "detection_s": {"mean": round(statistics.fmean(r["detect_s"] for r in runs), 3),
                        "max": max(r["detect_s"] for r in runs)},
        "runs": runs,
        "total_s": round(time.perf_counter() - started, 1),
    }


def print_table(report: dict[str, Any]) -> None:
    print()
    print(f"{'detector':<16} {'precision':>9} {'recall':>7} {'found':>6} {'truth':>6}")
    for name, d in report["detectors"].items():
        print(f"{name:<16} {d['precision']:>9.3f} {d['recall']:>7.3f} {d['predicted']:>6} {d['truth_above_guard']:>6}")
    g = report["cluster_grouping"]
    print(f"\ncluster grouping: precision {g['precision']:.3f}, recall {g['recall']:.3f}, jaccard {g['jaccard']:.3f}, "
          f"one cluster per release {g['one_cluster_per_release']}, versions right {g['versions_right']}, "
          f"unclustered release spikes {g['unclustered_release_spikes']}")
    print(f"drop cause accuracy (top feature = planted): {report['drop_cause_accuracy']:.3f}")
    i = report["ingest"]
    print(f"ingestion: {i['events']} events in {i['seconds']}s = {i['events_per_s']:.0f} events/s, "
          f"accounting ok {i['accounting_ok']}")
    print(f"detection run: mean {report['detection_s']['mean']}s, max {report['detection_s']['max']}s; "
          f"total {report['total_s']}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--database-url", default="", help="SQLAlchemy URL; default a temporary SQLite file")
    parser.add_argument("--detectors", type=Path, default=DEFAULT_DETECTORS_FILE)
    parser.add_argument("--batch-size", type=int, default=2000, help="events per store transaction")
    parser.add_argument("--keep", action="store_true", help="keep the simulated files and databases")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args()
    configure_logging("bench", "console", "warning")
    report = asyncio.run(main_async(args))
    print_table(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
