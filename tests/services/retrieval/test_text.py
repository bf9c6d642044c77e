"""Keyword normalisation (stop words, Porter stemming), glossary expansion and hybrid fusion."""

from __future__ import annotations

import pytest

from services.retrieval.search import KEYWORD_WEIGHT, fuse
from services.retrieval.stemmer import stem
from services.retrieval.text import Glossary, GlossaryEntry, keyword_text


@pytest.mark.parametrize(
    ("word", "expected"),
    # From Porter's paper and his reference vocabulary.
    [
        ("caresses", "caress"),
        ("ponies", "poni"),
        ("cats", "cat"),
        ("feed", "feed"),
        ("agreed", "agre"),
        ("plastered", "plaster"),
        ("motoring", "motor"),
        ("sing", "sing"),
        ("hopping", "hop"),
        ("falling", "fall"),
        ("filing", "file"),
        ("happy", "happi"),
        ("relational", "relat"),
        ("conditional", "condit"),
        ("generalization", "gener"),
        ("connection", "connect"),
        ("connecting", "connect"),
        ("connected", "connect"),
        ("hopeful", "hope"),
        ("goodness", "good"),
        ("allowance", "allow"),
        ("adjustment", "adjust"),
        ("adoption", "adopt"),
        ("effective", "effect"),
        ("controll", "control"),
        ("roll", "roll"),
        ("tv", "tv"),
        ("größe", "größe"),
    ],
)
def test_porter_stemmer(word: str, expected: str) -> None:
    assert stem(word) == expected


def test_keyword_text_drops_stop_words_and_stems() -> None:
    assert keyword_text("How do I connect the remote controls to my TV?") == "connect remot control tv"
    assert keyword_text("Connecting a remote control") == keyword_text("connected remote controls")
    assert keyword_text("how do I") == ""


def glossary(*pairs: tuple[str, str]) -> Glossary:
    return Glossary(GlossaryEntry(term, expansion) for term, expansion in pairs)


def test_glossary_expands_whole_words_and_keeps_the_term() -> None:
    g = glossary(("SSO", "single sign-on"), ("2FA", "two-factor authentication"))
    assert g.expand("Enable SSO and 2FA.") == ("Enable SSO (single sign-on) and 2FA (two-factor authentication).")
    # Not inside other words.
    assert g.expand("SSOX and X2FA and PSSO") == "SSOX and X2FA and PSSO"
    # A term already followed by its expansion is left alone, so expanding is idempotent.
    once = g.expand("SSO at login")
    assert g.expand(once) == once
    # An expansion is never expanded again.
    assert glossary(("KB", "knowledge base (KB)")).expand("the KB") == "the KB (knowledge base (KB))"


def test_glossary_matching_is_case_aware() -> None:
    g = glossary(("IT", "information technology"), ("kb", "knowledge base"))
    # A term with capitals matches only as written: "it" is a pronoun.
    assert g.expand("Ask IT; it helps.") == "Ask IT (information technology); it helps."
    # An all-lower-case term matches in any case.
    assert g.expand("Search the KB or the Kb") == "Search the KB (knowledge base) or the Kb (knowledge base)"


def test_glossary_prefers_the_longest_term_and_handles_punctuation() -> None:
    g = glossary(
        ("SSO", "single sign-on"), ("SSO login", "login through the identity provider"), ("C++", "C plus plus")
    )
    assert g.expand("Use SSO login.") == "Use SSO login (login through the identity provider)."
    assert g.expand("Written in C++, not C.") == "Written in C++ (C plus plus), not C."


def test_glossary_digest_identifies_the_content() -> None:
    a = glossary(("SSO", "single sign-on"), ("2FA", "two-factor authentication"))
    b = glossary(("2FA", "two-factor authentication"), ("SSO", "single sign-on"))
    assert a.digest == b.digest != glossary(("SSO", "single sign on")).digest
    assert Glossary().digest == "" and not Glossary()


def test_hybrid_fusion_mixes_similarity_and_relative_bm25() -> None:
    scores = fuse({"a": 0.8, "b": 0.5, "c": 0.3}, {"b": 12.0, "c": 6.0})
    assert scores["a"] == pytest.approx((1 - KEYWORD_WEIGHT) * 0.8)
    assert scores["b"] == pytest.approx((1 - KEYWORD_WEIGHT) * 0.5 + KEYWORD_WEIGHT * 1.0)
    assert scores["c"] == pytest.approx((1 - KEYWORD_WEIGHT) * 0.3 + KEYWORD_WEIGHT * 0.5)
    # No keyword match at all: the dense order stands.
    assert fuse({"a": 0.8, "b": 0.5}, {}) == {"a": pytest.approx(0.4), "b": pytest.approx(0.25)}
