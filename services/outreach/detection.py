"""Risk detectors and cause analysis over the daily aggregates.

Every detector reads complete UTC days only (the day of `as_of` is still
filling up) and aggregates in SQL: one grouped query per detector over
usage_daily / usage_daily_errors / usage_daily_versions (services/outreach/usage_reads.py),
and Python only looks at one row per account (or per account and endpoint). Thresholds and minimum
volume guards come from a JSON file (detectors.default.json,
services/outreach/detector_config.py).

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

Activity drops and churn trends are in services/outreach/activity_detectors.py,
error spikes and release clusters in services/outreach/error_detectors.py; what
they report (Finding, EvidenceItem) in services/outreach/findings.py.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.engine import Engine

from services.outreach.activity_detectors import activity_drops, churn_trends
from services.outreach.detector_config import DetectorConfig
from services.outreach.error_detectors import error_spikes, release_clusters
from services.outreach.findings import Finding
from services.outreach.usage_reads import churned_accounts, weekly_successes


class Detector:
    """Runs every detector for one tenant as of one time (sync: call it in a thread)."""

    def __init__(self, engine: Engine, config: DetectorConfig) -> None:
        self._engine = engine
        self._config = config

    def run(self, tenant_id: str, as_of: dt.datetime) -> list[Finding]:
        config = self._config
        end = as_of.astimezone(dt.UTC).date()  # first day not complete yet
        with self._engine.connect() as connection:
            churned = churned_accounts(connection, tenant_id, as_of)
            weeks_needed = 1 + max(
                config.activity_drop.baseline_weeks,
                config.churn_trend.trend_weeks + config.churn_trend.reference_weeks,
            )
            weekly, first_day = weekly_successes(connection, tenant_id, end, weeks_needed)
            findings = activity_drops(connection, tenant_id, end, weekly, first_day, churned, config.activity_drop)
            spikes = error_spikes(connection, tenant_id, end, churned, config.error_spike)
            clusters, clustered = release_clusters(connection, tenant_id, end, spikes, churned, config.release_cluster)
            findings += clusters
            findings += [s for s in spikes if (s.account_ids[0], s.endpoint) not in clustered]
            findings += churn_trends(connection, tenant_id, end, weekly, first_day, churned, config.churn_trend)
        findings.sort(key=lambda f: (-f.severity, f.kind, f.subject_key))
        return findings
