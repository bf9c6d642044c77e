"""Messages that ask nothing: greetings and pleas for help with no question in them, and
replies to the assistant's last message ("yes please", "no thanks", "ok great")."""

from __future__ import annotations

import re

# Words that carry no question on their own ("hi", "help please"): ask what the customer needs.
SMALL_TALK = frozenset(
    "hi hello hey hiya yo help helo thank thanks please ok okay question problem issue support assist "
    "need want good morning afternoon evening there someone anyone".split()
)

# Replies to the assistant's last message ("yes please", "no thanks", "ok great"): with the
# small-talk words above they are the whole message, and they ask nothing new.
_ACKNOWLEDGEMENTS = frozenset(
    "yes yeah yep yup sure no nope nah thanks thank thx ok okay k great perfect cool fine alright "
    "got it that's thats all good sounds much so very awesome brilliant understood you a lot that helped "
    "helps helpful".split()
)
_ANSWERS = frozenset("yes yeah yep yup sure no nope nah thanks thank thx ok okay great perfect cool".split())


def acknowledges(text: str) -> bool:
    """Whether the message only answers the assistant ("yes please", "no thanks", "ok great")."""
    words = re.findall(r"[a-z']+", text.lower())
    return bool(words) and set(words) <= _ACKNOWLEDGEMENTS | SMALL_TALK and bool(set(words) & _ANSWERS)
