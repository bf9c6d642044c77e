"""The detectors' thresholds and minimum volume guards, read from a JSON file
(detectors.default.json unless DETECTORS_FILE names another) and
validated at boot.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActivityDropConfig(_Strict):
    drop_ratio: float = Field(default=0.7, gt=0, lt=1)
    baseline_weeks: int = Field(default=6, ge=2, le=26)
    min_baseline_weeks: int = Field(default=3, ge=1)
    min_weekly_events: int = Field(default=700, ge=0)
    cohort_min_accounts: int = Field(default=20, ge=1)


class ErrorSpikeConfig(_Strict):
    recent_days: int = Field(default=3, ge=1, le=14)
    baseline_days: int = Field(default=28, ge=3, le=180)
    min_requests: int = Field(default=100, ge=1)
    min_errors: int = Field(default=20, ge=1)
    min_rate: float = Field(default=0.05, gt=0, le=1)
    min_rate_ratio: float = Field(default=4.0, ge=1)


class ReleaseClusterConfig(_Strict):
    min_accounts: int = Field(default=3, ge=2)
    lookback_days: int = Field(default=14, ge=2, le=60)
    onset_tolerance_days: int = Field(default=1, ge=0, le=7)
    min_member_errors: int = Field(default=3, ge=1)
    # A client version is implicated when at least this many of its accounts on the endpoint,
    # and this share of them, fail with the new error.
    min_accounts_per_version: int = Field(default=2, ge=1)
    min_version_account_share: float = Field(default=0.3, gt=0, le=1)


class ChurnTrendConfig(_Strict):
    trend_weeks: int = Field(default=5, ge=3, le=26)
    reference_weeks: int = Field(default=3, ge=1, le=12)
    min_weekly_events: int = Field(default=700, ge=0)
    min_weekly_decline: float = Field(default=0.07, gt=0, lt=1)
    min_r2: float = Field(default=0.6, ge=0, le=1)
    default_churned_level: float = Field(default=0.5, gt=0, lt=1)
    level_margin: float = Field(default=0.1, ge=0, lt=1)
    # Sustained, not a drop: the last week carries at most this share of the whole decline.
    max_last_week_share: float = Field(default=0.5, gt=0, le=1)


class DetectorConfig(_Strict):
    activity_drop: ActivityDropConfig = ActivityDropConfig()
    error_spike: ErrorSpikeConfig = ErrorSpikeConfig()
    release_cluster: ReleaseClusterConfig = ReleaseClusterConfig()
    churn_trend: ChurnTrendConfig = ChurnTrendConfig()

    @classmethod
    def load(cls, path: Path) -> DetectorConfig:
        """The configuration in `path`; a bad file fails the boot with pydantic's message."""
        return cls.model_validate(json.loads(path.read_text()))
