"""Random and hostile requests to every RPC of the actions service (the fields the
mesh's fuzz test sends, plus hostile arguments JSON): a clean status every time,
never INTERNAL or UNKNOWN, and nothing written to the company's system."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from aftercare.actions.v1 import actions_pb2
from tests.fuzz.test_grpc_fuzz import HOSTILE_STRINGS, random_message
from tests.services.actions.conftest import (
    TENANT,
    TOKEN,
    RunningOffice,
    Stub,
    acme_catalog,
    running_stub,
    settings_for,
    verify,
    write_catalog,
)

SEED = 20261207
EXAMPLES = 25
HOSTILE_ARGUMENTS = [
    "", "null", "[]", "1e999", '{"order_id": "."}', '{"order_id": ".."}', '{"order_id": "O-1/../../admin"}',
    '{"order_id": "O-1", "reason": "late", "reason2": 1}', '{"order_id": ' + "[" * 500 + "]" * 500 + "}",
    '{"email": "ann@example.com"}', '{"customer_id": "c-bob"}', '{"order_id": "O-1", "reason": "late"}',
    json.dumps({"order_id": "O-1\u0000", "reason": "late"}), "{" * 100_000,
]


@pytest.fixture
async def stub(tmp_path: Path, back_office: RunningOffice, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stub]:
    monkeypatch.setenv("ACME_TOKEN", TOKEN)
    catalogs = write_catalog(tmp_path / "catalogs", acme_catalog(back_office.url))
    async with running_stub(settings_for(tmp_path, catalogs)) as running:
        yield running


async def test_hostile_requests_get_clean_statuses(stub: Stub, back_office: RunningOffice) -> None:
    rng = random.Random(SEED)
    await verify(stub, "conv-1")
    (service,) = actions_pb2.DESCRIPTOR.services_by_name.values()
    codes: dict[str, set[str]] = {}
    for method in service.methods:
        handler = getattr(stub, method.name)
        for _ in range(EXAMPLES):
            request = random_message(method.input_type._concrete_class, rng)
            # Often a real tenant, conversation and tool, so the checks behind validation run too.
            if rng.random() < 0.6:
                for name, value in (("tenant_id", TENANT), ("conversation_id", "conv-1"),
                                    ("tool", rng.choice(["get_order", "refund_order", "find_customer", "x"]))):
                    if name in method.input_type.fields_by_name:
                        setattr(request, name, value)
                if "customer" in method.input_type.fields_by_name:
                    request.customer.tenant_id = TENANT
                    request.customer.customer_id = rng.choice(["c-ann", "c-bob", ""])
                if "actor" in method.input_type.fields_by_name:
                    request.actor.CopyFrom(actions_pb2.Actor(kind=actions_pb2.ACTOR_KIND_ASSISTANT))
                if "request_id" in method.input_type.fields_by_name:
                    request.request_id = f"r-{rng.randrange(10**6)}"
                    request.replaces_action_id = ""
            if "arguments_json" in method.input_type.fields_by_name:
                request.arguments_json = rng.choice([*HOSTILE_ARGUMENTS, *HOSTILE_STRINGS])
            try:
                if method.server_streaming:
                    [_ async for _ in handler(request, timeout=30)]
                else:
                    await handler(request, timeout=30)
                code = "OK"
            except grpc.aio.AioRpcError as error:
                code = error.code().name
                assert "Traceback" not in (error.details() or "")
            codes.setdefault(method.name, set()).add(code)
    # The hostile arguments reached the checks behind validation too.
    assert codes["ProposeAction"] - {"INVALID_ARGUMENT"} and codes["ExecuteRead"] - {"INVALID_ARGUMENT"}, codes
    bad = {name: found & {"INTERNAL", "UNKNOWN"} for name, found in codes.items() if found & {"INTERNAL", "UNKNOWN"}}
    assert bad == {}, codes
    # Random proposals may exist; none was confirmed with its fingerprint, so nothing ran.
    assert back_office.office.writes() == []
