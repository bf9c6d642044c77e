"""Outreach messages: an LLM paragraph grounded in the finding's evidence and the
retrieved fix, checked, with a deterministic template whenever the LLM is down
or its text fails the check. Prompt and template are versioned (lineage).

The embedded model is a small base model, so the prompt is a completion with a
worked example, ending in a cue; production serves an instruction-tuned model
through the same OpenAI-compatible API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from servicekit.pii import mask

PROMPT_VERSION = "outreach-paragraph-v1"
TEMPLATE_VERSION = "outreach-template-v1"
# A draft for several accounts, or for a contact whose name we do not know, greets neutrally;
# personalise() greets each recipient by name when it is sent.
NEUTRAL_GREETING = "Hi there,"
# The merge field of drafts written before there was a neutral greeting (still filled at send).
FIRST_NAME = "{first_name}"
# Merge fields in any template syntax: {first_name}, {{ name }}, ${name}, [Customer Name].
_PLACEHOLDER = re.compile(
    r"\$?\{\{?\s*[A-Za-z_][\w.]*\s*\}\}?|\[(?:[A-Za-z]+ )*(?:name|company)\]", re.IGNORECASE
)

_KIND_TOPIC = {
    "RISK_KIND_ACTIVITY_DROP": "a drop in your usage",
    "RISK_KIND_ERROR_SPIKE": "failing API calls",
    "RISK_KIND_RELEASE_CLUSTER": "failing API calls since a recent change",
    "RISK_KIND_CHURN_TREND": "your usage over the last weeks",
}
_TOKEN = re.compile(r"\b[A-Z]-\d+\b|\d[\d.,]*%?|https?://\S+")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9._@/-]{3,}")
# Dates the model may invent (the worked example says "Since Friday").
_CALENDAR = re.compile(
    r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday|yesterday|today|january|february|march|april|"
    r"june|july|august|september|october|november|december)\b",
    re.IGNORECASE,
)
_GENERIC = re.compile(r"are you ok|just checking in|touch base|hope (you|this) (are|is) well", re.IGNORECASE)
MIN_PARAGRAPH = 60
MAX_PARAGRAPH = 1200

_EXAMPLE = (
    "Write the middle paragraph of a short, friendly email from a software company's customer success team.\n"
    "Use only the facts given. Name the problem concretely and say how to fix it.\n\n"
    "Facts:\n"
    "- GET /v2/exports error rate rose from 0.2% to 41% over the last 3 days (310 failed calls).\n"
    "- Most failures are HTTP 403 E-3001.\n"
    "Fix: Grant the Beacon export role s3:PutObject on the bucket, then retry the export.\n"
    "Paragraph: Over the last 3 days, 41% of your calls to GET /v2/exports have failed with HTTP 403 E-3001, which "
    "means Beacon can no longer write to your S3 bucket. Granting the Beacon export role s3:PutObject on the "
    "bucket and retrying the export fixes it.\n\n"
)


class UnfilledPlaceholder(ValueError):
    """A composed message still holds a merge field: a bug in the template, never stored or shown."""


@dataclass(frozen=True)
class Recipient:
    account_id: str
    name: str
    contact_name: str
    csm_name: str


@dataclass(frozen=True)
class FindingFacts:
    kind: str
    cause: str
    statements: list[str]
    feature: str
    endpoint: str
    error_code: str
    release: str
    fix: str
    # (title, url, text) of the passages the fix came from
    sources: list[tuple[str, str, str]]


@dataclass(frozen=True)
class Message:
    subject: str
    body: str
    generator: str  # "llm" | "template"
    prompt_version: str


def prompt(facts: FindingFacts) -> str:
    lines = "\n".join(f"- {mask(s)}" for s in facts.statements[:4])
    fix = mask(facts.fix) if facts.fix else "None known; offer a call with the customer success manager."
    return f"{_EXAMPLE}Facts:\n{lines}\nFix: {fix}\nParagraph:"


def subject(facts: FindingFacts) -> str:
    focus = facts.error_code or facts.feature or facts.endpoint
    if facts.kind == "RISK_KIND_ACTIVITY_DROP":
        return f"We noticed a drop in your {facts.feature or 'Beacon'} usage last week"
    if facts.kind == "RISK_KIND_CHURN_TREND":
        return "A look at your Beacon usage over the last few weeks"
    return f"{focus} errors on {facts.endpoint}: what happened and how to fix it" if focus else "Errors we noticed"


def _allowed_facts(facts: FindingFacts) -> str:
    return " ".join([facts.cause, *facts.statements, facts.fix, facts.release, facts.endpoint, facts.error_code,
                     *(f"{title} {url} {text}" for title, url, text in facts.sources)])


def placeholders(text: str) -> list[str]:
    """The merge fields in `text`, in order."""
    return _PLACEHOLDER.findall(text)


def unfilled_placeholders(text: str, facts: FindingFacts) -> list[str]:
    """Merge fields in `text` that the facts do not contain themselves: an API path such as
    /v2/exports/{export_id} quoted from the evidence or a knowledge-base passage is text."""
    quoted = set(placeholders(_allowed_facts(facts)))
    return [p for p in placeholders(text) if p not in quoted]


def _normalise_number(token: str) -> str:
    return token.rstrip(".,%").replace(",", "")


def grounding_problems(paragraph: str, facts: FindingFacts) -> list[str]:
    """Why an LLM paragraph may not be sent as is (empty when it is grounded)."""
    problems = []
    text = paragraph.strip()
    if not MIN_PARAGRAPH <= len(text) <= MAX_PARAGRAPH:
        problems.append("length")
    anchors = [a for a in (facts.error_code, facts.endpoint, facts.feature) if a]
    if anchors and not any(a.lower() in text.lower() for a in anchors):
        problems.append("no_concrete_finding")
    allowed = _allowed_facts(facts)
    allowed_numbers = {_normalise_number(t) for t in _TOKEN.findall(allowed)}
    for token in _TOKEN.findall(text):
        if _normalise_number(token) not in allowed_numbers:
            problems.append(f"unsupported:{token}")
            break
    for word in {w.lower() for w in _CALENDAR.findall(text)}:
        if word not in allowed.lower():
            problems.append(f"unsupported:{word}")
            break
    if facts.fix:
        fix_words = {w.lower() for w in _WORD.findall(facts.fix)}
        if len(fix_words & {w.lower() for w in _WORD.findall(text)}) < 2:
            problems.append("fix_missing")
    if _GENERIC.search(text):
        problems.append("generic")
    if unfilled_placeholders(text, facts):
        problems.append("placeholder")
    return problems


def _name(value: str) -> str:
    """A name fit to print: blank, or anything that looks like a merge field, is no name."""
    name = " ".join(value.split())
    return "" if not name or any(c in name for c in "{}[]<>$") else name


def _greeting(recipient: Recipient | None) -> str:
    name = _name(recipient.contact_name) if recipient else ""
    return f"Hi {name}," if name else NEUTRAL_GREETING


def personalise(body: str, contact_name: str) -> str:
    """The body one recipient gets: a neutral opening greeting names them when we know their
    first name, and an older draft's {first_name} is filled (with "there" when unknown)."""
    name = _name(contact_name)
    body = body.replace(FIRST_NAME, name or "there")
    if name and body.startswith(NEUTRAL_GREETING + "\n"):
        body = f"Hi {name}," + body[len(NEUTRAL_GREETING):]
    return body


