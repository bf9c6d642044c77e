"""Masking of personal data (emails, phone numbers, payment card numbers)
before text reaches an LLM, a log line, a span attribute or an export.

One masker for the whole mesh, so every service hides the same things the
same way. Masks are typed placeholders ("[email]") so the text stays readable
for a model or an agent, and masking is idempotent."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# 13-19 digits, optionally grouped by spaces or dashes: candidates, confirmed by the Luhn check.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# International or national phone numbers: 7-15 digits with the usual separators.
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d(?:[\s.-]?\d){6,14}(?!\w)")

EMAIL_MASK = "[email]"
CARD_MASK = "[card]"
PHONE_MASK = "[phone]"


def _luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return CARD_MASK if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group(0)


def _mask_phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = re.sub(r"\D", "", text)
    # Shorter runs are more often dates, versions, amounts or order numbers;
    # phone numbers carry an area or country code (10+ digits) or a "+".
    if len(digits) >= 10 or (text.startswith("+") and len(digits) >= 8):
        return PHONE_MASK
    return text


def mask(text: str) -> str:
    """The text with emails, card numbers (Luhn-valid) and phone numbers masked."""
    if not text:
        return text
    text = _EMAIL.sub(EMAIL_MASK, text)
    text = _CARD.sub(_mask_card, text)
    return _PHONE.sub(_mask_phone, text)


def contains_personal_data(text: str) -> bool:
    """Whether masking would change the text (used by scanners and tests)."""
    return mask(text) != text
