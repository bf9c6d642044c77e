"""Intent models through a real in-process server: Retrain, predict, calibration,
out-of-scope, the promotion rule, persistence, rollback and bad input."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from aftercare.type.v1 import conversation_pb2, customer_pb2
from servicekit.errors import details_from_rpc_error
from servicekit.server import serving
from services.triage.app import servicers
from services.triage.encoder import Encoder
from services.triage.intent_model import Bank, IntentModel
from services.triage.intent_store import ModelStore
from services.triage.intent_training import train_intent_model
from services.triage.settings import TriageSettings
from services.triage.train import EXIT_BAD_INPUT, FileProblems, _remote, main, read_examples

# Nothing listens there: these tests never reach Tier 0's retrieval call.
UNUSED_RETRIEVAL = "127.0.0.1:9"

TENANT = "acme"

# Four intents, twelve phrasings each: small enough to train in well under a second.
INTENTS: dict[str, list[str]] = {
    "billing_issue": [
        "I was charged twice on my invoice",
        "my bill is wrong this month",
        "why is my invoice so high",
        "double charge on my card for the subscription",
        "the invoice amount is incorrect",
        "you billed me for seats I removed",
        "I was charged after I downgraded",
        "there is an unexpected fee on my statement",
        "refund the extra charge on my bill",
        "the price on my invoice does not match the plan",
        "my credit card was billed two times",
        "I see a charge I don't recognise from you",
    ],
    "password_reset": [
        "I forgot my password",
        "how do I reset my password",
        "the password reset email never arrives",
        "I can't log in and need a new password",
        "my password reset link expired",
        "locked out after too many password attempts",
        "how can I change my login password",
        "reset password is not working",
        "I need to recover my account password",
        "the reset code for my password is invalid",
        "I keep getting wrong password when I sign in",
        "send me a new password reset link",
    ],
    "export_data": [
        "how do I export my data to csv",
        "download all my reports",
        "export the dashboard to excel",
        "can I get a dump of all my data",
        "export the list of users",
        "bulk export of tickets please",
        "where is the export button",
        "I want to download my records as a spreadsheet",
        "export failed halfway through the file",
        "can I schedule a daily csv export",
        "how do I get my data out as json",
        "the exported file is missing columns",
    ],
    "webhooks": [
        "how do I set up webhooks",
        "webhook deliveries are failing with 500",
        "configure a webhook endpoint",
        "how does webhook signature verification work",
        "retry the failed webhook events",
        "what is the webhook payload format",
        "add a webhook for new orders",
        "my webhook URL is not receiving events",
        "webhook calls time out",
        "can webhooks send to two endpoints",
        "disable a webhook temporarily",
        "webhook secret rotation",
    ],
}


def examples(intents: dict[str, list[str]] = INTENTS) -> list[triage_pb2.LabeledExample]:
    return [triage_pb2.LabeledExample(text=text, label=label) for label, texts in intents.items() for text in texts]


def contact(text: str, tenant: str = TENANT) -> triage_pb2.TriageContactRequest:
    return triage_pb2.TriageContactRequest(
        customer=customer_pb2.CustomerRef(tenant_id=tenant, customer_id="c-1"),
        conversation=conversation_pb2.Conversation(
            conversation_id="conv-1",
            messages=[conversation_pb2.Message(role=conversation_pb2.ROLE_CUSTOMER, text=text)],
        ),
    )


async def _stub(data_dir: Path, encoder: Encoder) -> AsyncIterator[triage_pb2_grpc.TriageServiceStub]:
    settings = TriageSettings(port=0, data_dir=data_dir, retrieval_addr=UNUSED_RETRIEVAL)
    async with (
        serving(settings, lambda s: servicers(s, encoder)) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        stub = triage_pb2_grpc.TriageServiceStub(channel)
        stub.target = f"127.0.0.1:{running.port}"  # type: ignore[attr-defined]
        yield stub


@pytest.fixture
async def stub(tmp_path: Path, encoder: Encoder) -> AsyncIterator[triage_pb2_grpc.TriageServiceStub]:
    async for item in _stub(tmp_path, encoder):
        yield item


async def retrain(stub: triage_pb2_grpc.TriageServiceStub, items=None, tenant: str = TENANT):  # type: ignore[no-untyped-def]
    return await stub.Retrain(triage_pb2.RetrainRequest(tenant_id=tenant, examples=items or examples()))


async def test_retrain_then_predict_with_calibrated_confidence_and_alternatives(
    stub: triage_pb2_grpc.TriageServiceStub,
) -> None:
    trained = await retrain(stub)
    assert trained.promoted
    assert trained.model_version.startswith("v")
    assert 0.0 <= trained.validation_accuracy <= 1.0 and 0.0 <= trained.validation_ece <= 1.0

    for text, label in [
        ("I got charged two times for the same month", "billing_issue"),
        ("please help me reset my password", "password_reset"),
        ("how can I export everything to a csv file", "export_data"),
        ("my webhook endpoint gets no events", "webhooks"),
    ]:
        intent = (await stub.TriageContact(contact(text))).intent
        assert intent.label == label
        assert intent.model_version == trained.model_version
        assert 0.5 < intent.confidence <= 1.0
        assert not intent.out_of_scope
        assert len(intent.alternatives) == 3
        assert label not in {a.label for a in intent.alternatives}
        confidences = [a.confidence for a in intent.alternatives]
        assert all(0.0 <= c <= 1.0 for c in confidences)
        assert confidences == sorted(confidences, reverse=True)
        assert intent.confidence + sum(confidences) <= 1.0 + 1e-6


async def test_a_message_unlike_the_taxonomy_gets_low_confidence_and_is_out_of_scope(
    stub: triage_pb2_grpc.TriageServiceStub,
) -> None:
    await retrain(stub)
    in_scope = (await stub.TriageContact(contact("I was billed twice this month"))).intent
    for text in ("What will the weather be like in Paris tomorrow?", "my cat keeps sneezing, should I see a vet"):
        response = await stub.TriageContact(contact(text))
        assert response.intent.confidence < 0.3 < in_scope.confidence
        assert response.intent.out_of_scope
        assert response.route.tier == triage_pb2.TIER_AI_ASSISTED
        assert list(response.route.reason_codes) == ["intent_out_of_scope"]


async def test_a_worse_retrain_is_not_promoted_and_the_old_version_keeps_serving(
    stub: triage_pb2_grpc.TriageServiceStub,
) -> None:
    good = await retrain(stub)
    # Agents mislabelled a batch: every label rotated to the next intent's phrasings.
    labels = list(INTENTS)
    rotated = {labels[(i + 1) % len(labels)]: INTENTS[label][:6] + INTENTS[labels[i - 1]][6:] for i, label in
               enumerate(labels)}
    bad = await retrain(stub, examples(rotated))

    assert not bad.promoted
    assert bad.validation_accuracy < good.validation_accuracy
    intent = (await stub.TriageContact(contact("I forgot my password"))).intent
    assert intent.model_version == good.model_version
    assert intent.label == "password_reset"


async def test_models_persist_across_a_restart(tmp_path: Path, encoder: Encoder) -> None:
    async for stub in _stub(tmp_path, encoder):
        trained = await retrain(stub)
        before = (await stub.TriageContact(contact("export my tickets as csv"))).intent

    # In the triage database (the embedded default: <data_dir>/triage.db), not in files beside it.
    store = ModelStore.open("", tmp_path)
    try:
        pointer = store.pointer(TENANT)
        assert pointer is not None and pointer.version == trained.model_version
        assert store.versions(TENANT) == [trained.model_version]
    finally:
        store.close()
    assert not (tmp_path / "triage").exists()

    async for stub in _stub(tmp_path, encoder):
        after = (await stub.TriageContact(contact("export my tickets as csv"))).intent
        assert after == before
        # Another tenant has no model of its own.
        other = await stub.TriageContact(contact("export my tickets as csv", tenant="globex"))
        assert other.intent == triage_pb2.IntentPrediction()
        assert list(other.route.reason_codes) == ["no_intent_model"]


async def test_rollback_restores_the_previous_version(stub: triage_pb2_grpc.TriageServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RollbackModel(triage_pb2.RollbackModelRequest(tenant_id=TENANT))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    first = await retrain(stub)
    second = await retrain(stub)  # same data, same validation: promoted
    assert second.promoted and second.model_version != first.model_version
    assert (await stub.TriageContact(contact("reset my password"))).intent.model_version == second.model_version

    back = await stub.RollbackModel(triage_pb2.RollbackModelRequest(tenant_id=TENANT))
    assert (back.model_version, back.previous_version) == (first.model_version, second.model_version)
    assert (await stub.TriageContact(contact("reset my password"))).intent.model_version == first.model_version

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RollbackModel(triage_pb2.RollbackModelRequest(tenant_id=TENANT))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    forward = await stub.RollbackModel(
        triage_pb2.RollbackModelRequest(tenant_id=TENANT, model_version=second.model_version)
    )
    assert forward.model_version == second.model_version
    assert (await stub.TriageContact(contact("reset my password"))).intent.model_version == second.model_version

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RollbackModel(
            triage_pb2.RollbackModelRequest(tenant_id=TENANT, model_version="v20200101T000000Z-abcdef")
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def _with(index: int, text: str | None = None, label: str | None = None) -> list[triage_pb2.LabeledExample]:
    items = examples()
    if text is not None:
        items[index].text = text
    if label is not None:
        items[index].label = label
    return items


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            triage_pb2.RetrainRequest(tenant_id=TENANT, examples=examples({"billing_issue": INTENTS["billing_issue"]})),
            [("examples", "needs examples of at least 2 labels, got 1")],
        ),
        (
            triage_pb2.RetrainRequest(
                tenant_id=TENANT,
                examples=[*examples(), *examples({"refund": ["refund me", "I want my money back"]})],
            ),
            [("examples[48].label", "label 'refund' has 2 examples; every label needs at least 5")],
        ),
        (
            triage_pb2.RetrainRequest(tenant_id=TENANT, examples=_with(12, label="")),
            [("examples[12].label", "required")],
        ),
        (
            triage_pb2.RetrainRequest(tenant_id=TENANT, examples=_with(3, text="   ")),
            [("examples[3].text", "required")],
        ),
        (
            triage_pb2.RetrainRequest(tenant_id=TENANT, examples=_with(7, label=" webhooks")),
            [("examples[7].label", "no surrounding spaces, at most 128 characters")],
        ),
        (
            triage_pb2.RetrainRequest(tenant_id="", examples=_with(40, text="x" * 8001)),
            [("tenant_id", "required"), ("examples[40].text", "at most 8000 characters")],
        ),
        (
            triage_pb2.RetrainRequest(tenant_id="../etc", examples=examples()),
            [("tenant_id", "only letters, digits, '.', '_', ':', '@' or '-'")],
        ),
    ],
)
async def test_bad_retrain_requests_name_every_bad_field(
    stub: triage_pb2_grpc.TriageServiceStub, request_: triage_pb2.RetrainRequest, expected: list[tuple[str, str]]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Retrain(request_)
    details = details_from_rpc_error(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.field_violations == expected
    # Nothing was trained: the tenant still has no model.
    assert (await stub.TriageContact(contact("hello"))).intent == triage_pb2.IntentPrediction()


async def test_rollback_validates_its_request(stub: triage_pb2_grpc.TriageServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RollbackModel(triage_pb2.RollbackModelRequest(tenant_id="", model_version="latest"))
    details = details_from_rpc_error(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in details.field_violations] == ["tenant_id", "model_version"]


# --- the CLI ------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_file_errors_name_the_line(tmp_path: Path) -> None:
    csv_file = _write(tmp_path / "ex.csv", 'text,label\nhello,greet\n"only one field"\n,greet\nbye,\n')
    with pytest.raises(FileProblems) as caught:
        read_examples(csv_file)
    assert caught.value.problems == [
        f"{csv_file}:3: 1 fields, header has 2",
        f"{csv_file}:4: text is empty or not a string",
        f"{csv_file}:5: label is empty or not a string",
    ]
    no_label = _write(tmp_path / "h.csv", "text,intent\nhello,greet\n")
    with pytest.raises(FileProblems, match=r"h\.csv:1: header lacks 'label'"):
        read_examples(no_label)
    jsonl = _write(tmp_path / "ex.jsonl", '{"text": "hi", "label": "greet"}\n{"text": "hi"}\n{oops\n\n[1]\n')
    with pytest.raises(FileProblems) as caught:
        read_examples(jsonl)
    assert caught.value.problems[0] == f"{jsonl}:2: missing 'label'"
    assert caught.value.problems[1].startswith(f"{jsonl}:3: not valid JSON")
    assert caught.value.problems[2] == f"{jsonl}:5: expected a JSON object"


def test_cli_trains_offline_into_a_model_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI loads the encoders its settings name: MiniLM alone keeps this test fast.
    monkeypatch.setenv("TRIAGE_INTENT_ENCODERS", "minilm")
    rows = [{"text": e.text, "label": e.label} for e in examples()]
    data = _write(tmp_path / "ex.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    assert main(["--model-dir", str(tmp_path / "data"), "--tenant", TENANT, str(data)]) == 0
    assert "promoted" in capsys.readouterr().out
    store = ModelStore.open("", tmp_path / "data")
    try:
        pointer = store.pointer(TENANT)
        assert pointer is not None and set(store.load(TENANT, pointer.version).labels) == set(INTENTS)
    finally:
        store.close()

    bad = _write(tmp_path / "bad.csv", "text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows[:12]))
    assert main(["--model-dir", str(tmp_path / "data"), "--tenant", TENANT, str(bad)]) == EXIT_BAD_INPUT
    assert "examples: needs examples of at least 2 labels" in capsys.readouterr().err


async def test_cli_maps_service_violations_to_file_lines(
    stub: triage_pb2_grpc.TriageServiceStub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [f"{e.text},{e.label}\n" for e in examples()] + ["refund me,refund\n"]
    data = _write(tmp_path / "ex.csv", "text,label\n" + "".join(rows))
    target = stub.target  # type: ignore[attr-defined]
    args = argparse.Namespace(target=target, tenant=TENANT, file=data, timeout=60.0)
    code = await _remote(args, read_examples(data))
    assert code == EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == (
        f"{data}:50: examples[48].label: label 'refund' has 1 examples; every label needs at least 5"
    )


# --- nearest-neighbour pieces and old model files ------------------------------------


def test_the_bank_finds_each_labels_nearest_example_like_brute_force() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = rng.integers(0, 4, size=40)
    labels[labels == 3] = 2  # label 3 has no example
    queries = vectors[:5] + 0.1
    bank = Bank.of(vectors, labels, n_labels=4)

    best = bank.best(queries)
    sims = queries @ vectors.T
    for label in range(3):
        assert np.allclose(best[:, label], sims[:, labels == label].max(axis=1), atol=1e-6)
    assert (best[:, 3] == -1.0).all()
    mean, std = bank.typicality()
    own = []
    for row in range(40):
        same = [j for j in range(40) if labels[j] == labels[row] and j != row]
        own.append(max(float(vectors[row] @ vectors[j]) for j in same))
    own_arr = np.array(own)
    for label in range(3):
        assert mean[label] == pytest.approx(own_arr[labels == label].mean(), abs=1e-5)
        assert std[label] == pytest.approx(max(own_arr[labels == label].std(), 0.02), abs=1e-5)
    assert mean[3] == 0.5  # no examples: the broad default


def test_a_format_1_model_still_loads_and_serves(tmp_path: Path, encoder: Encoder) -> None:
    texts = [t for ts in INTENTS.values() for t in ts]
    labels = [label for label, ts in INTENTS.items() for _ in ts]
    model = train_intent_model(texts, labels, encoder.encode, version="v20261124T101500Z-3fa2c1", encoder_name="m")
    model.save(tmp_path / "m")
    # What the release before last wrote: one encoder, no typicality arrays, no vote, raw similarity.
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["format"] = 1
    meta["embedding_weight"] = 0.6
    for key in ("knn_tau", "dimensions", "embedding_weights", "knn_weights", "tfidf_weight", "typicality_encoder"):
        del meta[key]
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with np.load(tmp_path / "m" / "arrays.npz") as arrays:
        kept = {
            k.removesuffix("_0") if k.startswith("embedding_") else k: arrays[k]
            for k in arrays.files
            if not k.startswith("typical_")
        }
    assert {"embedding_coef", "embedding_intercept"} <= set(kept)
    np.savez_compressed(tmp_path / "m" / "arrays.npz", **kept)

    old = IntentModel.load(tmp_path / "m")
    assert old.weights.knn == (0.0,) and (old.typical_std == 1.0).all()
    assert old.weights.embedding == (0.6,) and old.weights.tfidf == pytest.approx(0.4)
    (prediction,) = old.predict(encoder.encode(["export my tickets as csv"]), ["export my tickets as csv"])
    assert prediction.label == "export_data"
