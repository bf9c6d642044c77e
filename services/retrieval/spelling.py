"""Typos in a query, read against the tenant's own words.

"my acount got lockd after to many login atempts" finds little: neither the
embedding model nor BM25 knows "acount" is "account". A word of the query that
neither the tenant's knowledge base nor the embedding model's vocabulary knows
is read as the knowledge base's word one edit away (insert, delete, replace,
swap two neighbours); among several, the one the knowledge base uses most. Only the knowledge
base's words are proposed, since only they can improve what is found; a word
with no near candidate, or two equally near and equally common, is left alone.

Candidates come from a deletion index (as SymSpell does): every word with one
letter deleted points at the words it came from, so a query word finds its
neighbours by looking up itself and its own deletions, never by scanning the
vocabulary.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z]+")
# Shorter words are too ambiguous to correct ("cust" is one edit from "must" and "cost").
MIN_LENGTH = 5


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


# A known word with one of these endings is known ("cohorts", "invoiced", "parser").
_INFLECTIONS = (("s", ("",)), ("es", ("",)), ("ed", ("", "e")), ("er", ("", "e")), ("ing", ("", "e")))


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps
    of neighbouring letters each cost 1."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]


@dataclass(frozen=True)
class Correction:
    written: str
    corrected: str


class Speller:
    """The typo reader of one tenant: its knowledge base's word counts, and the other words
    that are known (the embedding model's vocabulary, the glossary's terms)."""

    def __init__(self, counts: Counter[str], known: Iterable[str] = ()) -> None:
        self._counts = counts
        self._known = frozenset(word.lower() for word in known) | frozenset(counts)
        self._index: dict[str, set[str]] = {}
        for word in counts:
            if len(word) >= MIN_LENGTH - 1:
                for key in {word} | _deletions(word):
                    self._index.setdefault(key, set()).add(word)

    @classmethod
    def of_texts(cls, texts: Iterable[str], known: Iterable[str] = ()) -> Speller:
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(word.lower() for word in _WORD.findall(text))
        return cls(counts, known)

    def _is_known(self, word: str) -> bool:
        if word in self._known:
            return True
        return any(
            word.endswith(ending) and word[: -len(ending)] + tail in self._known
            for ending, tails in _INFLECTIONS
            for tail in tails
        )

    def _nearest(self, word: str) -> str | None:
        found: set[str] = set()
        for key in {word} | _deletions(word):
            found |= self._index.get(key, set())
        scored = sorted(
            ((distance, -self._counts[candidate], candidate) for candidate in found
             if (distance := edit_distance(word, candidate)) <= 1),
        )
        if not scored:
            return None
        if len(scored) > 1 and scored[0][:2] == scored[1][:2]:
            return None  # two readings, equally near and equally common: no guess
        return scored[0][2]

    def correct(self, text: str) -> tuple[str, list[Correction]]:
        """`text` with its typos replaced (lower case), and the corrections made."""
        corrections: list[Correction] = []

        def replace(match: re.Match[str]) -> str:
            written = match.group()
            word = written.lower()
            if len(word) < MIN_LENGTH or self._is_known(word):
                return written
            nearest = self._nearest(word)
            if nearest is None:
                return written
            corrections.append(Correction(written, nearest))
            return nearest

        corrected = _WORD.sub(replace, text)
        return corrected, corrections
