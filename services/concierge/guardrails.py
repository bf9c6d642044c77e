"""Guardrails around the LLM: prompt injection, promises, off-topic requests.

- Text from customers and documents is data. The prompt fences it
  (`fence`), sentences that read like instructions to the model are spotted
  (`injection_sentences`) and never become a reply, and a reply that follows
  injected instructions (`follows_injection`) is caught and handed over.
- A reply must never promise an action the AI did not take ("I'll refund
  you", "we have cancelled your plan"): `promises` finds such phrases; a
  company policy sentence quoted from a cited passage is not a promise of the
  AI's own, so only what the sources do not say counts.
- Requests outside customer care (jokes, poems, homework...) are declined
  politely (`looks_off_topic`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Phrases of real prompt-injection attacks (direct ones in messages, indirect
# ones planted in documents): overriding instructions, role switches, fake
# system turns and chat-template tokens, requests for the hidden prompt.
_INJECTION = re.compile(
    r"""
    \b(?:ignore|disregard|forget|override|bypass|skip)\b[^.!?\n]{0,40}?
        \b(?:previous|prior|above|earlier|preceding|all|any|your|the|these|those)\b[^.!?\n]{0,30}?
        \b(?:instructions?|prompts?|rules?|directions?|guidelines?|context|messages?|polic(?:y|ies))\b
    | \b(?:new|updated|real|actual|secret|hidden)\s+(?:system\s+)?(?:instructions?|prompt|rules)\s*(?::|are\b|follow)
    | \byou\s+are\s+(?:now|no\s+longer)\b
    | \bfrom\s+now\s+on\s*,?\s*(?:you|answer|respond|reply|always|only)\b
    | \b(?:act|behave|pretend|roleplay)\s+(?:as|like)\s+(?:if\s+)?(?:you\s+are\s+)?(?:an?\s+)?
        (?:unrestricted|jailbroken|evil|dan\b|developer\s+mode|different)
    | \bdeveloper\s+mode\b | \bjailbreak | \bDAN\s+mode\b
    | \b(?:reveal|print|show|repeat|output|leak|tell\s+me)\b[^.!?\n]{0,30}?
        \b(?:system\s+prompt|your\s+(?:instructions|prompt|rules)|initial\s+prompt|hidden\s+prompt)
    | <\|?\s*(?:im_start|im_end|system|endoftext|start_of_turn|end_of_turn)\s*\|?>
    | \[\s*(?:system|INST)\s*\] | \#\#\#\s*(?:system|instruction)\b
    | \b(?:assistant|AI|model|chatbot)\s*(?:must|should|will)\s+(?:now\s+)?(?:say|reply|respond|answer|tell)\b
    | \b(?:say|reply|respond|answer)\s+(?:only\s+)?(?:with\s+)?["'](?:[^"']{1,60})["']\s+
        (?:to|for)\s+(?:every|all|any)\b
    | \bI\s+have\s+been\s+(?:pwned|hacked)\b | \bpwned\b
    """,
    re.IGNORECASE | re.VERBOSE,
)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")


def is_injection(text: str) -> bool:
    """Whether the text contains a phrase that addresses the model with instructions."""
    return bool(_INJECTION.search(text))


def injection_sentences(text: str) -> list[str]:
    """The sentences of `text` that read like instructions to the model."""
    return [s.strip() for s in _SENTENCE.findall(text) if _INJECTION.search(s)]


def neutralise(text: str) -> str:
    """The text without the sentences that address the model: they stay visible
    to an agent in the source document, but never reach a prompt."""
    if not _INJECTION.search(text):
        return text
    return " ".join(s.strip() for s in _SENTENCE.findall(text) if s.strip() and not _INJECTION.search(s))


FENCE_OPEN = "<<<"
FENCE_CLOSE = ">>>"


def fence(text: str) -> str:
    """Untrusted text as one fenced, single-line block: it cannot close the
    fence, start a new prompt section ("Question:", "Answer:") or a chat turn."""
    flat = " ".join(text.split())
    flat = flat.replace(FENCE_OPEN, "<< <").replace(FENCE_CLOSE, "> >>")
    return f"{FENCE_OPEN}{flat}{FENCE_CLOSE}"


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9']+", text.lower()) if len(w) > 3}


def follows_injection(
    reply: str, injected: Sequence[str], canaries: Sequence[str] = (), clean_sources: Sequence[str] = ()
) -> bool:
    """Whether a reply does what injected text asked: it reads like an instruction
    itself, echoes a piece of the prompt the customer must never see (its
    canaries), carries most of an injected sentence's payload (what follows
    "ignore previous instructions and ..."), or several of its words that the
    clean passages do not contain."""
    if not reply.strip():
        return False
    if is_injection(reply):
        return True
    low = " ".join(reply.lower().split())
    if any(canary.lower() in low for canary in canaries if canary):
        return True
    said = _words(reply)
    known = set().union(*(_words(source) for source in clean_sources)) if clean_sources else set()
    for sentence in injected:
        payload = _words(_INJECTION.sub(" ", sentence))
        if payload and len(payload & said) / len(payload) >= 0.6:
            return True
        if len((_words(sentence) & said) - known) >= 3:
            return True
    return False


# First-person commitments to an action, and statements that an action was done.
_ACTION = (
    r"(?:refund|reimburs|credit|compensat|cancel|terminat|clos|delet|eras|remov|reset|unlock|restor|"
    r"upgrad|downgrad|chang|updat|waiv|discount|send|email|mail|call|phon|text|ship|deliver|replac|repair|"
    r"fix|escalat|expedit|process|issu|transfer|pay|charg|extend|reactivat|activat|approv|schedul|book|"
    r"arrang|open|file|submit|add|apply|applie|void|revers|guarantee)\w*"
)
_PROMISE = re.compile(
    rf"""
    \b(?:I|I'll|I'm|I've|I\s+will|I\s+shall|I\s+am\s+going\s+to|I\s+have|I\s+just|let\s+me|I\s+can)\s+
        (?:now\s+|also\s+|personally\s+|immediately\s+|already\s+|go\s+ahead\s+and\s+|make\s+sure\s+to\s+)?
        (?:be\s+)?{_ACTION}
    | \b(?:we'll|we\s+will|we've|we\s+have|we\s+are\s+going\s+to)\s+(?:now\s+|already\s+|just\s+)?{_ACTION}
    | \b(?:your|the)\s+(?:refund|credit|cancellation|replacement|order|account|request|ticket|plan|subscription)
        \s+(?:has|have|is|was)\s+(?:been\s+|now\s+)?(?:issued|processed|approved|cancel+ed|closed|deleted|
        sent|shipped|refunded|credited|escalated|upgraded|downgraded|reset|unlocked|restored|reactivated|waived)
    | \b(?:I|we)\s+(?:promise|guarantee)\b
    | \byou(?:'ll|\s+will)\s+(?:get|receive|have)\s+(?:a|your|the)\s+(?:full\s+)?(?:refund|credit|replacement)\b
    """,
    re.IGNORECASE | re.VERBOSE,
)


def promises(reply: str, sources: Sequence[str] = ()) -> list[str]:
    """The promise phrases in a reply that the cited sources do not state themselves.

    A sentence copied from a policy ("We refund annual plans within 14 days") is
    the company's rule, not a promise made in this conversation.
    """
    source_text = " ".join(" ".join(s.lower().split()) for s in sources)
    found: list[str] = []
    for sentence in _SENTENCE.findall(reply):
        flat = " ".join(sentence.lower().split()).strip()
        for match in _PROMISE.finditer(sentence):
            first_person = match.group(0).lower().startswith(("i ", "i'", "let me"))
            if flat and flat.rstrip(".!?") in source_text and not first_person:
                continue
            found.append(match.group(0))
    return found


_OFF_TOPIC = re.compile(
    r"""
    \b(?:tell|write|compose|make\s+up|give)\s+(?:me\s+)?(?:a|an|some|another)?\s*
        (?:joke|poem|haiku|limerick|story|song|lyrics|essay|riddle|rap)s?\b
    | \b(?:weather|forecast)\s+(?:in|for|today|tomorrow)\b
    | \b(?:recipe|cook|bake)\s+(?:for|a|an)\b
    | \b(?:my\s+)?homework\b | \bsolve\s+(?:this|the)\s+(?:equation|math)\b
    | \bwho\s+(?:won|will\s+win|is\s+the\s+president|is\s+the\s+prime\s+minister)\b
    | \b(?:stock|share)\s+price\b | \bbitcoin\b | \blottery\b
    | \b(?:what\s+is\s+the\s+meaning\s+of\s+life|are\s+you\s+(?:alive|conscious|human))\b
    | \b(?:dating|girlfriend|boyfriend)\s+advice\b | \bmedical\s+advice\b | \bhoroscope\b
    """,
    re.IGNORECASE | re.VERBOSE,
)


def looks_off_topic(text: str) -> bool:
    """Whether a message asks for something customer care does not do."""
    return bool(_OFF_TOPIC.search(text))
