"""Retrain as a long-running operation through a real in-process triage server:
StartRetrain answers at once, GetOperation shows progress and the result,
CancelOperation stops it, a second retrain of a tenant is refused, the deprecated
Retrain still waits for its answer, and GetIntentModel says what serves."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from aftercare.operations.v1 import operations_pb2, operations_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from devstack import demo
from servicekit.errors import details_from_rpc_error
from servicekit.server import serving
from services.triage.app import servicers
from services.triage.encoder import Encoder
from services.triage.settings import TriageSettings
from services.triage.train import _remote, read_examples
from tests.services.triage.test_intent_model import examples

UNUSED_RETRIEVAL = "127.0.0.1:9"
TENANT = "acme"


@dataclass
class Triage:
    triage: triage_pb2_grpc.TriageServiceStub
    operations: operations_pb2_grpc.OperationsServiceStub
    target: str


@pytest.fixture
async def service(tmp_path: Path, encoder: Encoder) -> AsyncIterator[Triage]:
    settings = TriageSettings(port=0, data_dir=tmp_path, retrieval_addr=UNUSED_RETRIEVAL)
    async with (
        serving(settings, lambda s: servicers(s, encoder)) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        yield Triage(
            triage_pb2_grpc.TriageServiceStub(channel),
            operations_pb2_grpc.OperationsServiceStub(channel),
            f"127.0.0.1:{running.port}",
        )


def demo_examples(times: int = 1) -> list[triage_pb2.LabeledExample]:
    """Beacon's 504 labelled contact reasons (kb/demo-intents), `times` over: slow enough to watch."""
    labelled = read_examples(demo.DEMO_INTENTS)
    pairs = list(zip(labelled.texts, labelled.labels, strict=True)) * times
    return [triage_pb2.LabeledExample(text=text, label=label) for text, label in pairs]


def metadata_of(operation: operations_pb2.Operation) -> triage_pb2.RetrainMetadata:
    metadata = triage_pb2.RetrainMetadata()
    assert operation.metadata.Unpack(metadata)
    return metadata


async def poll(
    service: Triage, name: str, until: Callable[[operations_pb2.Operation], bool], within: float = 120.0
) -> tuple[operations_pb2.Operation, list[triage_pb2.RetrainMetadata]]:
    """GetOperation every 50 ms until `until` holds; the operation then and every metadata seen."""
    seen: list[triage_pb2.RetrainMetadata] = []
    deadline = time.monotonic() + within
    while True:
        operation = (await service.operations.GetOperation(operations_pb2.GetOperationRequest(name=name))).operation
        seen.append(metadata_of(operation))
        if until(operation):
            return operation, seen
        assert time.monotonic() < deadline, f"stuck: {operation}"
        await asyncio.sleep(0.05)


def done(operation: operations_pb2.Operation) -> bool:
    return operation.done


def training(operation: operations_pb2.Operation) -> bool:
    """Past loading the encoders: at a checkpoint where a cancel is heard."""
    return operation.done or metadata_of(operation).step.startswith(("encoding", "fitting", "simulating"))


async def test_start_retrain_answers_at_once_and_the_operation_ends_with_the_new_version(service: Triage) -> None:
    started = time.monotonic()
    response = await service.triage.StartRetrain(triage_pb2.StartRetrainRequest(tenant_id=TENANT, examples=examples()))
    operation = response.operation
    assert operation.name.startswith(f"tenants/{TENANT}/operations/") and not operation.done
    assert time.monotonic() - started < 5.0
    first = metadata_of(operation)
    assert first.tenant_id == TENANT and first.examples == 48
    assert first.state in (triage_pb2.RETRAIN_STATE_QUEUED, triage_pb2.RETRAIN_STATE_RUNNING)

    finished, seen = await poll(service, operation.name, done)
    assert finished.WhichOneof("result") == "response"
    result = triage_pb2.RetrainResponse()
    assert finished.response.Unpack(result)
    assert result.promoted and result.model_version.startswith("v") and 0 < result.validation_accuracy <= 1
    last = metadata_of(finished)
    assert last.state == triage_pb2.RETRAIN_STATE_SUCCEEDED and last.progress_percent == 100
    assert last.attempts == 1 and last.replica == "" and last.end_time.seconds >= last.start_time.seconds > 0
    running = [m for m in seen if m.state == triage_pb2.RETRAIN_STATE_RUNNING]
    assert all(m.replica for m in running)
    assert finished.update_time.ToDatetime() >= finished.create_time.ToDatetime()

    model = await service.triage.GetIntentModel(triage_pb2.GetIntentModelRequest(tenant_id=TENANT))
    assert model.serving_version == model.current_version == result.model_version
    assert list(model.versions) == [result.model_version] and model.replica

    listed = await service.operations.ListOperations(operations_pb2.ListOperationsRequest(tenant_id=TENANT))
    assert [o.name for o in listed.operations] == [operation.name]


async def test_progress_is_reported_while_it_trains(service: Triage) -> None:
    response = await service.triage.StartRetrain(
        triage_pb2.StartRetrainRequest(tenant_id=TENANT, examples=demo_examples())
    )
    finished, seen = await poll(service, response.operation.name, done)
    assert metadata_of(finished).state == triage_pb2.RETRAIN_STATE_SUCCEEDED
    steps = [m.step for m in seen if m.state == triage_pb2.RETRAIN_STATE_RUNNING]
    assert any(step.startswith("encoding ") and step.endswith("/504 examples") for step in steps), steps
    percents = [m.progress_percent for m in seen if m.state == triage_pb2.RETRAIN_STATE_RUNNING]
    assert percents == sorted(percents) and len(set(percents)) >= 2, percents


