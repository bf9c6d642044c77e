"""What a customer's words say to the account assistant: a yes or a no to the pending action, and
whether a first message is about their own account (the τ-bench customers' openings)."""

from __future__ import annotations

import pytest

from services.concierge.account_plans import about_account, full_name, typed_answer


@pytest.mark.parametrize(
    ("said", "answer"),
    [
        ("yes", True),
        ("Yes, I'll go ahead.", True),
        ("Yes, please proceed with the cancellation and refund.", True),
        ("Sure, go ahead", True),
        ("Yes, that is correct", True),
        ("no", False),
        ("No, leave it as it is", False),
        # "ok" alone may only acknowledge: an irreversible action waits for an explicit go-ahead.
        ("ok", None),
        ("sure", None),
        # Anything asking for something else revises the proposal.
        ("yes but to my other address", None),
        ("yes and also change the address", None),
        ("Yes, cancel #W1234567", None),
        ("no, cancel the other one", None),
        ("yes what is the refund", None),
    ],
)
def test_a_yes_or_a_no(said: str, answer: bool | None) -> None:
    assert typed_answer(said) is answer


@pytest.mark.parametrize(
    ("said", "own"),
    [
        ("I need to exchange the black laser gaming mouse for a white optical mouse", True),
        ("I'd like to cancel the office chair I ordered", True),
        ("Hi, my name is Olivia Ito and my zip code is 80218.", True),
        ("Where is my order #W5442520?", True),
        ("What is your return policy?", False),
        ("Can I exchange an item after 30 days?", False),
    ],
)
def test_what_is_about_the_customers_own_account(said: str, own: bool) -> None:
    assert about_account(said) is own


@pytest.mark.parametrize(
    ("said", "name"),
    [
        ("Hi, my name is Olivia Ito and my zip code is 80218.", ("Olivia", "Ito")),
        ("my name is olivia ito, zip 80218", ("Olivia", "Ito")),
        ("Hi, I'm Isabella Sanchez, zip 85093.", ("Isabella", "Sanchez")),
        # Not a name: the words after "I'm" are the customer's, not capitalised as a name.
        ("Hi! I'm just checking #W3289292 ships to San Antonio, TX, 78219.", None),
    ],
)
def test_a_name_the_customer_gives(said: str, name: tuple[str, str] | None) -> None:
    assert full_name(said) == name
