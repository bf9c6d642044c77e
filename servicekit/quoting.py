"""What may be quoted to this customer from what retrieval found, from other
customers' resolved cases and from the LLM.

A resolved ticket is another customer's problem and the company's resolution:
only the resolution (its "Final answer" section, the answer unit retrieval
makes of it) may become a suggestion or a draft. Even a resolution speaks about
that other customer, so each of its sentences is checked against this
conversation: a sentence goes when it speaks in a customer's first person ("we
bought", "our company"), greets someone by a name this customer does not have,
names a record number (invoice, order, ticket) this
customer did not give, or, for case-specific text (a ticket's or a resolved
handoff's answer, the LLM's draft), names a date or an amount to the cent this
conversation does not have, says the company already did something ("I have submitted this refund"),
or holds personal data. General knowledge (articles, FAQs, policies) is the
company's own words to everyone: only the first-person check applies to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from aftercare.retrieval.v1 import retrieval_pb2
from servicekit import pii

# A resolved ticket's section that holds the answer sent to its customer (the headings
# retrieval's ingestion makes an answer unit of; services talk over gRPC only, so the
# list is repeated here rather than imported).
_TICKET_ANSWER = re.compile(r"^(final answer|resolution|answer|solution|reply sent)\b", re.IGNORECASE)

_CUSTOMER_VOICE = re.compile(
    r"\b(?:we|i)\s+(?:just\s+|recently\s+|already\s+|now\s+|have\s+|had\s+)?"
    r"(?:bought|purchased|ordered|paid|signed up|subscribed|(?:were|was|got|been) (?:charged|billed)|"
    r"would like to (?:cancel|get|know|return|refund|change|ask)|want(?:ed)? to (?:cancel|return|get|know)|"
    r"decided|did not get|didn't get|never got|never received|have not received|haven't received|"
    r"are a (?:small )?(?:startup|company|business|team))\b"
    r"|\bour\s+(?:\w+\s+)?(?:company|organi[sz]ation|startup|business|backend|invoice|order|card|subscription|"
    r"dashboards?|money|bank)\b"
    # "my" is the customer's: the company's text and a reply to the customer never say "my plan".
    r"|\bmy\s+(?:\w+\s+){0,2}(?:plan|account|invoice|order|subscription|card|refund|money|payment|data|"
    r"company|organi[sz]ation|bank|workspace|team)\b",
    re.IGNORECASE,
)
# The company saying it already did something for that customer.
_DONE_FOR_THEM = re.compile(
    r"\b(?:i|we)(?:'ve|\s+have|\s+had)?\s+(?:just\s+|already\s+|now\s+)?"
    r"(?:submitted|issued|refunded|processed|credited|cancel+ed|applied|escalated|reset|upgraded|downgraded|"
    r"sent|created|opened|filed|raised|added|removed|restored|extended|waived|reversed|fixed|checked|"
    r"confirmed|updated|changed|moved|deleted|looked at|reviewed)\b"
    r"|\b(?:has|have)\s+been\s+(?:submitted|issued|refunded|processed|credited|cancel+ed|approved|sent)\b",
    re.IGNORECASE,
)
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = re.compile(
    rf"\b\d{{4}}-\d{{2}}-\d{{2}}\b|\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?\b|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}",
    re.IGNORECASE,
)
# An amount to the cent that is not a price ("$1,901.92", not "$0.30 per 100,000 events"):
# what that customer paid or gets back.
_CASE_AMOUNT = re.compile(r"[$€£]\s?\d[\d,]*\.\d{2}\b(?!\s*(?:per|a|an|each|/)\b)")
# Someone greeted by name ("Hi Maria,", "Thanks Tom"): that customer's name.
_GREETED = re.compile(r"\b(?:hi|hello|hey|dear|thanks|thank you)\s*,?\s+([A-Z][a-z]+)\b", re.IGNORECASE)
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
# A list item's mark: a bullet, "3." or "3)", or a clause number such as "4.2.".
_LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d{1,2}(?:\.\d{1,2})*[.)])\s+")
_HEADING_MARK = re.compile(r"^\s*#{1,6}\s+")
_EMPHASIS = re.compile(r"\*\*|__")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(`])")
_SPACES = re.compile(r"\s+")


def quotable(hit: retrieval_pb2.SearchHit) -> bool:
    """Whether a hit may be quoted at all: any knowledge, but of a resolved ticket only its answer."""
    if hit.doc_type != retrieval_pb2.DOCUMENT_TYPE_RESOLVED_TICKET:
        return True
    return any(_TICKET_ANSWER.match(heading.strip()) for heading in hit.heading_path)


def case_specific(hit: retrieval_pb2.SearchHit) -> bool:
    """Whether the hit was written for one customer (a resolved ticket's answer)."""
    return hit.doc_type == retrieval_pb2.DOCUMENT_TYPE_RESOLVED_TICKET


def sentences(text: str) -> list[str]:
    """The text's sentences as plain prose: Markdown lists, headings, emphasis and code
    blocks aside (a list item or a line without a full stop is a sentence of its own)."""
    lines: list[str] = []
    in_code = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_code = not in_code
            continue
        if in_code or _HEADING_MARK.match(line):
            continue
        lines.append(_EMPHASIS.sub("", _LIST_MARK.sub("", line)).strip())
    found: list[str] = []
    for paragraph in _paragraphs(lines):
        found.extend(
            part.strip()
            for part in _SENTENCE_END.split(paragraph)
            if len(part.strip()) > 2 and any(c.isalpha() for c in part)
        )
    return found


def _paragraphs(lines: Iterable[str]) -> list[str]:
    """Lines joined into paragraphs: a blank line, or a line ending a list item, ends one."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines:
        if not line:
            if current:
                paragraphs.append(" ".join(current))
                current = []
            continue
        current.append(line)
        if line.endswith(":"):
            continue
        if not line.endswith((".", "!", "?")) and len(current) == 1:
            paragraphs.append(" ".join(current))  # a list item or a caption stands alone
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return [_SPACES.sub(" ", p).strip() for p in paragraphs if p.strip()]


def _normal(text: str) -> str:
    return _SPACES.sub(" ", text.lower())


def why_not(sentence: str, conversation: str, *, specific: bool) -> str | None:
    """Why the sentence may not be quoted to the customer of `conversation` (the text
    that may be repeated: the conversation, and for a draft the notes it was given),
    or None when it may. `specific`: the sentence was written for one customer."""
    if _CUSTOMER_VOICE.search(sentence):
        return "customer_voice"
    if not specific:
        return None
    if any(name[0].isupper() and name not in conversation for name in _GREETED.findall(sentence)):
        return "other_name"
    if not pii.names_only_records_of(sentence, conversation):
        return "other_record_number"
    known = _normal(conversation)
    if any(_normal(date.group(0)) not in known for date in _DATE.finditer(sentence)):
        return "other_date"
    if any(amount.group(0) not in conversation for amount in _CASE_AMOUNT.finditer(sentence)):
        return "other_amount"
    if _DONE_FOR_THEM.search(sentence):
        return "action_for_another_customer"
    if pii.contains_mask(sentence) or any(item not in conversation for item in pii.personal_data(sentence)):
        return "personal_data"
    return None


def for_this_customer(text: str, conversation: str, *, specific: bool) -> list[str]:
    """The sentences of `text` that may be quoted to the customer of `conversation`."""
    return [s for s in sentences(text) if why_not(s, conversation, specific=specific) is None]
