"""Risk detectors and cause analysis over the daily aggregates.

Every detector reads complete UTC days only (the day of `as_of` is still
filling up) and aggregates in SQL: one grouped query per detector over
usage_daily / usage_daily_errors / usage_daily_versions, and Python only looks
at one row per account (or per account and endpoint). Thresholds and minimum
volume guards come from a JSON file (detectors.default.json).

  - activity drop: successful events of the last week <= drop_ratio x the week
    before AND <= drop_ratio x the account's own baseline (median of the weeks
    before), after removing a tenant-wide dip (a holiday week is not 800 drops);
  - error spike: an endpoint's error rate over the last days jumped against its
    baseline (rate, ratio and absolute error count guards);
  - release cluster: spikes with the same endpoint and error code that started
    on the same day, concentrated on some client versions: one incident listing
    every affected account (their spikes are not reported again one by one);
  - churn trend: a sustained, steady weekly decline that brought the account
    near the level at which accounts that churned stood before leaving.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine

from services.outreach.models import AccountRow, UsageDailyErrorRow, UsageDailyRow, UsageDailyVersionRow

ACTIVITY_DROP = "RISK_KIND_ACTIVITY_DROP"
ERROR_SPIKE = "RISK_KIND_ERROR_SPIKE"
RELEASE_CLUSTER = "RISK_KIND_RELEASE_CLUSTER"
CHURN_TREND = "RISK_KIND_CHURN_TREND"

_DAILY: sa.Table = UsageDailyRow.__table__  # type: ignore[assignment]
_ERRORS: sa.Table = UsageDailyErrorRow.__table__  # type: ignore[assignment]
_VERSIONS: sa.Table = UsageDailyVersionRow.__table__  # type: ignore[assignment]
_ACCOUNTS: sa.Table = AccountRow.__table__  # type: ignore[assignment]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActivityDropConfig(_Strict):
    drop_ratio: float = Field(0.7, gt=0, lt=1)
    baseline_weeks: int = Field(6, ge=2, le=26)
    min_baseline_weeks: int = Field(3, ge=1)
    min_weekly_events: int = Field(700, ge=0)
    cohort_min_accounts: int = Field(20, ge=1)


class ErrorSpikeConfig(_Strict):
    recent_days: int = Field(3, ge=1, le=14)
    baseline_days: int = Field(28, ge=3, le=180)
    min_requests: int = Field(100, ge=1)
    min_errors: int = Field(20, ge=1)
    min_rate: float = Field(0.05, gt=0, le=1)
    min_rate_ratio: float = Field(4.0, ge=1)


class ReleaseClusterConfig(_Strict):
    min_accounts: int = Field(3, ge=2)
    lookback_days: int = Field(14, ge=2, le=60)
    onset_tolerance_days: int = Field(1, ge=0, le=7)
    min_member_errors: int = Field(3, ge=1)
    # A client version is implicated when at least this many of its accounts on the endpoint,
    # and this share of them, fail with the new error.
    min_accounts_per_version: int = Field(2, ge=1)
    min_version_account_share: float = Field(0.3, gt=0, le=1)


class ChurnTrendConfig(_Strict):
    trend_weeks: int = Field(5, ge=3, le=26)
    reference_weeks: int = Field(3, ge=1, le=12)
    min_weekly_events: int = Field(700, ge=0)
    min_weekly_decline: float = Field(0.07, gt=0, lt=1)
    min_r2: float = Field(0.6, ge=0, le=1)
    default_churned_level: float = Field(0.5, gt=0, lt=1)
    level_margin: float = Field(0.1, ge=0, lt=1)
    # Sustained, not a drop: the last week carries at most this share of the whole decline.
    max_last_week_share: float = Field(0.5, gt=0, le=1)


class DetectorConfig(_Strict):
    activity_drop: ActivityDropConfig = ActivityDropConfig()
    error_spike: ErrorSpikeConfig = ErrorSpikeConfig()
    release_cluster: ReleaseClusterConfig = ReleaseClusterConfig()
    churn_trend: ChurnTrendConfig = ChurnTrendConfig()

    @classmethod
    def load(cls, path: Path) -> DetectorConfig:
        """The configuration in `path`; a bad file fails the boot with pydantic's message."""
        return cls.model_validate(json.loads(path.read_text()))


