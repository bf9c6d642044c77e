"""The context package: LLM summaries only when grounded in the transcript,
suggestions grounded in knowledge-base passages and resolved cases, a draft,
and a plain but complete package whenever a backend is down or slow."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from aftercare.escalation.v1 import escalation_pb2
from aftercare.retrieval.v1 import retrieval_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import conversation_pb2
from servicekit.llm import LlmClient
from services.escalation import summaries
from tests.services.escalation.conftest import (
    AGENT,
    CUSTOMER,
    FakeRetrieval,
    FakeTriage,
    handoff_request,
    llm_answering,
    running_stub,
    settings_for,
    settled,
)

TWEETS = (
    "@AcmeHelp my invoice for November charged me twice, email me at jo@example.com",
    "I need the duplicate charge refunded",
)
GROUNDED_SUMMARY = "The customer was charged twice on the November invoice and wants the duplicate refunded."
GROUNDED_DETAIL = "The November invoice charged the customer twice. The customer needs the duplicate charge refunded."
# What the model writes after the prompt's cue "The customer".
GENERATED = GROUNDED_SUMMARY.removeprefix("The customer ") + " " + GROUNDED_DETAIL

PASSAGES = [
    retrieval_pb2.SearchHit(
        doc_id="billing-faq",
        chunk_id="billing-faq#2",
        title="Billing FAQ",
        similarity=0.71,
        version="3",
        text="Duplicate charges happen when a payment is retried. Refund a duplicate charge from Billing, "
        "then Invoices, then Refund. The refund shows within 5 business days.",
    ),
    retrieval_pb2.SearchHit(
        doc_id="invoices",
        chunk_id="invoices#1",
        title="Invoices",
        similarity=0.55,
        text="Invoices are issued on the first day of the month. You can download every invoice as a PDF.",
    ),
    retrieval_pb2.SearchHit(
        doc_id="plans",
        chunk_id="plans#4",
        title="Plans",
        similarity=0.41,
        text="Monthly plans renew automatically. Cancel anytime from the Plan page.",
    ),
    retrieval_pb2.SearchHit(doc_id="off-topic", chunk_id="x", title="Fonts", similarity=0.1, text="Fonts are nice."),
]


async def summary_written(stub, handoff: escalation_pb2.Handoff) -> escalation_pb2.ContextPackage:  # type: ignore[no-untyped-def]
    return (await settled(stub, handoff)).context


async def test_a_grounded_llm_summary_is_written_after_the_handoff_with_its_lineage(tmp_path: Path) -> None:
    llm, prompts = llm_answering([GENERATED])
    # Summaries alone (LLM drafts: test_llm_drafts.py).
    async with running_stub(settings_for(tmp_path, draft_mode="template"), llm=llm) as stub:
        created = (await stub.CreateHandoff(handoff_request(texts=TWEETS))).handoff
        # The customer's handoff never waits on the LLM: it is stored with the extractive summary...
        assert created.context.summary_method == "pending" and created.context.summary
        package = await summary_written(stub, created)
        # ...and the LLM's does not bump the version an agent acts on.
        assert (
            await stub.GetHandoff(escalation_pb2.GetHandoffRequest(tenant_id="demo", handoff_id=created.handoff_id))
        ).handoff.version == created.version

    assert package.summary_method == "llm"
    assert package.summary == GROUNDED_SUMMARY
    # The generated detail, then what the support side last said, in its own words.
    assert package.detail == f"{GROUNDED_DETAIL} AI: Let me check that for you."
    assert package.lineage.model == "test-model"
    assert package.lineage.prompt_template_version.startswith(summaries.SUMMARY_PROMPT_VERSION)
    # A completion prompt for a base model, ending in a cue; no handles, no personal data.
    assert len(prompts) == 1 and prompts[0].endswith("what the agent did: The customer")
    assert "Customer: my invoice for November charged me twice, email me at [email]" in prompts[0]
    assert "jo@example.com" not in prompts[0] and "@AcmeHelp" not in prompts[0]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_a_summary_left_pending_by_a_stopped_process_is_written_at_the_next_start(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else ""
    settings = settings_for(tmp_path, database_url=url, draft_mode="template")

    async def thinking(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(60)
        raise AssertionError("the process stops before the LLM answers")

    slow = LlmClient("http://llm.test/v1", "test-model", transport=httpx.MockTransport(thinking))
    async with running_stub(settings, llm=slow) as stub:
        created = (await stub.CreateHandoff(handoff_request(texts=TWEETS))).handoff
    # Stopped with the summary unwritten; the next process picks it up.
    llm, prompts = llm_answering([GENERATED])
    async with running_stub(settings, llm=llm) as stub:
        package = await summary_written(stub, created)
    assert package.summary_method == "llm" and package.summary == GROUNDED_SUMMARY
    assert len(prompts) == 1


async def test_an_llm_summary_the_transcript_does_not_support_is_replaced(tmp_path: Path) -> None:
    made_up = "wants to upgrade to the enterprise plan and add ten seats."
    llm, _ = llm_answering([made_up])
    async with running_stub(settings_for(tmp_path), llm=llm) as stub:
        created = (await stub.CreateHandoff(handoff_request(texts=TWEETS))).handoff
        package = await summary_written(stub, created)

    assert package.summary_method == "extractive"
    assert package.summary == "Customer: my invoice for November charged me twice, email me at [email]"
    assert "enterprise" not in package.summary + package.detail
    assert package.lineage.model == ""


async def test_suggestions_are_grounded_in_passages_and_resolved_cases(tmp_path: Path) -> None:
    retrieval = FakeRetrieval(PASSAGES)
    async with running_stub(settings_for(tmp_path), retrieval=retrieval) as stub:
        earlier = (await stub.CreateHandoff(handoff_request(key="earlier", texts=TWEETS))).handoff
        await stub.ResolveHandoff(
            escalation_pb2.ResolveHandoffRequest(
                tenant_id="demo",
                handoff_id=earlier.handoff_id,
                agent_id="ana",
                resolution="Refunded the duplicate charge from Billing, Invoices, Refund and told the customer 5 days.",
            )
        )
        handoff = (await stub.CreateHandoff(handoff_request(key="now", texts=TWEETS))).handoff

    package = handoff.context
    assert retrieval.requests[-1].query == TWEETS[-1] and retrieval.requests[-1].tenant_id == "demo"
    suggestions = package.suggested_resolutions
    assert len(suggestions) == 3
    all_sources = [source.doc_id for s in suggestions for source in s.sources]
    assert f"handoff:{earlier.handoff_id}" in all_sources
    assert "billing-faq" in all_sources and "off-topic" not in all_sources
    billing = next(s for s in suggestions if s.sources[0].doc_id == "billing-faq")
    # Quoted from the passage, never invented; backed by the similar case too.
    assert "Refund a duplicate charge from Billing, then Invoices, then Refund." in billing.text
    assert f"handoff:{earlier.handoff_id}" in [source.doc_id for source in billing.sources]
    assert all(s.sources for s in suggestions)
    # The draft quotes the top knowledge-base suggestion (shown while the LLM's is written).
    assert package.draft_method == "pending" and billing.text in package.draft_reply
    assert {source.doc_id for source in package.lineage.sources} >= {"billing-faq"}
    # The customer summary knows the earlier contact.
    assert "business plan" in package.customer_summary.lower()
    assert "1 earlier handoff" in package.customer_summary


async def test_everything_down_still_creates_a_complete_plain_handoff(tmp_path: Path) -> None:
    retrieval = FakeRetrieval(down=True)
    async with running_stub(settings_for(tmp_path), retrieval=retrieval, triage=FakeTriage()) as stub:
        created = await stub.CreateHandoff(handoff_request(texts=("This is useless, I am furious, nothing works!",)))
        package = await summary_written(stub, created.handoff)

    assert created.created
    assert package.summary_method == "extractive" and package.summary
    assert package.draft_method == "template" and package.draft_reply
    assert not package.suggested_resolutions
    # Triage down: sentiment still comes from the text itself.
    assert package.intent == "" and package.sentiment_label == "negative" and package.sentiment_score < -0.5
    assert "confidence 0.42 against a threshold of 0.85" in package.ai_attempt_summary
    assert "not confident enough" in package.ai_attempt_summary


# An approval as the concierge hands it over: the actions service's summary of the action, then
# why an agent must approve it. The amount and the order are in no message of the conversation.
APPROVAL_ACTION = "Refund order #W2378156 ($620.00) to the original payment method."
APPROVAL_REASONS = "Refunds above $500.00 need an agent's approval."


def approval_request(key: str) -> escalation_pb2.CreateHandoffRequest:
    request = handoff_request(key=key, texts=("Please refund my damaged order", "Yes"),
                              reason=escalation_pb2.HANDOFF_REASON_APPROVAL_REQUIRED)
    request.ai_attempt.candidate_answer = f"{APPROVAL_ACTION}\n{APPROVAL_REASONS}"
    request.ai_attempt.explanation = "action_awaiting_approval"
    del request.ai_attempt.citations[:]
    return request


@pytest.mark.parametrize("llm_up", [False, True])
async def test_an_approval_handoff_says_what_to_approve_and_why(tmp_path: Path, llm_up: bool) -> None:
    llm, prompts = llm_answering(["said yes to a refund of the damaged order."])
    async with running_stub(settings_for(tmp_path, draft_mode="template"), llm=llm if llm_up else None) as stub:
        created = (await stub.CreateHandoff(approval_request("approval-1"))).handoff
        package = await summary_written(stub, created)

    assert created.reason == escalation_pb2.HANDOFF_REASON_APPROVAL_REQUIRED
    # The same at once and once settled, LLM up or down: what the agent is asked to approve.
    assert created.context.summary == package.summary == f"Approval requested: {APPROVAL_ACTION}"
    assert package.summary_method == "extractive" and not prompts
    # The action's summary is this customer's own record, quoted whole; no confidence went into it.
    assert package.ai_attempt_summary == (
        f'The AI proposed "{APPROVAL_ACTION}" and the customer said yes; it handed over because an action '
        f"the customer said yes to needs an agent's approval ({APPROVAL_REASONS.removesuffix('.')})."
    )
    assert "another customer" not in package.ai_attempt_summary and "confidence" not in package.ai_attempt_summary


async def test_intent_and_sentiment_come_from_the_request_or_from_triage(tmp_path: Path) -> None:
    triage = FakeTriage(
        triage_pb2.TriageContactResponse(
            intent=triage_pb2.IntentPrediction(label="transaction_charged_twice", confidence=0.93),
            sentiment=triage_pb2.Sentiment(score=-0.4),
        )
    )
    async with running_stub(settings_for(tmp_path), triage=triage) as stub:
        asked = (await stub.CreateHandoff(handoff_request(key="a"))).handoff.context
        given = (await stub.CreateHandoff(handoff_request(key="b", intent="refund_request"))).handoff.context

    assert (asked.intent, asked.intent_confidence, asked.sentiment_label) == (
        "transaction_charged_twice",
        0.93,
        "negative",
    )
    assert (given.intent, given.intent_confidence) == ("refund_request", 0.9)
    assert triage.calls == 1


async def test_what_the_caller_found_is_not_asked_for_again(tmp_path: Path) -> None:
    retrieval = FakeRetrieval([PASSAGES[2]])
    triage = FakeTriage(triage_pb2.TriageContactResponse(intent=triage_pb2.IntentPrediction(label="billing")))
    request = handoff_request(texts=TWEETS)
    # The caller triaged (a tier) and found no intent, and sent what its search returned.
    request.tier = triage_pb2.TIER_AI_ASSISTED
    request.retrieved.extend(PASSAGES)
    async with running_stub(settings_for(tmp_path), retrieval=retrieval, triage=triage) as stub:
        package = (await stub.CreateHandoff(request)).handoff.context

    assert triage.calls == 0 and retrieval.requests == []
    assert package.intent == ""
    sources = {source.doc_id for s in package.suggested_resolutions for source in s.sources}
    # The caller's passages, with the same relevance floor as a search of its own.
    assert "billing-faq" in sources and "off-topic" not in sources


async def test_a_slow_llm_never_holds_the_handoff(tmp_path: Path) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(500)

    llm = LlmClient("http://llm.test/v1", "test-model", transport=httpx.MockTransport(slow))
    async with running_stub(settings_for(tmp_path, summary_budget_s=30), llm=llm) as stub:
        started = time.perf_counter()
        created = await stub.CreateHandoff(handoff_request())
        elapsed = time.perf_counter() - started

    assert created.created and created.handoff.context.summary_method == "pending"
    assert elapsed < 5  # the LLM would take 30 s; generous for a loaded CI machine


async def test_a_replayed_create_does_not_rebuild_the_package(tmp_path: Path) -> None:
    llm, prompts = llm_answering([GENERATED, "Hi, sorry for the trouble with the duplicate charge."])
    async with running_stub(settings_for(tmp_path), llm=llm) as stub:
        first = await stub.CreateHandoff(handoff_request(texts=TWEETS))
        package = await summary_written(stub, first.handoff)
        second = await stub.CreateHandoff(handoff_request(texts=TWEETS))
    # One summary and one draft, for the first call only.
    assert len(prompts) == 2 and not second.created
    assert second.handoff.handoff_id == first.handoff.handoff_id and second.handoff.context == package


async def test_an_llm_draft_is_kept_only_when_grounded(tmp_path: Path) -> None:
    grounded = "Hi, sorry for the trouble. Refund a duplicate charge from Billing, then Invoices, then Refund."
    invented = "Hi, I have credited 500 dollars and upgraded you to premium for free."
    for draft, method in ((grounded, "llm"), (invented, "template")):
        # The summary is written after the handoff, then the draft.
        llm, prompts = llm_answering([GENERATED, draft])
        settings = settings_for(tmp_path / method, draft_mode="llm")
        async with running_stub(settings, llm=llm, retrieval=FakeRetrieval(PASSAGES)) as stub:
            created = (await stub.CreateHandoff(handoff_request(texts=TWEETS))).handoff
            package = await summary_written(stub, created)
        assert package.draft_method == method
        assert (package.draft_reply == grounded) == (method == "llm")
        assert prompts[1].endswith("Reply:") and "[1] " in prompts[1]


def test_a_long_transcript_keeps_its_start_and_its_end() -> None:
    turns = [summaries.Turn("Customer", f"message number {i} " + "x" * 300) for i in range(30)]
    text = summaries.transcript(turns, limit=1500)
    assert len(text) <= 1500
    assert text.startswith("Customer: message number 0 ") and "message number 29 " in text and "…" in text


def test_the_extractive_summary_names_the_request_and_the_last_action() -> None:
    messages = [
        conversation_pb2.Message(role=CUSTOMER, text="@Shop hi! My parcel 88 never arrived, where is it?"),
        conversation_pb2.Message(role=AGENT, text="@123 Sorry! I have reshipped parcel 88 today. Thanks."),
    ]
    summary, detail = summaries.extractive(summaries.turns(messages))
    assert summary == "Customer: My parcel 88 never arrived, where is it?"
    assert detail == "Customer: My parcel 88 never arrived, where is it? Agent: I have reshipped parcel 88 today."


def test_grounding_ignores_framing_words_but_not_invented_facts() -> None:
    source = "Customer: my parcel never arrived\nAgent: I reshipped the parcel"
    assert summaries.accept("The customer says the parcel never arrived; the agent reshipped it.", source, 300)
    assert summaries.accept("The customer wants a refund of 40 euros for the parcel.", source, 300) is None


def test_the_generation_splits_into_summary_and_detail() -> None:
    summary, detail = summaries.split_generated(" is complaining about slow wifi. The agent logged the feedback.")
    assert summary == "The customer is complaining about slow wifi."
    assert detail == "The agent logged the feedback."
    assert summaries.split_generated("") == ("", "")
