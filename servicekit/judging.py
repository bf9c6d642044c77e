"""The answer judge of the concierge benchmark (services/concierge/evaluation.py),
here so that services measuring "was the AI right" (escalation's reliability
diagram) count exactly as the benchmark does and their figures compare.

An answer agrees with a reference text when at least 60% of the answer's
content words (lower-cased, English stop words removed, repeats counted)
appear in the reference.
"""

from __future__ import annotations

import functools
import re

# The benchmark's rule: this share of the answer's content words must be in the reference.
MIN_SHARED_WORDS = 0.6

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@functools.cache
def _stop_words() -> frozenset[str]:
    # scikit-learn's English list (the benchmark's); imported on first use, it is slow to import.
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def judge_words(text: str) -> list[str]:
    """The content words of `text`, in order, repeats kept."""
    stop = _stop_words()
    return [word for word in _WORD.findall(text.lower()) if word not in stop]


def agrees(answer: str, reference: str) -> bool:
    """Whether `answer` says what `reference` says: False for an answer without content words."""
    words = judge_words(answer)
    if not words:
        return False
    known = set(judge_words(reference))
    return sum(word in known for word in words) / len(words) >= MIN_SHARED_WORDS


__all__ = ["MIN_SHARED_WORDS", "agrees", "judge_words"]
