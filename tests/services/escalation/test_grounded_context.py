"""AI text an agent sees is about this customer: of a resolved ticket only its answer is
quoted, and no sentence carries another customer's words, record numbers, dates, amounts or
the actions taken for them; drafts are grounded and never show masked data; a summary's
tone is the sentiment model's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aftercare.retrieval.v1 import retrieval_pb2
from aftercare.type.v1 import conversation_pb2
from servicekit import quoting
from servicekit.database import utcnow
from services.escalation import context, summaries
from services.escalation.store import ResolvedCase
from tests.services.escalation.conftest import (
    CUSTOMER,
    FakeRetrieval,
    FakeTriage,
    handoff_request,
    llm_answering,
    running_stub,
    settings_for,
    settled,
)

REPO = Path(__file__).resolve().parents[3]
REFUND_TICKET = REPO / "kb" / "demo" / "ticket-prorated-refund-annual-team.md"
TICKET_TITLE = "Prorated refund after cancelling an annual Team plan (resolved ticket)"
# A new customer, with an invoice of their own.
QUESTION = "I want to cancel my annual Team plan and get a refund for invoice INV-2026-10-4471. Is that possible?"
CONVERSATION = f"Customer: {QUESTION}"
# What another customer wrote and what was done for them: never for this customer.
OTHER_CUSTOMER = ("INV-2026-004518", "October 13", "We bought", "$1,901.92", "I have submitted")


def ticket_hits() -> list[retrieval_pb2.SearchHit]:
    """The demo refund ticket as retrieval chunks it: one hit per `##` section."""
    body = REFUND_TICKET.read_text(encoding="utf-8").split("---", 2)[2]
    hits = []
    for index, part in enumerate(re.split(r"^## ", body, flags=re.MULTILINE)[1:]):
        heading, _, text = part.partition("\n")
        hits.append(
            retrieval_pb2.SearchHit(
                doc_id="ticket-prorated-refund-annual-team",
                chunk_id=f"ticket-prorated-refund-annual-team#{index}",
                title=TICKET_TITLE,
                heading_path=[TICKET_TITLE, heading.strip()],
                text=text.strip(),
                doc_type=retrieval_pb2.DOCUMENT_TYPE_RESOLVED_TICKET,
                similarity=0.8 - index * 0.01,
            )
        )
    return hits


def assert_about_this_customer(text: str) -> None:
    for foreign in OTHER_CUSTOMER:
        assert foreign not in text, (foreign, text)


def test_of_a_resolved_ticket_only_the_answer_is_quoted_and_only_what_fits_this_customer() -> None:
    hits = ticket_hits()
    assert [h.heading_path[-1] for h in hits] == ["Customer question", "Final answer", "Outcome"]
    assert [quoting.quotable(h) for h in hits] == [False, True, False]

    suggestions = context.suggest(QUESTION, "", hits, [], CONVERSATION)

    assert [s.sources[0].chunk_id for s in suggestions] == ["ticket-prorated-refund-annual-team#1"]
    text = suggestions[0].text
    assert "Annual plans cancelled within 14 days of purchase receive a prorated refund" in text
    assert_about_this_customer(text)
    assert "**" not in text and not text.endswith(":")  # no Markdown, no lead-in left dangling
    draft = context.template_draft(suggestions)
    assert text in draft
    assert_about_this_customer(draft)


def test_each_sentence_says_why_it_may_not_be_quoted() -> None:
    def why(sentence: str, specific: bool = True) -> str | None:
        return quoting.why_not(sentence, CONVERSATION, specific=specific)

    assert why("We bought the Team plan with annual billing.") == "customer_voice"
    assert why("Our company has now decided to consolidate.", specific=False) == "customer_voice"
    assert why("Hi Maria, thanks for the report.") == "other_name"
    assert why("Annual Team plan (INV-2026-004518).") == "other_record_number"
    assert why("Your order #W1234567 shipped.") == "other_record_number"
    assert why("You purchased on October 5 and cancelled on October 13.") == "other_date"
    assert why("The refund comes to $1,901.92.") == "other_amount"
    assert why("I have submitted this refund today.") == "action_for_another_customer"
    assert why("Write to jo@example.com for a copy.") == "personal_data"
    assert why("We will email you at [email].") == "personal_data"
    # This customer's own numbers, general prices and the company's own words are fine.
    assert why("The refund for INV-2026-10-4471 goes back to your card.") is None
    assert why("Team costs $39 per seat per month; overage is $0.30 per 100,000 events.") is None
    assert why("We also recommend subscribing to the usage webhook.") is None
    assert why("Hi there, thank you for the quick report.") is None
    # General knowledge is the company's words to everyone: only the first person is checked there.
    assert why("The invoice number has the format INV-2026-000123.", specific=False) is None


def test_a_similar_resolved_case_is_quoted_without_the_other_customers_details() -> None:
    case = ResolvedCase(
        handoff_id="h-1",
        intent="refund_request",
        question="cancel annual plan refund",
        summary="Customer: cancel annual team plan and refund",
        resolution="I have refunded INV-2026-004518 on October 13. Annual plans cancelled within 14 days get a "
        "prorated refund.",
        resolved_at=utcnow(),
    )
    only_theirs = ResolvedCase(**{**case.__dict__, "handoff_id": "h-2", "resolution": "Refunded INV-2026-004518."})

    suggestions = context.suggest(QUESTION, "refund_request", [], [case, only_theirs], CONVERSATION)

    assert [s.sources[0].doc_id for s in suggestions] == ["handoff:h-1"]
    assert suggestions[0].text == (
        "As in a similar resolved case: Annual plans cancelled within 14 days get a prorated refund."
    )


def test_what_the_ai_tried_never_quotes_another_customer() -> None:
    request = handoff_request(texts=(QUESTION,))
    request.ai_attempt.candidate_answer = (
        "We bought the Team plan with annual billing for 5 seats (invoice INV-2026-004518). "
        "Annual plans cancelled within 14 days receive a prorated refund."
    )
    text = context.ai_attempt_summary(request, CONVERSATION)
    assert 'drafted "Annual plans cancelled within 14 days receive a prorated refund."' in text
    assert "1 sentence(s) about another customer left out" in text
    assert_about_this_customer(text)

    request.ai_attempt.candidate_answer = "We bought the Team plan on October 5 (invoice INV-2026-004518)."
    text = context.ai_attempt_summary(request, CONVERSATION)
    assert "quoted another customer's case (not shown)" in text
    assert_about_this_customer(text)


NOTES = [context._Suggestion("Annual plans cancelled within 14 days of purchase receive a prorated refund.", 0.8)]


@pytest.mark.parametrize(
    ("generated", "kept"),
    [
        (
            "Hi, thanks for your patience. Annual plans cancelled within 14 days of purchase receive a prorated "
            "refund for INV-2026-10-4471.",
            True,
        ),
        ("Hi! Annual plans cancelled within 14 days receive a prorated refund of $1,901.92.", False),
        # Seen from the embedded model: the reply written in the customer's voice.
        ("Yes, I can cancel my annual Team plan and receive a refund for the unused part of the term.", False),
        ("Hi, your refund for INV-2026-004518 is on its way.", False),
        ("Hi, I have submitted the refund for your annual plan.", False),
        ("Hi, annual plans cancelled within 14 days receive a prorated refund; we will write to [email].", False),
        ("Hi, annual plans cancelled within 30 days get double the money back.", False),
    ],
)
def test_an_llm_draft_is_kept_only_when_every_sentence_is_grounded_and_for_this_customer(
    generated: str, kept: bool
) -> None:
    draft = context.checked_draft(generated, CONVERSATION, NOTES)
    assert (draft == generated) if kept else draft is None


def test_the_summary_prompt_and_wording_take_their_tone_from_the_sentiment_label() -> None:
    transcript = "Customer: how do I export my data to S3?\nAgent: Open Settings, then Data Exports."
    assert summaries.summary_prompt(transcript, "neutral").endswith(
        "what the customer is asking about and what the agent did: The customer"
    )
    assert "is complaining about" in summaries.summary_prompt(transcript, "negative")

    complaining = "The customer is complaining about exporting data to S3."
    assert summaries.in_tone(complaining, "neutral", transcript) == "The customer is asking about exporting data to S3."
    assert summaries.in_tone(complaining, "negative", transcript) == complaining
    # A feeling the customer never showed and the sentiment model did not find: refused.
    assert summaries.in_tone("The customer is frustrated with S3 exports.", "neutral", transcript) == ""
    assert summaries.in_tone("The customer is frustrated.", "neutral", "Customer: I am frustrated") != ""


async def test_a_neutral_question_is_not_summarised_as_a_complaint(tmp_path: Path) -> None:
    question = "How do I export my events to an S3 bucket?"
    generated = "is complaining about exporting events to an S3 bucket."
    llm, prompts = llm_answering([generated])
    async with running_stub(settings_for(tmp_path), llm=llm) as stub:
        created = (await stub.CreateHandoff(handoff_request(texts=(question,)))).handoff
        package = (await settled(stub, created)).context

    assert "is asking about and what the agent did" in prompts[0]
    assert package.sentiment_label == "neutral"
    assert package.summary_method == "llm"
    assert package.summary == "The customer is asking about exporting events to an S3 bucket."


async def test_a_handoff_quotes_only_the_tickets_answer_and_nothing_of_its_customer(tmp_path: Path) -> None:
    request = handoff_request(texts=(QUESTION,))
    request.ai_attempt.candidate_answer = "We bought the Team plan (invoice INV-2026-004518); we would like to cancel."
    retrieval = FakeRetrieval(ticket_hits())
    async with running_stub(settings_for(tmp_path), retrieval=retrieval, triage=FakeTriage()) as stub:
        package = (await stub.CreateHandoff(request)).handoff.context

    shown = [package.draft_reply, package.ai_attempt_summary, *(s.text for s in package.suggested_resolutions)]
    # The template, shown while the LLM's draft is written (the LLM is down here: it stays).
    assert package.suggested_resolutions and package.draft_method == "pending"
    for text in shown:
        assert_about_this_customer(text)
    assert all(source.chunk_id.endswith("#1") for s in package.suggested_resolutions for source in s.sources), (
        "only the Final answer section is a source"
    )


def test_quoting_reads_markdown_as_sentences() -> None:
    text = "Intro line:\n\n1. **Wait until the 1st.** Ingestion resumes.\n2. Upgrade\n\n```sql\nDELETE x;\n```\nDone."
    assert quoting.sentences(text) == ["Intro line:", "Wait until the 1st.", "Ingestion resumes.", "Upgrade", "Done."]


def test_the_llm_sees_phone_numbers_masked_and_invoice_numbers_as_written() -> None:
    messages = [conversation_pb2.Message(role=CUSTOMER, text="call me at +1 415 555 0100 about INV-2026-10-4471")]
    assert summaries.turns(messages)[0].text == "call me at [phone] about INV-2026-10-4471"


def test_the_first_person_check_refuses_no_sentence_of_the_companys_own_knowledge() -> None:
    refused = {}
    for path in sorted((REPO / "kb" / "demo").glob("*.md")):
        for sentence in quoting.sentences(path.read_text(encoding="utf-8")):
            if quoting.why_not(sentence, "", specific=False) is not None:
                refused.setdefault(path.name, []).append(sentence)
    # Only the tickets' customers speak in the first person (their "Customer question").
    assert set(refused) == {
        "ticket-free-plan-e1201-quota.md",
        "ticket-js-sdk-429-e1042-after-4-3.md",
        "ticket-prorated-refund-annual-team.md",
    }


PLANS = [
    context._Suggestion(
        "Team costs $39 per seat per month billed monthly, or $390 per seat per year billed annually, "
        "for 1 to 50 seats with 10 million events per month included.",
        0.8,
    ),
    context._Suggestion("Business costs $99 per seat per month, with 100 million events per month included.", 0.7),
]


def test_an_llm_draft_that_borrows_a_figure_from_the_neighbouring_rule_is_refused() -> None:
    # Seen from the embedded model: every figure is in the notes, but "100 million" is Business's.
    borrowed = "The Team plan costs $390 per seat per year billed annually, with 100 million events per month included."
    assert context.checked_draft(borrowed, "Customer: How much does the Team plan cost?", PLANS) is None
    faithful = "The Team plan costs $390 per seat per year billed annually, with 10 million events per month included."
    assert context.checked_draft(faithful, "Customer: How much does the Team plan cost?", PLANS) == faithful


def test_a_summary_with_one_invented_sentence_among_true_ones_is_refused() -> None:
    transcript = (
        "Customer: I was charged twice this month for our Team plan invoice. "
        "This is the third time I'm asking about the duplicate charge on my card."
    )
    true = "The customer was charged twice this month for the Team plan invoice, a duplicate charge on the card."
    assert summaries.accept(true, transcript, 300) == true
    # Seen from the embedded model: "the agent did not respond to their call". Nothing said so,
    # and one such sentence is too little of the whole text to fail a share taken over all of it.
    invented = f"{true} Nobody phoned them."
    assert summaries.grounded_share(invented, transcript) >= summaries.MIN_GROUNDED_SHARE
    assert summaries.accept(invented, transcript, 300) is None


def test_the_summary_is_about_what_came_after_the_ais_last_answer() -> None:
    answered = (
        "Go to Settings > Account > Security > Two-factor authentication and click Enable. "
        "Scan the QR code with your authenticator app and save your recovery codes."
    )
    conversation = [
        summaries.Turn("Customer", "How do I turn on two-factor authentication?"),
        summaries.Turn("AI", answered),
        summaries.Turn("Customer", "Our S3 export fails since we recreated the IAM role."),
        summaries.Turn("AI", "Which destination is it?"),
        summaries.Turn("Customer", "The one called prod-events."),
    ]
    # 2FA was answered; the export question and the AI's question back about it are open.
    assert [t.text for t in summaries.open_question(conversation)] == [
        "Our S3 export fails since we recreated the IAM role.",
        "Which destination is it?",
        "The one called prod-events.",
    ]
    # A short holding line answers nothing.
    held = [summaries.Turn("Customer", "I was charged twice."), summaries.Turn("AI", "Let me check that for you.")]
    assert summaries.open_question([*held, summaries.Turn("Customer", "Refund it please.")]) == [
        *held, summaries.Turn("Customer", "Refund it please.")
    ]
