"""bench/release_loop.py's own parts, without a mesh: the questions it asks, what the simulated
humans say, the canary counts it keeps beside the concierge's, the ranking and the table."""

from __future__ import annotations

import re
from typing import Any

from aftercare.concierge.v1 import releases_pb2
from bench.release_loop import (
    NO_ANSWER_REPLY,
    ArmTally,
    Exchange,
    agent_reply_text,
    agent_verdict,
    load_questions,
    past_bound,
    pick,
    policy_message,
    ranking,
    table,
    traffic_summary,
)

STATUS_PAGE: dict[str, Any] = {
    "id": "demo-001", "question": "Is there an API status page?", "answerable": True,
    "gold_doc_ids": ["faq-api-and-rate-limits"], "key_facts": ["status.beacon.example"],
    "reference_answer": "Yes, https://status.beacon.example shows the status of the API.",
}
UNANSWERABLE: dict[str, Any] = {
    "id": "demo-005", "question": "What commission do partners get?", "answerable": False,
    "gold_doc_ids": [], "key_facts": [], "reference_answer": "",
}


def exchange(decision: str, correct: bool | None = None, release_id: str = "r1", judged_by: str = "") -> Exchange:
    return Exchange("q", "c", release_id, decision, "", 0.5, 0.1, judged_by=judged_by, correct=correct)


def test_only_single_turn_questions_are_asked_and_a_sample_is_fixed() -> None:
    questions = load_questions()
    assert questions and all(not q.get("history") for q in questions)
    train = pick(questions, "train", 20, seed=23)
    assert len(train) == 20 and {q["split"] for q in train} == {"train"}
    assert [q["id"] for q in train] == [q["id"] for q in pick(questions, "train", 20, seed=23)]
    assert {q["split"] for q in pick(questions, "", None, seed=1)} == {"train", "test"}


def test_the_agent_accepts_a_right_draft_and_replaces_a_wrong_one() -> None:
    right = "Yes: status.beacon.example shows the status of the API and lets you subscribe to incidents."
    assert agent_reply_text(STATUS_PAGE, right, ["faq-api-and-rate-limits"]) == right
    # The right words from the wrong document, or no key fact: the agent sends the gold answer.
    assert agent_reply_text(STATUS_PAGE, right, ["refund-policy"]) == STATUS_PAGE["reference_answer"]
    assert agent_reply_text(STATUS_PAGE, "Refunds take 14 days.", ["faq-api-and-rate-limits"]) == (
        STATUS_PAGE["reference_answer"]
    )
    assert agent_reply_text(UNANSWERABLE, "Partners get 20%.", ["partner-faq"]) == NO_ANSWER_REPLY
    assert agent_reply_text(STATUS_PAGE, "", []) == STATUS_PAGE["reference_answer"]


def test_the_agent_verdict_is_escalations_judge_on_the_candidate() -> None:
    draft = "Yes: status.beacon.example shows the status of the API and lets you subscribe to incidents."
    assert agent_verdict(draft, draft) is True
    assert agent_verdict("Refunds take fourteen days after the invoice.", STATUS_PAGE["reference_answer"]) is False
    assert agent_verdict("Partners get twenty percent commission.", NO_ANSWER_REPLY) is False
    assert agent_verdict("  ", NO_ANSWER_REPLY) is None


def test_an_arm_counts_decided_turns_and_only_the_answers_it_gave() -> None:
    tally = ArmTally("r3")
    for item in (
        exchange("answered", True, judged_by="customer"),
        exchange("answered", False, judged_by="customer"),
        exchange("answered"),  # not rated
        exchange("escalated", False, judged_by="agent"),  # the agent replaced the candidate: no customer saw it
        exchange("forwarded"),  # a human answered: the release decided nothing
        exchange("clarify"),
    ):
        tally.add(item)
    assert (tally.turns, tally.escalated, tally.judged, tally.judged_correct) == (5, 1, 2, 1)
    arm = tally.as_arm()
    assert (arm.release_id, arm.turns, arm.escalated, arm.judged, arm.judged_correct) == ("r3", 5, 1, 2, 1)


def test_the_bound_is_crossed_with_the_concierges_statistics() -> None:
    policy = releases_pb2.CanaryPolicy(min_judged=20, min_turns=30)
    canary, live = ArmTally("r3"), ArmTally("r1")
    for _ in range(20):
        canary.add(exchange("answered", True, "r3", "customer"))
        live.add(exchange("answered", True, "r1", "customer"))
    assert past_bound(canary, live, policy) == ""
    for _ in range(30):
        canary.add(exchange("answered", False, "r3", "customer"))
        live.add(exchange("answered", True, "r1", "customer"))
    words = past_bound(canary, live, policy)
    assert words.startswith("canary worse") and "wrong answers" in words


