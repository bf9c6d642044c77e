"""Risk flags: reasons a contact needs extra care.

Text rules are small, readable regular expressions over the customer's own
messages in this conversation (not the assistant's or agent's: "I can't
cancel that for you" must not flag churn). Each rule favours precision over
recall: a phrase has to say the thing, not merely contain a word ("the agent
crashed" is not a request for a human, "cancel the export" is not churn).

| flag               | fires when                                                             |
|--------------------|------------------------------------------------------------------------|
| churn              | cancelling the account/subscription/plan/contract, "cancellation",     |
|                    | a bare "I want to cancel", not renewing, switching to a competitor,    |
|                    | closing/deleting the account, leaving                                  |
| legal              | lawyer/attorney/solicitor, lawsuit/litigation/sue, legal action/team,  |
|                    | court, class action, breach of contract, cease and desist, regulators, |
|                    | GDPR (or data protection) complaint/violation/report                   |
| human_requested    | talk/speak/chat to (or transfer/connect me to) a human, person, agent, |
|                    | representative, manager; "real/live person", "human please"            |
| repeated_contact   | account.contacts_last_7_days >= policy threshold (default 3)           |
| high_value         | account.contract_value_minor >= policy threshold                       |
| escalating_anger   | trajectory <= policy (default -0.5) and newest score < policy          |
|                    | (default -0.3)                                                         |

Thresholds come from the triage policy file; the lexicons are code, because
changing them needs the tests in tests/services/triage to change too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import customer_pb2

if TYPE_CHECKING:
    from services.triage.policy import RiskThresholds

# Policy files and reason codes name flags by these stable lower-case names.
FLAG_BY_NAME: dict[str, int] = {
    "churn": triage_pb2.RISK_FLAG_CHURN,
    "legal": triage_pb2.RISK_FLAG_LEGAL,
    "repeated_contact": triage_pb2.RISK_FLAG_REPEATED_CONTACT,
    "human_requested": triage_pb2.RISK_FLAG_HUMAN_REQUESTED,
    "high_value": triage_pb2.RISK_FLAG_HIGH_VALUE,
    "escalating_anger": triage_pb2.RISK_FLAG_ESCALATING_ANGER,
}
NAME_BY_FLAG: dict[int, str] = {flag: name for name, flag in FLAG_BY_NAME.items()}

_I = re.IGNORECASE

# Things a customer cancels when they mean to leave (not "cancel the export").
_ACCOUNT_OBJECT = r"(?:account|subscription|plan|contract|membership|service|renewal|licen[cs]es?|seats?)"

CHURN_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(rf"\bcancel(?:l?ing|l?ed|s)?\s+(?:\w+\s+){{0,3}}?{_ACCOUNT_OBJECT}\b", _I),
    re.compile(r"\bcancell?ations?\b", _I),
    # "I want to cancel." / "how do I cancel?": a bare cancel ends the sentence.
    re.compile(r"\bcancel(?:l?ing)?\s*(?:[.!?]|$)", _I),
    re.compile(r"\b(?:not|won'?t|will not|don'?t|do not)\s+(?:be\s+)?renew(?:ing)?\b", _I),
    re.compile(
        r"\bswitch(?:ing)?\s+(?:\w+\s+){0,2}?to\s+(?:a\s+)?"
        r"(?:competitor|another|different|other|your\s+competitor)",
        _I,
    ),
    re.compile(r"\b(?:close|delete|terminate|end)\s+(?:my|our|the)\s+" + _ACCOUNT_OBJECT + r"\b", _I),
    re.compile(r"\b(?:leaving|leave|quit(?:ting)?)\s+(?:you|your\s+(?:service|product|company|platform))\b", _I),
    re.compile(
        r"\b(?:looking\s+for|find(?:ing)?)\s+(?:an?\s+)?(?:another|different|new)\s+"
        r"(?:provider|vendor|tool|service|platform|solution)\b",
        _I,
    ),
    re.compile(r"\bchurn(?:ing)?\b", _I),
)

LEGAL_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\b(?:lawyers?|attorneys?|solicitors?|legal\s+counsel)\b", _I),
    re.compile(r"\b(?:lawsuits?|litigation|sue|suing|sued)\b", _I),
    re.compile(r"\blegal\s+(?:action|steps|proceedings|team|department|notice|claim)\b", _I),
    re.compile(r"\b(?:take|taking|see)\s+(?:you|this|it)\s+to\s+court\b|\bsmall\s+claims\b", _I),
    re.compile(r"\b(?:class\s+action|breach\s+of\s+contract|cease\s+and\s+desist)\b", _I),
    re.compile(r"\b(?:ombudsman|consumer\s+protection|trading\s+standards|data\s+protection\s+authority)\b", _I),
    # GDPR by itself is often a compliance question; a complaint or violation is a legal risk.
    re.compile(r"\b(?:gdpr|data\s+protection)\b.{0,40}?\b(?:complain\w*|violat\w*|breach\w*|report\w*)", _I),
    re.compile(r"\b(?:complain\w*|report\w*)\b.{0,40}?\b(?:gdpr|data\s+protection|regulator)\b", _I),
)

_HUMAN = r"(?:human(?:\s+being)?|person|agent|representative|rep|operator|manager|supervisor|someone|somebody)"

HUMAN_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(
        r"\b(?:talk|speak|chat)(?:ing)?\s+(?:to|with)\s+(?:a|an|the|some|your|someone|somebody)?\s*"
        r"(?:real|live|actual)?\s*" + _HUMAN + r"\b",
        _I,
    ),
    re.compile(
        r"\b(?:transfer|connect|escalate|put)\s+(?:me|this)\s+(?:through\s+)?to\s+(?:a|an|the|your)?\s*"
        r"(?:real|live|actual)?\s*" + _HUMAN + r"\b",
        _I,
    ),
    re.compile(r"\b(?:real|live|actual)\s+(?:human|person|agent|people)\b", _I),
    re.compile(r"\b(?:human|agent|representative|operator)[,!.]?\s+please\b", _I),
    re.compile(r"\b(?:want|need)\s+(?:a|an|to\s+talk\s+to\s+a)\s+(?:human|representative)\b", _I),
)


@dataclass(frozen=True)
class SentimentCourse:
    """What the risk rules need to know about sentiment."""

    newest_compound: float
    trajectory: float


def _matches(patterns: Sequence[re.Pattern[str]], texts: Sequence[str]) -> bool:
    return any(pattern.search(text) for pattern in patterns for text in texts)


def detect_risks(
    customer_texts: Sequence[str],
    sentiment: SentimentCourse,
    account: customer_pb2.AccountSignals,
    thresholds: RiskThresholds,
) -> list[int]:
    """Risk flags raised for a contact, in enum order (stable output for equal input)."""
    flags: list[int] = []
    if _matches(CHURN_PATTERNS, customer_texts):
        flags.append(triage_pb2.RISK_FLAG_CHURN)
    if _matches(LEGAL_PATTERNS, customer_texts):
        flags.append(triage_pb2.RISK_FLAG_LEGAL)
    if account.contacts_last_7_days >= thresholds.repeated_contact_min_contacts_7d:
        flags.append(triage_pb2.RISK_FLAG_REPEATED_CONTACT)
    if _matches(HUMAN_PATTERNS, customer_texts):
        flags.append(triage_pb2.RISK_FLAG_HUMAN_REQUESTED)
    if (
        thresholds.high_value_min_contract_minor > 0
        and account.contract_value_minor >= thresholds.high_value_min_contract_minor
    ):
        flags.append(triage_pb2.RISK_FLAG_HIGH_VALUE)
    if (
        sentiment.trajectory <= thresholds.escalating_anger_max_trajectory
        and sentiment.newest_compound < thresholds.escalating_anger_compound_below
    ):
        flags.append(triage_pb2.RISK_FLAG_ESCALATING_ANGER)
    return flags
