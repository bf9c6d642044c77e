"""Masking of personal data (emails, phone numbers, payment card numbers)
before text reaches an LLM, a log line, a span attribute or an export.

One masker for the whole mesh, so every service hides the same things the
same way. Masks are typed placeholders ("[email]") so the text stays readable
for a model or an agent, and masking is idempotent.

Numbers that name a record rather than a person (invoice, order, ticket and
case numbers, versions, ids in code) are not phone numbers, however many
digits they have: measured on TweetSumm (9,956 turns) and the demo knowledge
base, most 10+-digit runs after "INV-", "order #", "SR no" or inside backticks
were such numbers. `record_numbers` lists them, so a text can be checked for
another customer's invoice or order number."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# 13-19 digits, optionally grouped by spaces or dashes: candidates, confirmed by the Luhn check.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# International or national phone numbers: 7-15 digits with the usual separators,
# an optional country code ("+44", "1") and an optional area code in brackets.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+?\d{1,3}[\s.-]?(?=\())?(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d(?:[\s.-]?\d){6,14}(?!\w)"
)

EMAIL_MASK = "[email]"
CARD_MASK = "[card]"
PHONE_MASK = "[phone]"
MASKS = (EMAIL_MASK, CARD_MASK, PHONE_MASK)

# Words that introduce a record's number: "order # 123...", "SR no 123...", "version 61.0...".
_RECORD_WORD = (
    r"order|invoice|inv|ticket|case|ref|reference|request|req|sr|item|account|acct|booking|confirmation|"
    r"tracking|receipt|transaction|txn|awb|pnr|policy|claim|membership|version|ver|build"
)
_RECORD_INTRO = re.compile(
    rf"(?:\b(?:{_RECORD_WORD})\b\.?(?:\s*(?:number|no|num|nr|id)\b\.?)?|#)\s*[:#]?\s*$|[@=]$", re.IGNORECASE
)
# A code glued to the number ("INV-", "VT-", "C1-", "i407-"): letters in capitals or with digits.
_RECORD_PREFIX = re.compile(r"(?<![\w-])([A-Za-z0-9]*(?:[A-Z]|\d)[A-Za-z0-9]*)-$")

# Record numbers a text names, for "is this another customer's invoice?":
# a code with a prefix ("INV-2026-004518", "BCN-19877", "HO-7KQ2M9"; one-letter
# prefixes such as error codes "E-1201" are not records), a "#" number
# ("#W1234567"), or a number after a record word ("order 10442", "ticket 58812").
_CODED = re.compile(r"\b[A-Z][A-Z0-9]+(?:-[A-Z0-9]+)+\b")
_HASHED = re.compile(r"#\s?([A-Za-z]{0,3}\d[\w-]{2,})")
_INTRODUCED = re.compile(
    rf"\b(?:{_RECORD_WORD})\b\.?(?:\s*(?:number|no|num|nr|id)\b\.?)?\s*[:#]?\s*([A-Za-z]{{0,3}}\d[A-Za-z0-9-]*)",
    re.IGNORECASE,
)
_MIN_RECORD_DIGITS = 3


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


def _names_a_record(text: str, start: int, end: int) -> bool:
    """Whether the digits at text[start:end] are a record's number, not a phone number."""
    before = text[max(0, start - 40) : start]
    if _RECORD_INTRO.search(before) or _RECORD_PREFIX.search(before):
        return True
    # It goes on as a longer code (Amazon's "407-1234567-1234567").
    if re.match(r"-\d", text[end : end + 2]):
        return True
    # Inside a `code span` (account ids, timestamps in examples).
    return text.count("`", 0, start) % 2 == 1


def _is_phone(text: str, match: re.Match[str]) -> bool:
    found = match.group(0)
    digits = re.sub(r"\D", "", found)
    if found.startswith("+"):  # the international format: records never start with "+"
        return len(digits) >= 8
    # Shorter runs are more often dates, versions or amounts; phone numbers
    # carry an area or country code (10+ digits) or a "+".
    return len(digits) >= 10 and not _names_a_record(text, match.start(), match.end())


def _mask_phones(text: str) -> str:
    return _PHONE.sub(lambda match: PHONE_MASK if _is_phone(text, match) else match.group(0), text)


def mask(text: str) -> str:
    """The text with emails, card numbers (Luhn-valid) and phone numbers masked."""
    if not text:
        return text
    text = _EMAIL.sub(EMAIL_MASK, text)
    text = _CARD.sub(_mask_card, text)
    return _mask_phones(text)


def personal_data(text: str) -> list[str]:
    """The emails, card numbers and phone numbers in the text, as written (what `mask` hides)."""
    found = [m.group(0) for m in _EMAIL.finditer(text)]
    text = _EMAIL.sub(EMAIL_MASK, text)
    found += [m.group(0) for m in _CARD.finditer(text) if _mask_card(m) == CARD_MASK]
    text = _CARD.sub(_mask_card, text)
    return found + [m.group(0) for m in _PHONE.finditer(text) if _is_phone(text, m)]


def contains_personal_data(text: str) -> bool:
    """Whether masking would change the text (used by scanners and tests)."""
    return mask(text) != text


def contains_mask(text: str) -> bool:
    """Whether the text holds a mask placeholder (it was made from masked text)."""
    return any(placeholder in text for placeholder in MASKS)


def _record_key(value: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", value.upper())


def record_numbers(text: str) -> set[str]:
    """The record numbers (invoice, order, ticket, case...) the text names, as
    upper-case letters and digits only ("INV2026004518", "W1234567", "10442")."""
    found = [m.group(0) for m in _CODED.finditer(text)]
    found += [m.group(1) for m in _HASHED.finditer(text)]
    found += [m.group(1) for m in _INTRODUCED.finditer(text)]
    keys = {_record_key(value) for value in found}
    return {key for key in keys if sum(c.isdigit() for c in key) >= _MIN_RECORD_DIGITS}


def names_only_records_of(text: str, other: str) -> bool:
    """Whether every record number `text` names also occurs in `other` (same letters
    and digits, separators aside): a reply may repeat this customer's own numbers."""
    known = _record_key(other)
    return all(key in known for key in record_numbers(text))
