"""The sentences a knowledge text is quoted by: prose, without Markdown marks or clause numbers."""

from __future__ import annotations

from servicekit import quoting


def test_a_clause_number_is_a_list_mark_not_a_sentence_of_its_own() -> None:
    text = (
        "## 4. Exceptions\n\n"
        "4.1. Duplicate charges are always refunded in full.\n\n"
        "4.2. Service credits are applied to future invoices.\n\n---\n"
    )
    assert quoting.sentences(text) == [
        "Duplicate charges are always refunded in full.",
        "Service credits are applied to future invoices.",
    ]