async def test_a_second_retrain_of_a_tenant_is_refused_while_one_runs(service: Triage) -> None:
    first = (
        await service.triage.StartRetrain(triage_pb2.StartRetrainRequest(tenant_id=TENANT, examples=demo_examples()))
    ).operation
    for call in (
        service.triage.StartRetrain(triage_pb2.StartRetrainRequest(tenant_id=TENANT, examples=examples())),
        service.triage.Retrain(triage_pb2.RetrainRequest(tenant_id=TENANT, examples=examples())),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        details = details_from_rpc_error(refused.value)
        assert details.code == grpc.StatusCode.ALREADY_EXISTS
        assert details.reason == "OPERATION_ALREADY_RUNNING" and first.name in details.message
    # Another tenant is not held up: it waits its turn (one training at a time per replica).
    other = (
        await service.triage.StartRetrain(triage_pb2.StartRetrainRequest(tenant_id="globex", examples=examples()))
    ).operation
    await service.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=first.name))
    await poll(service, first.name, done)
    finished, _ = await poll(service, other.name, done)
    assert metadata_of(finished).state == triage_pb2.RETRAIN_STATE_SUCCEEDED
    # Once its retrain is done, the tenant may retrain again.
    again = await service.triage.StartRetrain(triage_pb2.StartRetrainRequest(tenant_id=TENANT, examples=examples()))
    finished, _ = await poll(service, again.operation.name, done)
    assert metadata_of(finished).state == triage_pb2.RETRAIN_STATE_SUCCEEDED


async def test_cancel_stops_a_running_retrain_and_nothing_is_promoted(service: Triage) -> None:
    trained = await service.triage.Retrain(triage_pb2.RetrainRequest(tenant_id=TENANT, examples=examples()))
    started = (
        await service.triage.StartRetrain(triage_pb2.StartRetrainRequest(tenant_id=TENANT, examples=demo_examples(2)))
    ).operation
    running, _ = await poll(service, started.name, training)
    assert not running.done, "trained before it could be cancelled"
    asked = time.monotonic()
    cancelled = await service.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=started.name))
    assert not cancelled.operation.done and metadata_of(cancelled.operation).step == "cancelling"
    finished, _ = await poll(service, started.name, done, within=30)
    assert time.monotonic() - asked < 15
    assert finished.error.code == grpc.StatusCode.CANCELLED.value[0]
    assert metadata_of(finished).state == triage_pb2.RETRAIN_STATE_CANCELLED
    model = await service.triage.GetIntentModel(triage_pb2.GetIntentModelRequest(tenant_id=TENANT))
    assert model.serving_version == trained.model_version and list(model.versions) == [trained.model_version]
    # Cancelling what is done changes nothing.
    again = await service.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=started.name))
    assert again.operation == finished


async def test_a_queued_retrain_is_cancelled_at_once(service: Triage) -> None:
    busy = (
        await service.triage.StartRetrain(triage_pb2.StartRetrainRequest(tenant_id=TENANT, examples=demo_examples()))
    ).operation
    await poll(service, busy.name, training)
    waiting = (
        await service.triage.StartRetrain(triage_pb2.StartRetrainRequest(tenant_id="globex", examples=examples()))
    ).operation
    assert metadata_of(waiting).state == triage_pb2.RETRAIN_STATE_QUEUED
    cancelled = await service.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=waiting.name))
    assert cancelled.operation.done and cancelled.operation.error.code == grpc.StatusCode.CANCELLED.value[0]
    assert metadata_of(cancelled.operation).attempts == 0
    running = await service.operations.ListOperations(
        operations_pb2.ListOperationsRequest(tenant_id="globex", only_running=True)
    )
    assert list(running.operations) == []
    await service.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=busy.name))
    await poll(service, busy.name, done)


async def test_start_retrain_refuses_bad_examples_as_retrain_does(service: Triage) -> None:
    bad = [triage_pb2.LabeledExample(text="   ", label="billing"), *examples()[1:]]
    answers = []
    for call in (
        service.triage.StartRetrain(triage_pb2.StartRetrainRequest(tenant_id="a b", examples=bad)),
        service.triage.Retrain(triage_pb2.RetrainRequest(tenant_id="a b", examples=bad)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        answers.append(details_from_rpc_error(refused.value))
    assert answers[0].code == answers[1].code == grpc.StatusCode.INVALID_ARGUMENT
    assert answers[0].field_violations == answers[1].field_violations
    assert {name for name, _ in answers[0].field_violations} >= {"tenant_id", "examples[0].text"}
    listed = await service.operations.ListOperations(operations_pb2.ListOperationsRequest(tenant_id=TENANT))
    assert list(listed.operations) == []


async def test_get_intent_model_of_a_tenant_without_one(service: Triage) -> None:
    model = await service.triage.GetIntentModel(triage_pb2.GetIntentModelRequest(tenant_id="nobody"))
    assert model.serving_version == model.current_version == "" and list(model.versions) == []
    assert not model.HasField("loaded_at") and model.replica
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await service.triage.GetIntentModel(triage_pb2.GetIntentModelRequest(tenant_id=""))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_cli_starts_the_operation_and_prints_its_progress(
    service: Triage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "examples.jsonl"
    data.write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n" for e in examples()))
    args = argparse.Namespace(target=service.target, tenant=TENANT, file=data, timeout=300.0)
    assert await _remote(args, read_examples(data)) == 0
    out = capsys.readouterr().out
    assert f"operation tenants/{TENANT}/operations/" in out and "48 examples" in out
    assert "  0% queued" in out and "promoted: it serves now" in out