def _closing(facts: FindingFacts, recipient: Recipient | None) -> str:
    csm = (_name(recipient.csm_name) if recipient else "") or "your customer success manager"
    if facts.fix:
        return (f"If anything is unclear or this does not solve it, just reply to this email and {csm} "
                "will help.")
    return (f"We could not find a self-serve fix for this, so {csm} would be glad to look into it with you on "
            "a short call. Just reply to this email with a time that suits you.")


def _sign_off(recipient: Recipient | None) -> str:
    csm = _name(recipient.csm_name) if recipient else ""
    return f"Best regards,\n{csm + ', ' if csm else ''}Customer Success"


def citations(sources: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """(title, url) of each cited document once, in order: several passages of one document
    are one citation."""
    seen: set[str] = set()
    cited = []
    for title, url, _ in sources:
        key = url or title
        if title and key not in seen:
            seen.add(key)
            cited.append((title, url))
    return cited


def _sources_line(facts: FindingFacts) -> str:
    # Without a fix the passages explained nothing: pointing the customer at them would not help.
    if not facts.fix:
        return ""
    links = [f"{title} ({url})" if url else title for title, url in citations(facts.sources)[:2]]
    return f"More detail: {'; '.join(links)}." if links else ""


def compose(paragraph: str, facts: FindingFacts, recipient: Recipient | None, generator: str) -> Message:
    """The whole message; raises UnfilledPlaceholder rather than let a merge field reach a reviewer."""
    parts = [_greeting(recipient), paragraph.strip(), _sources_line(facts), _closing(facts, recipient),
             _sign_off(recipient)]
    message = Message(
        subject=subject(facts),
        body="\n\n".join(p for p in parts if p),
        generator=generator,
        prompt_version=PROMPT_VERSION if generator == "llm" else TEMPLATE_VERSION,
    )
    leftover = unfilled_placeholders(f"{message.subject}\n{message.body}", facts)
    if leftover:
        raise UnfilledPlaceholder(f"the draft would show unfilled placeholders: {', '.join(leftover)}")
    return message


def with_fix(paragraph: str, facts: FindingFacts) -> str:
    return f"{paragraph.strip()}\n\nWhat fixes it: {facts.fix}" if facts.fix else paragraph


def template_paragraph(facts: FindingFacts) -> str:
    """The deterministic paragraph: the evidence as found, then the fix."""
    topic = _KIND_TOPIC.get(facts.kind, "something in your account")
    observed = "\n".join(f"- {s}" for s in facts.statements[:4])
    text = f"We are reaching out because we noticed {topic}. Here is what we saw:\n{observed}"
    if facts.fix:
        text += f"\n\nWhat fixes it: {facts.fix}"
    return text
