"""Words and sentences: the one stop-word list, the lists derived from it, the splitters."""

from __future__ import annotations

import hashlib

import pytest

from servicekit import judging, text


def test_the_base_list_is_what_the_keyword_index_was_built_with() -> None:
    # BM25 (services/retrieval/text.py) drops exactly this list: a change to it changes
    # the stored keyword index, so it goes with a new KEYWORD_VERSION and a new digest here.
    digest = hashlib.sha256(" ".join(sorted(text.STOP_WORDS)).encode()).hexdigest()[:16]
    assert (len(text.STOP_WORDS), digest) == (153, "59feaedbd189ef0b")


def test_a_derived_list_is_a_difference_from_the_base_list() -> None:
    assert text.stop_words() == text.STOP_WORDS
    assert text.stop_words(only="the a how") == {"the", "a", "how"}
    assert text.stop_words(keep="how what") == text.STOP_WORDS - {"how", "what"}
    assert text.stop_words(only="the how", keep="how", add="per yes") == {"the", "per", "yes"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"only": "the customer"}, "not in the base"),
        ({"keep": "customer"}, "not in the base"),
        ({"add": "the"}, "already in the base"),
    ],
)
def test_a_difference_that_is_none_is_refused(arguments: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        text.stop_words(**arguments)


def test_the_judge_counts_with_scikit_learns_list() -> None:
    # The benchmark's rule; servicekit writes the list as a difference from the base list.
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    assert judging.STOP_WORDS == frozenset(ENGLISH_STOP_WORDS)


def test_content_words() -> None:
    assert text.content_words("How do I connect the Remote to my TV? I did: 2 remotes, a TV.") == {
        "connect",
        "remote",
        "tv",
        "remotes",
    }
    assert text.content_words("Connecting remotes", stem=lambda w: w[:4]) == {"conn", "remo"}
    assert text.content_words("a b cd", stop=frozenset(), min_chars=1) == {"a", "b", "cd"}
    assert text.content_words("", stop=frozenset()) == set()


def test_strip_suffix_keeps_a_stem_of_three_letters() -> None:
    assert text.strip_suffix("refundable", ("able", "s")) == "refund"
    assert text.strip_suffix("plans", ("able", "s")) == "plan"
    assert text.strip_suffix("bus", ("s",)) == "bus"
    assert text.strip_suffix("table", ("able",), min_stem=1) == "t"


def test_sentences_split_at_sentence_ends_and_lines() -> None:
    passage = "## Pairing\n- Hold the button. Wait 3 s!\n* Is it on? Yes\n\nOk."
    assert text.sentences(passage) == ["Pairing", "Hold the button.", "Wait 3 s!", "Is it on?"]
    assert text.split_sentences("One. Two\nThree") == ["One.", "Two", "Three"]
    assert text.split_sentences("One. Two\nThree", at_line_breaks=False) == ["One.", "Two\nThree"]
    assert text.split_sentences("v2.1 is out.  ") == ["v2.1 is out.", ""]
