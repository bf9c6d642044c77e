"""Fit the concierge's confidence model on labelled questions.

    python -m services.concierge.calibrate \\
        --corpus ../shared/data/emanual_qa/smart_tv_remote_manual_corpus.jsonl \\
        --questions ../shared/data/emanual_qa/smart_tv_remote_qa_dev.jsonl

Runs the real pipeline (services.concierge.evaluation: retrieval, triage,
escalation, concierge and the LLM server) with the confidence gate open, so
every verified candidate answer comes back with its signals; labels each one
correct or incorrect by the benchmark's judging rule; and fits a logistic
regression on the signals. Only the "train" questions are used (the data
set's own split, else a fixed hash split of the ids: see evaluation.SPLIT_RULE);
the "dev" half is left for bench/concierge_quality.py, so the model is never
evaluated on the questions it was fitted on.

The result is a version-stamped JSON file (default: services/concierge/
calibration.json, read by the service at start); the file it replaces is kept
as calibration.previous.json, so a bad fit can be rolled back by renaming.
`--rows FILE` saves the labelled signals; `--from-rows FILE` refits from them
without running the pipeline again.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from servicekit.logging import configure_logging
from services.concierge import prompts
from services.concierge.confidence import DEFAULT_PATH, Calibrator, Signals
from services.concierge.evaluation import (
    SPLIT_RULE,
    eval_stack,
    in_fixed_order,
    judge,
    progress,
    read_jsonl,
    split_of,
)

# Signals the fit may use, in this order; a signal missing from any row (e.g.
# token logprobs on a server that returns none) is left out of the model.
FEATURES = tuple(Signals.__dataclass_fields__)
MIN_ROWS = 30


def _key(question: dict[str, Any]) -> str:
    return str(question.get("question_id") or question["question"])


async def collect(args: argparse.Namespace, asked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ask the train questions not in `asked` yet (at most --limit of them); returns
    one record per question asked: its labelled signals, or none when no verified
    candidate answer came back (those always escalate and are not fitted)."""
    done_keys = {record["question_id"] for record in asked}
    questions = [
        q for q in in_fixed_order(read_jsonl(args.questions)) if split_of(q) == "train" and _key(q) not in done_keys
    ]
    if args.limit:
        questions = questions[: args.limit]
    records: list[dict[str, Any]] = []
    async with eval_stack(
        args.corpus, llm_base_url=args.llm_base_url, llm_model=args.llm_model, answer_mode=args.answer_mode,
        confidence_threshold=0.0, llm_logprobs=args.logprobs, llm_threads=args.llm_threads,
    ) as stack:
        print(f"{stack.sections} sections, {stack.chunks} chunks; {len(questions)} train questions to ask",
              file=sys.stderr)
        started = time.perf_counter()
        for done, question in enumerate(questions, start=1):
            outcome = await stack.ask(question["question"])
            candidate = outcome.answered and bool(outcome.signals)
            records.append(
                {
                    "question_id": _key(question),
                    "qa_type": question.get("qa_type", ""),
                    "signals": outcome.signals if candidate else None,
                    "correct": candidate and judge(outcome.reply, outcome.cited_section_ids, question),
                    "reply": outcome.reply if candidate else "",
                    "cited_section_ids": outcome.cited_section_ids,
                }
            )
            if args.rows:
                # Written as it goes: an interrupted run resumes where it stopped.
                _save_rows(args.rows, _source(args), asked + records)
            progress(done, len(questions), started)
    return asked + records


def _source(args: argparse.Namespace) -> dict[str, Any]:
    return {"corpus": args.corpus.name, "questions": args.questions.name, "split": "train",
            "split_rule": SPLIT_RULE, "answer_mode": args.answer_mode, "llm_model": args.llm_model,
            "prompt_version": prompts.version_for(args.answer_mode)}


def _save_rows(path: Path, source: dict[str, Any], records: list[dict[str, Any]]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"source": source, "rows": records}, indent=1) + "\n")
    temporary.replace(path)


