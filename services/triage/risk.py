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
| repeated_contact   | contacts in the last 7 days >= policy threshold (default 3): the       |
|                    | larger of account.contacts_last_7_days and the other conversations     |
|                    | triage itself saw from this customer; or the customer says so in any   |
|                    | of their messages ("third time I'm asking", "I already reported this", |
|                    | "still not fixed", "nobody answered", "how many more times")           |
| high_value         | account.contract_value_minor >= policy threshold                       |
| escalating_anger   | trajectory <= policy (default -0.5) and newest score < policy          |
|                    | (default -0.3); or the newest score <= policy (default -0.6: strongly  |
|                    | negative now, however the conversation began); or angry words or       |
|                    | shouting in the newest two customer messages ("unacceptable", "fed     |
|                    | up", "are you kidding", "ANSWER ME", "!!!")                            |

A lexicon misreads an angry message that says "please" or "help" as positive;
the anger and repeat phrases catch what it misses.

Thresholds come from the triage policy file; the lexicons are code, because
changing them needs the tests in tests/services/triage to change too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import customer_pb2
from services.triage.policy import RiskThresholds

_I = re.IGNORECASE


def _matches(patterns: Sequence[re.Pattern[str]], texts: Sequence[str]) -> bool:
    return any(pattern.search(text) for pattern in patterns for text in texts)


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


# Past tense: "I asked", "we reported" (not the nouns "ask" or "report").
_REPEATED = (
    r"(?:asked|wrote|written|told|explained|contacted|emailed|called|reported|reached\s+out|messaged|chased"
    r"|been\s+(?:asking|writing|waiting|chasing|trying))"
)
_TIMES = r"(?:twice|(?:two|three|four|five|several|many|multiple|\d+)\s+times)"

REPEAT_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(
        r"\b(?:the|my|our|a|this\s+is\s+the)\s+(?:second|third|fourth|fifth|2nd|3rd|4th|5th|\d+th|umpteenth|nth)\s+"
        r"(?:time|email|message|ticket|request|attempt|chat)\b",
        _I,
    ),
    re.compile(rf"\b(?:already|again|repeatedly)\s+(?:\w+\s+){{0,2}}?{_REPEATED}\b", _I),
    re.compile(
        rf"\b{_REPEATED}\s+(?:\w+\s+){{0,3}}?(?:already|again|before|repeatedly|yesterday|last\s+week|days\s+ago|{_TIMES})\b",
        _I,
    ),
    re.compile(
        r"\bstill\s+(?:not|no|nothing|broken|failing|waiting|down|isn'?t|doesn'?t|hasn'?t|haven'?t|can'?t|won'?t)\b",
        _I,
    ),
    re.compile(
        r"\b(?:no\s*one|nobody|none\s+of\s+you)\s+(?:has\s+|have\s+|ever\s+)?"
        r"(?:answer|repl|respond|help|got\s+back|gets\s+back|call)\w*",
        _I,
    ),
    re.compile(r"\bhow\s+many\s+(?:more\s+)?times\b", _I),
    re.compile(r"\b(?:been|still|keep)\s+waiting\s+(?:since|for)\b", _I),
    re.compile(r"\bkeep\s+(?:asking|writing|telling|explaining|chasing|getting\s+the\s+same)\b", _I),
)

ANGER_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(
        r"\b(?:unacceptable|ridiculous|outrageous|absurd|pathetic|disgraceful|furious|livid|infuriat\w*|"
        r"fed\s+up|sick\s+(?:and\s+tired\s+)?of|had\s+enough|fuming|appalling|shameful)\b",
        _I,
    ),
    re.compile(
        r"\b(?:worst|terrible|horrible|awful|useless|garbage|rubbish)\s+(?:\w+\s+){0,2}?"
        r"(?:service|support|product|experience|company|help|tool|app)\b",
        _I,
    ),
    re.compile(
        r"\b(?:waste\s+of\s+(?:my\s+|our\s+)?(?:time|money)|are\s+you\s+(?:kidding|serious|joking)|"
        r"you\s+must\s+be\s+joking|is\s+a\s+joke|what\s+the\s+(?:hell|heck|f\w*))\b",
        _I,
    ),
    re.compile(r"[!?]{3,}"),
)
# Shouting: two or more words of three or more capital letters ("WHY IS NOBODY ANSWERING").
_SHOUTED_WORD = re.compile(r"\b[A-Z]{3,}\b")
# Error codes and acronyms are capitals too; they do not shout.
_NOT_SHOUTING = frozenset(
    "API SDK SSO SAML OIDC GDPR CCPA DPA CSV PDF URL HTTP HTTPS JSON REST IAM AWS VAT ACS IDP UTC USD EUR SLA "
    "SCIM MFA XSS CEO CTO IOS".split()
)


def is_angry(text: str) -> bool:
    """Angry words, "!!!", or shouting in capitals."""
    shouted = [word for word in _SHOUTED_WORD.findall(text) if word not in _NOT_SHOUTING]
    return _matches(ANGER_PATTERNS, [text]) or len(shouted) >= 2


@dataclass(frozen=True)
class SentimentCourse:
    """What the risk rules need to know about sentiment."""

    newest_compound: float
    trajectory: float


def detect_risks(
    customer_texts: Sequence[str],
    sentiment: SentimentCourse,
    account: customer_pb2.AccountSignals,
    thresholds: RiskThresholds,
    *,
    contacts_seen_7d: int = 0,
) -> list[triage_pb2.RiskFlag]:
    """Risk flags raised for a contact, in enum order (stable output for equal input).

    `contacts_seen_7d`: the customer's other conversations in the last 7 days that triage saw
    itself (counts when the caller knows no account.contacts_last_7_days)."""
    flags: list[triage_pb2.RiskFlag] = []
    if _matches(CHURN_PATTERNS, customer_texts):
        flags.append(triage_pb2.RISK_FLAG_CHURN)
    if _matches(LEGAL_PATTERNS, customer_texts):
        flags.append(triage_pb2.RISK_FLAG_LEGAL)
    contacts = max(account.contacts_last_7_days, contacts_seen_7d)
    if contacts >= thresholds.repeated_contact_min_contacts_7d or _matches(REPEAT_PATTERNS, customer_texts):
        flags.append(triage_pb2.RISK_FLAG_REPEATED_CONTACT)
    if _matches(HUMAN_PATTERNS, customer_texts):
        flags.append(triage_pb2.RISK_FLAG_HUMAN_REQUESTED)
    if (
        thresholds.high_value_min_contract_minor > 0
        and account.contract_value_minor >= thresholds.high_value_min_contract_minor
    ):
        flags.append(triage_pb2.RISK_FLAG_HIGH_VALUE)
    if _angry(customer_texts, sentiment, thresholds):
        flags.append(triage_pb2.RISK_FLAG_ESCALATING_ANGER)
    return flags


def _angry(customer_texts: Sequence[str], sentiment: SentimentCourse, thresholds: RiskThresholds) -> bool:
    worsening = (
        sentiment.trajectory <= thresholds.escalating_anger_max_trajectory
        and sentiment.newest_compound < thresholds.escalating_anger_compound_below
    )
    strongly_negative = sentiment.newest_compound <= thresholds.anger_compound_at_most
    # The newest two: anger a customer has since moved on from ("thanks, that worked") does not count.
    return worsening or strongly_negative or any(is_angry(text) for text in customer_texts[-2:])
