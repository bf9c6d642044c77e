"""The text rules of services.triage.risk, phrase by phrase."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from services.triage.risk import CHURN_PATTERNS, HUMAN_PATTERNS, LEGAL_PATTERNS


def fires(patterns: Sequence[re.Pattern[str]], text: str) -> bool:
    return any(pattern.search(text) for pattern in patterns)


@pytest.mark.parametrize(
    "text",
    [
        "Please cancel my subscription.",
        "I want to cancel",
        "How do I cancel?",
        "We will not be renewing next year.",
        "We won't renew the contract.",
        "We are switching to a competitor.",
        "Close my account now.",
        "I'm requesting a cancellation of our plan.",
        "Cancelling our team licenses today",
        "we're looking for another provider",
    ],
)
def test_churn_phrases(text: str) -> None:
    assert fires(CHURN_PATTERNS, text)


@pytest.mark.parametrize(
    "text",
    [
        "How do I cancel the export job?",
        "Can I cancel a scheduled report before it runs?",
        "Renewal date question: when is it?",
        "I'm switching to dark mode",
    ],
)
def test_not_churn(text: str) -> None:
    assert not fires(CHURN_PATTERNS, text)


@pytest.mark.parametrize(
    "text",
    [
        "My lawyer will contact you.",
        "We are considering legal action.",
        "I will sue you.",
        "This is a breach of contract.",
        "I am filing a GDPR complaint.",
        "I will report you to the data protection authority.",
        "We'll take this to court.",
    ],
)
def test_legal_phrases(text: str) -> None:
    assert fires(LEGAL_PATTERNS, text)


@pytest.mark.parametrize(
    "text",
    [
        "Are you GDPR compliant?",
        "Is it legal to export EU data to S3?",
        "The courtyard office is closed.",
        "Pursue the issue please.",
    ],
)
def test_not_legal(text: str) -> None:
    assert not fires(LEGAL_PATTERNS, text)


@pytest.mark.parametrize(
    "text",
    [
        "Can I talk to a human?",
        "let me speak with someone",
        "I want to speak to your manager",
        "Transfer me to an agent.",
        "Is there a real person there?",
        "human please",
        "Connect me to a live agent",
    ],
)
def test_human_requests(text: str) -> None:
    assert fires(HUMAN_PATTERNS, text)


@pytest.mark.parametrize(
    "text",
    [
        "The monitoring agent crashed on my server.",
        "How do I add a person to my workspace?",
        "Personal access tokens expire too fast.",
        "Our agents use the console daily.",
    ],
)
def test_not_human_requests(text: str) -> None:
    assert not fires(HUMAN_PATTERNS, text)
