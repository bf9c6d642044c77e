"""Text standardisation before indexing and searching.

Two steps, applied alike to documents and queries:
- the tenant's glossary expands internal jargon and abbreviations in place,
  keeping the original term ("SSO" -> "SSO (single sign-on)"), so both the
  dense vectors and the keyword index see the plain-language words;
- keyword text is lowercased, stripped of English stop words and Porter-stemmed
  for BM25, so "connecting the remotes" meets "connect a remote".
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from servicekit.text import STOP_WORDS
from services.retrieval.stemmer import stem

# Bump when keyword_text changes: stored documents are then re-indexed.
KEYWORD_VERSION = "porter-stop-1"

# BM25 drops exactly servicekit's base stop-word list (NLTK's English list, question
# scaffolding included), with no additions or removals: a change to that list changes
# keyword_text, so it needs a new KEYWORD_VERSION.
_WORD = re.compile(r"\w+")


def keyword_text(text: str) -> str:
    """What BM25 indexes: lowercase Porter stems of the words that are not stop words."""
    return " ".join(stem(word) for word in _WORD.findall(text.lower()) if word not in STOP_WORDS)


@dataclass(frozen=True)
class GlossaryEntry:
    term: str
    expansion: str


class Glossary:
    """A tenant's jargon and abbreviations, expanded wherever they occur as whole words.

    A term with an upper-case letter matches only as written ("IT" is not "it");
    an all-lower-case term matches in any case. Longer terms win over shorter
    ones they contain ("SSO login" over "SSO"). Expansion is one pass: an
    expansion is never expanded again, and a term already followed by its
    expansion in parentheses is left alone.
    """

    def __init__(self, entries: Iterable[GlossaryEntry] = ()) -> None:
        self.entries = tuple(entries)
        self._exact = {entry.term: entry.expansion for entry in self.entries if entry.term != entry.term.lower()}
        self._folded = {entry.term: entry.expansion for entry in self.entries if entry.term == entry.term.lower()}
        # A digest of the entries: which glossary an indexed chunk was built with.
        self.digest = (
            hashlib.sha256(
                json.dumps(sorted((e.term, e.expansion) for e in self.entries), ensure_ascii=False).encode()
            ).hexdigest()[:16]
            if self.entries
            else ""
        )
        alternatives = [
            (re.escape(term) if term in self._exact else f"(?i:{re.escape(term)})")
            for term in sorted((e.term for e in self.entries), key=len, reverse=True)
        ]
        # Whole words: no word character may touch the term on either side.
        self._pattern = re.compile(rf"(?<!\w)(?:{'|'.join(alternatives)})(?!\w)") if alternatives else None

    def __bool__(self) -> bool:
        return bool(self.entries)

    def expand(self, text: str) -> str:
        if self._pattern is None:
            return text

        def replace(match: re.Match[str]) -> str:
            term = match.group(0)
            expansion = self._exact.get(term) or self._folded[term.lower()]
            following = text[match.end() : match.end() + len(expansion) + 3]
            if following.lower() == f" ({expansion})".lower():
                return term
            return f"{term} ({expansion})"

        return self._pattern.sub(replace, text)


EMPTY_GLOSSARY = Glossary()
