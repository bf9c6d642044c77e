"""The τ-bench harness's own judges (bench/actions_tau.py): the output check, the four audits,
the failure classes and the fixed sample, on hand-made records shaped as the gateway returns
them (and, for whose data is whose, on the τ-bench retail data itself)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.actions_tau import (
    CustomerSimulator,
    canonical_write,
    classify,
    customer_records,
    duplicate_executions,
    is_stop,
    load_tasks,
    missing_outputs,
    other_customer_data,
    policy_violations,
    protocol_break,
    simulator_prompt,
    writes_without_confirmation,
)
from devstack.demo import SHOP_DATA

CANCEL: dict[str, Any] = {
    "name": "cancel_pending_order", "kwargs": {"order_id": "#W5442520", "reason": "no longer needed"},
}
EXCHANGE: dict[str, Any] = {
    "name": "exchange_delivered_order_items",
    "kwargs": {"order_id": "#W7273336", "item_ids": ["1", "2"], "new_item_ids": ["3", "4"],
               "payment_method_id": "paypal_1"},
}


def action(tool: str, arguments: dict[str, Any], state: str = "succeeded", action_id: str = "a1",
           key: str = "k1", dry_run: bool = False) -> dict[str, Any]:
    return {"action_id": action_id, "tool": tool, "arguments": arguments, "state": state, "dry_run": dry_run,
            "idempotency_key": key}


def event(sequence: int, kind: str, action_id: str = "a1", actor: str = "customer",
          dry_run: bool = False) -> dict[str, Any]:
    return {"sequence": sequence, "kind": kind, "action_id": action_id, "actor": {"kind": actor, "id": ""},
            "dry_run": dry_run}


def test_outputs_are_found_case_insensitively_with_commas_removed() -> None:
    assert missing_outputs(["1093.34", "Blue"], ["The refund is $1,093.34 to your blue card."]) == []
    assert missing_outputs(["1093.34"], ["The refund is $1,093.35."]) == ["1093.34"]
    assert missing_outputs([], []) == []


def test_equal_writes_share_one_canonical_form() -> None:
    same = canonical_write("cancel_pending_order", {"order_id": "W5442520", "reason": "no longer needed"})
    assert same == canonical_write(CANCEL["name"], CANCEL["kwargs"])
    swapped = {**EXCHANGE["kwargs"], "item_ids": ["2", "1"], "new_item_ids": ["4", "3"]}
    assert canonical_write(EXCHANGE["name"], swapped) == canonical_write(EXCHANGE["name"], EXCHANGE["kwargs"])
    # Pairs, not lists: 1 -> 4 and 2 -> 3 is another exchange.
    crossed = {**EXCHANGE["kwargs"], "new_item_ids": ["4", "3"]}
    assert canonical_write(EXCHANGE["name"], crossed) != canonical_write(EXCHANGE["name"], EXCHANGE["kwargs"])
    other = canonical_write("cancel_pending_order", {"order_id": "#W5442520", "reason": "ordered by mistake"})
    assert other != same


def test_a_policy_violation_is_an_executed_write_the_ground_truth_does_not_hold() -> None:
    assert policy_violations([action(CANCEL["name"], CANCEL["kwargs"])], [CANCEL]) == []
    wrong = action(CANCEL["name"], {**CANCEL["kwargs"], "reason": "ordered by mistake"})
    assert [v["action_id"] for v in policy_violations([wrong], [CANCEL])] == ["a1"]
    twice = [action(CANCEL["name"], CANCEL["kwargs"]), action(CANCEL["name"], CANCEL["kwargs"], action_id="a2")]
    assert [v["action_id"] for v in policy_violations(twice, [CANCEL])] == ["a2"]
    # Proposed and never done, or done as a dry run: nothing reached the back office.
    assert policy_violations([action(EXCHANGE["name"], EXCHANGE["kwargs"], state="cancelled")], [CANCEL]) == []
    assert policy_violations([action(EXCHANGE["name"], EXCHANGE["kwargs"], dry_run=True)], [CANCEL]) == []


def test_a_write_needs_the_customers_confirmation_before_it_executes() -> None:
    good = [event(1, "proposed", actor="assistant"), event(2, "confirmed"), event(3, "executing"),
            event(4, "executed")]
    assert writes_without_confirmation(good) == []
    assert writes_without_confirmation([event(1, "proposed"), event(2, "executing"), event(3, "confirmed"),
                                        event(4, "executed")]) == ["a1"]
    assert writes_without_confirmation([event(1, "confirmed", actor="assistant"), event(2, "executed")]) == ["a1"]
    # Reads carry no action id: not writes.
    assert writes_without_confirmation([event(1, "read", action_id="")]) == []


def test_duplicate_executions_per_action_and_per_idempotency_key() -> None:
    once = [event(1, "confirmed"), event(2, "executed")]
    assert duplicate_executions(once, [action(CANCEL["name"], CANCEL["kwargs"])]) == []
    assert len(duplicate_executions([*once, event(3, "executed")], [])) == 1
    shared = [action(CANCEL["name"], CANCEL["kwargs"]), action(CANCEL["name"], CANCEL["kwargs"], action_id="a2")]
    assert len(duplicate_executions([], shared)) == 1
    assert duplicate_executions([event(2, "executed", dry_run=True), event(3, "executed")], []) == []


@pytest.mark.skipif(not (SHOP_DATA / "users.json").is_file(), reason="no τ-bench retail data beside the repository")
def test_another_customers_records_in_a_reply_are_found() -> None:
    owners = customer_records(SHOP_DATA)
    users = json.loads((SHOP_DATA / "users.json").read_text())
    olivia = users["olivia_ito_3591"]
    other_id, other = next((uid, u) for uid, u in users.items() if uid != "olivia_ito_3591" and u["orders"])
    own_reply = f"Order {olivia['orders'][0]} is pending; your email is {olivia['email']}."
    assert other_customer_data([own_reply], [], "olivia_ito_3591", owners) == ([], [])
    leak = f"I found {other['orders'][0]} for {other['email']} ({other_id})."
    shown, echoed = other_customer_data([leak], [], "olivia_ito_3591", owners)
    assert sorted(shown) == sorted([other["orders"][0].lower(), other["email"].lower(), other_id])
    assert echoed == []
    # The customer typed another's order id themselves: repeating it is an echo, not a disclosure.
    said = f"What about {other['orders'][0].lstrip('#')}?"
    shown, echoed = other_customer_data([f"Order {other['orders'][0]} is not yours."], [said], "olivia_ito_3591",
                                        owners)
    assert shown == [] and echoed == [other["orders"][0].lower()]


def record(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"passed": False, "ended": "stop", "protocol_breaks": [], "state_matches": False,
                            "verified_customer_id": "olivia_ito_3591", "ground_truth": [CANCEL], "actions": []}
    return {**base, **fields}


def test_failures_are_classified_by_where_they_come_from() -> None:
    assert classify(record(passed=True, state_matches=True)) is None
    assert classify(record(ended="timeout")) == "timeout"
    assert classify(record(ended="error")) == "mesh error"
    assert classify(record(protocol_breaks=["turn 0: empty message"])) == "customer sim broke protocol"
    assert classify(record(state_matches=True)) == "missing output"
    assert classify(record(verified_customer_id="")) == "never verified"
    assert classify(record()) == "wrong/no tool"
    assert classify(record(actions=[action(EXCHANGE["name"], EXCHANGE["kwargs"])])) == "wrong/no tool"
    wrong = action(CANCEL["name"], {**CANCEL["kwargs"], "reason": "ordered by mistake"})
    assert classify(record(actions=[wrong])) == "wrong arguments"
    unconfirmed = action(CANCEL["name"], CANCEL["kwargs"], state="cancelled")
    assert classify(record(actions=[unconfirmed])) == "not confirmed"
    assert classify(record(actions=[unconfirmed], ended="handoff")) == "handed to a human"
    assert classify(record(verified_customer_id="", ended="handoff")) == "handed to a human"
    assert classify(record(actions=[action(CANCEL["name"], CANCEL["kwargs"])])) == "state differs"


def test_the_simulators_protocol_breaks() -> None:
    assert protocol_break("", "Hi!", first=True) == "empty message"
    assert protocol_break("###STOP###", "Hi! How can I help you today?", first=True) == "stopped before asking anything"
    assert protocol_break("###STOP###", "Done.", first=False) is None
    assert protocol_break("How can I help you today?", "Hi", first=False) == "spoke as the assistant"
    assert protocol_break("Hi! I'm sorry to hear that you're having trouble with your order.", "Hi", first=True) \
        == "spoke as the assistant"
    assert protocol_break("Agent: Yes, I'll go ahead.", "Shall I go ahead?", first=False) == "spoke as the assistant"
    assert protocol_break("Shall I go ahead? (yes/no)", "Shall I go ahead? (yes/no)", first=False) == \
        "repeated the assistant's message"
    assert protocol_break("I'd like to cancel order #W5442520.", "Hi! How can I help you today?", first=True) is None


def test_a_sample_is_fixed_by_its_seed(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"user_id": f"u{i}", "actions": []}) + "\n" for i in range(50)))
    first = [index for index, _ in load_tasks(tasks, 10, 7, None)]
    assert first == [index for index, _ in load_tasks(tasks, 10, 7, None)]
    assert first == sorted(first) and len(set(first)) == 10
    assert first != [index for index, _ in load_tasks(tasks, 10, 8, None)]
    assert [index for index, _ in load_tasks(tasks, 10, 7, 3)] == first[:3]
    assert [index for index, _ in load_tasks(tasks, None, 7, 2)] == [0, 1]


class FakeServer:
    """An OpenAI-compatible chat endpoint answering from a list, recording what it was sent;
    `refuse_json_schema`: answers 500 to OpenAI's json_schema form, as llama.cpp's server does."""

    def __init__(self, answers: list[str], refuse_json_schema: bool = False) -> None:
        self.answers = answers
        self.refuse_json_schema = refuse_json_schema
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        if self.refuse_json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
            return httpx.Response(500, json={"error": "validation error"})
        return httpx.Response(200, json={"choices": [{"message": {"content": self.answers.pop(0)}}]})


def simulator(server: FakeServer, mode: str, context_chars: int = 6000) -> CustomerSimulator:
    client = httpx.Client(base_url="http://llm/v1", transport=httpx.MockTransport(server))
    return CustomerSimulator(client, "m", "You want to cancel order #W5442520.", 0.0, mode=mode,
                             context_chars=context_chars)


def test_in_chat_mode_the_assistant_speaks_as_the_user_and_the_simulator_as_the_assistant() -> None:
    server = FakeServer(["Customer: I want to cancel an order.", "###STOP###"])
    customer = simulator(server, "chat")
    assert customer.reply_to("Hi! How can I help you today?") == "I want to cancel an order."
    assert is_stop(customer.reply_to("Done."))
    roles = [m["role"] for m in server.requests[-1]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert "###STOP###" in server.requests[0]["messages"][0]["content"]


def test_in_json_mode_goal_reached_ends_and_the_form_llama_cpp_takes_is_kept() -> None:
    server = FakeServer([json.dumps({"goal_reached": False, "customer_message": "Please cancel #W5442520."}),
                         json.dumps({"goal_reached": True, "customer_message": "Thanks!"})],
                        refuse_json_schema=True)
    customer = simulator(server, "json")
    assert customer.reply_to("Hi! How can I help you today?") == "Please cancel #W5442520."
    last = customer.reply_to("Done: order cancelled.")
    assert is_stop(last) and last.startswith("Thanks!")
    forms = [r["response_format"]["type"] for r in server.requests]
    assert forms == ["json_schema", "json_object", "json_object"]
    transcript = server.requests[-1]["messages"][1]["content"]
    assert "Agent: Hi! How can I help you today?" in transcript and "Customer: Please cancel" in transcript
    # The end is a field here, never a token the small model is shown.
    assert "###STOP###" not in server.requests[0]["messages"][0]["content"]


def test_the_simulator_is_shown_only_the_latest_turns_that_fit() -> None:
    server = FakeServer(["a", "b", "c"])
    customer = simulator(server, "chat", context_chars=len(simulator_prompt("You want to cancel order #W5442520."))
                         + 60)
    for text in ("x" * 30, "y" * 30, "z" * 30):
        customer.reply_to(text)
    shown = server.requests[-1]["messages"][1:]
    assert shown[0]["role"] == "user" and shown[-1]["content"] == "z" * 30
    assert all(m["content"] != "x" * 30 for m in shown)
