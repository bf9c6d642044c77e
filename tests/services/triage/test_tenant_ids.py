"""A tenant id of the shared grammar with ':' (servicekit.ids) trains and serves an
intent model; its models are stored under that id, and it survives a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aftercare.triage.v1 import triage_pb2
from services.triage.intent_store import ModelStore
from tests.services.triage.test_intent_model import _stub, contact, retrain

TENANT = "acme:eu"


async def test_a_tenant_with_a_colon_trains_and_gets_an_intent(tmp_path: Path, encoder: Any) -> None:
    async for stub in _stub(tmp_path, encoder):
        trained = await retrain(stub, tenant=TENANT)
        assert trained.promoted
        intent = (await stub.TriageContact(contact("please help me reset my password", tenant=TENANT))).intent
        assert intent.label == "password_reset"
        assert intent.model_version == trained.model_version
        # Another tenant still has none.
        assert (await stub.TriageContact(contact("reset my password", tenant="acme"))).intent == (
            triage_pb2.IntentPrediction()
        )
    store = ModelStore.open("", tmp_path)
    try:
        assert store.versions(TENANT) == [trained.model_version]
        assert store.versions("acme") == []
    finally:
        store.close()
    async for stub in _stub(tmp_path, encoder):
        intent = (await stub.TriageContact(contact("I forgot my password", tenant=TENANT))).intent
        assert intent.model_version == trained.model_version
