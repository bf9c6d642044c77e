"""Grounding checks: is what the model said actually in the passages?

In extractive mode the customer sees the best passage's own sentences
(`best_sentences`); the model is asked to quote, and `verify_quote` accepts
its quote only if it matches sentences of a passage closely, so that
`quotes_part_of` can tell whether the model vouches for those sentences.
`support` measures, for free text, the share of content words that the
passages contain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

from servicekit.text import sentences, stop_words, strip_suffix

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'._/-]*")
# A short list: the grounding checks, the extractive answer and the concierge's match
# signals (and the confidence fits made on them) were measured with it. Only 62 of the
# base list's words go, the ones nearly every sentence has (articles, conjunctions,
# common prepositions, "I", "my", "you", "we", "our", auxiliaries, quantifiers,
# negation); "he", "they", "have", question words ("how", "what", "which") and the
# rest of the base list count as content. Four words the base list lacks go too:
# "could" and "would" (auxiliaries like "should"), "yes", "per".
_STOPWORDS = stop_words(
    only="a about all an and any are as at be been but by can did do does down each for from i if in into is it "
    "just me more most my no not of on or our out over should so some than that the then these this those to "
    "too under up very was we were will with you your",
    add="could per would yes",
)

_SUFFIXES = ("able", "ing", "ly", "ed", "es", "s")


def _stem(word: str) -> str:
    # Just enough stemming that "refund"/"refundable" and "plan"/"plans" meet.
    return strip_suffix(word, _SUFFIXES)


def content_words(text: str) -> set[str]:
    # Words keep inner dots, slashes and apostrophes ("v2.1", "on/off", "don't"), and
    # are lower-cased after they are found (not before: the word pattern is ASCII).
    words = {w.lower().strip(".") for w in _WORD.findall(text)} - _STOPWORDS
    return {_stem(w) for w in words}


@dataclass(frozen=True)
class VerifiedQuote:
    # The passage's own sentences that the quote reproduces, in passage order.
    sentence: str
    passage_index: int
    # Share of the quote's characters found in those sentences, in [0, 1].
    similarity: float


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def verify_quote(
    quote: str, passages: list[str], *, titles: list[str] | None = None, min_coverage: float = 0.8
) -> VerifiedQuote | None:
    """The passage sentences the quote reproduces, or None when the model made something up.

    A sentence counts as quoted when most of its characters appear in the quote;
    the quote is verified when those sentences cover most of the quote. Questions
    are never taken as answers (small models like to echo the FAQ heading).
    """
    text = _normalise(quote.strip().strip('"'))
    # The prompt shows "[n] Title: text", so a quote may start with the title;
    # the passage text itself may or may not. Try the quote with and without it.
    candidates = [text]
    for title in titles or []:
        prefix = _normalise(title)
        if prefix and text.startswith(prefix):
            candidates.append(text[len(prefix):].lstrip(" :-"))
    found = [q for q in (_best_match(c, passages) for c in candidates if len(c) >= 8) if q is not None]
    best = max(found, key=lambda q: q.similarity, default=None)
    return best if best is not None and best.similarity >= min_coverage else None


def informative(sentence: str) -> bool:
    """Whether a sentence can be an answer: manuals extracted from PDFs are full of
    headings and icon labels run together ("Universal Guide Universal Guide"),
    which would pass as quotes but say nothing."""
    words = _WORD.findall(sentence.lower())
    return len(words) >= 5 and len(set(words)) / len(words) >= 0.6


def _best_match(text: str, passages: list[str]) -> VerifiedQuote | None:
    best: VerifiedQuote | None = None
    for index, passage in enumerate(passages):
        chosen: list[str] = []
        covered = 0
        for sentence in sentences(passage):
            normalised = _normalise(sentence)
            if not normalised or normalised.endswith("?") or not informative(normalised):
                continue
            blocks = SequenceMatcher(None, text, normalised, autojunk=False).get_matching_blocks()
            matched = sum(block.size for block in blocks if block.size >= 4)
            if matched / len(normalised) >= 0.6:
                chosen.append(sentence)
                covered += matched
        coverage = min(1.0, covered / len(text))
        if chosen and (best is None or coverage > best.similarity):
            best = VerifiedQuote(sentence=" ".join(chosen), passage_index=index, similarity=round(coverage, 4))
    return best


def support(answer: str, passages: list[str]) -> float:
    """Share of the answer's content words found in the passages, in [0, 1]."""
    words = content_words(answer)
    if not words:
        return 0.0
    known = set().union(*(content_words(p) for p in passages)) if passages else set()
    return len(words & known) / len(words)


def quotes_part_of(quote: VerifiedQuote, text: str) -> bool:
    """Whether the quote reproduces a sentence of `text` (both drawn from one passage)."""
    said = {_normalise(s) for s in sentences(text)}
    return any(_normalise(s) in said for s in sentences(quote.sentence))


def best_sentences(question: str, passage: str, max_sentences: int = 2) -> tuple[str, float]:
    """The deterministic extractive answer: the passage sentence that shares the most
    content words with the question, with the sentence after it when that one is
    informative too (steps often run over two). Returns the text and the share of
    the question's content words it contains; ("", 0.0) when no sentence can answer."""
    asked = content_words(question)
    candidates = [s for s in sentences(passage) if not s.rstrip().endswith("?") and informative(_normalise(s))]
    if not candidates:
        return "", 0.0
    overlaps = [len(asked & content_words(s)) for s in candidates]
    best = max(range(len(candidates)), key=lambda i: (overlaps[i], -i))
    chosen = candidates[best: best + max_sentences]
    text = " ".join(chosen)
    return text, (len(asked & content_words(text)) / len(asked) if asked else 0.0)
