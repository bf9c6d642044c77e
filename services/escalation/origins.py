"""How a context package's summary and draft were made, and the sentiment of its newest
customer message: the enums of the contract, and the strings that said the same before
them (still sent, deprecated, to v1 clients).

The stored package keeps the strings only. The queries that find a package's pending
background work match them, packages stored before the enums existed have nothing else,
and a package stored with the enum fields would not parse in an escalation rolled back
to before them. The enums are derived from the strings wherever a package is made or read.
"""

from __future__ import annotations

from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import verdict_pb2

SUMMARY_ORIGINS = {
    "llm": escalation_pb2.SUMMARY_ORIGIN_LLM,
    "extractive": escalation_pb2.SUMMARY_ORIGIN_EXTRACTIVE,
    "pending": escalation_pb2.SUMMARY_ORIGIN_PENDING,
}
DRAFT_ORIGINS = {
    "llm": escalation_pb2.DRAFT_ORIGIN_LLM,
    "template": escalation_pb2.DRAFT_ORIGIN_TEMPLATE,
    # While the LLM's draft is being written the draft shown is the template.
    "pending": escalation_pb2.DRAFT_ORIGIN_PENDING,
}
SENTIMENTS = {
    "negative": verdict_pb2.SENTIMENT_LABEL_NEGATIVE,
    "neutral": verdict_pb2.SENTIMENT_LABEL_NEUTRAL,
    "positive": verdict_pb2.SENTIMENT_LABEL_POSITIVE,
}
# The package's fields that are derived, never stored.
DERIVED_FIELDS = ("summary_origin", "draft_origin", "sentiment")


def fill_enums(package: escalation_pb2.ContextPackage) -> escalation_pb2.ContextPackage:
    """Set the package's enums from its strings; an empty or unknown string leaves its enum
    unspecified. Only known values are assigned: assigning even a zero would make an absent
    package present in the handoff that holds it."""
    if package.summary_method in SUMMARY_ORIGINS:
        package.summary_origin = SUMMARY_ORIGINS[package.summary_method]
    if package.draft_method in DRAFT_ORIGINS:
        package.draft_origin = DRAFT_ORIGINS[package.draft_method]
    if package.sentiment_label in SENTIMENTS:
        package.sentiment = SENTIMENTS[package.sentiment_label]
    return package


def as_stored(package: escalation_pb2.ContextPackage) -> escalation_pb2.ContextPackage:
    """A copy of the package as it is stored: without the derived enums."""
    stored = escalation_pb2.ContextPackage()
    stored.CopyFrom(package)
    for name in DERIVED_FIELDS:
        stored.ClearField(name)
    return stored
