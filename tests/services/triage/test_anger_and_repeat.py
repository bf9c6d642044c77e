"""Repeated contacts and anger raise priority (issue 19): the customer's own words, the
conversations triage saw from them, and strongly negative or shouted messages count,
not only the CRM's contacts_last_7_days (which the chat widget never sends)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy.engine import Engine

from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import conversation_pb2, customer_pb2
from servicekit.server import serving
from services.triage.app import servicers
from services.triage.contacts import ContactLog
from services.triage.encoder import Encoder
from services.triage.migrations import SCHEMA
from services.triage.risk import REPEAT_PATTERNS, is_angry
from services.triage.settings import TriageSettings

T0 = dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.UTC)
CUSTOMER, ASSISTANT = conversation_pb2.ROLE_CUSTOMER, conversation_pb2.ROLE_ASSISTANT


# --- the phrases -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "This is the third time I'm asking about this.",
        "I already reported this bug and nobody answered.",
        "I asked yesterday. Please just fix my export.",
        "as I explained twice before, the export fails",
        "Still not fixed.",
        "How many more times do I have to write?",
        "No one has replied to my email",
        "I've been waiting since Monday",
        "we contacted you last week about this",
    ],
)
def test_a_customer_saying_they_asked_before_is_a_repeated_contact(text: str) -> None:
    assert any(pattern.search(text) for pattern in REPEAT_PATTERNS)


@pytest.mark.parametrize(
    "text",
    [
        "Events show up twice in the live view",
        "Should I contact you before upgrading?",
        "The report yesterday showed wrong numbers",
        "How do I enable two-factor authentication?",
        "Can I ask a question about SSO?",
        "Is E-1042 still a known issue after 4.3.1?",
    ],
)
def test_ordinary_questions_are_not_repeats(text: str) -> None:
    assert not any(pattern.search(text) for pattern in REPEAT_PATTERNS)


@pytest.mark.parametrize(
    "text",
    [
        "This is unacceptable.",
        "I am fed up with this",
        "Are you kidding me?",
        "WHY IS NOBODY ANSWERING ME",
        "hello??? anyone???",
        "worst support ever",
        "what a waste of my time",
    ],
)
def test_angry_words_and_shouting(text: str) -> None:
    assert is_angry(text)


@pytest.mark.parametrize(
    "text",
    [
        "Could you please help me set up SSO? Thanks!",
        "Our SAML SSO fails with E-2010 on the API",
        "What does HTTP 429 mean for the REST API and the SDK?",
        "The export is terrible slow, any tips?",
    ],
)
def test_calm_messages_with_capitals_or_codes_are_not_angry(text: str) -> None:
    assert not is_angry(text)


# --- the contact log ---------------------------------------------------------------


@pytest.fixture
def log(engine: Engine) -> ContactLog:
    SCHEMA.migrate(engine)
    return ContactLog(engine)


def test_other_conversations_of_the_customer_within_a_week_count(log: ContactLog) -> None:
    assert log.record("demo", "c-1", "conv-1", T0) == 0
    # More messages of the same conversation are one contact.
    assert log.record("demo", "c-1", "conv-1", T0 + dt.timedelta(minutes=1)) == 0
    assert log.record("demo", "c-1", "conv-2", T0 + dt.timedelta(hours=1)) == 1
    assert log.record("demo", "c-1", "conv-3", T0 + dt.timedelta(days=1)) == 2
    # Another customer, another tenant: nothing shared.
    assert log.record("demo", "c-2", "conv-9", T0 + dt.timedelta(days=1)) == 0
    assert log.record("other", "c-1", "conv-9", T0 + dt.timedelta(days=1)) == 0
    # A week after conv-1 and conv-2 were last seen, only conv-3 (a day younger) is recent.
    assert log.record("demo", "c-1", "conv-4", T0 + dt.timedelta(days=7, hours=2)) == 1


def test_a_conversation_seen_again_counts_from_its_last_message(log: ContactLog) -> None:
    log.record("demo", "c-1", "conv-1", T0)
    log.record("demo", "c-1", "conv-1", T0 + dt.timedelta(days=6))
    assert log.record("demo", "c-1", "conv-2", T0 + dt.timedelta(days=10)) == 1


def test_without_a_customer_id_nothing_is_remembered(log: ContactLog) -> None:
    assert log.record("demo", "", "conv-1", T0) == 0
    assert log.record("demo", "", "conv-2", T0) == 0
    assert log.record("demo", "x" * 201, "conv-1", T0) == 0


def test_without_a_conversation_id_the_others_are_counted_and_nothing_added(log: ContactLog) -> None:
    log.record("demo", "c-1", "conv-1", T0)
    assert log.record("demo", "c-1", "", T0) == 1
    assert log.record("demo", "c-1", "", T0) == 1


# --- through the real server -------------------------------------------------------


@pytest.fixture
async def stub(tmp_path: Path, encoder: Encoder) -> AsyncIterator[triage_pb2_grpc.TriageServiceStub]:
    settings = TriageSettings(port=0, data_dir=tmp_path, retrieval_addr="127.0.0.1:9")
    async with (
        serving(settings, lambda s: servicers(s, encoder)) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        yield triage_pb2_grpc.TriageServiceStub(channel)


def contact(customer: str, conversation: str, *texts: str | tuple[int, str]) -> triage_pb2.TriageContactRequest:
    return triage_pb2.TriageContactRequest(
        customer=customer_pb2.CustomerRef(tenant_id="demo", customer_id=customer),
        conversation=conversation_pb2.Conversation(
            conversation_id=conversation,
            messages=[
                conversation_pb2.Message(role=CUSTOMER, text=item)
                if isinstance(item, str)
                else conversation_pb2.Message(role=item[0], text=item[1])
                for item in texts
            ],
        ),
    )


def flags(response: triage_pb2.TriageContactResponse) -> set[str]:
    return {triage_pb2.RiskFlag.Name(flag) for flag in response.risk_flags}


async def test_an_angry_repeated_message_ranks_above_a_calm_first_question(
    stub: triage_pb2_grpc.TriageServiceStub,
) -> None:
    calm = await stub.TriageContact(
        contact("calm", "conv-calm", "Hi! Could you please help me set up SSO? Thanks so much")
    )
    angry = await stub.TriageContact(
        contact(
            "angry",
            "conv-angry",
            "My S3 export fails with E-3001.",
            (ASSISTANT, "Please check the IAM role's trust policy."),
            # A lexicon reads "please" and "help" as positive: the words of a repeat and of anger decide.
            "I asked yesterday and nobody answered. Please just fix my export, I need help!!!",
        )
    )

    assert {"RISK_FLAG_REPEATED_CONTACT", "RISK_FLAG_ESCALATING_ANGER"} <= flags(angry)
    assert flags(calm) == set()
    assert angry.priority.score > calm.priority.score
    codes = {reason.code for reason in angry.priority.reasons}
    assert {"risk:repeated_contact", "risk:escalating_anger"} <= codes
    assert "sentiment:positive" not in codes


async def test_a_strongly_negative_first_message_is_anger_without_a_course(
    stub: triage_pb2_grpc.TriageServiceStub,
) -> None:
    response = await stub.TriageContact(
        contact("c-9", "conv-9", "I hate this. Everything is broken and I am miserable and disgusted.")
    )
    assert response.sentiment.score <= -0.6
    assert "RISK_FLAG_ESCALATING_ANGER" in flags(response)


async def test_anger_the_customer_moved_on_from_does_not_count(stub: triage_pb2_grpc.TriageServiceStub) -> None:
    response = await stub.TriageContact(
        contact(
            "c-8",
            "conv-8",
            "This is unacceptable!!!",
            (ASSISTANT, "Sorry about that: here is how to fix it."),
            "Ok, I will try that.",
            (ASSISTANT, "Let me know how it goes."),
            "It worked, thank you.",
        )
    )
    assert "RISK_FLAG_ESCALATING_ANGER" not in flags(response)


async def test_the_customers_other_conversations_make_a_repeated_contact(
    stub: triage_pb2_grpc.TriageServiceStub,
) -> None:
    for number in range(3):
        first = await stub.TriageContact(contact("c-5", f"conv-{number}", "How do I export to BigQuery?"))
        assert "RISK_FLAG_REPEATED_CONTACT" not in flags(first)
    # Three other conversations this week (the policy's threshold), without any CRM facts.
    fourth = await stub.TriageContact(contact("c-5", "conv-3", "How do I export to BigQuery?"))
    assert "RISK_FLAG_REPEATED_CONTACT" in flags(fourth)
    assert "risk:repeated_contact" in {reason.code for reason in fourth.priority.reasons}