@dataclass
class EvidenceItem:
    """One fact: `statement` is written for people (rounded, with units and periods); before and
    after are the metric's values for programs, rounded to what the statement can show."""

    statement: str
    metric: str
    before: float
    after: float

    def __post_init__(self) -> None:
        # 4 decimals keep 0.01 percentage points of a rate; float noise says nothing more.
        self.before = round(float(self.before), 4)
        self.after = round(float(self.after), 4)


@dataclass
class Finding:
    kind: str
    subject_key: str
    account_ids: list[str]
    severity: float
    cause: str
    evidence: list[EvidenceItem]
    feature: str = ""
    endpoint: str = ""
    error_code: str = ""
    release: str = ""
    # What to ask the knowledge base about this finding.
    query: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _pct(value: float) -> str:
    """A share for people: 41%, 7.3%, 0.36%, <0.01% (two significant digits under 10%)."""
    percent = value * 100
    if percent == 0:
        return "0%"
    if abs(percent) >= 9.95:
        return f"{percent:.0f}%"
    if abs(percent) >= 0.995:
        return f"{percent:.1f}".removesuffix(".0") + "%"
    if abs(percent) >= 0.01:
        return f"{percent:.2g}%"
    return "<0.01%"


def _success(table: sa.Table) -> sa.ColumnElement[Any]:
    return table.c.event_count - table.c.error_count


