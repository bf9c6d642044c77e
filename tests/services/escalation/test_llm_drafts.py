"""The draft reply: the handoff is stored at once with the template (draft_method
"pending"), and the instruction-tuned model's draft is written in the background
after the summary, kept only when every sentence is grounded and may be said to
this customer; otherwise, or when the model is down, the template stays."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from aftercare.escalation.v1 import escalation_pb2
from servicekit.llm import LlmClient
from services.escalation import summaries
from services.escalation.settings import EscalationSettings
from tests.llm_stream import completion
from tests.services.escalation.conftest import (
    FakeRetrieval,
    Stub,
    handoff_request,
    llm_answering,
    llm_down,
    running_stub,
    settings_for,
    settled,
)
from tests.services.escalation.test_grounded_context import OTHER_CUSTOMER, QUESTION, ticket_hits

# What the summary prompt's cue "The customer" is continued with (grounded in QUESTION).
SUMMARY = "wants to cancel the annual Team plan and get a refund."
GROUNDED = "Hi, thanks for your patience. Annual plans cancelled within 14 days of purchase receive a prorated refund."
# Another customer's ticket in the first person, with their invoice and date.
OTHER_CUSTOMERS_CASE = "Hi, we bought the Team plan on October 13 and the refund for INV-2026-004518 is on its way."
INVENTED = "Hi, annual plans cancelled within 30 days get double the money back."


def _request(key: str = "key-1", conversation_id: str = "") -> escalation_pb2.CreateHandoffRequest:
    return handoff_request(key=key, texts=(QUESTION,), conversation_id=conversation_id)


def _get(handoff: escalation_pb2.Handoff) -> escalation_pb2.GetHandoffRequest:
    return escalation_pb2.GetHandoffRequest(tenant_id=handoff.customer.tenant_id, handoff_id=handoff.handoff_id)


def _words(text: str) -> list[str]:
    """`text` as a server streams it: token by token."""
    return [f"{word} " for word in text.split()]


def _is_draft_prompt(prompt: str) -> bool:
    return prompt.endswith("Reply:")


def test_drafts_come_from_the_llm_by_default() -> None:
    assert EscalationSettings.model_fields["draft_mode"].default == "llm"


async def test_the_template_is_shown_at_once_and_the_llm_draft_replaces_it(tmp_path: Path) -> None:
    llm, prompts = llm_answering([SUMMARY, GROUNDED])
    async with running_stub(settings_for(tmp_path), llm=llm, retrieval=FakeRetrieval(ticket_hits())) as stub:
        created = (await stub.CreateHandoff(_request())).handoff
        # The handoff never waits on the LLM: the checked template is there meanwhile.
        assert created.context.draft_method == "pending"
        assert "14 days of purchase receive a prorated refund" in created.context.draft_reply
        assert created.context.lineage.prompt_template_version.endswith("-pending")
        handoff = await settled(stub, created)
        # Not an agent's change: a Send based on the version read before still goes through.
        sent = await stub.SubmitAgentReply(
            escalation_pb2.SubmitAgentReplyRequest(
                tenant_id="demo",
                handoff_id=created.handoff_id,
                agent_id="ana",
                final_text=GROUNDED,
                expected_version=created.version,
            )
        )

    package = handoff.context
    assert handoff.version == created.version
    assert (package.summary_method, package.draft_method) == ("llm", "llm")
    assert package.draft_reply == GROUNDED
    assert package.lineage.model == "test-model"
    assert package.lineage.prompt_template_version == summaries.prompt_versions("llm")
    # The summary first, then the draft: the LLM is asked once after the other.
    assert [_is_draft_prompt(p) for p in prompts] == [False, True]
    assert "[1] " in prompts[1] and QUESTION in prompts[1]
    # The reply is measured against the LLM's draft it was sent from.
    assert sent.draft_use == escalation_pb2.DRAFT_USE_ACCEPTED


async def test_with_the_llm_down_the_template_stays(tmp_path: Path) -> None:
    async with running_stub(settings_for(tmp_path), llm=llm_down(), retrieval=FakeRetrieval(ticket_hits())) as stub:
        created = (await stub.CreateHandoff(_request())).handoff
        package = (await settled(stub, created)).context

    assert package.draft_method == "template"
    assert package.draft_reply == created.context.draft_reply
    assert package.lineage.prompt_template_version == summaries.prompt_versions("template")


@pytest.mark.parametrize("generated", [OTHER_CUSTOMERS_CASE, INVENTED], ids=["another-customer", "invented"])
async def test_an_llm_draft_about_another_customer_or_with_an_invented_fact_is_refused(
    tmp_path: Path, generated: str
) -> None:
    llm, prompts = llm_answering([SUMMARY, generated])
    async with running_stub(settings_for(tmp_path), llm=llm, retrieval=FakeRetrieval(ticket_hits())) as stub:
        created = (await stub.CreateHandoff(_request())).handoff
        package = (await settled(stub, created)).context

    assert len(prompts) == 2
    assert package.draft_method == "template"
    assert package.draft_reply == created.context.draft_reply
    for foreign in (*OTHER_CUSTOMER, "double the money"):
        assert foreign not in package.draft_reply


async def test_template_mode_never_asks_the_llm_for_a_draft(tmp_path: Path) -> None:
    llm, prompts = llm_answering([SUMMARY])
    settings = settings_for(tmp_path, draft_mode="template")
    async with running_stub(settings, llm=llm, retrieval=FakeRetrieval(ticket_hits())) as stub:
        created = (await stub.CreateHandoff(_request())).handoff
        package = (await settled(stub, created)).context

    assert created.context.draft_method == "template"
    assert package.draft_method == "template" and package.summary_method == "llm"
    assert not any(_is_draft_prompt(p) for p in prompts)


async def test_a_second_escalation_of_the_conversation_does_not_redraft(tmp_path: Path) -> None:
    llm, prompts = llm_answering([SUMMARY, GROUNDED])
    async with running_stub(settings_for(tmp_path), llm=llm, retrieval=FakeRetrieval(ticket_hits())) as stub:
        first = await settled(stub, (await stub.CreateHandoff(_request("first", "conv-1"))).handoff)
        again = await stub.CreateHandoff(_request("again", "conv-1"))
        await asyncio.sleep(0.2)  # time enough for a background job, were one started
        now = (await stub.GetHandoff(_get(first))).handoff

    assert again.appended and again.handoff.handoff_id == first.handoff_id
    assert len(prompts) == 2
    assert now.context.draft_reply == GROUNDED and now.context.draft_method == "llm"


async def test_an_llm_draft_that_comes_after_the_agent_replied_is_dropped(tmp_path: Path) -> None:
    drafting, replied = asyncio.Event(), asyncio.Event()

    async def answer(request: httpx.Request) -> httpx.Response:
        prompt = json.loads(request.content)["prompt"]
        if not _is_draft_prompt(prompt):
            return completion(_words(SUMMARY))
        drafting.set()
        await replied.wait()  # the agent sends the template while the model is still writing
        return completion(_words(GROUNDED))

    llm = LlmClient("http://llm.test/v1", "test-model", transport=httpx.MockTransport(answer))
    async with running_stub(settings_for(tmp_path), llm=llm, retrieval=FakeRetrieval(ticket_hits())) as stub:
        created = (await stub.CreateHandoff(_request())).handoff
        template = created.context.draft_reply
        await asyncio.wait_for(drafting.wait(), 5)
        await stub.SubmitAgentReply(
            escalation_pb2.SubmitAgentReplyRequest(
                tenant_id="demo", handoff_id=created.handoff_id, agent_id="ana", final_text=template
            )
        )
        replied.set()
        package = (await settled(stub, created)).context

    # What the agent worked from stays next to the reply they sent.
    assert package.draft_method == "template" and package.draft_reply == template


async def test_a_draft_is_not_asked_for_once_the_agent_replied(tmp_path: Path) -> None:
    replied = asyncio.Event()
    prompts: list[str] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        prompts.append(json.loads(request.content)["prompt"])
        await replied.wait()  # the agent is quicker than the summary
        return completion(_words(SUMMARY))

    llm = LlmClient("http://llm.test/v1", "test-model", transport=httpx.MockTransport(answer))
    async with running_stub(settings_for(tmp_path), llm=llm, retrieval=FakeRetrieval(ticket_hits())) as stub:
        created = (await stub.CreateHandoff(_request())).handoff
        await stub.SubmitAgentReply(
            escalation_pb2.SubmitAgentReplyRequest(
                tenant_id="demo", handoff_id=created.handoff_id, agent_id="ana", final_text="On it."
            )
        )
        replied.set()
        package = (await settled(stub, created)).context

    assert package.summary_method == "llm" and package.draft_method == "template"
    assert not any(_is_draft_prompt(p) for p in prompts)


def _stalling_at(part: str) -> LlmClient:
    """An LLM that answers the summary and never the draft ("draft"), or neither ("summary")."""

    async def answer(request: httpx.Request) -> httpx.Response:
        if part == "draft" and not _is_draft_prompt(json.loads(request.content)["prompt"]):
            return completion(_words(SUMMARY))
        await asyncio.sleep(60)
        raise AssertionError("the process stops before the LLM answers")

    return LlmClient("http://llm.test/v1", "test-model", transport=httpx.MockTransport(answer))


async def _until_summary_settled(stub: Stub, created: escalation_pb2.Handoff) -> None:
    for _ in range(100):
        if (await stub.GetHandoff(_get(created))).handoff.context.summary_method != "pending":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the summary never settled")


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
@pytest.mark.parametrize("stopped_at", ["summary", "draft"])
async def test_drafts_left_pending_by_a_stopped_process_are_written_at_the_next_start(
    tmp_path: Path, database: str, stopped_at: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else ""
    settings = settings_for(tmp_path, database_url=url)
    async with running_stub(settings, llm=_stalling_at(stopped_at), retrieval=FakeRetrieval(ticket_hits())) as stub:
        created = (await stub.CreateHandoff(_request())).handoff
        if stopped_at == "draft":
            await _until_summary_settled(stub, created)
    # Stopped with the draft (and maybe the summary) unwritten; the next process picks it up.
    answers = [GROUNDED] if stopped_at == "draft" else [SUMMARY, GROUNDED]
    llm, prompts = llm_answering(answers)
    async with running_stub(settings, llm=llm) as stub:
        package = (await settled(stub, created)).context

    assert (package.summary_method, package.draft_method) == ("llm", "llm")
    assert package.draft_reply == GROUNDED
    # Only what was left is asked for, the draft from the prompt and notes stored with the handoff.
    assert [_is_draft_prompt(p) for p in prompts] == [False, True][-len(answers) :]
    assert "[1] " in prompts[-1]


async def test_a_reply_sent_from_the_template_after_the_llm_draft_came_counts_as_accepted(tmp_path: Path) -> None:
    llm, _ = llm_answering([SUMMARY, GROUNDED])
    async with running_stub(settings_for(tmp_path), llm=llm, retrieval=FakeRetrieval(ticket_hits())) as stub:
        # The agent opened the handoff at once: the template is in their editor.
        opened = (await stub.CreateHandoff(_request())).handoff
        now = await settled(stub, opened)
        sent = await stub.SubmitAgentReply(
            escalation_pb2.SubmitAgentReplyRequest(
                tenant_id="demo",
                handoff_id=opened.handoff_id,
                agent_id="ana",
                final_text=opened.context.draft_reply,
                expected_version=opened.version,
            )
        )

    assert now.context.draft_reply == GROUNDED != opened.context.draft_reply
    assert sent.draft_use == escalation_pb2.DRAFT_USE_ACCEPTED and sent.edit_ratio == 0.0
