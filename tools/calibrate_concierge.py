"""Fit the concierge's confidence for one serving configuration.

    python -m tools.calibrate_concierge --dataset demo --dataset emanual

Runs the real pipeline (tools.concierge_evaluation: retrieval, triage,
escalation, concierge, and the LLM server where the configuration has the LLM
write the reply) with the gate open, so that every question that matches an
answer unit is answered exactly as it would be; labels each answer right or
wrong by its data set's rule (unmatched questions always go to a human and
are not fitted); and fits a logistic regression on the match signals. Only the
"train" questions are used (the data set's own split, else a fixed hash split
of the ids: evaluation.SPLIT_RULE); the other half is left for
bench/concierge_quality.py, which never sees the questions a fit was made on.

The fit is written to services/concierge/fits/<configuration>.json (or
--fits-dir; with --tenant T, fits/tenants/T/<configuration>.json, that
tenant's own), where the service finds the one for the configuration it runs;
a replaced file is kept as <name>.previous.json, so a bad fit can be rolled
back by renaming. `--rows FILE` saves the labelled signals; `--from-rows FILE`
refits from them without running the pipeline again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from servicekit.calibration import expected_calibration_error
from servicekit.logging import configure_logging
from services.concierge.confidence import DEFAULT_FITS_DIR, Calibrator, fit_path
from services.concierge.fitting import FEATURES as FEATURES  # the signals weighed, named here as before
from services.concierge.fitting import fit_logistic
from services.concierge.matching import Signals
from services.concierge.servicer import configuration
from services.concierge.settings import ConciergeSettings
from tools.concierge_evaluation import SPLIT_RULE, dataset, eval_stack, in_fixed_order, progress, split_of

MIN_ROWS = 30
JUDGING_RULES = {
    "emanual": "cites a gold section and >= 60% of the answer's content words are in the gold answer",
    "demo": "cites a gold document and states every key fact; any answer to an unanswerable question is wrong",
}


def _key(name: str, question: dict[str, Any]) -> str:
    return f"{name}:{question.get('question_id') or question.get('id') or question['question']}"


def served_configuration(args: argparse.Namespace) -> Any:
    from devstack import llm_server

    settings = ConciergeSettings(  # type: ignore[call-arg]
        retrieval_addr="-", triage_addr="-", escalation_addr="-", llm_base_url="http://-/v1",
        llm_model=args.llm_model or llm_server.MODEL_ALIAS, answer_mode=args.answer_mode, phrasing=args.phrasing,
    )
    return configuration(settings)


async def collect(args: argparse.Namespace, asked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ask each data set's train questions not in `asked` yet (at most --limit of each);
    one record per question: its labelled signals, or none when it matched no unit."""
    done_keys = {record["question_id"] for record in asked}
    records: list[dict[str, Any]] = []
    for name in args.dataset:
        data = dataset(name)
        questions = [
            q for q in in_fixed_order(data.questions) if split_of(q) == "train" and _key(name, q) not in done_keys
        ]
        if args.limit:
            questions = questions[: args.limit]
        async with eval_stack(
            data.documents, llm_base_url=args.llm_base_url, llm_model=args.llm_model, answer_mode=args.answer_mode,
            phrasing=args.phrasing, gate="open", llm_threads=args.llm_threads,
        ) as stack:
            print(f"{name}: {stack.sections} documents, {stack.chunks} chunks; {len(questions)} train questions",
                  file=sys.stderr)
            started = time.perf_counter()
            for done, question in enumerate(questions, start=1):
                outcome = await stack.ask(question["question"], question.get("history") or [])
                candidate = outcome.answered and bool(outcome.signals)
                records.append(
                    {
                        "question_id": _key(name, question),
                        "dataset": name,
                        "signals": outcome.signals if candidate else None,
                        "correct": candidate and data.judge(outcome.reply, outcome.cited_section_ids, question),
                        "reply": outcome.reply if candidate else "",
                        "cited": outcome.cited_section_ids,
                    }
                )
                if args.rows:
                    # Written as it goes: an interrupted run resumes where it stopped.
                    _save_rows(args.rows, _source(args), asked + records)
                progress(done, len(questions), started)
    return asked + records


def _source(args: argparse.Namespace) -> dict[str, Any]:
    return {"datasets": sorted(args.dataset), "split": "train", "split_rule": SPLIT_RULE,
            "configuration_id": served_configuration(args).id,
            "judging_rules": {name: JUDGING_RULES[name] for name in sorted(args.dataset)}}


def _save_rows(path: Path, source: dict[str, Any], records: list[dict[str, Any]]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"source": source, "rows": records}, indent=1) + "\n")
    temporary.replace(path)


