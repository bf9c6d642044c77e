"""Triage sentiment (VADER, services.triage.sentiment) against human labels.

    python bench/triage_sentiment.py --data ../shared/data/airline_sentiment/tweets.jsonl \\
        --json var/bench/sentiment.json

Each tweet is scored by the service's own SentimentScorer and labelled with
its cut-offs (compound >= 0.05 positive, <= -0.05 negative, else neutral).
Reports accuracy, macro-F1, per-class recall and the confusion matrix.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sklearn.metrics import confusion_matrix, f1_score, recall_score

from aftercare.triage.v1 import triage_pb2
from services.triage.sentiment import SentimentScorer

NAMES = {
    triage_pb2.SENTIMENT_LABEL_NEGATIVE: "negative",
    triage_pb2.SENTIMENT_LABEL_NEUTRAL: "neutral",
    triage_pb2.SENTIMENT_LABEL_POSITIVE: "positive",
}
ORDER = ["negative", "neutral", "positive"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--text-col", default="text")
    parser.add_argument("--label-col", default="sentiment")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    scorer = SentimentScorer()
    started = time.perf_counter()
    predicted = [NAMES[scorer.score([row[args.text_col]]).label] for row in rows]
    seconds = time.perf_counter() - started
    truth = [row[args.label_col] for row in rows]
    recalls = recall_score(truth, predicted, labels=ORDER, average=None)
    result = {
        "data": str(args.data),
        "messages": len(rows),
        "accuracy": round(sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(rows), 4),
        "macro_f1": round(float(f1_score(truth, predicted, labels=ORDER, average="macro")), 4),
        "recall": {label: round(float(r), 4) for label, r in zip(ORDER, recalls, strict=True)},
        "confusion_rows_truth_cols_predicted": confusion_matrix(truth, predicted, labels=ORDER).tolist(),
        "labels": ORDER,
        "messages_per_s": round(len(rows) / seconds, 1),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
