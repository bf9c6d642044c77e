"""The detectors over error counts (see services/outreach/detection.py):

  - error spike: an endpoint's error rate over the last days jumped against its
    baseline (rate, ratio and absolute error count guards), with the error code
    and client version most of the failures share;
  - release cluster: spikes with the same endpoint and error code that started
    on the same day, concentrated on some client versions: one incident listing
    every affected account (their spikes are not reported again one by one).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

import sqlalchemy as sa

from services.outreach.detector_config import ErrorSpikeConfig, ReleaseClusterConfig
from services.outreach.findings import ERROR_SPIKE, RELEASE_CLUSTER, EvidenceItem, Finding, count_text, percent_text
from services.outreach.usage_reads import DAILY, ERRORS, VERSIONS, chunks


def error_spikes(
    connection: sa.Connection,
    tenant_id: str,
    end: dt.date,
    churned: dict[str, dt.datetime],
    config: ErrorSpikeConfig,
) -> list[Finding]:
    recent = end - dt.timedelta(days=config.recent_days)
    start = recent - dt.timedelta(days=config.baseline_days)
    in_recent = DAILY.c.day >= recent
    recent_errors = sa.func.sum(sa.case((in_recent, DAILY.c.error_count), else_=0))
    query = (
        sa.select(
            DAILY.c.account_id, DAILY.c.endpoint,
            sa.func.sum(sa.case((in_recent, DAILY.c.event_count), else_=0)).label("r_events"),
            recent_errors.label("r_errors"),
            sa.func.sum(sa.case((in_recent, 0), else_=DAILY.c.event_count)).label("b_events"),
            sa.func.sum(sa.case((in_recent, 0), else_=DAILY.c.error_count)).label("b_errors"),
        )
        .where(DAILY.c.tenant_id == tenant_id, DAILY.c.day >= start, DAILY.c.day < end)
        .group_by(DAILY.c.account_id, DAILY.c.endpoint)
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
    codes = _top_codes(connection, tenant_id, recent, end, flagged)
    findings = []
    for account, endpoint, rate, before, errors in flagged:
        status, code, code_errors, version, version_share = codes.get((account, endpoint), (0, "", 0.0, "", 0.0))
        label = code or (f"HTTP {status}" if status else "errors")
        evidence = [
            EvidenceItem(
                f"{endpoint} error rate {percent_text(rate)} over the last {config.recent_days} days "
                f"({count_text(errors)} failed calls), up from {percent_text(before)} in the "
                f"{config.baseline_days} days before.",
                f"endpoint.error_rate:{endpoint}", before, rate,
            )
        ]
        if code:
            evidence.append(EvidenceItem(
                f"Most failures are HTTP {status} {code} ({count_text(code_errors)} of {count_text(errors)}).",
                f"errors.{code}", 0.0, code_errors,
            ))
        if version and version_share >= 0.5:
            evidence.append(EvidenceItem(
                f"{percent_text(version_share)} of the failing calls come from client version {version}.",
                f"client_version.share:{version}", 0.0, version_share,
            ))
        findings.append(
            Finding(
                kind=ERROR_SPIKE,
                subject_key=f"account:{account}|endpoint:{endpoint}",
                account_ids=[account],
                severity=round(min(1.0, rate * 1.5), 4),
                cause=f"{label} on {endpoint} at {percent_text(rate)} of calls (was {percent_text(before)})",
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
    for chunk in chunks(accounts):
        rows = connection.execute(
            sa.select(ERRORS.c.account_id, ERRORS.c.endpoint, ERRORS.c.status_code, ERRORS.c.error_code,
                      sa.func.sum(ERRORS.c.error_count).label("errors"))
            .where(ERRORS.c.tenant_id == tenant_id, ERRORS.c.account_id.in_(chunk),
                   ERRORS.c.day >= start, ERRORS.c.day < end)
            .group_by(ERRORS.c.account_id, ERRORS.c.endpoint, ERRORS.c.status_code, ERRORS.c.error_code)
        )
        for row in rows:
            key = (row.account_id, row.endpoint)
            if key in wanted and float(row.errors) > best.get(key, (0.0, 0, ""))[0]:
                best[key] = (float(row.errors), int(row.status_code), row.error_code)
        version_rows = connection.execute(
            sa.select(VERSIONS.c.account_id, VERSIONS.c.endpoint, VERSIONS.c.client_version,
                      sa.func.sum(VERSIONS.c.error_count).label("errors"))
            .where(VERSIONS.c.tenant_id == tenant_id, VERSIONS.c.account_id.in_(chunk),
                   VERSIONS.c.day >= start, VERSIONS.c.day < end)
            .group_by(VERSIONS.c.account_id, VERSIONS.c.endpoint, VERSIONS.c.client_version)
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


def release_clusters(
    connection: sa.Connection,
    tenant_id: str,
    end: dt.date,
    spikes: list[Finding],
    churned: dict[str, dt.datetime],
    config: ReleaseClusterConfig,
) -> tuple[list[Finding], set[tuple[str, str]]]:
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
        onsets = _onsets(connection, tenant_id, endpoint, code, start, end,
                              [m.account_ids[0] for m in members])
        if not onsets:
            continue
        onset_day, _ = Counter(onsets.values()).most_common(1)[0]
        tolerance = dt.timedelta(days=config.onset_tolerance_days)
        since = onset_day - tolerance
        # Every account for which the error is new since the onset, also those too small for a
        # spike of their own.
        candidates = _new_error_accounts(connection, tenant_id, endpoint, code, since, end, churned, config)
        candidates = [a for a in candidates if a not in onsets or abs(onsets[a] - onset_day) <= tolerance]
        # Which client versions fail: those on which a good share of the accounts now fail.
        users, failing_by_account = _version_usage(connection, tenant_id, endpoint, since, end)
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
        version_rates = _version_rates(connection, tenant_id, endpoint, onset_day, end, config)
        clustered.update((account, endpoint) for account in accounts)
        versions = ", ".join(affected)
        status = members[0].details.get("status", 0)
        unaffected = [
            f"{v} {percent_text(rate)}" for v, (rate, _) in sorted(version_rates.items()) if v not in affected
        ]
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
                f"Client version {version}: error rate on {endpoint} {percent_text(rate)} since "
                f"{onset_day.isoformat()}, up from {percent_text(before)} before.",
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
    connection: sa.Connection, tenant_id: str, endpoint: str, code: str, start: dt.date, end: dt.date,
    accounts: list[str],
) -> dict[str, dt.date]:
    onsets: dict[str, dt.date] = {}
    for chunk in chunks(accounts):
        rows = connection.execute(
            sa.select(ERRORS.c.account_id, sa.func.min(ERRORS.c.day).label("first"))
            .where(ERRORS.c.tenant_id == tenant_id, ERRORS.c.endpoint == endpoint,
                   ERRORS.c.error_code == code, ERRORS.c.account_id.in_(chunk),
                   ERRORS.c.day >= start, ERRORS.c.day < end)
            .group_by(ERRORS.c.account_id)
        )
        for row in rows:
            first = row.first
            onsets[row.account_id] = first if isinstance(first, dt.date) else dt.date.fromisoformat(str(first))
    return onsets


def _version_rates(
    connection: sa.Connection, tenant_id: str, endpoint: str, onset: dt.date, end: dt.date,
    config: ReleaseClusterConfig,
) -> dict[str, tuple[float, float]]:
    """Error rate on the endpoint per client version: (since the onset, before it)."""
    lookback = dt.timedelta(days=config.lookback_days)
    since = VERSIONS.c.day >= onset
    rows = connection.execute(
        sa.select(
            VERSIONS.c.client_version,
            sa.func.sum(sa.case((since, VERSIONS.c.event_count), else_=0)).label("a_events"),
            sa.func.sum(sa.case((since, VERSIONS.c.error_count), else_=0)).label("a_errors"),
            sa.func.sum(sa.case((since, 0), else_=VERSIONS.c.event_count)).label("b_events"),
            sa.func.sum(sa.case((since, 0), else_=VERSIONS.c.error_count)).label("b_errors"),
        )
        .where(VERSIONS.c.tenant_id == tenant_id, VERSIONS.c.endpoint == endpoint,
               VERSIONS.c.day >= onset - lookback, VERSIONS.c.day < end)
        .group_by(VERSIONS.c.client_version)
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
    connection: sa.Connection, tenant_id: str, endpoint: str, since: dt.date, end: dt.date
) -> tuple[dict[str, set[str]], dict[str, Counter[str]]]:
    """Since `since` on the endpoint: accounts using each client version, and each account's
    errors per version."""
    rows = connection.execute(
        sa.select(VERSIONS.c.account_id, VERSIONS.c.client_version,
                  sa.func.sum(VERSIONS.c.event_count).label("events"),
                  sa.func.sum(VERSIONS.c.error_count).label("errors"))
        .where(VERSIONS.c.tenant_id == tenant_id, VERSIONS.c.endpoint == endpoint,
               VERSIONS.c.day >= since, VERSIONS.c.day < end)
        .group_by(VERSIONS.c.account_id, VERSIONS.c.client_version)
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
    connection: sa.Connection, tenant_id: str, endpoint: str, code: str, since: dt.date, end: dt.date,
    churned: dict[str, dt.datetime], config: ReleaseClusterConfig,
) -> list[str]:
    """Accounts with the error on the endpoint since `since` that did not have it before."""
    new = ERRORS.c.day >= since
    rows = connection.execute(
        sa.select(
            ERRORS.c.account_id,
            sa.func.sum(sa.case((new, ERRORS.c.error_count), else_=0)).label("after"),
            sa.func.sum(sa.case((new, 0), else_=ERRORS.c.error_count)).label("before"),
        )
        .where(ERRORS.c.tenant_id == tenant_id, ERRORS.c.endpoint == endpoint, ERRORS.c.error_code == code,
               ERRORS.c.day >= since - dt.timedelta(days=config.lookback_days), ERRORS.c.day < end)
        .group_by(ERRORS.c.account_id)
    )
    return [
        r.account_id for r in rows
        if float(r.after or 0) >= config.min_member_errors
        and float(r.before or 0) < config.min_member_errors
        and r.account_id not in churned
    ]
