"""Triage sentiment against human labels: the trained model and VADER alone, in one run.

    python bench/triage_sentiment.py --data ../shared/data/airline_sentiment/tweets.jsonl \\
        --json var/bench/sentiment.json

Only the held-out rows are scored: those `services.triage.sentiment.split_of`
puts in "test" (20%, by an md5 of the normalised text). Without --model FILE,
the model is first trained on the "train" rows by the service's own training
command (`python -m services.triage.sentiment_train`, C=3) into a temporary
file: no weights learnt from these evaluation-only data sets ship. Both scorers
are the service's own SentimentScorer: that model and the lexicon alone (the
default; VADER's cut-offs: compound >= 0.05 positive, <= -0.05 negative).
Reports accuracy, macro-F1, per-class recall, the confusion matrix and
messages/s (one message at a time, as the service scores them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sklearn.metrics import confusion_matrix, f1_score, recall_score

from aftercare.triage.v1 import triage_pb2
from services.triage.sentiment import LEXICON_ONLY, SentimentScorer, split_of
from services.triage.sentiment_train import main as train_sentiment

NAMES = {
    triage_pb2.SENTIMENT_LABEL_NEGATIVE: "negative",
    triage_pb2.SENTIMENT_LABEL_NEUTRAL: "neutral",
    triage_pb2.SENTIMENT_LABEL_POSITIVE: "positive",
}
ORDER = ["negative", "neutral", "positive"]


def evaluate(scorer: SentimentScorer, texts: list[str], truth: list[str]) -> dict[str, object]:
    scorer.score(["warm-up"])
    started = time.perf_counter()
    predicted = [NAMES[scorer.score([text]).label] for text in texts]
    seconds = time.perf_counter() - started
    recalls = recall_score(truth, predicted, labels=ORDER, average=None)
    return {
        "scorer": scorer.version,
        "accuracy": round(sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth), 4),
        "macro_f1": round(float(f1_score(truth, predicted, labels=ORDER, average="macro")), 4),
        "recall": {label: round(float(r), 4) for label, r in zip(ORDER, recalls, strict=True)},
        "confusion_rows_truth_cols_predicted": confusion_matrix(truth, predicted, labels=ORDER).tolist(),
        "messages_per_s": round(len(texts) / seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--text-col", default="text")
    parser.add_argument("--label-col", default="sentiment")
    parser.add_argument("--model", type=Path, help="sentiment model file (default: train one on the train rows)")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    held_out = [row for row in rows if split_of(row[args.text_col]) == "test"]
    texts = [row[args.text_col] for row in held_out]
    truth = [row[args.label_col] for row in held_out]

    from services.triage.encoder import Encoder

    encoder = Encoder(torch_threads=1)
    training_seconds = None
    if args.model is None:
        args.model = Path(tempfile.mkdtemp(prefix="sentiment-")) / "model.json"
        started = time.perf_counter()
        code = train_sentiment(["--data", str(args.data), "--text-col", args.text_col, "--label-col",
                                args.label_col, "--c", "3", "--source", args.data.name, "--out", str(args.model)])
        if code:
            return code
        training_seconds = round(time.perf_counter() - started, 1)
    model = SentimentScorer.from_setting(str(args.model), encoder.encode)
    lexicon = SentimentScorer.from_setting(LEXICON_ONLY, encoder.encode)
    results = [evaluate(model, texts, truth), evaluate(lexicon, texts, truth)]
    result = {
        "data": str(args.data),
        "rows": len(rows),
        "held_out_messages": len(held_out),
        "model_trained_on_rows": model.model.info.get("rows") if model.model else None,
        "training_seconds": training_seconds,
        "labels": ORDER,
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.data.name}: {len(held_out)} held-out messages of {len(rows)}")
    print(f"{'scorer':<28} {'accuracy':>8} {'macro-F1':>8} {'neg rec':>8} {'neu rec':>8} {'pos rec':>8} {'msg/s':>7}")
    for r in results:
        rec = r["recall"]
        print(
            f"{r['scorer']:<28} {r['accuracy']:>8.4f} {r['macro_f1']:>8.4f} {rec['negative']:>8.4f} "  # type: ignore[index]
            f"{rec['neutral']:>8.4f} {rec['positive']:>8.4f} {r['messages_per_s']:>7.1f}"  # type: ignore[index]
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