def fit(rows: list[dict[str, Any]], c: float | None = None) -> tuple[Calibrator, dict[str, Any]]:
    """Logistic regression on the standardised signals. Without `c`, the L2 strength
    is chosen by 5-fold cross-validated log-loss (small data: a strong prior keeps
    the scores from claiming more certainty than the signals carry); the report
    holds out-of-fold figures alongside the in-sample ones."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    features = [f for f in FEATURES if all(f in row["signals"] for row in rows)]
    x = np.array([[row["signals"][f] for f in features] for row in rows], dtype=float)
    y = np.array([1 if row["correct"] else 0 for row in rows])
    if len(rows) < MIN_ROWS or y.min() == y.max():
        raise SystemExit(f"need at least {MIN_ROWS} candidate answers with both labels; got {len(rows)}")
    means = x.mean(axis=0)
    scales = x.std(axis=0)
    scales[scales < 1e-9] = 1.0  # a constant signal (e.g. no intent model) carries no weight
    standardised = (x - means) / scales
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    if c is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # scikit-learn's announced API changes
            search = LogisticRegressionCV(Cs=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0], cv=folds, scoring="neg_log_loss",
                                          max_iter=1000).fit(standardised, y)
        c = float(search.C_[0])
    model = LogisticRegression(C=c, max_iter=1000).fit(standardised, y)
    held_out = cross_val_predict(LogisticRegression(C=c, max_iter=1000), standardised, y, cv=folds,
                                 method="predict_proba")[:, 1]
    weights = [round(float(w), 6) for w in model.coef_[0]]
    digest = hashlib.sha256(json.dumps([features, weights]).encode()).hexdigest()[:8]
    calibrator = Calibrator(
        version=f"logistic-{dt.date.today():%Y%m%d}-{digest}",
        features=tuple(features),
        weights=tuple(weights),
        intercept=round(float(model.intercept_[0]), 6),
        means=tuple(round(float(m), 6) for m in means),
        scales=tuple(round(float(s), 6) for s in scales),
    )
    scores = np.array([calibrator.score(Signals(**_signal_args(row["signals"]))) for row in rows])
    confident = held_out >= 0.85
    report = {
        "rows": len(rows),
        "positives": int(y.sum()),
        "c": c,
        "ece_out_of_fold": round(expected_calibration_error(held_out.tolist(), y.tolist()), 4),
        "share_at_085_out_of_fold": round(float(confident.mean()), 4),
        "accuracy_at_085_out_of_fold": round(float(y[confident].mean()), 4) if confident.any() else None,
        "brier_in_sample": round(float(np.mean((scores - y) ** 2)), 4),
        "ece_in_sample": round(expected_calibration_error(scores.tolist(), y.tolist()), 4),
    }
    return calibrator, report


def _signal_args(signals: dict[str, float]) -> dict[str, float]:
    required = {"top_similarity": 0.0, "similarity_margin": 0.0, "answer_support": 0.0, "question_overlap": 0.0}
    return {**required, **{k: v for k, v in signals.items() if k in FEATURES}}


def expected_calibration_error(scores: list[float], labels: list[int], bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    if not scores:
        return 0.0
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [i for i, s in enumerate(scores) if low <= s < high or (b == bins - 1 and s == 1.0)]
        if members:
            accuracy = sum(labels[i] for i in members) / len(members)
            confidence = sum(scores[i] for i in members) / len(members)
            total += len(members) * abs(accuracy - confidence)
    return total / len(scores)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="JSONL with section_id, title, text")
    parser.add_argument("--questions", type=Path, help="JSONL with question, answer, gold_section_ids")
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH, help="calibration JSON to write")
    parser.add_argument("--limit", type=int, default=0, help="at most this many train questions")
    parser.add_argument("--llm-base-url", help="an OpenAI-compatible server instead of the embedded one")
    parser.add_argument("--llm-model", default="gemma-3-270m")
    parser.add_argument("--answer-mode", choices=("extractive", "generative"), default="extractive")
    parser.add_argument("--logprobs", action="store_true", help="ask the LLM for token log-probabilities")
    parser.add_argument("--c", type=float, help="inverse L2 strength (default: chosen by cross-validation)")
    parser.add_argument("--llm-threads", type=int, default=1, help="threads of the embedded LLM server")
    parser.add_argument("--rows", type=Path,
                        help="labelled signals, written as the run goes; questions already in it are not asked again")
    parser.add_argument("--from-rows", type=Path, help="fit from labelled signals saved by --rows, asking nothing")
    parser.add_argument("--collect-only", action="store_true", help="ask and save --rows, do not fit yet")
    args = parser.parse_args()
    configure_logging("calibrate", "console", "error")
    if args.from_rows:
        saved = json.loads(args.from_rows.read_text())
        records, source = saved["rows"], saved["source"]
    else:
        if not (args.corpus and args.questions):
            parser.error("--corpus and --questions are required (or --from-rows)")
        saved = json.loads(args.rows.read_text()) if args.rows and args.rows.exists() else None
        if saved and saved["source"] != _source(args):
            # Rows of another prompt, mode or model would be fitted as if they were this one's.
            parser.error(f"{args.rows} holds rows collected with {saved['source']}; give another --rows file")
        asked = saved["rows"] if saved else []
        records = asyncio.run(collect(args, asked))
        source = _source(args)
        if args.collect_only:
            print(f"{len(records)} train questions asked so far -> {args.rows}")
            return 0
    rows = [record for record in records if record["signals"]]
    calibrator, report = fit(rows, args.c)
    report["questions_asked"] = len(records)
    if args.out.exists():
        shutil.copyfile(args.out, args.out.with_name(args.out.stem + ".previous.json"))
    args.out.write_text(calibrator.to_json({"fitted_on": source, "fit": report, "judging_rule": (
        "cites a gold section and >= 60% of the answer's content words are in the gold answer")}))
    print(f"{calibrator.version}: {report['rows']} candidate answers ({report['positives']} correct), "
          f"C={report['c']}, in-sample Brier {report['brier_in_sample']}, ECE {report['ece_in_sample']}, "
          f"out-of-fold ECE {report['ece_out_of_fold']}, >= 0.85: {report['share_at_085_out_of_fold']} of "
          f"answers, {report['accuracy_at_085_out_of_fold']} right -> {args.out}")
    for name, weight in zip(calibrator.features, calibrator.weights, strict=True):
        print(f"  {name:24} {weight:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
