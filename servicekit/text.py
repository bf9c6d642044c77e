"""Words and sentences: the one English stop-word list, and the splitters that
every service's word overlap is built on.

`STOP_WORDS` is the base list (NLTK's English list, the words that `\\w+` makes of
it). A use that needs a different list derives it here with `stop_words`, as an
explicit difference from the base (`keep`: base words that are content words for
that use; `add`: words the base list lacks; `only`: the few base words a short
list keeps), and says why where it does so. Those differences are measured
behaviour: retrieval's BM25 index, the concierge's grounding and match signals
(and the confidence fits built on them), tier 0's snippets, the handoff summaries'
grounding check and the benchmark judge each count words their own way, so a
change to a list is a change to what the customer sees.

Stemming stays with each use: BM25 stems with Porter (services/retrieval/stemmer.py,
what its stored index was built with, see KEYWORD_VERSION); the concierge and the
handoff summaries strip a few endings with `strip_suffix`, each its own endings.
Quoting (servicekit/quoting.py) keeps its own Markdown-aware sentence splitter: it
reads lists, headings and code blocks, and cuts only before a capital or a digit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

# NLTK's English stop words, as `\w+` splits them ("don't" -> "don", "t"). Question
# scaffolding ("how", "what", "can", "I", "my") is in: customers phrase questions
# with it, manuals do not. BM25 uses exactly this list (changing it changes the
# keyword index: bump services/retrieval/text.py's KEYWORD_VERSION).
STOP_WORDS = frozenset(
    """
    a about above after again against ain all am an and any are aren as at be because been before being below
    between both but by can couldn d did didn do does doesn doing don down during each few for from further had
    hadn has hasn have haven having he her here hers herself him himself his how i if in into is isn it its itself
    just ll m ma me mightn more most mustn my myself needn no nor not now o of off on once only or other our ours
    ourselves out over own re s same shan she should shouldn so some such t than that the their theirs them
    themselves then there these they this those through to too under until up ve very was wasn we were weren what
    when where which while who whom why will with won wouldn y you your yours yourself yourselves
    """.split()
)

# A word, for uses that count words: letters and digits (on lower-cased text).
WORD = re.compile(r"[a-z0-9]+")

# Where a sentence ends: after ".", "!" or "?" and white space (or at a line break).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_SENTENCE_OR_LINE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# What a sentence's ends lose: spaces and tabs, list bullets, heading and quote marks.
_SENTENCE_MARKS = " -*#>\t"


def stop_words(*, only: str = "", keep: str = "", add: str = "") -> frozenset[str]:
    """A use's stop words as a difference from `STOP_WORDS` (each argument: words
    separated by white space): the base list, or only the base words in `only`,
    less the words in `keep`, plus the words in `add`.

    Raises ValueError when `only` or `keep` names a word the base list lacks, or
    `add` one it has: the difference then is not what it says."""
    restricted, kept, added = (frozenset(words.split()) for words in (only, keep, add))
    if unknown := (restricted | kept) - STOP_WORDS:
        raise ValueError(f"not in the base stop-word list: {sorted(unknown)}")
    if known := added & STOP_WORDS:
        raise ValueError(f"already in the base stop-word list: {sorted(known)}")
    return ((restricted or STOP_WORDS) - kept) | added


def content_words(
    text: str,
    *,
    stop: frozenset[str] = STOP_WORDS,
    word: re.Pattern[str] = WORD,
    stem: Callable[[str], str] | None = None,
    min_chars: int = 2,
) -> set[str]:
    """The distinct content words of `text`: its lower-cased words (`word` finds them)
    of at least `min_chars` characters that are not in `stop`, each stemmed by `stem`."""
    found = (w for w in word.findall(text.lower()) if len(w) >= min_chars and w not in stop)
    return {stem(w) for w in found} if stem is not None else set(found)


def strip_suffix(word: str, suffixes: Iterable[str], *, min_stem: int = 3) -> str:
    """`word` without the first of `suffixes` it ends with, if at least `min_stem`
    characters remain; else `word` itself (the light stemming of word overlaps)."""
    for suffix in suffixes:
        if word.endswith(suffix) and len(word) - len(suffix) >= min_stem:
            return word[: -len(suffix)]
    return word


def split_sentences(text: str, *, at_line_breaks: bool = True) -> list[str]:
    """`text` cut at sentence ends (and line breaks, unless `at_line_breaks` is False),
    the parts as they are: white space around them kept, empty ones too."""
    return (_SENTENCE_OR_LINE_END if at_line_breaks else _SENTENCE_END).split(text)


def sentences(text: str) -> list[str]:
    """The sentences of `text` (cut at sentence ends and line breaks), without list
    bullets or heading marks at their ends; parts of three characters or fewer go."""
    parts = (part.strip(_SENTENCE_MARKS) for part in split_sentences(text))
    return [part for part in parts if len(part) > 3]


__all__ = [
    "STOP_WORDS",
    "WORD",
    "content_words",
    "sentences",
    "split_sentences",
    "stop_words",
    "strip_suffix",
]
