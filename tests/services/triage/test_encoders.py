"""The encoder set: all-mpnet-base-v2 assembled from its PyPI parts, a dual-encoder intent model
through a real server (train, save, load, predict), and models refused by a service running
another encoder set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from servicekit.errors import details_from_rpc_error
from servicekit.server import serving
from services.triage.app import encoder_cache_dir, servicers
from services.triage.encoder import MPNET_ENCODER, Encoder, EncoderSet, encoder_names, mpnet_model_path
from services.triage.intent_config import TrainConfig, Weights
from services.triage.intent_model import EncoderMismatch
from services.triage.intent_store import ModelStore
from services.triage.settings import TriageSettings
from tests.services.triage.test_intent_model import TENANT, UNUSED_RETRIEVAL, contact, retrain


@pytest.fixture(scope="module")
def dual(encoder: Encoder) -> EncoderSet:
    # The shared MiniLM plus all-mpnet-base-v2 from the machine's cache (assembled there once).
    cache = encoder_cache_dir(TriageSettings(retrieval_addr=UNUSED_RETRIEVAL))
    mpnet = Encoder(str(mpnet_model_path(cache)), torch_threads=1, name=MPNET_ENCODER)
    return EncoderSet([encoder, mpnet])


async def _stub(data_dir: Path, encoder: object) -> AsyncIterator[triage_pb2_grpc.TriageServiceStub]:
    settings = TriageSettings(port=0, data_dir=data_dir, retrieval_addr=UNUSED_RETRIEVAL)
    async with (
        serving(settings, lambda s: servicers(s, encoder)) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        yield triage_pb2_grpc.TriageServiceStub(channel)


def test_the_set_puts_each_encoders_vectors_side_by_side(dual: EncoderSet, encoder: Encoder) -> None:
    assert dual.name == "sentence-transformers/all-MiniLM-L6-v2+sentence-transformers/all-mpnet-base-v2"
    assert dual.dimensions == (384, 768)
    vectors = dual.encode(["reset my password", "export my data"])
    assert vectors.shape == (2, 1152)
    assert np.allclose(np.linalg.norm(vectors[:, :384], axis=1), 1.0, atol=1e-4)
    assert np.allclose(np.linalg.norm(vectors[:, 384:], axis=1), 1.0, atol=1e-4)
    # The sentiment model reads the first encoder's block: MiniLM's own vectors.
    assert np.allclose(dual.primary(vectors), encoder.encode(["reset my password", "export my data"]), atol=1e-5)
    assert encoder_names("minilm, mpnet") == (dual.names[0], dual.names[1])


async def test_a_dual_encoder_model_trains_saves_loads_and_predicts(tmp_path: Path, dual: EncoderSet) -> None:
    async for stub in _stub(tmp_path, dual):
        trained = await retrain(stub)
        assert trained.promoted
        before = (await stub.TriageContact(contact("I forgot my password"))).intent
        assert before.label == "password_reset" and before.confidence > 0.5
        assert before.model_version == trained.model_version
        weather = (await stub.TriageContact(contact("What will the weather be like in Paris tomorrow?"))).intent
        assert weather.confidence < 0.3 and weather.out_of_scope

    store = ModelStore.open("", tmp_path)  # the triage database the servers used
    try:
        model = store.load(TENANT, trained.model_version, encoder=dual.name)
    finally:
        store.close()
    assert model.encoder == dual.name and model.dimensions == (384, 768)
    assert len(model.embeddings) == 2 and model.bank.shape[1] == 1152

    # A restarted service reads the saved model and answers the same.
    async for stub in _stub(tmp_path, dual):
        after = (await stub.TriageContact(contact("I forgot my password"))).intent
        assert after == before


async def test_a_model_from_another_encoder_set_is_refused_until_retrained(
    tmp_path: Path, dual: EncoderSet, encoder: Encoder
) -> None:
    async for stub in _stub(tmp_path, encoder):  # MiniLM alone
        old = await retrain(stub)

    async for stub in _stub(tmp_path, dual):
        # Served as a tenant without a model: triaged and routed, no intent.
        response = await stub.TriageContact(contact("I forgot my password"))
        assert response.intent == triage_pb2.IntentPrediction()
        assert list(response.route.reason_codes) == ["no_intent_model"]

        # A retrain replaces it whatever it validated at: the old one cannot serve here.
        new = await retrain(stub)
        assert new.promoted
        assert (await stub.TriageContact(contact("I forgot my password"))).intent.model_version == new.model_version
        # ... nor can it be rolled back to.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RollbackModel(triage_pb2.RollbackModelRequest(tenant_id=TENANT, model_version=old.model_version))
        details = details_from_rpc_error(caught.value)
        assert (details.code, details.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INTENT_ENCODER_MISMATCH")
        assert "TRIAGE_INTENT_ENCODERS" in details.message

    store = ModelStore.open("", tmp_path)
    try:
        with pytest.raises(EncoderMismatch):
            store.load(TENANT, old.model_version, encoder=dual.name)
    finally:
        store.close()


def test_the_encoder_setting_is_checked_at_start_up() -> None:
    assert TriageSettings(retrieval_addr=UNUSED_RETRIEVAL).intent_encoders == "minilm,mpnet"
    assert TriageSettings(retrieval_addr=UNUSED_RETRIEVAL, intent_encoders=" minilm ").intent_encoders == "minilm"
    for bad in ("", " , ", "minilm,minilm"):
        with pytest.raises(ValueError, match="encoder"):
            TriageSettings(retrieval_addr=UNUSED_RETRIEVAL, intent_encoders=bad)


def test_ensemble_weights_follow_the_number_of_encoders() -> None:
    assert Weights.of(TrainConfig(), 1) == Weights((0.48,), (0.2,), pytest.approx(0.32), 0)
    two = Weights.of(TrainConfig(), 2)
    assert (two.embedding, two.knn, two.typicality) == ((0.15, 0.35), (0.0, 0.3), 0)
    assert two.tfidf == pytest.approx(0.2)
    assert two.needs_bank(0) and two.needs_bank(1)  # typicality on MiniLM, vote on mpnet
    with pytest.raises(ValueError, match="2 encoders need 2"):
        Weights.of(TrainConfig(embedding_weights=(0.5,), knn_weights=(0.2,)), 2)
    with pytest.raises(ValueError, match="sum to at most 1"):
        Weights.of(TrainConfig(embedding_weights=(0.9,), knn_weights=(0.2,)), 1)
