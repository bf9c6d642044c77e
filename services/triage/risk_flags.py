"""The names of the risk flags: how policy files, route reason codes and the
triage response spell each RiskFlag (services/triage/risk.py raises them,
services/triage/policy.py validates the names a policy file uses).
"""

from __future__ import annotations

from aftercare.triage.v1 import triage_pb2

# Policy files and reason codes name flags by these stable lower-case names.
FLAG_BY_NAME: dict[str, triage_pb2.RiskFlag] = {
    "churn": triage_pb2.RISK_FLAG_CHURN,
    "legal": triage_pb2.RISK_FLAG_LEGAL,
    "repeated_contact": triage_pb2.RISK_FLAG_REPEATED_CONTACT,
    "human_requested": triage_pb2.RISK_FLAG_HUMAN_REQUESTED,
    "high_value": triage_pb2.RISK_FLAG_HIGH_VALUE,
    "escalating_anger": triage_pb2.RISK_FLAG_ESCALATING_ANGER,
}
NAME_BY_FLAG: dict[triage_pb2.RiskFlag, str] = {flag: name for name, flag in FLAG_BY_NAME.items()}
