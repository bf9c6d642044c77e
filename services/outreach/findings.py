"""What a detector reports: a Finding (its kind, the accounts, a severity, the
cause for the reviewer) with its evidence, and the wording of numbers in the
evidence written for people (`count_text`, `percent_text`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.outreach.models import EvidenceJson

ACTIVITY_DROP = "RISK_KIND_ACTIVITY_DROP"
ERROR_SPIKE = "RISK_KIND_ERROR_SPIKE"
RELEASE_CLUSTER = "RISK_KIND_RELEASE_CLUSTER"
CHURN_TREND = "RISK_KIND_CHURN_TREND"


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

    def as_json(self) -> EvidenceJson:
        return {"statement": self.statement, "metric": self.metric, "before": self.before, "after": self.after}


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


def count_text(value: float) -> str:
    """A count for people: 1,234 (whole, with thousands separators)."""
    return f"{value:,.0f}"


def percent_text(value: float) -> str:
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
