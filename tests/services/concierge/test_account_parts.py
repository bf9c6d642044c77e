"""The account assistant's pure parts (account_plans.py) and its routing when the actions
service cannot be reached (a stub that refuses, inside these unit tests only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from aftercare.actions.v1 import actions_pb2
from aftercare.concierge.v1 import concierge_pb2
from services.concierge import account_plans as plans
from tests.services.concierge.test_account_flow import ScriptedPlanner, make_shop, reason

CANCEL = plans.CatalogTool(
    name="cancel_pending_order", description="Cancel a pending order.", write=True,
    schema={
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "pattern": "^#?W[0-9]{7}$"},
            "reason": {"type": "string", "enum": ["no longer needed", "ordered by mistake"]},
        },
        "required": ["order_id", "reason"],
        "additionalProperties": False,
    },
    verifies_identity=False, requires_verification=True,
)
RETURN = plans.CatalogTool(
    name="return_delivered_order_items", description="Return items.", write=True,
    schema={
        "type": "object",
        "properties": {
            "order_id": {"type": "string"},
            "item_ids": {"type": "array", "items": {"type": "string"}},
            "payment_method_id": {"type": "string"},
        },
        "required": ["order_id", "item_ids", "payment_method_id"],
        "additionalProperties": False,
    },
    verifies_identity=False, requires_verification=True,
)
USER = {"payment_methods": {"paypal_1": {"source": "paypal"},
                            "credit_card_2": {"source": "credit_card", "brand": "visa", "last_four": "4242"}}}
ORDERS = {"#W1000001": {"status": "delivered", "items": [
    {"item_id": "1111111111", "name": "Smart Watch", "options": {}},
    {"item_id": "2222222222", "name": "Hiking Boots", "options": {}},
]}}


@pytest.mark.parametrize("text,expected", [
    ("yes", True), ("Yes please!", True), ("go ahead", True), ("Do it.", True), ("confirm", True),
    ("no", False), ("Cancel", False), ("stop", False), ("don't", False),
    ("ok", None), ("sure", None), ("yes but to my other card", None), ("no, cancel the other one", None), ("", None),
])
def test_yes_and_no_are_read_strictly(text: str, expected: bool | None) -> None:
    assert plans.typed_answer(text) is expected


@pytest.mark.parametrize("text,expected", [
    ("Where is my order #W2611340?", True), ("what did I pay?", True), ("cancel my order please", True),
    ("my email is a@b.co", True), ("Which address do you have on my account?", True),
    ("What is your return policy?", False), ("How long does shipping take?", False), ("hello", False),
])
def test_about_the_account_or_the_shop(text: str, expected: bool) -> None:
    assert plans.about_account(text) is expected


def test_order_ids_are_normalised() -> None:
    assert plans.order_ids("w2611340 and #W2611340, then W1234567") == ["#W2611340", "#W1234567"]


def test_a_value_from_nowhere_is_unsupported() -> None:
    texts = ["cancel #W1000001, I ordered it by mistake"]
    ok = {"order_id": "#W1000001", "reason": "ordered by mistake"}
    assert plans.unsupported_arguments(CANCEL, ok, texts, USER, ORDERS) == []
    # Another order id than the customer's, or a reason they never gave: asked for.
    assert plans.unsupported_arguments(CANCEL, {**ok, "order_id": "#W9999999"}, texts, USER, ORDERS) == ["order_id"]
    assert plans.unsupported_arguments(CANCEL, {**ok, "reason": "no longer needed"}, texts, USER, ORDERS) == ["reason"]
    assert plans.unsupported_arguments(CANCEL, {"order_id": "#W1000001"}, texts, USER, ORDERS) == ["reason"]


def test_record_values_need_the_customers_words_pointing_at_them() -> None:
    said = ["return the Smart Watch from #W1000001 to my paypal"]
    good: dict[str, Any] = {"order_id": "#W1000001", "item_ids": ["1111111111"], "payment_method_id": "paypal_1"}
    assert plans.unsupported_arguments(RETURN, good, said, USER, ORDERS) == []
    # The card is the customer's, but they asked for paypal; the boots they never named.
    wrong_card = {**good, "payment_method_id": "credit_card_2"}
    assert plans.unsupported_arguments(RETURN, wrong_card, said, USER, ORDERS) == ["payment_method_id"]
    boots = {**good, "item_ids": ["2222222222"]}
    assert plans.unsupported_arguments(RETURN, boots, said, USER, ORDERS) == ["item_ids"]


@pytest.mark.parametrize("said,expected", [
    ("I ordered it by mistake", "ordered by mistake"),
    ("I don't need it anymore, no longer needed", "no longer needed"),
    ("cancel it", None),
])
def test_a_choice_is_filled_only_from_words_that_name_exactly_one(said: str, expected: str | None) -> None:
    arguments: dict[str, Any] = {"order_id": "#W1000001"}
    plans.fill_from_words(CANCEL, arguments, [said])
    assert arguments.get("reason") == expected


def test_the_planner_schema_allows_only_catalog_tools_and_their_properties() -> None:
    catalog = plans.Catalog("v1", {"cancel_pending_order": CANCEL})
    schema = plans.planner_schema(catalog)
    names = [branch["properties"]["tool"]["const"] for branch in schema["anyOf"]]
    assert names == ["cancel_pending_order", plans.NONE]
    arguments = schema["anyOf"][0]["properties"]["arguments"]
    assert arguments["additionalProperties"] is False and "required" not in arguments


def test_the_planner_never_chooses_the_customer_id() -> None:
    tool = plans.CatalogTool("get_user_details", "", False, {"properties": {"user_id": {}}}, False, True)
    catalog = plans.Catalog("v1", {tool.name: tool})
    plan = plans.parse_plan(catalog, {"tool": tool.name, "arguments": {"user_id": "someone_else_1"}}, "me_1")
    assert plan.arguments == {"user_id": "me_1"}


class DownActions:
    """The actions service unreachable."""

    def __init__(self) -> None:
        self.calls = 0

    async def ListTools(self, request: actions_pb2.ListToolsRequest, **_: object) -> actions_pb2.ListToolsResponse:
        self.calls += 1
        raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata())


async def test_actions_down_leaves_a_tenant_without_a_known_catalog_on_the_knowledge_base(tmp_path: Path) -> None:
    down = DownActions()
    rig = make_shop(tmp_path, None, down, ScriptedPlanner())  # type: ignore[arg-type]
    rig.tenant_id = "demo"
    outcome = await rig.say("Can I get a refund on my monthly plan?")
    assert down.calls == 1
    assert reason(outcome) == "CONFIDENT"  # the knowledge base answered as before


async def test_actions_down_while_an_action_waits_is_said_honestly(tmp_path: Path) -> None:
    down = DownActions()
    rig = make_shop(tmp_path, None, down, ScriptedPlanner())  # type: ignore[arg-type]
    reply = concierge_pb2.ActionReply(action_id="a-1", fingerprint="f", confirmed=True)
    outcome = await rig.say("Yes", action_reply=reply)
    assert reason(outcome) == "ACTIONS_UNAVAILABLE" and "haven't" in outcome.reply


def test_a_payment_method_and_an_item_the_customer_named_are_taken_from_their_words() -> None:
    said = ["return the Smart Watch from #W1000001 to my paypal"]
    # The model left the items out and picked the card: the customer's words settle both.
    arguments: dict[str, Any] = {"order_id": "#W1000001", "payment_method_id": "credit_card_2"}
    plans.fill_from_words(RETURN, arguments, said, USER, ORDERS)
    assert arguments == {"order_id": "#W1000001", "item_ids": ["1111111111"], "payment_method_id": "paypal_1"}
    # Words that name nothing (or more than one) leave it to be asked.
    vague: dict[str, Any] = {"order_id": "#W1000001"}
    plans.fill_from_words(RETURN, vague, ["return the watch and the boots from #W1000001"], USER, ORDERS)
    assert "item_ids" not in vague and "payment_method_id" not in vague


@pytest.mark.parametrize("text,expected", [
    ("Please cancel #W1000001", True), ("ship it to 12 Oak St instead", True), ("I want to return the watch", True),
    ("What did I pay for #W1000001?", False), ("where is my order", False), ("which card did I use?", False),
])
def test_a_change_must_be_asked_for_in_words(text: str, expected: bool) -> None:
    assert plans.asks_for_change(text) is expected
