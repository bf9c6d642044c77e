"""Grounding checks: is what the model said actually in the passages?

In extractive mode the model is asked to quote; `verify_quote` accepts the
quote only if it matches a sentence of a passage closely, and then the
passage's own sentence is what the customer sees (never the model's paraphrase).
`support` measures, for free text, the share of content words that the
passages contain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'._/-]*")
_STOPWORDS = frozenset(
    "a an the and or but if then of to in on for with at by from as is are was were be been it this that "
    "these those you your we our i my me can will would should could do does did not no yes so than too "
    "very just about into over under up down out more most some any all each per".split()
)


def sentences(text: str) -> list[str]:
    parts = (part.strip(" -*#>\t") for part in _SENTENCE_END.split(text))
    return [part for part in parts if len(part) > 3]


def content_words(text: str) -> set[str]:
    return {w.lower().strip(".") for w in _WORD.findall(text)} - _STOPWORDS


@dataclass(frozen=True)
class VerifiedQuote:
    sentence: str
    passage_index: int
    similarity: float


def verify_quote(quote: str, passages: list[str], *, min_similarity: float = 0.85) -> VerifiedQuote | None:
    """The passage sentence the quote reproduces, or None when the model made something up."""
    quote = quote.strip().strip('"').strip()
    if len(quote) < 8:
        return None
    best: VerifiedQuote | None = None
    for index, passage in enumerate(passages):
        for sentence in sentences(passage):
            ratio = SequenceMatcher(None, quote.lower(), sentence.lower(), autojunk=False).ratio()
            if best is None or ratio > best.similarity:
                best = VerifiedQuote(sentence=sentence, passage_index=index, similarity=ratio)
    return best if best is not None and best.similarity >= min_similarity else None


def support(answer: str, passages: list[str]) -> float:
    """Share of the answer's content words found in the passages, in [0, 1]."""
    words = content_words(answer)
    if not words:
        return 0.0
    known = set().union(*(content_words(p) for p in passages)) if passages else set()
    return len(words & known) / len(words)
