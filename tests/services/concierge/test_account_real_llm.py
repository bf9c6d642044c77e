"""The account assistant with the REAL local LLM (Qwen2.5-Coder-0.5B-Instruct on
llama-cpp-python's server, started as devstack starts it) choosing the tools through
chat_json (a grammar built from the planner's JSON schema), on the real actions
service and demo back office. Whatever the small model picks, the invariants hold:
nothing is written without a yes, nothing is read before verification, and only a
catalog tool with checked arguments runs. Slow on a loaded CPU (the first call
builds the grammar and reads the prompt): a handful of turns only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.llm_server import MODEL_ALIAS
from servicekit.llm import LlmClient
from tests.embedded_llm import embedded_llm_server
from tests.services.concierge.test_account_flow import (  # noqa: F401
    DELIVERED_ORDER,
    ISABELLA,
    ISABELLA_ID,
    PENDING_ORDER,
    Shop,
    actions_addr_fixture,
    decision,
    live_shop_fixture,
    make_shop,
    reason,
    shop_fixture,
)


@pytest.fixture(scope="module")
def llm_url() -> Iterator[str]:
    with embedded_llm_server(startup_timeout_s=120.0) as url:
        yield url


@pytest.fixture
def real(shop: Shop, llm_url: str, tmp_path: Path) -> Shop:
    # Generous: a loaded 2-core machine takes tens of seconds for the first, uncached prompt.
    llm = LlmClient(llm_url, MODEL_ALIAS, timeout_s=240)
    return make_shop(tmp_path / "real", shop.office, shop.actions, llm=llm)


async def test_the_small_model_reads_an_order_and_proposes_a_cancellation_only_for_a_yes(real: Shop) -> None:
    before = await real.say(f"Where is my order {DELIVERED_ORDER}?")
    assert reason(before) == "NEEDS_IDENTITY"  # no model call, no read, before the identity

    read = await real.say(f"my email is {ISABELLA}")
    assert read.verified_customer_id == ISABELLA_ID
    # The model picked the read (the common case), or the assistant asked: never anything else.
    assert reason(read) in ("FROM_RECORDS", "NEEDS_ARGUMENT", "NEEDS_DETAIL"), read
    if reason(read) == "FROM_RECORDS":
        assert read.citations[0].record.id == DELIVERED_ORDER

    proposed = await real.say(f"Please cancel order {PENDING_ORDER}, I ordered it by mistake")
    assert decision(proposed) in ("CONFIRM_ACTION", "CLARIFY", "ANSWERED"), proposed
    assert (await real.order(PENDING_ORDER))["status"] == "pending"  # nothing without a yes
    if decision(proposed) == "CONFIRM_ACTION":
        assert proposed.pending_action.tool == "cancel_pending_order"
        declined = await real.say("no")
        assert reason(declined) == "ACTION_CANCELLED"
    assert (await real.order(PENDING_ORDER))["status"] == "pending"
    # What the model chose, for the report (pytest -s shows it).
    print("real LLM turns:", [(reason(o), o.pending_action.tool) for o in real.outcomes])
