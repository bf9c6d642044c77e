"""The answer judge of the concierge benchmark (tools/concierge_evaluation.py),
here so that services measuring "was the AI right" (escalation's reliability
diagram) count exactly as the benchmark does and their figures compare.

An answer agrees with a reference text when at least 60% of the answer's
content words (lower-cased, English stop words removed, repeats counted)
appear in the reference.
"""

from __future__ import annotations

import re

from servicekit.text import stop_words

# The benchmark's rule: this share of the answer's content words must be in the reference.
MIN_SHARED_WORDS = 0.6

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


# The benchmark's list is scikit-learn's English one (318 words), written here as its
# difference from the base list so that servicekit needs no scikit-learn
# (tests/servicekit/test_text.py checks it is still scikit-learn's): it lacks the base
# list's contraction pieces ("don", "isn", "ll", "t"...) and a few more, and has many
# words the base list lacks (numbers, "however", "whereas", "please", "get"...).
STOP_WORDS = stop_words(
    keep="ain aren couldn d did didn does doesn doing don hadn hasn haven having isn just ll m ma mightn mustn "
    "needn o s shan shouldn t theirs ve wasn weren won wouldn y",
    add="across afterwards almost alone along already also although always among amongst amoungst amount another "
    "anyhow anyone anything anyway anywhere around back became become becomes becoming beforehand behind beside "
    "besides beyond bill bottom call cannot cant co con could couldnt cry de describe detail done due eg eight "
    "either eleven else elsewhere empty enough etc even ever every everyone everything everywhere except fifteen "
    "fifty fill find fire first five former formerly forty found four front full get give go hasnt hence "
    "hereafter hereby herein hereupon however hundred ie inc indeed interest keep last latter latterly least less "
    "ltd made many may meanwhile might mill mine moreover mostly move much must name namely neither never "
    "nevertheless next nine nobody none noone nothing nowhere often one onto others otherwise part per perhaps "
    "please put rather see seem seemed seeming seems serious several show side since sincere six sixty somehow "
    "someone something sometime sometimes somewhere still system take ten thence thereafter thereby therefore "
    "therein thereupon thick thin third though three throughout thru thus together top toward towards twelve "
    "twenty two un upon us via well whatever whence whenever whereafter whereas whereby wherein whereupon "
    "wherever whether whither whoever whole whose within without would yet",
)


def judge_words(text: str) -> list[str]:
    """The content words of `text`, in order, repeats kept."""
    return [word for word in _WORD.findall(text.lower()) if word not in STOP_WORDS]


def agrees(answer: str, reference: str) -> bool:
    """Whether `answer` says what `reference` says: False for an answer without content words."""
    words = judge_words(answer)
    if not words:
        return False
    known = set(judge_words(reference))
    return sum(word in known for word in words) / len(words) >= MIN_SHARED_WORDS


__all__ = ["MIN_SHARED_WORDS", "STOP_WORDS", "agrees", "judge_words"]
