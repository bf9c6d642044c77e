"""Train triage's sentiment model from labelled messages (JSONL with text and
negative/neutral/positive labels) and write it as a small JSON artifact.

    python -m services.triage.sentiment_train \\
        --data ../shared/data/airline_sentiment/tweets.jsonl \\
        --out var/models/sentiment.json

Only the rows that `split_of` puts in "train" are used (80%, by an md5 of the
normalised text, so retweets never straddle the split); the other 20% is left
for bench/triage_sentiment.py. C is chosen by 5-fold cross-validated macro-F1
on the training rows among `--c` values; the model is then fitted on all of them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from services.triage.sentiment import LABELS, normalize, split_of, train_sentiment_model, vader_features


def read_labelled(path: Path, text_col: str, label_col: str) -> tuple[list[str], list[str]]:
    """Rows with a text and a known label; raises ValueError naming the first bad line."""
    texts: list[str] = []
    labels: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not valid JSON: {error.msg}") from None
        text, label = row.get(text_col), row.get(label_col)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path}:{number}: {text_col} is empty or not a string")
        if label not in LABELS:
            raise ValueError(f"{path}:{number}: {label_col} {label!r} is not one of {LABELS}")
        texts.append(text)
        labels.append(label)
    return texts, labels


def choose_settings(
    embeddings: np.ndarray, texts: list[str], labels: list[str], grid: list[tuple[float, str | None]]
) -> tuple[float, str | None]:
    """(C, class_weight) with the best 5-fold cross-validated macro-F1 on the training rows."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    if len(grid) == 1:
        return grid[0]
    y = np.array(labels)
    vader = vader_features(SentimentIntensityAnalyzer(), [normalize(t) for t in texts])
    folds = list(StratifiedKFold(n_splits=5, shuffle=True, random_state=0).split(embeddings, y))
    best: tuple[float, tuple[float, str | None]] = (-1.0, grid[0])
    for c, class_weight in grid:
        scores = []
        for train_rows, test_rows in folds:
            model = train_sentiment_model(
                [texts[i] for i in train_rows],
                list(y[train_rows]),
                embeddings[train_rows],
                version="cv",
                encoder_name="cv",
                c=c,
                class_weight=class_weight,
            )
            proba = model.proba(embeddings[test_rows], vader[test_rows])
            scores.append(f1_score(y[test_rows], [model.labels[i] for i in proba.argmax(axis=1)], average="macro"))
        mean = float(np.mean(scores))
        print(f"C={c} class_weight={class_weight}: cross-validated macro-F1 {mean:.4f}", flush=True)
        if mean > best[0]:
            best = (mean, (c, class_weight))
    return best[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.triage.sentiment_train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--text-col", default="text")
    parser.add_argument("--label-col", default="sentiment")
    parser.add_argument("--c", type=float, nargs="+", default=[1.0, 3.0, 10.0], help="C values to cross-validate")
    parser.add_argument("--source", default="", help="what the data is, recorded in the artifact")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        texts, labels = read_labelled(args.data, args.text_col, args.label_col)
    except (OSError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    rows = [i for i, text in enumerate(texts) if split_of(text) == "train"]
    texts, labels = [texts[i] for i in rows], [labels[i] for i in rows]
    print(f"training rows {len(rows)} (split 'train' of {args.data.name})", flush=True)

    from services.triage.encoder import Encoder

    started = time.perf_counter()
    encoder = Encoder()
    embeddings = encoder.encode([normalize(t) for t in texts])
    print(f"embedded in {time.perf_counter() - started:.1f}s", flush=True)
    c, class_weight = choose_settings(
        embeddings, texts, labels, [(c, weight) for c in args.c for weight in (None, "balanced")]
    )
    model = train_sentiment_model(
        texts,
        labels,
        embeddings,
        version="pending",
        encoder_name=encoder.name,
        c=c,
        class_weight=class_weight,
        info={
            "trained_on": args.source or args.data.name,
            "rows": len(texts),
            "split": "md5(normalised lower-cased text) mod 10 >= 2 (services.triage.sentiment.split_of)",
            "c": c,
            "class_weight": class_weight or "none",
            "class_counts": {label: labels.count(label) for label in LABELS},
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "train_seconds": round(time.perf_counter() - started, 1),
        },
    )
    # The version names the weights: same data and settings, same version.
    model.version = "sentiment-" + hashlib.sha256(model.coef.tobytes() + model.intercept.tobytes()).hexdigest()[:12]
    args.out.write_text(model.to_json() + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes), version {model.version}, C={c} {class_weight=}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
