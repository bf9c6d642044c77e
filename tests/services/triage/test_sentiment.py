"""The trained sentiment model: the shipped artifact, scoring, the split it was
trained on, the training CLI and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aftercare.triage.v1 import triage_pb2
from services.triage import sentiment
from services.triage.encoder import Encoder
from services.triage.sentiment import (
    LABELS,
    SentimentModel,
    SentimentScorer,
    normalize,
    split_of,
)
from services.triage.sentiment_train import main as train_main
from services.triage.settings import TriageSettings

NEG, NEU, POS = (
    triage_pb2.SENTIMENT_LABEL_NEGATIVE,
    triage_pb2.SENTIMENT_LABEL_NEUTRAL,
    triage_pb2.SENTIMENT_LABEL_POSITIVE,
)


# A tenant's own labelled messages (written for these tests): what the training command takes.
LABELLED = {
    "negative": [
        "This is ridiculous, the app crashed again and I lost my work.",
        "Worst support ever, nobody answers and my account is still locked.",
        "I am furious, you charged me twice and refuse to refund it.",
        "Your update broke everything, I am sick of this.",
        "Terrible experience, the export fails every single time.",
        "I waited three days for an answer, this is unacceptable.",
        "The service is down again, we are losing money because of you.",
        "Awful, the new version deleted my dashboards.",
        "Stop sending me spam, I already cancelled and you still bill me.",
        "Nothing works, I regret paying for this garbage.",
        "Your agent was rude and hung up on me.",
        "I hate how slow and buggy the mobile app is.",
        "Disappointed again, the sync lost half my contacts.",
        "Completely useless, the login loops forever.",
        "I'm angry, my order never arrived and no one cares.",
        "This outage ruined our launch, very bad.",
    ],
    "neutral": [
        "How do I export my data to CSV?",
        "What time does the support line open on Sundays?",
        "Where can I find my invoice for October?",
        "Can I change the email address on my account?",
        "Is there an API endpoint for listing users?",
        "Which plan includes single sign-on?",
        "How many seats does the team plan have?",
        "Do you support two-factor authentication?",
        "I need to update my billing address.",
        "What is the file size limit for uploads?",
        "How do I add a webhook?",
        "Can I schedule reports every Monday?",
        "Where are the release notes for version 4.3?",
        "Please send me the link to reset my password.",
        "Does the desktop app run on Linux?",
        "What are your data retention rules?",
    ],
    "positive": [
        "Thanks so much, that fixed it! Great support.",
        "Love the new dashboards, thank you!",
        "Amazing, the import worked perfectly.",
        "You are awesome, problem solved in minutes.",
        "Really happy with the new release, well done.",
        "Great job on the mobile app, it is so fast now.",
        "Thank you for the quick refund, much appreciated.",
        "Excellent service as always, thanks team.",
        "Perfect, that is exactly what I needed.",
        "Wonderful help from your agent today, thank you!",
        "The new search is fantastic, love it.",
        "Brilliant, everything synced at last. Thanks!",
        "Super helpful answer, you made my day.",
        "Best support team I have dealt with, cheers.",
        "Great, it works now. Thanks a lot!",
        "So pleased with the upgrade, thank you.",
    ],
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sentiment")
    data = folder / "labelled.jsonl"
    data.write_text(
        "".join(json.dumps({"text": t, "sentiment": label}) + "\n" for label, ts in LABELLED.items() for t in ts)
    )
    out = folder / "model.json"
    assert train_main(["--data", str(data), "--c", "3", "--source", "tests", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def scorer(trained: Path, encoder: Encoder) -> SentimentScorer:
    return SentimentScorer.from_setting(str(trained), encoder.encode)


def test_a_trained_model_is_small_versioned_and_says_what_it_learnt_from(trained: Path) -> None:
    assert trained.stat().st_size < 20_000
    model = SentimentModel.load(trained)
    assert model.version.startswith("sentiment-")
    assert model.labels == list(LABELS)
    assert model.coef.shape == (3, 384 + 4)
    assert model.encoder == "sentence-transformers/all-MiniLM-L6-v2"
    assert model.info["trained_on"] == "tests" and 0 < model.info["rows"] < 48


def test_the_default_is_the_lexicon_no_weights_ship() -> None:
    assert TriageSettings(port=0, retrieval_addr="x:1").sentiment_model == "vader"
    assert not list(Path(sentiment.__file__).parent.glob("*sentiment*.json"))


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("This is ridiculous. Your product is garbage, it broke again and I am furious.", NEG),
        ("My flight was cancelled and nobody answers the phone. Worst service ever.", NEG),
        ("Thanks so much, that fixed it! Great support, really happy.", POS),
        ("How do I export data to S3?", NEU),
        ("What time does the support line open on Sundays?", NEU),
    ],
)
def test_customer_messages_get_the_right_polarity(scorer: SentimentScorer, text: str, label: int) -> None:
    ((got, score),) = scorer.scores([text])
    assert got == label
    assert -1.0 <= score <= 1.0
    if label == NEG:
        assert score < -0.5
    if label == POS:
        assert score > 0.5


def test_the_score_of_two_messages_gives_the_trajectory(scorer: SentimentScorer) -> None:
    sentiment = scorer.score(["Love the new dashboards, thank you!", "It crashed again, I lost my work, I am fed up."])
    assert sentiment.label == NEG
    assert sentiment.trajectory < -1.0
    single = scorer.score(["It crashed again, I lost my work, I am fed up."])
    assert single.trajectory == 0.0 and single.score == sentiment.score


def test_precomputed_embeddings_give_the_same_answer(scorer: SentimentScorer, encoder: Encoder) -> None:
    texts = ["great, thanks @support!", "this is broken https://x.example/1"]
    embeddings = encoder.encode(scorer.ends(texts))
    assert scorer.score(texts, embeddings) == scorer.score(texts)


def test_lexicon_only_mode_needs_no_model(encoder: Encoder) -> None:
    vader = SentimentScorer.from_setting("vader", encoder.encode)
    assert vader.version == "vader" and vader.model is None
    assert vader.score(["I love it"]).label == POS
    assert vader.score(["I hate it"]).label == NEG


def test_a_broken_model_file_fails_at_start_up(tmp_path: Path, encoder: Encoder) -> None:
    broken = tmp_path / "model.json"
    broken.write_text(json.dumps({"format": 1, "labels": ["good", "bad"], "coef": [], "intercept": []}))
    with pytest.raises(ValueError, match="labels"):
        SentimentScorer.from_setting(str(broken), encoder.encode)
    with pytest.raises(FileNotFoundError):
        SentimentScorer.from_setting(str(tmp_path / "missing.json"), encoder.encode)


def test_the_json_round_trip_keeps_predictions(trained: Path) -> None:
    model = SentimentModel.load(trained)
    again = SentimentModel.from_json(model.to_json())
    rng = np.random.default_rng(0)
    emb, vader = rng.normal(size=(5, 384)).astype(np.float32), rng.uniform(size=(5, 4)).astype(np.float32)
    assert np.allclose(model.proba(emb, vader), again.proba(emb, vader), atol=1e-5)


def test_the_split_is_by_content_so_retweets_stay_on_one_side() -> None:
    texts = [f"@united flight {i} was late" for i in range(2000)]
    share = sum(split_of(t) == "test" for t in texts) / len(texts)
    assert 0.17 < share < 0.23
    assert split_of("@united my bag is lost  http://t.co/x") == split_of("@delta my bag is lost http://t.co/y")
    assert normalize("@united  my bag  http://t.co/x") == "@user my bag http"


POSITIVE = ["thank you so much", "great service today", "love this airline", "the crew was wonderful",
            "best flight ever", "amazing support, thanks", "so happy with the upgrade", "perfect trip, thank you"]
NEGATIVE = ["my bag is lost again", "worst airline ever", "flight delayed four hours, awful", "rude staff, terrible",
            "cancelled flight and no help", "I am furious about this", "horrible customer service", "never again"]
NEUTRAL = ["what time does boarding start", "is there wifi on this flight", "how do I change my seat",
           "which terminal for flight 12", "can I bring a stroller", "do you fly to Denver",
           "where do I find my booking code", "how many bags can I check"]


def _write(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_the_cli_trains_from_labelled_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "labelled.jsonl"
    rows = [{"text": t, "sentiment": label} for label, texts in
            (("positive", POSITIVE), ("negative", NEGATIVE), ("neutral", NEUTRAL)) for t in texts * 3]
    _write(data, [{**row, "text": f"{row['text']} #{i}"} for i, row in enumerate(rows)])
    out = tmp_path / "model.json"

    assert train_main(["--data", str(data), "--c", "1", "--source", "test rows", "--out", str(out)]) == 0

    model = SentimentModel.load(out)
    assert model.info["trained_on"] == "test rows"
    # Only the "train" side of the split was used.
    assert model.info["rows"] == sum(split_of(row["text"]) == "train" for row in map(json.loads, data.open()))
    assert "wrote" in capsys.readouterr().out


def test_the_cli_names_the_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "labelled.jsonl"
    _write(data, [{"text": "fine", "sentiment": "neutral"}, {"text": "meh", "sentiment": "angry"}])
    assert train_main(["--data", str(data), "--out", str(tmp_path / "m.json")]) == 2
    assert f"{data}:2: sentiment 'angry' is not one of" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()
