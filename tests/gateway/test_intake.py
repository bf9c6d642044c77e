"""Email intake without a server: the sender's pseudonym and the conversation a mail belongs to
(the HTTP route is tested in test_routes.py and test_email_reply_route.py)."""

from __future__ import annotations

from gateway.intake import conversation_id, sender_pseudonym
from gateway.schemas.conversations import EmailIntakeRequest


def test_email_pseudonyms_depend_on_the_key_and_the_tenant() -> None:
    # An unkeyed hash of an address can be matched by hashing guessed addresses;
    # a keyed one cannot without the key.
    email = EmailIntakeRequest(sender="Ann@Example.com", body="hi")
    ids = {sender_pseudonym(t, email.sender, k) for t in ("demo", "acme") for k in (b"", b"k1", b"k2")}
    assert len(ids) == 6
    other = EmailIntakeRequest(sender="ann@example.COM", body="x")
    assert sender_pseudonym("demo", email.sender, b"k1") == sender_pseudonym("demo", other.sender, b"k1")


def test_replies_and_answers_to_an_agent_stay_in_the_conversation_of_their_subject() -> None:
    def conversation(subject: str, thread_id: str | None = None) -> str:
        return conversation_id(EmailIntakeRequest(sender="a@b.c", subject=subject, body="x", thread_id=thread_id),
                               "email-c1")

    first = conversation("Export fails")
    assert conversation("RE: Fwd: export FAILS ") == first
    assert conversation("Re: Export fails [HO-7KQ2M9]") == first
    assert conversation("Export works") != first
    assert conversation_id(EmailIntakeRequest(sender="a@b.c", subject="Export fails", body="x"), "email-c2") != first
    assert conversation("Export fails", thread_id="ticket-77") == "ticket-77"
