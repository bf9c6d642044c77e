"""The detectors over an account's weekly activity (see services/outreach/detection.py):

  - activity drop: successful events of the last week <= drop_ratio x the week
    before AND <= drop_ratio x the account's own baseline (median of the weeks
    before), after removing a tenant-wide dip (a holiday week is not 800 drops),
    with its likely cause (the feature that lost the most, new error codes, the
    client version in use);
  - churn trend: a sustained, steady weekly decline that brought the account
    near the level at which accounts that churned stood before leaving.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import statistics
from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from services.outreach.detector_config import ActivityDropConfig, ChurnTrendConfig
from services.outreach.findings import ACTIVITY_DROP, CHURN_TREND, EvidenceItem, Finding, count_text, percent_text
from services.outreach.usage_reads import DAILY, ERRORS, VERSIONS, chunks, successful


def activity_drops(
    connection: sa.Connection,
    tenant_id: str,
    end: dt.date,
    weekly: dict[str, list[float]],
    first_day: dict[str, dt.date],
    churned: dict[str, dt.datetime],
    config: ActivityDropConfig,
) -> list[Finding]:
    candidates: dict[str, tuple[float, float, float]] = {}
    ratios: list[float] = []
    for account, weeks in weekly.items():
        if account in churned:
            continue
        # Only weeks the account existed for count towards its baseline.
        history = [
            weeks[k] for k in range(1, config.baseline_weeks + 1)
            if first_day[account] <= end - dt.timedelta(days=7 * (k + 1))
        ]
        if len(history) < config.min_baseline_weeks:
            continue
        baseline = statistics.median(history)
        if baseline < config.min_weekly_events:
            continue
        ratios.append(weeks[0] / baseline)
        candidates[account] = (weeks[0], weeks[1], baseline)
    # A tenant-wide dip (holiday week, outage on our side) is not each account's problem.
    cohort = statistics.median(ratios) if len(ratios) >= config.cohort_min_accounts else 1.0
    cohort = min(1.0, cohort)
    flagged: dict[str, tuple[float, float, float]] = {}
    for account, (last, previous, baseline) in candidates.items():
        if previous <= 0:
            continue
        if last <= config.drop_ratio * previous and last / baseline <= config.drop_ratio * cohort:
            flagged[account] = (last, previous, baseline)
    if not flagged:
        return []
    causes = _drop_causes(connection, tenant_id, end, list(flagged))
    findings = []
    for account, (last, previous, baseline) in flagged.items():
        drop_wow = 1 - last / previous
        drop_base = 1 - last / baseline
        evidence = [
            EvidenceItem(
                f"Successful API events fell {percent_text(drop_wow)} week over week, from "
                f"{count_text(previous)} to {count_text(last)}, and are {percent_text(drop_base)} below the "
                f"account's {config.baseline_weeks}-week median of {count_text(baseline)} a week.",
                "activity.weekly_successful_events", previous, last,
            )
        ]
        cause = causes.get(account, {})
        feature, endpoint, share = cause.get("feature", ""), cause.get("endpoint", ""), cause.get("share", 0.0)
        summary = f"activity down {percent_text(drop_wow)} week over week"
        if feature and share >= 0.5:
            evidence.append(
                EvidenceItem(
                    f"The {feature} feature ({endpoint}) accounts for {percent_text(share)} of the drop: its "
                    f"successful calls fell from {count_text(cause['before'])} to {count_text(cause['after'])} a week.",
                    f"feature.{feature}.weekly_successful_events", cause["before"], cause["after"],
                )
            )
            summary += f", mostly {feature} ({endpoint})"
        for code in cause.get("new_errors", []):
            evidence.append(EvidenceItem(code["statement"], f"errors.{code['code']}.weekly", code["before"],
                                         code["after"]))
        error_code = cause["new_errors"][0]["code"] if cause.get("new_errors") else ""
        if error_code:
            summary += f", with new {error_code} errors"
        volume_weight = min(1.0, math.log10(max(baseline, 10)) / 5)
        findings.append(
            Finding(
                kind=ACTIVITY_DROP,
                subject_key=f"account:{account}",
                account_ids=[account],
                severity=round(min(1.0, drop_wow) * volume_weight, 4),
                cause=summary,
                evidence=evidence,
                feature=feature if share >= 0.5 else "",
                endpoint=endpoint if share >= 0.5 else "",
                error_code=error_code,
                release=cause.get("version", ""),
                query=" ".join(
                    x for x in (error_code, endpoint if share >= 0.5 else "",
                                f"{feature} not working" if share >= 0.5 else "usage dropped") if x
                ),
                details={"drop_vs_last_week": drop_wow, "drop_vs_baseline": drop_base, "baseline": baseline},
            )
        )
    return findings


def _drop_causes(
    connection: sa.Connection, tenant_id: str, end: dt.date, accounts: list[str]
) -> dict[str, dict[str, Any]]:
    """Per flagged account: the feature/endpoint that lost the most, and error codes that appeared."""
    last, previous = end - dt.timedelta(days=7), end - dt.timedelta(days=14)
    causes: dict[str, dict[str, Any]] = {}
    lost: dict[str, list[tuple[float, str, str, float, float]]] = defaultdict(list)
    for chunk in chunks(accounts):
        rows = connection.execute(
            sa.select(
                DAILY.c.account_id, DAILY.c.feature, DAILY.c.endpoint,
                sa.func.sum(sa.case((DAILY.c.day < last, successful(DAILY)), else_=0)).label("before"),
                sa.func.sum(sa.case((DAILY.c.day >= last, successful(DAILY)), else_=0)).label("after"),
            )
            .where(DAILY.c.tenant_id == tenant_id, DAILY.c.account_id.in_(chunk),
                   DAILY.c.day >= previous, DAILY.c.day < end)
            .group_by(DAILY.c.account_id, DAILY.c.feature, DAILY.c.endpoint)
        )
        for row in rows:
            before, after = float(row.before or 0), float(row.after or 0)
            lost[row.account_id].append((before - after, row.feature, row.endpoint, before, after))
        error_rows = connection.execute(
            sa.select(
                ERRORS.c.account_id, ERRORS.c.endpoint, ERRORS.c.status_code, ERRORS.c.error_code,
                sa.func.sum(sa.case((ERRORS.c.day < last, ERRORS.c.error_count), else_=0)).label("before"),
                sa.func.sum(sa.case((ERRORS.c.day >= last, ERRORS.c.error_count), else_=0)).label("after"),
            )
            .where(ERRORS.c.tenant_id == tenant_id, ERRORS.c.account_id.in_(chunk),
                   ERRORS.c.day >= previous, ERRORS.c.day < end)
            .group_by(ERRORS.c.account_id, ERRORS.c.endpoint, ERRORS.c.status_code, ERRORS.c.error_code)
        )
        for row in error_rows:
            before, after = float(row.before or 0), float(row.after or 0)
            if after >= 10 and after >= 4 * max(before, 1):
                label = row.error_code or f"HTTP {row.status_code}"
                causes.setdefault(row.account_id, {}).setdefault("new_errors", []).append({
                    "code": label,
                    "before": before,
                    "after": after,
                    "statement": f"{row.endpoint} returned {row.status_code} {label} {count_text(after)} times in the "
                                 f"last week ({count_text(before)} the week before).",
                })
        version_rows = connection.execute(
            sa.select(VERSIONS.c.account_id, VERSIONS.c.client_version,
                      sa.func.sum(VERSIONS.c.event_count).label("events"))
            .where(VERSIONS.c.tenant_id == tenant_id, VERSIONS.c.account_id.in_(chunk),
                   VERSIONS.c.day >= last, VERSIONS.c.day < end)
            .group_by(VERSIONS.c.account_id, VERSIONS.c.client_version)
        )
        top: dict[str, tuple[float, str]] = {}
        for row in version_rows:
            if row.client_version and float(row.events) > top.get(row.account_id, (0.0, ""))[0]:
                top[row.account_id] = (float(row.events), row.client_version)
        for account, (_, version) in top.items():
            causes.setdefault(account, {})["version"] = version
    for account, items in lost.items():
        total = sum(item[0] for item in items)
        if total <= 0:
            continue
        delta, feature, endpoint, before, after = max(items)
        cause = causes.setdefault(account, {})
        cause.update(feature=feature, endpoint=endpoint, share=min(1.0, delta / total), before=before,
                     after=after)
        cause.get("new_errors", []).sort(key=lambda e: -e["after"])
    return causes


def churn_trends(
    connection: sa.Connection,
    tenant_id: str,
    end: dt.date,
    weekly: dict[str, list[float]],
    first_day: dict[str, dt.date],
    churned: dict[str, dt.datetime],
    config: ChurnTrendConfig,
) -> list[Finding]:
    span = config.trend_weeks + config.reference_weeks
    churned_level, churned_count = _churned_level(connection, tenant_id, churned, config)
    threshold = churned_level + config.level_margin
    findings = []
    for account, weeks in weekly.items():
        if account in churned or first_day[account] > end - dt.timedelta(days=7 * span):
            continue
        reference = statistics.median(weeks[config.trend_weeks : span])
        if reference < config.min_weekly_events:
            continue
        trend = list(reversed(weeks[: config.trend_weeks]))  # oldest first
        slope, r2 = _log_trend(trend)
        decline = 1 - math.exp(slope)
        # Sustained: the weeks before the last one already declined (one bad week is a drop).
        earlier_decline = 1 - math.exp(_log_trend(trend[:-1])[0])
        total_fall = math.log(trend[0] + 1) - math.log(trend[-1] + 1)
        last_fall = math.log(trend[-2] + 1) - math.log(trend[-1] + 1)
        falling_steps = sum(1 for a, b in itertools.pairwise(trend) if b < a)
        level = (weeks[0] + weeks[1]) / 2 / reference
        if (decline >= config.min_weekly_decline and r2 >= config.min_r2
                and earlier_decline >= config.min_weekly_decline / 2
                and total_fall > 0 and last_fall <= config.max_last_week_share * total_fall
                and falling_steps >= len(trend) - 2 and level <= threshold):
            findings.append(
                Finding(
                    kind=CHURN_TREND,
                    subject_key=f"account:{account}",
                    account_ids=[account],
                    severity=round(min(1.0, 1 - level), 4),
                    # How churned accounts stood is for the reviewer, never the customer's message.
                    cause=(f"usage declining {percent_text(decline)} a week for {config.trend_weeks} weeks, now at "
                           f"{percent_text(level)} of its earlier level; accounts that churned stood at "
                           f"{percent_text(churned_level)} before leaving"
                           + (f" ({churned_count} churned accounts)" if churned_count else " (default)")),
                    evidence=[
                        EvidenceItem(
                            f"Weekly successful events declined steadily for {config.trend_weeks} weeks, "
                            f"about {percent_text(decline)} a week: "
                            f"{', '.join(count_text(w) for w in trend[:-1])}, then {count_text(trend[-1])}.",
                            "activity.weekly_decline", reference, weeks[0],
                        ),
                        EvidenceItem(
                            f"Weekly usage over the last 2 weeks is at {percent_text(level)} of its level "
                            f"{config.trend_weeks + 1} to {span} weeks ago.",
                            "activity.level_vs_reference", 1.0, level,
                        ),
                    ],
                    query="usage declining adoption best practices getting started",
                    details={"decline": decline, "level": level, "r2": r2},
                )
            )
    return findings


def _churned_level(
    connection: sa.Connection, tenant_id: str, churned: dict[str, dt.datetime], config: ChurnTrendConfig
) -> tuple[float, int]:
    """Median usage level, relative to their earlier level, of churned accounts in their last 2 weeks."""
    levels = []
    for chunk in chunks(sorted(churned)):
        rows = connection.execute(
            sa.select(DAILY.c.account_id, DAILY.c.day, sa.func.sum(successful(DAILY)).label("events"))
            .where(DAILY.c.tenant_id == tenant_id, DAILY.c.account_id.in_(chunk))
            .group_by(DAILY.c.account_id, DAILY.c.day)
        )
        per_account: dict[str, dict[dt.date, float]] = defaultdict(dict)
        for row in rows:
            day = row.day if isinstance(row.day, dt.date) else dt.date.fromisoformat(str(row.day))
            per_account[row.account_id][day] = float(row.events or 0)
        for account, days in per_account.items():
            last = churned[account].date()
            first = min(days)
            # Only whole weeks the account existed for, newest first.
            weeks = [
                sum(v for d, v in days.items() if last - dt.timedelta(days=7 * (k + 1)) <= d
                    < last - dt.timedelta(days=7 * k))
                for k in range(config.trend_weeks + config.reference_weeks)
                if first <= last - dt.timedelta(days=7 * (k + 1))
            ]
            if len(weeks) < 4:
                continue
            # Its earlier level: the oldest weeks we have, before the last two.
            reference = statistics.median(weeks[2:][-config.reference_weeks :])
            if reference >= config.min_weekly_events:
                levels.append((weeks[0] + weeks[1]) / 2 / reference)
    if len(levels) < 3:
        return config.default_churned_level, 0
    return float(statistics.median(levels)), len(levels)


def _log_trend(values: list[float]) -> tuple[float, float]:
    """Slope of log(value) per step and R^2 of the fit."""
    ys = [math.log(v + 1.0) for v in values]
    xs = list(range(len(ys)))
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    syy = sum((y - mean_y) ** 2 for y in ys)
    slope = sxy / sxx if sxx else 0.0
    r2 = (sxy * sxy) / (sxx * syy) if sxx and syy else 0.0
    return slope, r2
