"""TriageContact through a real in-process server and channel."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from pydantic import ValidationError

import services.triage
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import conversation_pb2, customer_pb2
from servicekit.errors import details_from_rpc_error
from servicekit.server import serving
from services.triage.app import servicers
from services.triage.encoder import Encoder
from services.triage.policy import load_policy
from services.triage.settings import TriageSettings

# Nothing listens there: these tests never reach Tier 0's retrieval call.
UNUSED_RETRIEVAL = "127.0.0.1:9"

CUSTOMER = conversation_pb2.ROLE_CUSTOMER
ASSISTANT = conversation_pb2.ROLE_ASSISTANT


def contact(
    *texts: str | tuple[int, str], account: customer_pb2.AccountSignals | None = None, tenant: str = "demo"
) -> triage_pb2.TriageContactRequest:
    """A request whose messages are customer texts, or (role, text) pairs."""
    messages = [
        conversation_pb2.Message(role=CUSTOMER, text=item)
        if isinstance(item, str)
        else conversation_pb2.Message(role=item[0], text=item[1])
        for item in texts
    ]
    request = triage_pb2.TriageContactRequest(
        customer=customer_pb2.CustomerRef(tenant_id=tenant, customer_id="c-1"),
        conversation=conversation_pb2.Conversation(conversation_id="conv-1", messages=messages),
    )
    if account is not None:
        request.account.CopyFrom(account)
    return request


async def _stub_for(settings: TriageSettings, encoder: Encoder) -> AsyncIterator[triage_pb2_grpc.TriageServiceStub]:
    async with (
        serving(settings, lambda s: servicers(s, encoder)) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        yield triage_pb2_grpc.TriageServiceStub(channel)


@pytest.fixture
async def stub(tmp_path: Path, encoder: Encoder) -> AsyncIterator[triage_pb2_grpc.TriageServiceStub]:
    async for item in _stub_for(TriageSettings(port=0, data_dir=tmp_path, retrieval_addr=UNUSED_RETRIEVAL), encoder):
        yield item


def flag_names(response: triage_pb2.TriageContactResponse) -> set[str]:
    return {triage_pb2.RiskFlag.Name(flag) for flag in response.risk_flags}


async def test_angry_message_is_negative_and_happy_one_positive(stub: triage_pb2_grpc.TriageServiceStub) -> None:
    angry = await stub.TriageContact(
        contact("This is ridiculous. Your product is garbage, it broke again and I am furious.")
    )
    happy = await stub.TriageContact(contact("Thanks so much, that fixed it! Great support, really happy."))

    assert angry.sentiment.label == triage_pb2.SENTIMENT_LABEL_NEGATIVE
    assert angry.sentiment.score < -0.5
    assert happy.sentiment.label == triage_pb2.SENTIMENT_LABEL_POSITIVE
    assert happy.sentiment.score > 0.5
    neutral = await stub.TriageContact(contact("How do I export data to S3?"))
    assert neutral.sentiment.label == triage_pb2.SENTIMENT_LABEL_NEUTRAL


async def test_sentiment_scores_the_newest_customer_message_and_its_trajectory(
    stub: triage_pb2_grpc.TriageServiceStub,
) -> None:
    response = await stub.TriageContact(
        contact(
            "Hi, thanks for the great product, I love the dashboards!",
            (ASSISTANT, "Glad to hear it! This is terrible awful horrible news though."),
            "It crashed again and I lost all my work. This is awful, I am angry and fed up.",
        )
    )

    assert response.sentiment.label == triage_pb2.SENTIMENT_LABEL_NEGATIVE
    assert response.sentiment.trajectory <= -1.0
    assert "RISK_FLAG_ESCALATING_ANGER" in flag_names(response)


async def test_a_single_message_has_no_trajectory(stub: triage_pb2_grpc.TriageServiceStub) -> None:
    mild = await stub.TriageContact(contact("This is a bit annoying."))

    assert mild.sentiment.trajectory == 0.0
    assert mild.sentiment.label == triage_pb2.SENTIMENT_LABEL_NEGATIVE
    assert "RISK_FLAG_ESCALATING_ANGER" not in flag_names(mild)
    # Strongly negative from the first message is anger without a course (issue 19).
    strong = await stub.TriageContact(contact("This is awful and I hate it."))
    assert strong.sentiment.trajectory == 0.0
    assert "RISK_FLAG_ESCALATING_ANGER" in flag_names(strong)


async def test_churn_language_raises_the_churn_flag(stub: triage_pb2_grpc.TriageServiceStub) -> None:
    response = await stub.TriageContact(contact("Please cancel my subscription at the end of the month."))

    assert flag_names(response) == {"RISK_FLAG_CHURN"}
    # Churn alone (not high value) is handled by an agent, not a manager.
    assert response.route.tier == triage_pb2.TIER_SPECIALIST


async def test_legal_language_flags_the_contact_to_a_manager(stub: triage_pb2_grpc.TriageServiceStub) -> None:
    response = await stub.TriageContact(contact("If this is not fixed today my lawyer will be in touch."))

    assert "RISK_FLAG_LEGAL" in flag_names(response)
    assert response.route.tier == triage_pb2.TIER_MANAGER_FLAGGED
    assert response.route.queue == "manager"
    assert list(response.route.reason_codes) == ["risk_legal", "no_intent_model"]


async def test_a_request_for_a_human_goes_to_the_general_specialist_queue(
    stub: triage_pb2_grpc.TriageServiceStub,
) -> None:
    response = await stub.TriageContact(contact("This bot is useless, let me talk to a real person."))

    assert "RISK_FLAG_HUMAN_REQUESTED" in flag_names(response)
    assert response.route.tier == triage_pb2.TIER_SPECIALIST
    assert response.route.queue == "general"
    assert list(response.route.reason_codes) == ["human_requested", "no_intent_model"]


async def test_only_customer_messages_raise_text_flags(stub: triage_pb2_grpc.TriageServiceStub) -> None:
    response = await stub.TriageContact(
        contact(
            "How do I rotate my API key?",
            (ASSISTANT, "I can't cancel your subscription, but I can transfer you to a human agent."),
        )
    )

    assert flag_names(response) == set()


async def test_account_signals_raise_repeated_contact_and_high_value(
    stub: triage_pb2_grpc.TriageServiceStub,
) -> None:
    account = customer_pb2.AccountSignals(plan="enterprise", contacts_last_7_days=3, contract_value_minor=9_000_000)
    response = await stub.TriageContact(contact("We are going to cancel our contract.", account=account))

    assert flag_names(response) == {"RISK_FLAG_CHURN", "RISK_FLAG_REPEATED_CONTACT", "RISK_FLAG_HIGH_VALUE"}
    assert response.route.tier == triage_pb2.TIER_MANAGER_FLAGGED
    assert list(response.route.reason_codes) == ["risk_churn_high_value", "no_intent_model"]

    below = customer_pb2.AccountSignals(contacts_last_7_days=2, contract_value_minor=4_999_999)
    quiet = await stub.TriageContact(contact("Where do I find invoices?", account=below))
    assert flag_names(quiet) == set()


async def test_intent_stays_empty_without_a_model(stub: triage_pb2_grpc.TriageServiceStub) -> None:
    response = await stub.TriageContact(contact("How do I set up webhooks?"))

    assert response.intent == triage_pb2.IntentPrediction()
    # No model can say what the contact is about, so a person looks at it.
    assert response.route.tier == triage_pb2.TIER_SPECIALIST
    assert response.route.queue == "general"
    assert list(response.route.reason_codes) == ["no_intent_model"]


async def test_priority_is_the_sum_of_its_reasons_largest_first(stub: triage_pb2_grpc.TriageServiceStub) -> None:
    account = customer_pb2.AccountSignals(plan="Enterprise", open_tickets=5, contacts_last_7_days=4, tenure_days=400)
    response = await stub.TriageContact(
        contact("I want to cancel. Nothing works and I am sick of this garbage.", account=account)
    )

    reasons = {reason.code: reason.points for reason in response.priority.reasons}
    assert reasons["base"] == 10
    assert reasons["risk:churn"] == 25
    assert reasons["risk:repeated_contact"] == 15
    assert reasons["plan:enterprise"] == 15
    assert reasons["open_tickets"] == 9  # 5 tickets x 3 points, capped at 9
    assert 0 < reasons["sentiment:negative"] <= 20
    assert "tenure:new" not in reasons
    sizes = [abs(reason.points) for reason in response.priority.reasons]
    assert sizes == sorted(sizes, reverse=True)
    # "sick of this garbage" is anger too (issue 19), which takes the sum past the cap.
    assert reasons["risk:escalating_anger"] == 15
    assert response.priority.score == min(100, round(sum(reasons.values())))


async def test_priority_is_capped_at_100_and_deducts_for_a_happy_customer(
    stub: triage_pb2_grpc.TriageServiceStub,
) -> None:
    big = customer_pb2.AccountSignals(
        plan="enterprise", open_tickets=9, contacts_last_7_days=9, contract_value_minor=10**9, tenure_days=3
    )
    urgent = await stub.TriageContact(
        contact(
            "Thanks, this was great earlier, I loved it.",
            "Now it is broken, I am furious, I will cancel my account and my lawyer will sue you. Get me a human!",
            account=big,
        )
    )
    assert urgent.priority.score == 100
    assert {"tenure:new", "risk:legal", "risk:escalating_anger"} <= {r.code for r in urgent.priority.reasons}

    happy = await stub.TriageContact(contact("Thank you, that is great!"))
    assert [(r.code, r.points) for r in happy.priority.reasons] == [("base", 10), ("sentiment:positive", -5)]
    assert happy.priority.score == 5


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            contact("hello", tenant=""),
            [("customer.tenant_id", "required")],
        ),
        (
            contact((ASSISTANT, "How can I help?"), "   "),
            [("conversation.messages", "needs at least one customer message with text")],
        ),
        (
            contact("x" * 8001),
            [("conversation.messages[0].text", "at most 8000 characters")],
        ),
        (
            contact((conversation_pb2.ROLE_UNSPECIFIED, "who am I?"), "hi", tenant=""),
            [("customer.tenant_id", "required"), ("conversation.messages[0].role", "must be set")],
        ),
    ],
)
async def test_invalid_requests_list_every_field_violation(
    stub: triage_pb2_grpc.TriageServiceStub,
    request_: triage_pb2.TriageContactRequest,
    expected: list[tuple[str, str]],
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.TriageContact(request_)

    details = details_from_rpc_error(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.reason == "INVALID_ARGUMENT"
    assert details.field_violations == expected


async def test_a_message_of_exactly_8000_characters_is_accepted(stub: triage_pb2_grpc.TriageServiceStub) -> None:
    response = await stub.TriageContact(contact("word " * 1600))
    # Scored like any message (what a wall of one word means is not the point here).
    assert response.sentiment.label != triage_pb2.SENTIMENT_LABEL_UNSPECIFIED
    assert -1.0 <= response.sentiment.score <= 1.0


async def test_a_policy_file_from_settings_changes_weights_and_routes(tmp_path: Path, encoder: Encoder) -> None:
    default = json.loads(Path(services.triage.__file__).with_name("policy.default.json").read_text())
    default["priority"]["base"] = 40
    default["routing"]["manager_flagged"] = [{"when_all": ["churn"], "reason": "risk_churn"}]
    custom = tmp_path / "policy.json"
    custom.write_text(json.dumps(default))

    settings = TriageSettings(port=0, data_dir=tmp_path, policy_file=custom, retrieval_addr=UNUSED_RETRIEVAL)
    async for stub in _stub_for(settings, encoder):
        response = await stub.TriageContact(contact("Cancel my account please."))
        assert response.route.tier == triage_pb2.TIER_MANAGER_FLAGGED
        assert list(response.route.reason_codes) == ["risk_churn", "no_intent_model"]
        assert {r.code: r.points for r in response.priority.reasons}["base"] == 40


def test_the_policy_file_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRIAGE_POLICY_FILE", str(tmp_path / "p.json"))
    monkeypatch.setenv("RETRIEVAL_ADDR", "retrieval:50051")
    settings = TriageSettings()  # type: ignore[call-arg]
    assert settings.policy_file == tmp_path / "p.json"
    assert settings.retrieval_addr == "retrieval:50051"


def test_a_missing_retrieval_address_fails_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETRIEVAL_ADDR", raising=False)
    with pytest.raises(ValidationError, match="RETRIEVAL_ADDR"):
        TriageSettings()  # type: ignore[call-arg]


def test_a_bad_policy_file_fails_at_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "policy.json"
    bad.write_text(json.dumps({"version": "x", "priority": {"risk_points": {"chrun": 5}}}))
    with pytest.raises(ValidationError, match="unknown risk flags"):
        load_policy(bad)
