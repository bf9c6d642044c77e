"""bench/scenarios.py's suite format and checks, without a mesh: the shipped suites load and
cover what issue 23 asks for, a malformed suite is refused with where it is wrong, and each
check fails when the reply does not do what the expectation says."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.scenarios import (
    FORMAT,
    Expectation,
    SimulatedCustomer,
    SuiteError,
    check_turn,
    load_suite,
    parse_suite,
    run_scenario,
    run_suite,
    select,
    suite_run_body,
)

SUITES = Path(__file__).resolve().parents[2] / "bench" / "scenarios"


def _suite(*scenarios: dict[str, Any]) -> dict[str, Any]:
    return {"format": FORMAT, "tenant": "demo", "scenarios": list(scenarios)}


def _scenario(**changes: Any) -> dict[str, Any]:
    return {"name": "one", "tags": ["ci"], "turns": [{"say": "hi", "expect": {"decision": "clarify"}}]} | changes


def _reply(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "decision": "answered", "decision_reason": "confident",
        "reply": "Open Settings \u203a Security and turn on 2FA.",
        "citations": [{"doc_id": "enable-two-factor-authentication", "title": "Enable two-factor authentication",
                       "chunk_id": "c1", "url": "", "score": 0.9}],
        "handoff_id": None, "handoff_reference": None,
    }
    return base | changes


# --- the shipped suites ------------------------------------------------------------------


def test_the_demo_suite_has_sixty_scenarios_and_every_reachable_handoff_reason() -> None:
    demo = load_suite(SUITES / "demo.json")
    assert demo.tenant == "demo" and len(demo.scenarios) >= 60
    reasons = {r for s in demo.scenarios for t in s.turns for r in t.expect.reason}
    assert {"human_requested", "policy_route", "no_knowledge", "low_confidence", "needs_detail", "off_topic",
            "confident", "with_agent"} <= reasons
    tags = {tag for s in demo.scenarios for tag in s.tags}
    assert {"answer", "clarify", "handoff", "guardrail", "injection", "privacy"} <= tags
    assert demo.digest.startswith("sha256:")


def test_the_shop_suite_covers_identity_reads_yes_no_and_refusals() -> None:
    shop = load_suite(SUITES / "shop.json")
    assert {s.tenant for s in shop.scenarios} == {"shop"}
    reasons = {r for s in shop.scenarios for t in s.turns for r in t.expect.reason}
    assert {"needs_identity", "from_records", "action_proposed", "action_executed", "action_cancelled",
            "action_not_allowed"} <= reasons
    assert any(t.press is True for s in shop.scenarios for t in s.turns)
    assert any(t.press is False for s in shop.scenarios for t in s.turns)


def test_the_ci_subset_is_five_to_ten_scenarios() -> None:
    subset = [s for path in ("demo.json", "shop.json") for s in select(load_suite(SUITES / path).scenarios, ["ci"])]
    assert 5 <= len(subset) <= 10


def test_simulated_customers_have_suites_of_their_own_outside_the_ci_subset() -> None:
    # Apart from the scripted suites: the CPU default's model cannot play a customer, and a scenario that
    # fails whatever the release would keep every release from clearing its suite.
    scripted = [s for path in ("demo.json", "shop.json") for s in load_suite(SUITES / path).scenarios]
    assert all(s.simulated is None for s in scripted)
    demo, shop = (load_suite(SUITES / path).scenarios for path in ("demo_simulated.json", "shop_simulated.json"))
    simulated = [*demo, *shop]
    assert all(s.simulated is not None for s in simulated)
    assert sum(s.tenant == "demo" for s in simulated) >= 3 and any(s.tenant == "shop" for s in simulated)
    # An LLM plays them: not deterministic, so never in the fast subset.
    assert all("ci" not in s.tags and "simulated" in s.tags for s in simulated)
    # Each can fail: something is forbidden on every turn or checked at the end.
    assert all(s.forbid or s.expect_end for s in simulated)


# --- the loader refuses what would check nothing or the wrong thing ----------------------


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        (_scenario(turns=[{"say": "hi", "expect": {"decison": "clarify"}}]), "unknown field.*decison"),
        (_scenario(turns=[{"say": "hi", "expect": {"decision": "answerd"}}]), "unknown answerd"),
        (_scenario(turns=[{"say": "hi", "expect": {"reason": "because"}}]), "unknown because"),
        (_scenario(turns=[{"say": "hi", "expect": {"forbid": ["refund"]}}]), "unknown refund"),
        (_scenario(turns=[{"press": "yes"}]), "cannot open with a button press"),
        (_scenario(turns=[{"say": "hi", "press": "yes"}]), "exactly one of say"),
        (_scenario(turns=[{"say": "hi"}, {"press": "maybe"}]), "'yes' or 'no'"),
        (_scenario(turns=[]), "turns must be a non-empty list"),
        (_scenario(name="Has Spaces"), "name must be"),
        (_scenario(turns=[{"say": "hi", "expect": {"handoff": "yes"}}]), "true or false"),
        (_scenario(expect_end={"decision": "escalated"}), "expect_end: only for a simulated_customer"),
        (_scenario(simulated_customer={"goal": "a refund"}), "scripted \\(turns\\) or simulated"),
        (_scenario(turns=[], simulated_customer={"goal": " "}), "goal: the customer's goal"),
        (_scenario(turns=[], simulated_customer={"goal": "a refund", "max_turns": 0}), "max_turns: a number"),
        (_scenario(turns=[], simulated_customer={"goal": "a refund", "max_turns": True}), "max_turns: a number"),
        (_scenario(turns=[], simulated_customer={"goal": "a refund", "max_turns": 21}), "max_turns: a number"),
        (_scenario(turns=[], simulated_customer={"goal": "a refund", "persona": "rude"}), "unknown field.*persona"),
        (_scenario(turns=[], simulated_customer={"goal": "a refund"}, expect_end={"decison": "answered"}),
         "expect_end: unknown field.*decison"),
        (_scenario(turns=[], simulated_customer={"goal": "a refund"}, expect_end={"reason": "bored"}),
         "unknown bored"),
    ],
)
def test_a_malformed_scenario_is_refused_naming_where(scenario: dict[str, Any], message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        parse_suite(_suite(scenario))


def test_a_name_used_twice_and_a_wrong_format_are_refused() -> None:
    with pytest.raises(SuiteError, match="used twice"):
        parse_suite(_suite(_scenario(), _scenario()))
    with pytest.raises(SuiteError, match="format must be"):
        parse_suite({**_suite(_scenario()), "format": "v0"})


def test_enum_names_are_accepted_as_written_in_the_proto() -> None:
    suite = parse_suite(_suite(_scenario(turns=[
        {"say": "hi", "expect": {"decision": "DECISION_CLARIFY", "reason": ["DECISION_REASON_NEEDS_DETAIL"]}}
    ])))
    expect = suite.scenarios[0].turns[0].expect
    assert (expect.decision, expect.reason) == (("clarify",), ("needs_detail",))


def test_a_simulated_customer_is_read_with_its_end_and_fails_without_an_llm() -> None:
    suite = parse_suite(_suite(_scenario(turns=[], simulated_customer={"goal": "get a refund", "max_turns": 3},
                                         expect_end={"decision": "escalated", "handoff": True})))
    scenario = suite.scenarios[0]
    assert scenario.simulated is not None and (scenario.simulated.goal, scenario.simulated.max_turns) == (
        "get a refund", 3)
    assert scenario.expect_end is not None and scenario.expect_end.decision == ("escalated",)
    assert parse_suite(_suite(_scenario(turns=[], simulated_customer={"goal": "x"}))).scenarios[0].simulated == (
        SimulatedCustomer("x", 8))
    # Not skipped: a skipped scenario would make the run partial, and a partial run cannot clear a release.
    report = run_suite(suite, suite.scenarios, lambda *_: pytest.fail("nothing is sent"), say=lambda _: None)
    assert (report.total, report.passed, report.skipped) == (1, 0, 0)
    assert report.scenarios[0].failures == ["turn 1: simulated customer: expected an LLM to play it, got none given"]


def test_the_tenant_of_a_scenario_overrides_the_suites() -> None:
    suite = parse_suite(_suite(_scenario(), _scenario(name="two", tenant="shop")))
    assert [s.tenant for s in suite.scenarios] == ["demo", "shop"]


def test_select_by_tag_name_and_limit() -> None:
    suite = parse_suite(_suite(_scenario(), _scenario(name="two", tags=["x"]), _scenario(name="three", tags=["x"])))
    assert [s.name for s in select(suite.scenarios, ["x"])] == ["two", "three"]
    assert [s.name for s in select(suite.scenarios, ["x"], limit=1)] == ["two"]
    assert [s.name for s in select(suite.scenarios, names=["three"])] == ["three"]


# --- the checks: a right reply passes, a wrong one fails ---------------------------------


def _failed(expect: Expectation, reply: dict[str, Any], forbid: tuple[str, ...] = ()) -> list[str]:
    return [a.check for a in check_turn(1, expect, reply, forbid) if not a.passed]


def test_a_reply_that_does_what_is_expected_passes_every_check() -> None:
    expect = Expectation(decision=("answered",), reason=("confident",), cites=("Enable two-factor authentication",),
                         says=("turn on 2fa",), never_says=("refund",), handoff=False, forbid=("escalated",))
    assertions = check_turn(1, expect, _reply())
    assert len(assertions) == 7 and all(a.passed for a in assertions)


def test_a_wrong_decision_reason_or_citation_fails() -> None:
    expect = Expectation(decision=("clarify", "escalated"), reason=("needs_detail",), cites=("refund-policy",))
    assert _failed(expect, _reply()) == ["decision", "reason", "cites"]
    failure = check_turn(2, expect, _reply())[0].describe()
    assert failure == "turn 2: decision: expected clarify or escalated, got answered"


def test_reply_text_checks_ignore_case_and_curly_quotes() -> None:
    reply = _reply(reply="I couldn\u2019t find an account with those details.")
    assert _failed(Expectation(says=("COULDN'T FIND",)), reply) == []
    assert _failed(Expectation(never_says=("couldn't find",)), reply) == ["never says"]
    assert _failed(Expectation(says_any=("nope", "account")), reply) == []
    assert _failed(Expectation(says_any=("nope", "never")), reply) == ["says one of"]


def test_a_forbidden_outcome_fails_when_it_happens() -> None:
    escalated = _reply(decision="escalated", decision_reason="human_requested", citations=[],
                       handoff_id="h1", handoff_reference="HO-1")
    assert _failed(Expectation(forbid=("handoff",)), escalated) == ["never"]
    assert _failed(Expectation(), escalated, forbid=("escalated",)) == ["never"]
    assert _failed(Expectation(forbid=("answered", "citation")), escalated) == []
    assert _failed(Expectation(handoff=True), escalated) == []
    assert _failed(Expectation(handoff=True), _reply()) == ["handoff"]


def test_the_action_is_checked_by_tool_state_and_arguments_in_its_summary() -> None:
    pending = {"action_id": "a1", "fingerprint": "f1", "tool": "cancel_pending_order", "state": "proposed",
               "summary": "Cancel order #W2443586 (reason: no longer needed), refund to paypal_7859314.",
               "approval_reasons": []}
    reply = _reply(decision="confirm_action", decision_reason="action_proposed", citations=[], pending_action=pending)
    from bench.scenarios import ActionExpectation

    right = ActionExpectation("cancel_pending_order", {"order_id": "#W2443586", "reason": "no longer needed"},
                              "proposed")
    assert _failed(Expectation(action=right, forbid=("executed",)), reply) == []
    wrong = ActionExpectation("return_delivered_order_items", {"order_id": "#W0000000"}, "executed")
    assert _failed(Expectation(action=wrong), reply) == ["action tool", "action argument order_id", "action state"]
    assert _failed(Expectation(action=right), _reply()) == ["action"]
    assert _failed(Expectation(forbid=("action",)), reply) == ["never"]
    cancelled = _reply(pending_action={**pending, "state": "cancelled"})
    assert _failed(Expectation(forbid=("action", "executed")), cancelled) == []


def test_a_record_citation_matches_by_its_record_id() -> None:
    reply = _reply(decision_reason="from_records", citations=[
        {"doc_id": "", "chunk_id": "", "title": "order #W4316152", "url": "", "score": 0.0,
         "record": {"kind": "order", "id": "#W4316152", "tool": "get_order_details"}}])
    assert _failed(Expectation(cites=("#W4316152",)), reply) == []


# --- the runner, on a recorded transport --------------------------------------------------


def test_a_press_answers_the_pending_action_with_its_id_and_fingerprint() -> None:
    suite = parse_suite(_suite(_scenario(tenant="shop", turns=[
        {"say": "cancel #W1", "expect": {"decision": "confirm_action"}},
        {"press": "yes", "expect": {"decision": "acted"}},
    ])))
    sent: list[tuple[str, str, dict[str, Any]]] = []
    pending = {"action_id": "a1", "fingerprint": "f1", "tool": "t", "summary": "s", "state": "proposed"}
    replies = [_reply(decision="confirm_action", pending_action=pending),
               _reply(decision="acted", pending_action={**pending, "state": "executed"})]

    def send(tenant: str, conversation_id: str, body: dict[str, Any]) -> dict[str, Any]:
        sent.append((tenant, conversation_id, copy.deepcopy(body)))
        return replies[len(sent) - 1]

    result = run_scenario(suite.scenarios[0], send, "t0")
    assert result.passed, result.failures
    assert sent[1][2]["action_reply"] == {"action_id": "a1", "fingerprint": "f1", "confirmed": True}
    assert sent[1][2]["text"] == "Yes"
    # One conversation of one fresh customer, on the scenario's tenant.
    assert {s[0] for s in sent} == {"shop"} and len({s[1] for s in sent}) == 1
    assert sent[0][2]["customer"]["tenant_id"] == "shop"


def test_a_refused_turn_fails_the_scenario_and_stops_it() -> None:
    suite = parse_suite(_suite(_scenario(turns=[{"say": "a"}, {"say": "b"}])))
    calls = []

    def send(tenant: str, conversation_id: str, body: dict[str, Any]) -> dict[str, Any]:
        calls.append(body["text"])
        request = httpx.Request("POST", "http://gateway/v1/conversations/x/messages")
        raise httpx.HTTPStatusError("504", request=request, response=httpx.Response(504, text="slow", request=request))

    result = run_scenario(suite.scenarios[0], send, "t0")
    assert not result.passed and calls == ["a"]
    assert result.failures == ["turn 1: the gateway answers: expected 200, got 504 slow"]


def test_a_press_with_nothing_pending_fails() -> None:
    suite = parse_suite(_suite(_scenario(turns=[{"say": "a"}, {"press": "yes"}])))
    result = run_scenario(suite.scenarios[0], lambda *_: _reply(), "t0")
    assert result.failures == ["turn 2: a pending action to answer: expected one, got none"]


def test_the_recorded_run_lists_the_tenants_scenarios_failures_first() -> None:
    suite = parse_suite(_suite(_scenario(), _scenario(name="two"), _scenario(name="three", tenant="shop")))
    replies = iter([_reply(decision="clarify"), _reply(), _reply(decision="clarify")])
    report = run_suite(suite, suite.scenarios[:2] + suite.scenarios[2:], lambda *_: next(replies), say=lambda _: None)
    assert (report.total, report.passed) == (3, 2)
    body = suite_run_body(report, "demo")
    assert (body["total"], body["passed"], body["partial"]) == (2, 1, False)
    assert [r["name"] for r in body["results"]] == ["two", "one"]
    assert body["results"][0]["failures"] == ["turn 1: decision: expected clarify, got answered"]
    # Who ran it is the gateway key's holder: the body never claims it.
    assert body["suite_digest"] == "" and "run_by" not in body
    partial = run_suite(suite, suite.scenarios[:1], lambda *_: _reply(decision="clarify"), say=lambda _: None)
    assert suite_run_body(partial, "demo")["partial"] is True
    json.dumps(report.as_json())  # the --json report serialises
