"""Concierge answer quality: ingest a data set's documents, ask every question
through the real concierge (StreamConverse on a real gRPC channel, with
retrieval, triage, escalation, and the LLM server when the configuration lets
the LLM write the reply), and judge each answer by the data set's rule.

    python bench/concierge_quality.py --dataset demo --json demo.json
    python bench/concierge_quality.py --dataset emanual --json emanual.json

Data sets (tools/concierge_evaluation.py): "demo", the demo tenant's
knowledge base and the team's labelled questions (bench/demo_questions.jsonl:
answerable ones with gold documents and key facts, unanswerable ones,
follow-ups asked after their earlier turns, typos, other languages); an
answer is right when it cites a gold document and states every key fact.
"emanual", the TV manual; right when it cites a gold section and >= 60% of its
content words are in the gold answer.

Printed and written: answered share of answerable and of unanswerable
questions, accuracy of answers, citation rate, ECE of the confidence over every
candidate (what the AI would have said, answered or handed over), time to the
first shown text (TTFT) and to the decision, split by decision (answers, and
handoffs decided before generation), per kind of question, and a reliability
diagram PNG next to the JSON. `items` holds one object per question (reply,
decision, confidence, citations, the candidate when it handed over) so that
answers can be read and judged independently.

By default only the held-out questions are asked ("test" of the demo set,
"dev" of E-Manual): the confidence was fitted on the "train" ones. Services
run in this process on free ports with throw-away data; the embedded llama.cpp
server starts when needed unless --llm-base-url names another (vLLM).
`--resume` keeps the items of an interrupted run in OUT and asks only the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servicekit.calibration import expected_calibration_error
from servicekit.logging import configure_logging
from tools.concierge_evaluation import (
    SPLIT_RULE,
    Dataset,
    Outcome,
    dataset,
    eval_stack,
    in_fixed_order,
    progress,
    split_of,
)

GATE = 0.85


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def item(outcome: Outcome, question: dict[str, Any], data: Dataset) -> dict[str, Any]:
    attempted = bool(outcome.attempt_reply)
    judge = data.judge
    return {
        "question_id": question.get("question_id") or question.get("id", ""),
        "kind": question.get("qa_type") or question.get("kind", ""),
        "question": outcome.question,
        "history": question.get("history") or [],
        "answerable": data.answerable(question),
        "gold": question.get("gold_section_ids") or question.get("gold_doc_ids") or [],
        "reply": outcome.reply,
        "decision": outcome.decision,
        "reason": outcome.reason,
        "confidence": outcome.confidence,
        "cited_section_ids": outcome.cited_section_ids,
        "correct": outcome.answered and judge(outcome.reply, outcome.cited_section_ids, question),
        # What the AI would have said when it handed over instead, judged the same way.
        "candidate_reply": outcome.candidate_reply,
        "candidate_section_ids": outcome.candidate_section_ids,
        "attempt_correct": attempted and judge(outcome.attempt_reply, outcome.attempt_section_ids, question),
        "signals": outcome.signals,
        "ttft_ms": outcome.ttft_ms,
        "latency_ms": outcome.latency_ms,
        "retracted": outcome.retracted,
        "calibrated": outcome.calibrated,
    }


def figures(items: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(items)
    answered = [i for i in items if i["decision"] == "answered"]
    attempts = [i for i in items if i["decision"] == "answered" or i["candidate_reply"]]
    confident = [i for i in attempts if i["confidence"] >= GATE]
    answerable = [i for i in items if i["answerable"]]
    unanswerable = [i for i in items if not i["answerable"]]
    handoffs = [i for i in items if i["decision"] == "escalated"]
    scores = [i["confidence"] for i in attempts]
    labels = [int(i["attempt_correct"]) for i in attempts]
    # Selective accuracy: answer only at or above a threshold, over every attempt's confidence.
    curve = []
    for threshold in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95):
        chosen = [i for i in attempts if i["confidence"] >= threshold]
        curve.append({
            "threshold": threshold,
            "coverage": round(len(chosen) / n, 4) if n else 0.0,
            "accuracy": round(sum(i["attempt_correct"] for i in chosen) / len(chosen), 4) if chosen else None,
        })

    def share(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    # The ceiling of this confidence: the most questions any threshold could answer with
    # >= 95% of them right (candidates best first; ties broken against the answer).
    ranked = sorted(attempts, key=lambda i: (-i["confidence"], i["attempt_correct"]))
    right, ceiling = 0, 0
    for count, entry in enumerate(ranked, start=1):
        right += entry["attempt_correct"]
        if right / count >= 0.95:
            ceiling = count

    return {
        "questions": n,
        "answerable_questions": len(answerable),
        "answered_rate": share(len(answered), n),
        "answered_rate_answerable": share(sum(i["decision"] == "answered" for i in answerable), len(answerable)),
        "unanswerable_questions": len(unanswerable),
        "answered_rate_unanswerable": share(
            sum(i["decision"] == "answered" for i in unanswerable), len(unanswerable)
        ),
        "accuracy_answered": share(sum(i["correct"] for i in answered), len(answered)),
        "accuracy_at_085": share(sum(i["attempt_correct"] for i in confident), len(confident)),
        "ece": round(expected_calibration_error(scores, labels), 4) if attempts else None,
        "candidate_answers": len(attempts),
        "candidate_accuracy": share(sum(labels), len(attempts)),
        "escalation_rate": share(sum(i["decision"] == "escalated" for i in items), n),
        "clarify_rate": share(sum(i["decision"] == "clarify" for i in items), n),
        "citation_rate": share(sum(bool(i["cited_section_ids"]) for i in answered), len(answered)),
        "answers_without_citation": sum(not i["cited_section_ids"] for i in answered),
        # Time to the first shown text of an answer (TTFT) and to its outcome; handoffs are
        # decided before any generation.
        "ttft_p50_ms": percentile([i["ttft_ms"] for i in answered], 0.5),
        "ttft_p95_ms": percentile([i["ttft_ms"] for i in answered], 0.95),
        "latency_p50_ms": percentile([i["latency_ms"] for i in answered], 0.5),
        "latency_p95_ms": percentile([i["latency_ms"] for i in answered], 0.95),
        "handoff_p50_ms": percentile([i["latency_ms"] for i in handoffs], 0.5),
        "handoff_p95_ms": percentile([i["latency_ms"] for i in handoffs], 0.95),
        "latency_mean_ms": round(statistics.fmean([i["latency_ms"] for i in items]), 1) if items else 0.0,
        "retractions": sum(i["retracted"] for i in items),
        "uncalibrated_responses": sum(not i["calibrated"] for i in items),
        "by_kind": {
            kind: {
                "questions": len(group),
                "answered": sum(i["decision"] == "answered" for i in group),
                "right": sum(i["correct"] for i in group),
            }
            for kind in sorted({i["kind"] for i in items})
            if (group := [i for i in items if i["kind"] == kind])
        },
        "reasons": {r: sum(i["reason"] == r for i in items) for r in sorted({i["reason"] for i in items})},
        "selective_accuracy": curve,
        "most_answerable_at_95": share(ceiling, n),
    }


def reliability_png(items: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attempts = [i for i in items if i["decision"] == "answered" or i["candidate_reply"]]
    bins = [[] for _ in range(10)]  # type: list[list[dict[str, Any]]]
    for entry in attempts:
        bins[min(9, int(entry["confidence"] * 10))].append(entry)
    centres = [(b + 0.5) / 10 for b in range(10) if bins[b]]
    accuracy = [sum(e["attempt_correct"] for e in bins[b]) / len(bins[b]) for b in range(10) if bins[b]]
    counts = [len(bins[b]) for b in range(10) if bins[b]]
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    axis.bar(centres, accuracy, width=0.09, alpha=0.7, label="accuracy per confidence bin")
    for x, y, count in zip(centres, accuracy, counts, strict=True):
        axis.annotate(str(count), (x, y), ha="center", va="bottom", fontsize=8)
    axis.axvline(GATE, color="red", linewidth=1, label=f"threshold {GATE}")
    axis.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.05), title=title)
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data = dataset(args.dataset)
    questions = [
        q for q in in_fixed_order(data.questions) if args.split == "all" or split_of(q) == args.split
    ]
    if args.limit:
        questions = questions[: args.limit]
    earlier: dict[str, Any] = {}
    if args.resume and args.json and args.json.exists():
        earlier = json.loads(args.json.read_text())
    done = {entry["question"]: entry for entry in earlier.get("items", [])}
    todo = [q for q in questions if q["question"] not in done]
    config: dict[str, Any] = {}
    started_all = time.perf_counter()
    async with eval_stack(
        data.documents, llm_base_url=args.llm_base_url, llm_model=args.llm_model, answer_mode=args.answer_mode,
        phrasing=args.phrasing, llm_threads=args.llm_threads, confidence_threshold=args.threshold,
    ) as stack:
        config = {
            "dataset": args.dataset, "tenant": stack.tenant_id, "split": args.split,
            "split_rule": SPLIT_RULE, "answer_mode": args.answer_mode, "phrasing": args.phrasing,
            "llm": args.llm_base_url or "embedded llama.cpp", "llm_model": args.llm_model,
            "llm_threads": args.llm_threads if not args.llm_base_url else None,
            "threshold": args.threshold,
            "calibration_version": stack.calibration_version, "documents": stack.sections, "chunks": stack.chunks,
        }
        if earlier and earlier.get("config", {}).get("calibration_version") != stack.calibration_version:
            raise SystemExit("--resume: OUT was made with another calibration; start afresh")
        print(f"{stack.sections} documents, {stack.chunks} chunks; {len(todo)} of {len(questions)} "
              f"{args.split} questions to ask ({stack.calibration_version})", file=sys.stderr)
        started = time.perf_counter()
        for count, question in enumerate(todo, start=1):
            outcome = await stack.ask(question["question"], question.get("history") or [])
            done[question["question"]] = item(outcome, question, data)
            if args.json:  # after every answer: a run cut short resumes where it stopped
                _write(args.json, config, [done[q["question"]] for q in questions if q["question"] in done])
            progress(count, len(todo), started)
    items = [done[q["question"]] for q in questions if q["question"] in done]
    report = {**figures(items), "config": config, "run_s": round(time.perf_counter() - started_all, 1)}
    return {**report, "items": items}


def _write(path: Path, config: dict[str, Any], items: list[dict[str, Any]]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({**figures(items), "config": config, "items": items}, indent=1) + "\n")
    temporary.replace(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("demo", "emanual"), default="demo")
    parser.add_argument("--json", type=Path, help="write figures and items here (and a reliability PNG beside it)")
    parser.add_argument("--limit", type=int, default=0, help="ask at most this many questions")
    parser.add_argument("--split", choices=("dev", "train", "all"), default="dev",
                        help="which questions: dev (held out: the demo set's test half), train (fitted on), all")
    parser.add_argument("--llm-base-url", help="an OpenAI-compatible server (vLLM) instead of the embedded one")
    parser.add_argument("--llm-model", help="the model the server serves (default: the embedded one)")
    parser.add_argument("--llm-threads", type=int, default=1, help="threads of the embedded LLM server")
    parser.add_argument("--answer-mode", choices=("unit", "generative"), default="unit")
    parser.add_argument("--phrasing", choices=("off", "long", "always"), default="off")
    parser.add_argument("--threshold", type=float, help="confidence threshold (default: the tenant's persona)")
    parser.add_argument("--resume", action="store_true", help="keep the items already in --json, ask the rest")
    args = parser.parse_args()
    configure_logging("bench", "console", "error")
    report = asyncio.run(run(args))
    items = report["items"]
    rows = [
        ("questions (answerable)", f"{report['questions']} ({report['answerable_questions']})"),
        ("answered rate", report["answered_rate"]),
        ("answered rate, answerable only", report["answered_rate_answerable"]),
        ("answered rate, unanswerable only", report["answered_rate_unanswerable"]),
        ("accuracy of answered", report["accuracy_answered"]),
        ("accuracy at confidence >= 0.85", report["accuracy_at_085"]),
        ("ECE of the confidence", report["ece"]),
        ("candidate answers (accuracy)", f"{report['candidate_answers']} ({report['candidate_accuracy']})"),
        ("escalation rate", report["escalation_rate"]),
        ("clarify rate", report["clarify_rate"]),
        ("citation rate of answers", report["citation_rate"]),
        ("answers: first shown text p50 / p95 ms", f"{report['ttft_p50_ms']} / {report['ttft_p95_ms']}"),
        ("answers: full answer p50 / p95 ms", f"{report['latency_p50_ms']} / {report['latency_p95_ms']}"),
        ("handoffs: decided p50 / p95 ms", f"{report['handoff_p50_ms']} / {report['handoff_p95_ms']}"),
        ("retractions", report["retractions"]),
        ("ceiling: most answered at >= 95% right", report["most_answerable_at_95"]),
    ]
    for name, value in rows:
        print(f"{name:36} {value}")
    for kind, counts in report["by_kind"].items():
        print(f"  {kind:22} {counts['questions']:4} asked {counts['answered']:4} answered {counts['right']:4} right")
    print("selective accuracy (threshold: coverage, accuracy):",
          ", ".join(f"{p['threshold']}: {p['coverage']}, {p['accuracy']}" for p in report["selective_accuracy"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        png = args.json.with_suffix(".png")
        reliability_png(items, png, f"concierge confidence ({report['config']['calibration_version']})")
        print(f"wrote {args.json} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

