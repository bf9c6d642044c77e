"""Retraining the intent model through the gateway, against a real triage server:
202 with a Location to poll, progress and the result on GET, 409 while a retrain
runs, cancel, the serving version, and who may do what."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import demo
from gateway.keys import Role
from servicekit.server import serving
from services.triage.app import servicers
from services.triage.encoder import Encoder
from services.triage.settings import TriageSettings
from services.triage.train import read_examples
from tests.gateway.conftest import TENANT, Mesh, bearer, open_gateway
from tests.services.triage.test_intent_model import INTENTS

SMALL = [{"text": text, "label": label} for label, texts in INTENTS.items() for text in texts]


def demo_rows() -> list[dict[str, str]]:
    labelled = read_examples(demo.DEMO_INTENTS)
    return [{"text": t, "label": lab} for t, lab in zip(labelled.texts, labelled.labels, strict=True)]


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(torch_threads=1)


@pytest.fixture
async def gateway(mesh: Mesh, tmp_path: Path, encoder: Encoder) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway with a real triage behind it (the other backends are the mesh's doubles); no key by default."""
    settings = TriageSettings(port=0, data_dir=tmp_path / "triage", retrieval_addr="127.0.0.1:9")
    async with (
        serving(settings, lambda s: servicers(s, encoder)) as triage,
        open_gateway(mesh.settings(triage_addr=f"127.0.0.1:{triage.port}")) as client,
    ):
        yield client


async def poll(
    gateway: httpx.AsyncClient, location: str, key: str, until: Callable[[dict[str, Any]], bool], within: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        answer = await gateway.get(location, headers=bearer(key))
        assert answer.status_code == 200, answer.text
        operation: dict[str, Any] = answer.json()
        if until(operation):
            return operation
        assert time.monotonic() < deadline, f"stuck: {operation}"
        await asyncio.sleep(0.1)


async def test_retrain_answers_202_with_a_location_to_poll_until_done(gateway: httpx.AsyncClient, mesh: Mesh) -> None:
    admin, agent = mesh.key(Role.ADMIN), mesh.key(Role.AGENT)
    started = await gateway.post(
        f"/v1/tenants/{TENANT}/intent-model:retrain", json={"examples": SMALL}, headers=bearer(admin)
    )
    assert started.status_code == 202, started.text
    operation = started.json()
    location = started.headers["location"]
    assert location == f"/v1/tenants/{TENANT}/operations/{operation['id']}"
    assert operation["name"] == f"tenants/{TENANT}/operations/{operation['id']}"
    assert not operation["done"] and operation["response"] is None and operation["error"] is None
    assert operation["metadata"]["state"] in {"queued", "running"} and operation["metadata"]["examples"] == 48

    # A support lead (agent key) may watch it.
    done = await poll(gateway, location, agent, lambda o: o["done"])
    assert done["metadata"]["state"] == "succeeded" and done["metadata"]["progress_percent"] == 100
    result = done["response"]
    assert result["promoted"] and result["model_version"].startswith("v") and done["error"] is None
    assert 0 < result["validation_accuracy"] <= 1 and 0 <= result["validation_ece"] <= 1

    model = await gateway.get(f"/v1/tenants/{TENANT}/intent-model", headers=bearer(agent))
    assert model.status_code == 200
    assert model.json()["serving_version"] == model.json()["current_version"] == result["model_version"]

    listed = await gateway.get(f"/v1/tenants/{TENANT}/operations?page_size=5", headers=bearer(agent))
    assert [o["id"] for o in listed.json()["operations"]] == [operation["id"]]
    assert listed.json()["next_page_token"] is None


async def test_a_running_retrain_refuses_another_and_can_be_cancelled(gateway: httpx.AsyncClient, mesh: Mesh) -> None:
    admin = mesh.key(Role.ADMIN)
    started = await gateway.post(
        f"/v1/tenants/{TENANT}/intent-model:retrain", json={"examples": demo_rows() * 2}, headers=bearer(admin)
    )
    assert started.status_code == 202, started.text
    location, first = started.headers["location"], started.json()

    refused = await gateway.post(
        f"/v1/tenants/{TENANT}/intent-model:retrain", json={"examples": SMALL}, headers=bearer(admin)
    )
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["reason"] == "OPERATION_ALREADY_RUNNING" and first["name"] in refused.json()["detail"]

    running = await gateway.get(f"/v1/tenants/{TENANT}/operations?only_running=true", headers=bearer(admin))
    assert [o["id"] for o in running.json()["operations"]] == [first["id"]]

    await poll(gateway, location, admin, lambda o: o["done"] or o["metadata"]["step"].startswith("encoding"))
    cancelled = await gateway.post(f"{location}:cancel", headers=bearer(admin))
    assert cancelled.status_code == 200, cancelled.text
    done = await poll(gateway, location, admin, lambda o: o["done"], within=30)
    assert done["error"] == {"code": 1, "status": "CANCELLED", "message": "cancelled"}
    assert done["metadata"]["state"] == "cancelled" and done["response"] is None

    model = await gateway.get(f"/v1/tenants/{TENANT}/intent-model", headers=bearer(admin))
    assert model.json()["serving_version"] == "" and model.json()["versions"] == []


async def test_bad_examples_are_400_with_every_field(gateway: httpx.AsyncClient, mesh: Mesh) -> None:
    admin = mesh.key(Role.ADMIN)
    few = [*SMALL, {"text": "refund me", "label": "refund"}]
    retrain = f"/v1/tenants/{TENANT}/intent-model:retrain"
    answer = await gateway.post(retrain, json={"examples": few}, headers=bearer(admin))
    assert answer.status_code == 400
    assert answer.json()["errors"] == [
        {"field": "examples[48].label", "description": "label 'refund' has 1 examples; every label needs at least 5"}
    ]
    for body in ({"examples": []}, {"examples": [{"text": "", "label": "x"}]}, {"from": "corrections"}):
        answer = await gateway.post(retrain, json=body, headers=bearer(admin))
        assert answer.status_code == 400, body


@pytest.mark.parametrize(
    ("role", "method", "path", "status"),
    [
        (Role.AGENT, "POST", f"/v1/tenants/{TENANT}/intent-model:retrain", 403),
        (Role.AGENT, "POST", f"/v1/tenants/{TENANT}/operations/0a1b:cancel", 403),
        (Role.CHANNEL, "GET", f"/v1/tenants/{TENANT}/operations", 403),
        (Role.CHANNEL, "GET", f"/v1/tenants/{TENANT}/intent-model", 403),
        (Role.ADMIN, "GET", "/v1/tenants/acme/operations/0a1b", 403),
        (Role.ADMIN, "GET", f"/v1/tenants/{TENANT}/operations/0a1b", 404),
        (Role.ADMIN, "POST", f"/v1/tenants/{TENANT}/operations/0a1b:cancel", 404),
        (Role.ADMIN, "GET", f"/v1/tenants/{TENANT}/operations/not.an.id", 400),
        (Role.ADMIN, "GET", f"/v1/tenants/{TENANT}/operations?page_token=garbage", 400),
    ],
)
async def test_who_may_do_what_and_what_is_not_there(
    gateway: httpx.AsyncClient, mesh: Mesh, role: Role, method: str, path: str, status: int
) -> None:
    body = {"examples": SMALL} if path.endswith(":retrain") else None
    answer = await gateway.request(method, path, json=body, headers=bearer(mesh.key(role)))
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    if status == 404:
        assert answer.json()["reason"] == "OPERATION_NOT_FOUND"
