"""The personal-data masker: real phone numbers, emails and card numbers are masked;
invoice, order, ticket and case numbers are records, not phone numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servicekit import pii

REPO = Path(__file__).resolve().parents[2]
TWEETSUMM = REPO.parent / "shared" / "data" / "tweetsumm" / "valid.jsonl"


@pytest.mark.parametrize(
    "text",
    [
        "call me on +1 415 555 0100 please",
        "call me on (415) 555-0100 please",
        "call me on 020 7946 0958 please",
        "my number is 9876543210",
        "In case +917046125882 is not reachable",
        "give us a call at 1 (888) 850 3958.",
        "Please call 800-297-7500 or reach us @ 800-297-7500, 24/7.",
    ],
)
def test_real_phone_numbers_are_masked(text: str) -> None:
    masked = pii.mask(text)
    assert "[phone]" in masked
    assert not any(char.isdigit() for char in masked.replace("24/7", "")), masked


@pytest.mark.parametrize(
    "text",
    [
        "Invoice INV-2026-10-4471 was charged twice.",
        "Click the invoice number (format `INV-2026-000123`).",
        "Where is order #W1234567?",
        "order 10442 never came",
        "my ticket 58812 is still open",
        "Order # 113-4002806-4843420 has not shipped",
        "There were 2 separate orders 408-1929729-8238743 and 408-0714060-7645942.",
        "Heres the VT ref no 2326635614",
        "initiated under SR# : 1-142968054354 and you shall hear soon",
        "Request no. C1-100743221788 is under process",
        "a case reference listed VT-111017-0301 which is with our team",
        "Google Chrome. version 61.0.3163.100. The latest version.",
        "enter the Beacon AWS account ID `412370098123` as trusted entity",
        "The header looks like `t=1795339200,v1=5f2c`.",
        "@118916 600000 points and I cant spend them",
    ],
)
def test_record_numbers_are_not_phone_numbers(text: str) -> None:
    assert pii.mask(text) == text


def test_emails_and_cards_are_masked_and_masking_is_idempotent() -> None:
    text = "jo@example.com paid with 4111 1111 1111 1111, call +44 20 7946 0958"
    masked = pii.mask(text)
    assert masked == "[email] paid with [card], call [phone]"
    assert pii.mask(masked) == masked
    assert pii.personal_data(text) == ["jo@example.com", "4111 1111 1111 1111", "+44 20 7946 0958"]
    assert pii.contains_mask(masked) and not pii.contains_mask(text)


def test_record_numbers_are_listed_and_compared_without_separators() -> None:
    text = "Invoice INV-2026-004518, order #W1234567, order 10442, ticket 58812, error E-1201, SDK 3.6.2"
    assert pii.record_numbers(text) == {"INV2026004518", "W1234567", "10442", "58812"}
    assert pii.names_only_records_of("about INV-2026-004518", "my invoice inv 2026 004518 is wrong")
    assert not pii.names_only_records_of("about INV-2026-004518", "my invoice INV-2026-10-4471 is wrong")


def test_the_demo_knowledge_base_has_no_phone_numbers_to_mask() -> None:
    # Measured: the old masker made 8 "[phone]" of invoice numbers, AWS account ids and timestamps.
    for path in sorted((REPO / "kb" / "demo").glob("*.md")):
        assert "[phone]" not in pii.mask(path.read_text(encoding="utf-8")), path.name


@pytest.mark.skipif(not TWEETSUMM.exists(), reason="TweetSumm is not on this machine")
def test_tweetsumm_record_numbers_stay_and_phone_numbers_go() -> None:
    texts = [
        turn["text"]
        for line in TWEETSUMM.read_text(encoding="utf-8").splitlines()
        if line.strip()
        for turn in json.loads(line)["turns"]
        if turn.get("text")
    ]
    masked = [pii.mask(text) for text in texts]
    # Measured on valid (1,079 turns): the old masker made 16 "[phone]", 5 of them record
    # numbers ("Item # 332370695193", "ref no 2326635614", "VT-111017-0301", "SR# :1-1484...",
    # a user id "@118916 600000"); the 11 left are phone numbers customers and agents gave.
    assert sum(m.count("[phone]") for m in masked) == 11
    assert not any(word in m for m in masked for word in ("# [phone]", "ref no [phone]", "VT-[phone]"))
