"""Triage intent quality and speed, through the service's own training and serving path.

    python bench/triage_accuracy.py --train ../shared/data/banking77/train.csv \\
        --test ../shared/data/banking77/test.csv --label-col category \\
        --json var/bench/b77.json --png var/bench/b77.png

    # out-of-scope: 25 random intents left out of training, their test messages are OOS
    python bench/triage_accuracy.py ... --leave-out 25 --seed 0 --json var/bench/b77_oos.json

    # another encoder set (default: the service's, TRIAGE_INTENT_ENCODERS)
    python bench/triage_accuracy.py ... --encoders minilm --json var/bench/b77_minilm.json

    # Bitext: one file with a `split` column (train / validation / test)
    python bench/triage_accuracy.py --train ../shared/data/bitext_customer_support/all.jsonl \\
        --test ../shared/data/bitext_customer_support/all.jsonl --label-col intent --split-col split \\
        --recall-label contact_human_agent --json var/bench/bitext.json

The triage service runs in this process on a free port with a throw-away data
directory; the model is trained by the service's intent engine (what the
Retrain RPC and the offline CLI run) into that directory, and every test
message is triaged by TriageContact over a real gRPC channel, one at a time,
which also gives the latency figures. Data is read where it lies (never copied).

Metrics (over in-scope test messages; OOS ones only enter the OOS figures):
accuracy, macro_f1, ece (servicekit.calibration: 10 equal-width bins of the intent confidence),
brier (mean squared error of the confidence against right/wrong),
accuracy_at_085 / coverage_at_085 (messages with confidence >= 0.85),
oos_auroc (in-scope vs out-of-scope separated by confidence), oos_below_085
(share of OOS messages under 0.85), oos_flagged (share with out_of_scope=true)
and in_scope_flagged.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import functools
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import conversation_pb2, customer_pb2
from servicekit import calibration
from servicekit.logging import configure_logging
from servicekit.server import serving
from services.triage.app import encoder_cache_dir, intent_engine, servicers
from services.triage.encoder import Encoder, load_encoders
from services.triage.intent_training import macro_f1
from services.triage.settings import TriageSettings

TENANT = "bench"
THRESHOLD = 0.85


def read_rows(path: Path) -> list[dict[str, str]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _split(value: object) -> str:
    """Bitext's split: "train"/"validation"/"test", or md5 bucket 0 test, 1 validation, 2-9 train."""
    text = str(value).strip().lower()
    if text.isdigit():
        return {0: "test", 1: "validation"}.get(int(text), "train")
    return text


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties count half."""
    scores = np.concatenate([positive, negative])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos_ranks = ranks[: len(positive)].sum()
    return float((pos_ranks - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative)))


def reliability_png(path: Path, confidence: np.ndarray, correct: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    filled = calibration.reliability(confidence, correct).filled
    centers = [b.mean_confidence for b in filled]
    accs = [b.accuracy for b in filled]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 7), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    top.plot(centers, accs, "o-", label="intent model")
    top.axvline(THRESHOLD, color="red", lw=0.8, label=f"threshold {THRESHOLD}")
    top.set_ylabel("accuracy")
    top.set_title(title)
    top.legend(loc="upper left")
    bottom.hist(confidence, bins=list(calibration.EDGES))
    bottom.set_yscale("log")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("messages")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def contact(text: str) -> triage_pb2.TriageContactRequest:
    return triage_pb2.TriageContactRequest(
        customer=customer_pb2.CustomerRef(tenant_id=TENANT, customer_id="bench"),
        conversation=conversation_pb2.Conversation(
            conversation_id="bench", messages=[conversation_pb2.Message(role=conversation_pb2.ROLE_CUSTOMER, text=text)]
        ),
    )


async def run(args: argparse.Namespace) -> dict[str, object]:
    train_rows = read_rows(args.train)
    test_rows = read_rows(args.test)
    if args.split_col:
        train_rows = [r for r in train_rows if _split(r[args.split_col]) == "train"]
        test_rows = [r for r in test_rows if _split(r[args.split_col]) == "test"]
    train = [(str(r[args.text_col]), str(r[args.label_col])) for r in train_rows]
    test = [(str(r[args.text_col]), str(r[args.label_col])) for r in test_rows]
    labels = sorted({label for _, label in train})
    out_labels: set[str] = set()
    if args.leave_out:
        rng = np.random.default_rng(args.seed)
        out_labels = {str(x) for x in rng.choice(labels, size=args.leave_out, replace=False)}
    if args.oos_label:
        out_labels.add(args.oos_label)
    train = [(text, label) for text, label in train if label not in out_labels]
    print(f"train {len(train)} examples, {len({lab for _, lab in train})} labels; test {len(test)}; "
          f"out-of-scope labels {len(out_labels)}", flush=True)

    with tempfile.TemporaryDirectory(prefix="triage-bench-") as data_dir:
        # Only TriageContact is called over gRPC: no retrieval call is made.
        settings = TriageSettings(port=0, data_dir=Path(data_dir), log_level="warning", retrieval_addr="127.0.0.1:9")
        # Trained by the engine the Retrain RPC and the offline CLI use, into the data directory the
        # server then serves from: a long training would outlive the server's maximum connection age.
        # One encoder set for training and serving, loaded before the clock starts.
        loaded = time.perf_counter()
        if args.encoder:
            encoder: object = Encoder(str(args.encoder), torch_threads=settings.torch_threads)
        else:
            encoder = load_encoders(
                args.encoders or settings.intent_encoders,
                cache_dir=encoder_cache_dir(settings),
                torch_threads=settings.torch_threads,
            )
        load_seconds = time.perf_counter() - loaded
        print(f"encoders {encoder.name} loaded in {load_seconds:.1f}s", flush=True)  # type: ignore[attr-defined]
        engine = intent_engine(settings, encoder)
        started = time.perf_counter()
        trained = await engine.retrain(TENANT, [t for t, _ in train], [lab for _, lab in train])
        train_seconds = time.perf_counter() - started
        print(f"retrained {trained.version} in {train_seconds:.1f}s: promoted={trained.promoted} "
              f"validation accuracy {trained.accuracy:.4f} ece {trained.ece:.4f}", flush=True)
        async with (
            serving(settings, functools.partial(servicers, encoder=encoder)) as running,
            grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
        ):
            stub = triage_pb2_grpc.TriageServiceStub(channel)
            await stub.TriageContact(contact("warm-up"))
            predicted, confidence, flagged, latencies = [], [], [], []
            wall = time.perf_counter()
            for text, _ in test:
                t0 = time.perf_counter()
                response = await stub.TriageContact(contact(text))
                latencies.append((time.perf_counter() - t0) * 1000)
                predicted.append(response.intent.label)
                confidence.append(response.intent.confidence)
                flagged.append(response.intent.out_of_scope)
            wall = time.perf_counter() - wall

    truth = np.array([label for _, label in test])
    pred = np.array(predicted)
    conf = np.array(confidence)
    flags = np.array(flagged)
    oos = np.isin(truth, list(out_labels))
    ins = ~oos
    correct = (pred == truth)[ins]
    covered = conf[ins] >= THRESHOLD
    result: dict[str, object] = {
        "train_file": str(args.train),
        "test_file": str(args.test),
        "train_examples": len(train),
        "labels": len({lab for _, lab in train}),
        "test_messages": len(test),
        "in_scope_messages": int(ins.sum()),
        "oos_messages": int(oos.sum()),
        "model_version": trained.version,
        "encoders": encoder.name,  # type: ignore[attr-defined]
        "encoder_load_seconds": round(load_seconds, 1),
        "validation_accuracy": round(trained.accuracy, 4),
        "validation_ece": round(trained.ece, 4),
        "train_seconds": round(train_seconds, 1),
        "accuracy": round(float(correct.mean()), 4),
        "macro_f1": round(macro_f1(list(truth[ins]), list(pred[ins])), 4),
        "ece": round(calibration.expected_calibration_error(conf[ins], correct), 4),
        "brier": round(float(((conf[ins] - correct) ** 2).mean()), 4),
        "accuracy_at_085": round(float(correct[covered].mean()) if covered.any() else 0.0, 4),
        "coverage_at_085": round(float(covered.mean()), 4),
        "in_scope_flagged": round(float(flags[ins].mean()), 4),
        "oos_auroc": None,
        "oos_below_085": None,
        "oos_flagged": None,
        "latency_ms_p50": round(statistics.median(latencies), 2),
        "latency_ms_p99": round(float(np.percentile(latencies, 99)), 2),
        "messages_per_s": round(len(test) / wall, 1),
    }
    if oos.any():
        result["oos_auroc"] = round(auroc(conf[ins], conf[oos]), 4)
        result["oos_below_085"] = round(float((conf[oos] < THRESHOLD).mean()), 4)
        result["oos_flagged"] = round(float(flags[oos].mean()), 4)
        result["left_out_labels"] = sorted(out_labels)
    if args.recall_label:
        rows = truth == args.recall_label
        result[f"recall_{args.recall_label}"] = round(float((pred[rows] == args.recall_label).mean()), 4)
        result[f"confident_recall_{args.recall_label}"] = round(
            float(((pred[rows] == args.recall_label) & (conf[rows] >= THRESHOLD)).mean()), 4
        )
    errors = Counter((t, p) for t, p in zip(truth[ins], pred[ins], strict=True) if t != p)
    result["top_confusions"] = [f"{t} -> {p}: {n}" for (t, p), n in errors.most_common(5)]
    if args.png:
        reliability_png(args.png, conf[ins], correct.astype(float), f"{args.test.parent.name}: reliability (in-scope)")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--text-col", default="text")
    parser.add_argument("--label-col", default="label")
    parser.add_argument("--split-col", default="", help="train rows: split 'train' (or 2-9); test rows: 'test' (or 0)")
    parser.add_argument("--oos-label", default="", help="a test label that marks out-of-scope messages")
    parser.add_argument("--leave-out", type=int, default=0, help="leave N random labels out of training: OOS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recall-label", default="", help="also report recall of this label")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--png", type=Path, default=None)
    parser.add_argument("--encoder", type=Path, default=None, help="one sentence-transformers folder alone")
    parser.add_argument(
        "--encoders", default="", help="encoder set as TRIAGE_INTENT_ENCODERS names it (default: the service's)"
    )
    args = parser.parse_args()
    configure_logging("bench", "console", "warning")
    result = asyncio.run(run(args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result)
    for key, value in result.items():
        if key not in {"left_out_labels", "top_confusions"}:
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