def fit(
    rows: list[dict[str, Any]], configuration_id: str, c: float | None = None
) -> tuple[Calibrator, dict[str, Any]]:
    """The shared logistic fit (services.concierge.fitting) of the labelled signals, with its
    report: out-of-fold figures alongside the in-sample ones."""
    import numpy as np

    correct = [bool(row["correct"]) for row in rows]
    if len(rows) < MIN_ROWS or len(set(correct)) < 2:
        raise SystemExit(f"need at least {MIN_ROWS} candidate answers with both labels; got {len(rows)}")
    fitted = fit_logistic(
        [row["signals"] for row in rows], correct, configuration_id=configuration_id, version_prefix="logistic", c=c
    )
    calibrator, c = fitted.calibrator, fitted.c
    y = np.array([1 if right else 0 for right in correct])
    held_out = np.array(fitted.out_of_fold)
    scores = np.array([calibrator.score(Signals(**row["signals"])) for row in rows])
    confident = held_out >= 0.85
    report = {
        "rows": len(rows),
        "positives": int(y.sum()),
        "c": c,
        "ece_out_of_fold": round(expected_calibration_error(held_out.tolist(), y.tolist()), 4),
        "share_at_085_out_of_fold": round(float(confident.mean()), 4),
        "accuracy_at_085_out_of_fold": round(float(y[confident].mean()), 4) if confident.any() else None,
        "share_at_090_out_of_fold": round(float((held_out >= 0.9).mean()), 4),
        "accuracy_at_090_out_of_fold": (
            round(float(y[held_out >= 0.9].mean()), 4) if (held_out >= 0.9).any() else None
        ),
        "brier_in_sample": round(float(np.mean((scores - y) ** 2)), 4),
        "ece_in_sample": round(expected_calibration_error(scores.tolist(), y.tolist()), 4),
    }
    return calibrator, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", action="append", choices=("demo", "emanual"),
                        help="labelled data to fit on (repeatable; default: demo and emanual)")
    parser.add_argument("--fits-dir", type=Path, default=DEFAULT_FITS_DIR, help="where the fit is written")
    parser.add_argument("--tenant", default="",
                        help="write the fit as this tenant's own (fits/tenants/TENANT/); default: the default fit")
    parser.add_argument("--limit", type=int, default=0, help="at most this many train questions of each data set")
    parser.add_argument("--llm-base-url", help="an OpenAI-compatible server instead of the embedded one")
    parser.add_argument("--llm-model", help="the model the server serves (default: the embedded one)")
    parser.add_argument("--answer-mode", choices=("unit", "generative"), default="unit")
    parser.add_argument("--phrasing", choices=("off", "long", "always"), default="off")
    parser.add_argument("--c", type=float, help="inverse L2 strength (default: chosen by cross-validation)")
    parser.add_argument("--llm-threads", type=int, default=1, help="threads of the embedded LLM server")
    parser.add_argument("--rows", type=Path,
                        help="labelled signals, written as the run goes; questions already in it are not asked again")
    parser.add_argument("--from-rows", type=Path, help="fit from labelled signals saved by --rows, asking nothing")
    parser.add_argument("--collect-only", action="store_true", help="ask and save --rows, do not fit yet")
    args = parser.parse_args()
    args.dataset = args.dataset or ["demo", "emanual"]
    configure_logging("calibrate", "console", "error")
    if args.from_rows:
        saved = json.loads(args.from_rows.read_text())
        records, source = saved["rows"], saved["source"]
    else:
        saved = json.loads(args.rows.read_text()) if args.rows and args.rows.exists() else None
        if saved and saved["source"] != _source(args):
            # Rows of another configuration would be fitted as if they were this one's.
            parser.error(f"{args.rows} holds rows collected with {saved['source']}; give another --rows file")
        asked = saved["rows"] if saved else []
        records = asyncio.run(collect(args, asked))
        source = _source(args)
        if args.collect_only:
            print(f"{len(records)} train questions asked so far -> {args.rows}")
            return 0
    rows = [record for record in records if record["signals"]]
    calibrator, report = fit(rows, source["configuration_id"], args.c)
    report["questions_asked"] = len(records)
    report["by_dataset"] = {
        name: {"asked": sum(1 for r in records if r["dataset"] == name),
               "matched": sum(1 for r in rows if r["dataset"] == name),
               "right": sum(1 for r in rows if r["dataset"] == name and r["correct"])}
        for name in source["datasets"]
    }
    out = fit_path(args.fits_dir, source["configuration_id"], args.tenant)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        shutil.copyfile(out, out.with_name(out.stem + ".previous.json"))
    out.write_text(calibrator.to_json({"fitted_on": source, "fit": report}))
    print(f"{calibrator.version} for {source['configuration_id']}: {report['rows']} matched questions "
          f"({report['positives']} right), C={report['c']}, in-sample Brier {report['brier_in_sample']}, "
          f"out-of-fold ECE {report['ece_out_of_fold']}, >= 0.85: {report['share_at_085_out_of_fold']} of them, "
          f"{report['accuracy_at_085_out_of_fold']} right -> {out}")
    for name, weight in zip(calibrator.features, calibrator.weights, strict=True):
        print(f"  {name:24} {weight:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