def test_the_policy_comes_back_from_its_json() -> None:
    policy = policy_message({"accuracy_margin": 0.05, "min_judged": 20, "min_turns": 30, "confidence": 0.99,
                             "escalation_margin": 0.1, "unknown": 1})
    assert (policy.min_judged, policy.min_turns, policy.confidence) == (20, 30, 0.99)


def test_traffic_is_summed_per_decision_and_verdict() -> None:
    summary = traffic_summary([
        exchange("answered", True, judged_by="customer"), exchange("answered", False, judged_by="customer"),
        exchange("escalated", True, judged_by="agent"), exchange("escalated"), exchange("clarify"),
    ])
    assert summary["conversations"] == 5 and summary["answered"] == 2 and summary["escalated"] == 2
    assert (summary["rated_by_customers"], summary["rated_helpful"]) == (2, 1)
    assert (summary["judged_by_agents"], summary["agent_verdicts_right"], summary["judged"]) == (1, 1, 3)


def arm(answered_rate: float, agreement: float, accuracy: float, judged: int) -> dict[str, Any]:
    return {"release_id": "r", "turns": 10, "answered": 5, "answered_rate": answered_rate, "human_judged": 8,
            "agreed": 4, "agreement": agreement, "answered_judged": judged, "answered_correct": 4,
            "judged_accuracy": accuracy}


def shadow(release_id: str, candidate: dict[str, Any]) -> dict[str, Any]:
    return {"release_id": release_id, "report": {
        "shadow": {"shadowed_turns": 10, "skipped_turns": 0}, "live": arm(0.2, 0.5, 0.9, 2), "candidate": candidate,
    }}


def test_the_ranking_names_the_leader_per_figure() -> None:
    shadows = {"WORSE": shadow("r3", arm(0.9, 0.55, 0.5, 9)), "BETTER": shadow("r4", arm(0.3, 0.55, 0.92, 3))}
    assert ranking(shadows) == {"judged_accuracy": "BETTER", "agreement": "tie"}


def test_the_table_shows_every_phase() -> None:
    result = {
        "mesh": "started here",
        "live": {"release_id": "r1", "config": "model m, prompt p, fit f, thresholds {'': 0.85}"},
        "candidates": {"BROKEN": {"release_id": "r2", "how": "every threshold 1.0 (never answers)"}},
        "suites": {"BROKEN": {"release_id": "r2", "passed": 30, "total": 76, "new_failures": ["a", "b", "c"]},
                   "LIVE": {"release_id": "r1", "passed": 60, "total": 76, "new_failures": []}},
        "refit": {"validation": {"examples": 164, "correct": 91, "folds": 5, "threshold": 0.7428,
                                 "refit_coverage": 0.25, "refit_accuracy": 0.9024, "live_coverage": 0.1159,
                                 "live_accuracy": 0.9474, "refit_ece": 0.0576, "live_ece": 0.0536}},
        "promotion": {"BROKEN": {"status": 409, "reason": "SUITE_NOT_PASSED", "detail": "passed 30 of 76"}},
        "shadows": {"WORSE": shadow("r3", arm(0.9, 0.55, 0.5, 9))},
        "ranking": {"judged_accuracy": "WORSE"},
        "canary": {
            "release_id": "r3", "live_release_id": "r1", "percent": 50, "state": "rolled_back",
            "override_reason": "", "conversations": 120, "judgements": 90,
            "by_arm": {"canary": {"conversations": 61, "rated_by_customers": 55},
                       "live": {"conversations": 59, "rated_by_customers": 21}},
            "bound_first_crossed": {"conversations": 100}, "conversations_after_bound": 20,
            "rollback_s_from_start": 80.5, "rollback_s_from_bound": 4.2, "end_reason": "canary worse: ...",
            "server_figures": {"verdict": ""},
        },
    }
    text = table(result)
    assert re.search(r"BROKEN +r2 +every threshold 1.0 \(never answers\) +30/76 +3 +409 SUITE_NOT_PASSED", text)
    for expected in ("BROKEN promotion without override: 409 SUITE_NOT_PASSED: passed 30 of 76",
                     "threshold 0.74 answers 0.25 of them at accuracy 0.90",
                     "0.20 | 0.90", "0.90 | 0.50", "rolled_back", "canary 55, live 21",
                     "80.5 s from the canary's start", "4.2 s from the judgement", "after 100 conversations",
                     "20 more were served"):
        assert expected in text, expected