class Detector:
    """Runs every detector for one tenant as of one time (sync: call it in a thread)."""

    def __init__(self, engine: Engine, config: DetectorConfig) -> None:
        self._engine = engine
        self._config = config

    def run(self, tenant_id: str, as_of: dt.datetime) -> list[Finding]:
        end = as_of.astimezone(dt.UTC).date()  # first day not complete yet
        with self._engine.connect() as connection:
            churned = self._churned(connection, tenant_id, as_of)
            weeks_needed = 1 + max(
                self._config.activity_drop.baseline_weeks,
                self._config.churn_trend.trend_weeks + self._config.churn_trend.reference_weeks,
            )
            weekly, first_day = self._weekly(connection, tenant_id, end, weeks_needed)
            findings = self._activity_drops(connection, tenant_id, end, weekly, first_day, churned)
            spikes = self._error_spikes(connection, tenant_id, end, churned)
            clusters, clustered = self._release_clusters(connection, tenant_id, end, spikes, churned)
            findings += clusters
            findings += [s for s in spikes if (s.account_ids[0], s.endpoint) not in clustered]
            findings += self._churn_trends(connection, tenant_id, end, weekly, first_day, churned)
        findings.sort(key=lambda f: (-f.severity, f.kind, f.subject_key))
        return findings

    # --- shared reads ------------------------------------------------------------------------

    def _churned(self, connection: sa.Connection, tenant_id: str, as_of: dt.datetime) -> dict[str, dt.datetime]:
        rows = connection.execute(
            sa.select(_ACCOUNTS.c.account_id, _ACCOUNTS.c.churned_at).where(
                _ACCOUNTS.c.tenant_id == tenant_id, _ACCOUNTS.c.churned_at.is_not(None)
            )
        )
        return {account: when for account, when in rows if when <= as_of}

    def _weekly(
        self, connection: sa.Connection, tenant_id: str, end: dt.date, weeks: int
    ) -> tuple[dict[str, list[float]], dict[str, dt.date]]:
        """Successful events per account per week (index 0 = the last complete week)."""
        starts = [end - dt.timedelta(days=7 * (k + 1)) for k in range(weeks)]
        columns = [
            sa.func.sum(
                sa.case((sa.and_(_DAILY.c.day >= start, _DAILY.c.day < start + dt.timedelta(days=7)),
                         _success(_DAILY)), else_=0)
            ).label(f"w{k}")
            for k, start in enumerate(starts)
        ]
        query = (
            sa.select(_DAILY.c.account_id, sa.func.min(_DAILY.c.day).label("first_day"), *columns)
            .where(_DAILY.c.tenant_id == tenant_id, _DAILY.c.day >= starts[-1], _DAILY.c.day < end)
            .group_by(_DAILY.c.account_id)
        )
        weekly: dict[str, list[float]] = {}
        first_day: dict[str, dt.date] = {}
        for row in connection.execute(query):
            weekly[row.account_id] = [float(row._mapping[f"w{k}"] or 0) for k in range(weeks)]
            first = row.first_day
            first_day[row.account_id] = first if isinstance(first, dt.date) else dt.date.fromisoformat(str(first))
        return weekly, first_day

    # --- activity drop -----------------------------------------------------------------------

    def _activity_drops(
        self,
        connection: sa.Connection,
        tenant_id: str,
        end: dt.date,
        weekly: dict[str, list[float]],
        first_day: dict[str, dt.date],
        churned: dict[str, dt.datetime],
    ) -> list[Finding]:
        config = self._config.activity_drop
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
        causes = self._drop_causes(connection, tenant_id, end, list(flagged))
        findings = []
        for account, (last, previous, baseline) in flagged.items():
            drop_wow = 1 - last / previous
            drop_base = 1 - last / baseline
            evidence = [
                EvidenceItem(
                    f"Successful API events fell {_pct(drop_wow)} week over week, from {_n(previous)} to "
                    f"{_n(last)}, and are {_pct(drop_base)} below the account's {config.baseline_weeks}-week "
                    f"median of {_n(baseline)} a week.",
                    "activity.weekly_successful_events", previous, last,
                )
            ]
            cause = causes.get(account, {})
            feature, endpoint, share = cause.get("feature", ""), cause.get("endpoint", ""), cause.get("share", 0.0)
            summary = f"activity down {_pct(drop_wow)} week over week"
            if feature and share >= 0.5:
                evidence.append(
                    EvidenceItem(
                        f"The {feature} feature ({endpoint}) accounts for {_pct(share)} of the drop: its "
                        f"successful calls fell from {_n(cause['before'])} to {_n(cause['after'])} a week.",
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
        self, connection: sa.Connection, tenant_id: str, end: dt.date, accounts: list[str]
    ) -> dict[str, dict[str, Any]]:
        """Per flagged account: the feature/endpoint that lost the most, and error codes that appeared."""
        last, previous = end - dt.timedelta(days=7), end - dt.timedelta(days=14)
        causes: dict[str, dict[str, Any]] = {}
        lost: dict[str, list[tuple[float, str, str, float, float]]] = defaultdict(list)
        for chunk in _chunks(accounts):
            rows = connection.execute(
                sa.select(
                    _DAILY.c.account_id, _DAILY.c.feature, _DAILY.c.endpoint,
                    sa.func.sum(sa.case((_DAILY.c.day < last, _success(_DAILY)), else_=0)).label("before"),
                    sa.func.sum(sa.case((_DAILY.c.day >= last, _success(_DAILY)), else_=0)).label("after"),
                )
                .where(_DAILY.c.tenant_id == tenant_id, _DAILY.c.account_id.in_(chunk),
                       _DAILY.c.day >= previous, _DAILY.c.day < end)
                .group_by(_DAILY.c.account_id, _DAILY.c.feature, _DAILY.c.endpoint)
            )
            for row in rows:
                before, after = float(row.before or 0), float(row.after or 0)
                lost[row.account_id].append((before - after, row.feature, row.endpoint, before, after))
            error_rows = connection.execute(
                sa.select(
                    _ERRORS.c.account_id, _ERRORS.c.endpoint, _ERRORS.c.status_code, _ERRORS.c.error_code,
                    sa.func.sum(sa.case((_ERRORS.c.day < last, _ERRORS.c.error_count), else_=0)).label("before"),
                    sa.func.sum(sa.case((_ERRORS.c.day >= last, _ERRORS.c.error_count), else_=0)).label("after"),
                )
                .where(_ERRORS.c.tenant_id == tenant_id, _ERRORS.c.account_id.in_(chunk),
                       _ERRORS.c.day >= previous, _ERRORS.c.day < end)
                .group_by(_ERRORS.c.account_id, _ERRORS.c.endpoint, _ERRORS.c.status_code, _ERRORS.c.error_code)
            )
            for row in error_rows:
                before, after = float(row.before or 0), float(row.after or 0)
                if after >= 10 and after >= 4 * max(before, 1):
                    label = row.error_code or f"HTTP {row.status_code}"
                    causes.setdefault(row.account_id, {}).setdefault("new_errors", []).append({
                        "code": label,
                        "before": before,
                        "after": after,
                        "statement": f"{row.endpoint} returned {row.status_code} {label} {_n(after)} times in the "
                                     f"last week ({_n(before)} the week before).",
                    })
            version_rows = connection.execute(
                sa.select(_VERSIONS.c.account_id, _VERSIONS.c.client_version,
                          sa.func.sum(_VERSIONS.c.event_count).label("events"))
                .where(_VERSIONS.c.tenant_id == tenant_id, _VERSIONS.c.account_id.in_(chunk),
                       _VERSIONS.c.day >= last, _VERSIONS.c.day < end)
                .group_by(_VERSIONS.c.account_id, _VERSIONS.c.client_version)
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

    # --- error spike -------------------------------------------------------------------------

    def _error_spikes(
        self, connection: sa.Connection, tenant_id: str, end: dt.date, churned: dict[str, dt.datetime]
    ) -> list[Finding]:
        config = self._config.error_spike
        recent = end - dt.timedelta(days=config.recent_days)
        start = recent - dt.timedelta(days=config.baseline_days)
        in_recent = _DAILY.c.day >= recent
        recent_errors = sa.func.sum(sa.case((in_recent, _DAILY.c.error_count), else_=0))
        query = (
            sa.select(
                _DAILY.c.account_id, _DAILY.c.endpoint,
                sa.func.sum(sa.case((in_recent, _DAILY.c.event_count), else_=0)).label("r_events"),
                recent_errors.label("r_errors"),
                sa.func.sum(sa.case((in_recent, 0), else_=_DAILY.c.event_count)).label("b_events"),
                sa.func.sum(sa.case((in_recent, 0), else_=_DAILY.c.error_count)).label("b_errors"),
            )
            .where(_DAILY.c.tenant_id == tenant_id, _DAILY.c.day >= start, _DAILY.c.day < end)
            .group_by(_DAILY.c.account_id, _DAILY.c.endpoint)
            .having(recent_errors >= config.min_errors)
        )
        flagged = []
        for row in connection.execute(query):
            if row.account_id in churned:
                continue
            r_events, r_errors = float(row.r_events or 0), float(row.r_errors or 0)
            b_events, b_errors = float(row.b_events or 0), float(row.b_errors or 0)
            if r_events < config.min_requests:
                continue
            rate = r_errors / r_events
            before = b_errors / b_events if b_events else 0.0
            # A floor on the old rate: from 0.01% to 0.05% is not a spike worth a message.
            if rate >= config.min_rate and rate >= config.min_rate_ratio * max(before, 0.005):
                flagged.append((row.account_id, row.endpoint, rate, before, r_errors))
        if not flagged:
            return []
        codes = self._top_codes(connection, tenant_id, recent, end, flagged)
        findings = []
        for account, endpoint, rate, before, errors in flagged:
            status, code, code_errors, version, version_share = codes.get((account, endpoint), (0, "", 0.0, "", 0.0))
            label = code or (f"HTTP {status}" if status else "errors")
            evidence = [
                EvidenceItem(
                    f"{endpoint} error rate {_pct(rate)} over the last {config.recent_days} days "
                    f"({_n(errors)} failed calls), up from {_pct(before)} in the {config.baseline_days} days "
                    "before.",
                    f"endpoint.error_rate:{endpoint}", before, rate,
                )
            ]
            if code:
                evidence.append(EvidenceItem(
                    f"Most failures are HTTP {status} {code} ({_n(code_errors)} of {_n(errors)}).",
                    f"errors.{code}", 0.0, code_errors,
                ))
            if version and version_share >= 0.5:
                evidence.append(EvidenceItem(
                    f"{_pct(version_share)} of the failing calls come from client version {version}.",
                    f"client_version.share:{version}", 0.0, version_share,
                ))
            findings.append(
                Finding(
                    kind=ERROR_SPIKE,
                    subject_key=f"account:{account}|endpoint:{endpoint}",
                    account_ids=[account],
                    severity=round(min(1.0, rate * 1.5), 4),
                    cause=f"{label} on {endpoint} at {_pct(rate)} of calls (was {_pct(before)})",
                    evidence=evidence,
                    endpoint=endpoint,
                    error_code=code,
                    release=version if version_share >= 0.5 else "",
                    query=f"{code} {status or ''} {endpoint} error".strip(),
                    details={"rate": rate, "before": before, "status": status},
                )
            )
        return findings

    def _top_codes(
        self,
        connection: sa.Connection,
        tenant_id: str,
        start: dt.date,
        end: dt.date,
        flagged: list[tuple[str, str, float, float, float]],
    ) -> dict[tuple[str, str], tuple[int, str, float, str, float]]:
        """(account, endpoint) -> (status, error code, its errors, main failing version, its share)."""
        wanted = {(account, endpoint) for account, endpoint, *_ in flagged}
        accounts = sorted({account for account, _ in wanted})
        best: dict[tuple[str, str], tuple[float, int, str]] = {}
        versions: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        for chunk in _chunks(accounts):
            rows = connection.execute(
                sa.select(_ERRORS.c.account_id, _ERRORS.c.endpoint, _ERRORS.c.status_code, _ERRORS.c.error_code,
                          sa.func.sum(_ERRORS.c.error_count).label("errors"))
                .where(_ERRORS.c.tenant_id == tenant_id, _ERRORS.c.account_id.in_(chunk),
                       _ERRORS.c.day >= start, _ERRORS.c.day < end)
                .group_by(_ERRORS.c.account_id, _ERRORS.c.endpoint, _ERRORS.c.status_code, _ERRORS.c.error_code)
            )
            for row in rows:
                key = (row.account_id, row.endpoint)
                if key in wanted and float(row.errors) > best.get(key, (0.0, 0, ""))[0]:
                    best[key] = (float(row.errors), int(row.status_code), row.error_code)
            version_rows = connection.execute(
                sa.select(_VERSIONS.c.account_id, _VERSIONS.c.endpoint, _VERSIONS.c.client_version,
                          sa.func.sum(_VERSIONS.c.error_count).label("errors"))
                .where(_VERSIONS.c.tenant_id == tenant_id, _VERSIONS.c.account_id.in_(chunk),
                       _VERSIONS.c.day >= start, _VERSIONS.c.day < end)
                .group_by(_VERSIONS.c.account_id, _VERSIONS.c.endpoint, _VERSIONS.c.client_version)
            )
            for row in version_rows:
                key = (row.account_id, row.endpoint)
                if key in wanted and row.client_version:
                    versions[key][row.client_version] += int(row.errors or 0)
        result = {}
        for key, (errors, status, code) in best.items():
            top_version, share = "", 0.0
            if versions[key]:
                top_version, count = versions[key].most_common(1)[0]
                total = sum(versions[key].values())
                share = count / total if total else 0.0
            result[key] = (status, code, errors, top_version, share)
        return result

    # --- release cluster ---------------------------------------------------------------------

    def _release_clusters(
        self,
        connection: sa.Connection,
        tenant_id: str,
        end: dt.date,
        spikes: list[Finding],
        churned: dict[str, dt.datetime],
    ) -> tuple[list[Finding], set[tuple[str, str]]]:
        config = self._config.release_cluster
        groups: dict[tuple[str, str], list[Finding]] = defaultdict(list)
        for spike in spikes:
            if spike.error_code:
                groups[(spike.endpoint, spike.error_code)].append(spike)
        clusters: list[Finding] = []
        clustered: set[tuple[str, str]] = set()
        start = end - dt.timedelta(days=config.lookback_days)
        for (endpoint, code), members in groups.items():
            if len(members) < config.min_accounts:
                continue
            # When did it start? The first day each account saw the code, over the lookback window.
            onsets = self._onsets(connection, tenant_id, endpoint, code, start, end,
                                  [m.account_ids[0] for m in members])
            if not onsets:
                continue
            onset_day, _ = Counter(onsets.values()).most_common(1)[0]
            tolerance = dt.timedelta(days=config.onset_tolerance_days)
            since = onset_day - tolerance
            # Every account for which the error is new since the onset, also those too small for a
            # spike of their own.
            candidates = self._new_error_accounts(connection, tenant_id, endpoint, code, since, end, churned)
            candidates = [a for a in candidates if a not in onsets or abs(onsets[a] - onset_day) <= tolerance]
            # Which client versions fail: those on which a good share of the accounts now fail.
            users, failing_by_account = self._version_usage(connection, tenant_id, endpoint, since, end)
            failing: dict[str, set[str]] = defaultdict(set)
            for account in candidates:
                errors = failing_by_account.get(account)
                if errors:
                    failing[errors.most_common(1)[0][0]].add(account)
            affected = sorted(
                version for version, accounts_failing in failing.items()
                if len(accounts_failing) >= config.min_accounts_per_version
                and len(accounts_failing) >= config.min_version_account_share * len(users.get(version, ()))
            )
            if not affected:
                # Spikes that merely share a code, with no client version failing across the
                # tenant, are separate problems (each account's own key, quota, or setup).
                continue
            accounts = [
                a for a in candidates
                if sum(failing_by_account.get(a, Counter())[v] for v in affected)
                >= 0.5 * sum(failing_by_account.get(a, Counter()).values())
            ]
            if len(accounts) < config.min_accounts:
                continue
            version_rates = self._version_rates(connection, tenant_id, endpoint, onset_day, end)
            clustered.update((account, endpoint) for account in accounts)
            versions = ", ".join(affected)
            status = members[0].details.get("status", 0)
            unaffected = [f"{v} {_pct(rate)}" for v, (rate, _) in sorted(version_rates.items()) if v not in affected]
            # Evidence goes into each customer's message: how many other accounts fail is for
            # the reviewer (the cause and the metric), not for the customer.
            evidence = [
                EvidenceItem(
                    f"Calls to {endpoint} started failing with HTTP {status} {code} on {onset_day.isoformat()}.",
                    f"cluster.accounts:{endpoint}:{code}", 0.0, float(len(accounts)),
                ),
            ]
            for version in affected:
                rate, before = version_rates[version]
                evidence.append(EvidenceItem(
                    f"Client version {version}: error rate on {endpoint} {_pct(rate)} since "
                    f"{onset_day.isoformat()}, up from {_pct(before)} before.",
                    f"client_version.error_rate:{version}", before, rate,
                ))
            if unaffected:
                worst_other = max(rate for v, (rate, _) in version_rates.items() if v not in affected)
                evidence.append(EvidenceItem(
                    f"Other client versions are not affected (error rate since then: {', '.join(unaffected[:4])}).",
                    "client_version.error_rate:others", 0.0, worst_other,
                ))
            clusters.append(
                Finding(
                    kind=RELEASE_CLUSTER,
                    subject_key=f"endpoint:{endpoint}|code:{code}|onset:{onset_day.isoformat()}",
                    account_ids=sorted(accounts),
                    severity=round(min(1.0, 0.5 + 0.02 * len(accounts)), 4),
                    cause=(f"{code} on {endpoint} since {onset_day.isoformat()} for {versions} "
                           f"({len(accounts)} accounts)"),
                    evidence=evidence,
                    endpoint=endpoint,
                    error_code=code,
                    release=versions,
                    query=f"{code} {status} {endpoint} {' '.join(affected)} release",
                    details={"onset": onset_day.isoformat(), "status": status},
                )
            )
        return clusters, clustered

    def _onsets(
        self, connection: sa.Connection, tenant_id: str, endpoint: str, code: str, start: dt.date, end: dt.date,
        accounts: list[str],
    ) -> dict[str, dt.date]:
        onsets: dict[str, dt.date] = {}
        for chunk in _chunks(accounts):
            rows = connection.execute(
                sa.select(_ERRORS.c.account_id, sa.func.min(_ERRORS.c.day).label("first"))
                .where(_ERRORS.c.tenant_id == tenant_id, _ERRORS.c.endpoint == endpoint,
                       _ERRORS.c.error_code == code, _ERRORS.c.account_id.in_(chunk),
                       _ERRORS.c.day >= start, _ERRORS.c.day < end)
                .group_by(_ERRORS.c.account_id)
            )
            for row in rows:
                first = row.first
                onsets[row.account_id] = first if isinstance(first, dt.date) else dt.date.fromisoformat(str(first))
        return onsets

    def _version_rates(
        self, connection: sa.Connection, tenant_id: str, endpoint: str, onset: dt.date, end: dt.date
    ) -> dict[str, tuple[float, float]]:
        """Error rate on the endpoint per client version: (since the onset, before it)."""
        lookback = dt.timedelta(days=self._config.release_cluster.lookback_days)
        since = _VERSIONS.c.day >= onset
        rows = connection.execute(
            sa.select(
                _VERSIONS.c.client_version,
                sa.func.sum(sa.case((since, _VERSIONS.c.event_count), else_=0)).label("a_events"),
                sa.func.sum(sa.case((since, _VERSIONS.c.error_count), else_=0)).label("a_errors"),
                sa.func.sum(sa.case((since, 0), else_=_VERSIONS.c.event_count)).label("b_events"),
                sa.func.sum(sa.case((since, 0), else_=_VERSIONS.c.error_count)).label("b_errors"),
            )
            .where(_VERSIONS.c.tenant_id == tenant_id, _VERSIONS.c.endpoint == endpoint,
                   _VERSIONS.c.day >= onset - lookback, _VERSIONS.c.day < end)
            .group_by(_VERSIONS.c.client_version)
        )
        rates: dict[str, tuple[float, float]] = {}
        for row in rows:
            a_events, b_events = float(row.a_events or 0), float(row.b_events or 0)
            if not row.client_version or a_events <= 0:
                continue
            rates[row.client_version] = (float(row.a_errors or 0) / a_events,
                                         float(row.b_errors or 0) / b_events if b_events else 0.0)
        return rates

    def _version_usage(
        self, connection: sa.Connection, tenant_id: str, endpoint: str, since: dt.date, end: dt.date
    ) -> tuple[dict[str, set[str]], dict[str, Counter[str]]]:
        """Since `since` on the endpoint: accounts using each client version, and each account's
        errors per version."""
        rows = connection.execute(
            sa.select(_VERSIONS.c.account_id, _VERSIONS.c.client_version,
                      sa.func.sum(_VERSIONS.c.event_count).label("events"),
                      sa.func.sum(_VERSIONS.c.error_count).label("errors"))
            .where(_VERSIONS.c.tenant_id == tenant_id, _VERSIONS.c.endpoint == endpoint,
                   _VERSIONS.c.day >= since, _VERSIONS.c.day < end)
            .group_by(_VERSIONS.c.account_id, _VERSIONS.c.client_version)
        )
        users: dict[str, set[str]] = defaultdict(set)
        errors: dict[str, Counter[str]] = defaultdict(Counter)
        for row in rows:
            if not row.client_version or not row.events:
                continue
            users[row.client_version].add(row.account_id)
            if row.errors:
                errors[row.account_id][row.client_version] += int(row.errors)
        return users, errors

    def _new_error_accounts(
        self, connection: sa.Connection, tenant_id: str, endpoint: str, code: str, since: dt.date, end: dt.date,
        churned: dict[str, dt.datetime],
    ) -> list[str]:
        """Accounts with the error on the endpoint since `since` that did not have it before."""
        config = self._config.release_cluster
        new = _ERRORS.c.day >= since
        rows = connection.execute(
            sa.select(
                _ERRORS.c.account_id,
                sa.func.sum(sa.case((new, _ERRORS.c.error_count), else_=0)).label("after"),
                sa.func.sum(sa.case((new, 0), else_=_ERRORS.c.error_count)).label("before"),
            )
            .where(_ERRORS.c.tenant_id == tenant_id, _ERRORS.c.endpoint == endpoint, _ERRORS.c.error_code == code,
                   _ERRORS.c.day >= since - dt.timedelta(days=config.lookback_days), _ERRORS.c.day < end)
            .group_by(_ERRORS.c.account_id)
        )
        return [
            r.account_id for r in rows
            if float(r.after or 0) >= config.min_member_errors
            and float(r.before or 0) < config.min_member_errors
            and r.account_id not in churned
        ]

    # --- churn trend -------------------------------------------------------------------------

    def _churn_trends(
        self,
        connection: sa.Connection,
        tenant_id: str,
        end: dt.date,
        weekly: dict[str, list[float]],
        first_day: dict[str, dt.date],
        churned: dict[str, dt.datetime],
    ) -> list[Finding]:
        config = self._config.churn_trend
        span = config.trend_weeks + config.reference_weeks
        churned_level, churned_count = self._churned_level(connection, tenant_id, churned)
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
                        cause=(f"usage declining {_pct(decline)} a week for {config.trend_weeks} weeks, now at "
                               f"{_pct(level)} of its earlier level; accounts that churned stood at "
                               f"{_pct(churned_level)} before leaving"
                               + (f" ({churned_count} churned accounts)" if churned_count else " (default)")),
                        evidence=[
                            EvidenceItem(
                                f"Weekly successful events declined steadily for {config.trend_weeks} weeks, "
                                f"about {_pct(decline)} a week: {', '.join(_n(w) for w in trend[:-1])}, then "
                                f"{_n(trend[-1])}.",
                                "activity.weekly_decline", reference, weeks[0],
                            ),
                            EvidenceItem(
                                f"Weekly usage over the last 2 weeks is at {_pct(level)} of its level "
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
        self, connection: sa.Connection, tenant_id: str, churned: dict[str, dt.datetime]
    ) -> tuple[float, int]:
        """Median usage level, relative to their earlier level, of churned accounts in their last 2 weeks."""
        config = self._config.churn_trend
        levels = []
        for chunk in _chunks(sorted(churned)):
            rows = connection.execute(
                sa.select(_DAILY.c.account_id, _DAILY.c.day, sa.func.sum(_success(_DAILY)).label("events"))
                .where(_DAILY.c.tenant_id == tenant_id, _DAILY.c.account_id.in_(chunk))
                .group_by(_DAILY.c.account_id, _DAILY.c.day)
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


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
