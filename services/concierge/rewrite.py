"""Follow-up questions rewritten into standalone queries before retrieval.

"And how much does it cost?" searches for nothing on its own. The
deterministic rewrite (the default, and the fallback) adds the topic of the
previous customer turns: their content words that the follow-up lacks, most
recent first. With an instruction-tuned model (answer_mode "generative") the
LLM rewrites, and its output is accepted only when it is one short line that
keeps the follow-up's own words and adds only words from the conversation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from services.concierge.grounding import content_words

REWRITE_VERSION = "followup-topic-v1"
LLM_REWRITE_VERSION = "followup-llm-v1"

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")
# Words that point back at something said before.
_ANAPHORA = frozenset(
    "it its it's this that these those they them their there one ones he she him her same such "
    "also too either another other else again".split()
)
_QUESTION_WORDS = frozenset("how what why when where which who whom whose please help hi hello thanks".split())
_FOLLOW_UP_START = re.compile(
    r"^\s*(?:and|but|also|so|then|what about|how about|and what|what if|ok(?:ay)?|same|why|or)\b", re.IGNORECASE
)
# A message with this many content words or more stands on its own unless it points back.
_STANDALONE_WORDS = 5
_MAX_TOPIC_WORDS = 6


def is_follow_up(message: str) -> bool:
    words = [w.lower() for w in _WORD.findall(message)]
    if not words:
        return False
    if _FOLLOW_UP_START.match(message):
        return True
    return bool(set(words) & _ANAPHORA) or (len(content_words(message)) < 3 and len(words) <= _STANDALONE_WORDS)


def _topic_words(previous: Sequence[str], exclude: set[str]) -> list[str]:
    """Content words of earlier customer turns, most recent turn first, in their original spelling."""
    chosen: list[str] = []
    seen = set(exclude)
    for turn in reversed(previous):
        for word in _WORD.findall(turn):
            stem = next(iter(content_words(word)), "")
            if not stem or stem in seen or word.lower() in _ANAPHORA or word.lower() in _QUESTION_WORDS:
                continue
            seen.add(stem)
            chosen.append(word)
            if len(chosen) >= _MAX_TOPIC_WORDS:
                return chosen
        if chosen:
            # The latest turn that had a topic is the topic; older ones are noise.
            return chosen
    return chosen


def rewrite(message: str, previous_customer_turns: Sequence[str]) -> str:
    """A standalone query for `message` given the earlier customer turns (oldest first)."""
    if not previous_customer_turns or not is_follow_up(message):
        return message
    topic = _topic_words(previous_customer_turns, content_words(message))
    return f"{message.strip()} ({' '.join(topic)})" if topic else message


def llm_prompt(message: str, previous_customer_turns: Sequence[str]) -> str:
    history = "\n".join(f"- {turn}" for turn in previous_customer_turns[-3:])
    return (
        "Rewrite the customer's follow-up as one standalone question that names the topic. "
        "Use only words from the conversation. Do not answer it.\n\n"
        f"Earlier customer messages:\n{history}\n\nFollow-up: {message}\nStandalone question:"
    )


def accept_llm_rewrite(candidate: str, message: str, previous_customer_turns: Sequence[str]) -> str | None:
    """The LLM's rewrite if it is safe to search with, else None (use the deterministic one)."""
    line = candidate.strip().strip('"').strip()
    if not line or "\n" in line or len(line) > 3 * len(message) + 200:
        return None
    words = content_words(line)
    allowed = content_words(message) | set().union(*(content_words(t) for t in previous_customer_turns))
    # Keeps the follow-up's own words and invents nothing.
    if not content_words(message) <= words | {""} and len(content_words(message) - words) > 1:
        return None
    return line if words and len(words - allowed) <= 1 else None
