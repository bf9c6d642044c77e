"""The company's system down, slow or answering badly mid-action; dry-run; expired
proposals; catalogs that point where they must not."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from aftercare.actions.v1 import actions_pb2
from servicekit.errors import details_from_rpc_error
from tests.services.actions.conftest import (
    TENANT,
    TOKEN,
    RunningOffice,
    acme_catalog,
    confirm,
    events,
    kinds,
    propose,
    running_stub,
    settings_for,
    state,
    verify,
    write_catalog,
)


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_TOKEN", TOKEN)


def _catalog(tmp_path: Path, base_url: str, **changes: Any) -> Path:
    return write_catalog(tmp_path / "catalogs", acme_catalog(base_url, **changes))


async def test_back_office_down_is_an_honest_retryable_error_and_nothing_half_done(
    tmp_path: Path, back_office: RunningOffice
) -> None:
    async with running_stub(settings_for(tmp_path, _catalog(tmp_path, back_office.url))) as stub:
        await verify(stub, "conv-1")
        action = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "late"})
        back_office.office.mode = "503"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await confirm(stub, action)
        error = details_from_rpc_error(caught.value)
        assert error.code == grpc.StatusCode.UNAVAILABLE and error.reason == "CONNECTOR_UNAVAILABLE"
        assert "nothing was changed" in error.message and "Traceback" not in error.message
        stored = (await stub.GetAction(actions_pb2.GetActionRequest(tenant_id=TENANT, action_id=action.action_id)))
        assert state(stored.action) == "RETRYABLE" and stored.action.error.reason == "CONNECTOR_UNAVAILABLE"
        assert back_office.office.effects == [] and back_office.office.orders["O-1"]["status"] == "paid"
        # Back up: the customer's repeated yes (or the reconciler, for a 5xx) runs it, once, same key.
        back_office.office.mode = "ok"
        done = await confirm(stub, action)
        for _ in range(50):
            if state(done) == "SUCCEEDED":
                break
            await asyncio.sleep(0.1)
            done = (await stub.GetAction(actions_pb2.GetActionRequest(tenant_id=TENANT,
                                                                      action_id=action.action_id))).action
        assert state(done) == "SUCCEEDED" and back_office.office.effects == ["O-1"]
        keys = {key for _, _, key in back_office.office.writes()}
        assert keys == {action.idempotency_key}
        trail = kinds(await events(stub, action_id=action.action_id))
        assert "FAILED" in trail and trail[-1] in ("EXECUTED", "RECONCILED")


async def test_back_office_unreachable_leaves_the_action_retryable_and_cancellable(
    tmp_path: Path, back_office: RunningOffice
) -> None:
    async with running_stub(settings_for(tmp_path, _catalog(tmp_path, back_office.url))) as stub:
        await verify(stub, "conv-1")
        action = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "late"})
        back_office.stop()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await confirm(stub, action)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        stored = (await stub.GetAction(actions_pb2.GetActionRequest(tenant_id=TENANT, action_id=action.action_id)))
        # The re-check could not even read the order: nothing was sent, so withdrawing is safe.
        assert state(stored.action) == "RETRYABLE" and not stored.action.error.may_have_executed
        cancelled = await stub.CancelAction(actions_pb2.CancelActionRequest(
            tenant_id=TENANT, action_id=action.action_id, reason="gave up",
            actor=actions_pb2.Actor(kind=actions_pb2.ACTOR_KIND_CUSTOMER)))
        assert state(cancelled.action) == "CANCELLED"
        assert back_office.office.effects == [] and back_office.office.writes() == []
        # Verification needs the system too: an honest UNAVAILABLE, no stack trace.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await verify(stub, "conv-2")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and "Traceback" not in str(caught.value.details())


async def test_an_answer_lost_after_the_write_is_settled_with_the_same_key(
    tmp_path: Path, back_office: RunningOffice
) -> None:
    async with running_stub(settings_for(tmp_path, _catalog(tmp_path, back_office.url))) as stub:
        await verify(stub, "conv-1")
        action = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "late"})
        back_office.office.mode = "drop"  # does the refund, then the connection dies
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await confirm(stub, action)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        metadata = details_from_rpc_error(caught.value)
        assert metadata.reason == "CONNECTOR_UNAVAILABLE"
        back_office.office.mode = "ok"
        # The reconciler re-sends the same key; the system answers from its idempotency store.
        for _ in range(100):
            current = (await stub.GetAction(actions_pb2.GetActionRequest(tenant_id=TENANT,
                                                                         action_id=action.action_id))).action
            if state(current) == "SUCCEEDED":
                break
            await asyncio.sleep(0.1)
        assert state(current) == "SUCCEEDED" and current.attempts == 2
        assert back_office.office.effects == ["O-1"]
        assert [key for _, _, key in back_office.office.writes()] == [action.idempotency_key] * 2
        # Cancelling is refused once an attempt may have reached the system.
        trail = await events(stub, action_id=action.action_id)
        assert "answered from the idempotency store" in trail[-1].detail


async def test_dry_run_does_everything_but_the_write(tmp_path: Path, back_office: RunningOffice) -> None:
    catalogs = _catalog(tmp_path, back_office.url, dry_run=True)
    async with running_stub(settings_for(tmp_path, catalogs)) as stub:
        tools = await stub.ListTools(actions_pb2.ListToolsRequest(tenant_id=TENANT))
        assert all(tool.dry_run for tool in tools.tools)
        await verify(stub, "conv-1")
        action = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "late"})
        assert action.dry_run
        done = await confirm(stub, action)
        assert state(done) == "SUCCEEDED" and done.dry_run
        assert json.loads(done.result_json)["request"] == {
            "method": "POST", "path": "/orders/O-1/refund", "query": {}, "body": {"reason": "late"}
        }
        # The reads happened (ownership, preconditions), the write did not.
        assert back_office.office.writes() == [] and any(p == "/orders/O-1" for _, p, _ in back_office.office.requests)
        executed = [e for e in await events(stub, action_id=action.action_id) if e.kind ==
                    actions_pb2.AUDIT_EVENT_KIND_EXECUTED]
        assert len(executed) == 1 and executed[0].dry_run


async def test_dry_run_by_tenant_setting(tmp_path: Path, back_office: RunningOffice) -> None:
    settings = settings_for(tmp_path, _catalog(tmp_path, back_office.url), dry_run_tenants=f"other, {TENANT}")
    async with running_stub(settings) as stub:
        await verify(stub, "conv-1")
        done = await confirm(stub, await propose(stub, "conv-1", {"order_id": "O-1", "reason": "late"}))
        assert done.dry_run and back_office.office.writes() == []


async def test_an_unconfirmed_proposal_expires(tmp_path: Path, back_office: RunningOffice) -> None:
    settings = settings_for(tmp_path, _catalog(tmp_path, back_office.url), proposal_ttl_s=0.2)
    async with running_stub(settings) as stub:
        await verify(stub, "conv-1")
        action = await propose(stub, "conv-1", {"order_id": "O-1", "reason": "late"})
        await asyncio.sleep(0.3)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await confirm(stub, action)
        assert details_from_rpc_error(caught.value).reason == "PROPOSAL_EXPIRED"
        assert back_office.office.writes() == []
        assert kinds(await events(stub, action_id=action.action_id))[-1] == "CANCELLED"


async def test_a_host_resolving_to_a_private_address_is_refused_before_any_request(
    tmp_path: Path, back_office: RunningOffice
) -> None:
    # "localhost" is allow-listed as a host, but not as a private one: it resolves to 127.0.0.1.
    catalog = acme_catalog(f"http://localhost:{back_office.port}")
    catalog["connector"]["allowed_hosts"] = ["localhost"]
    async with running_stub(settings_for(tmp_path, write_catalog(tmp_path / "catalogs", catalog))) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await verify(stub, "conv-1")
        error = details_from_rpc_error(caught.value)
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "CONNECTOR_ADDRESS_NOT_ALLOWED"
    assert back_office.office.requests == []


async def test_a_missing_secret_is_unavailable_and_never_sent_empty(tmp_path: Path, back_office: RunningOffice,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACME_TOKEN")
    async with running_stub(settings_for(tmp_path, _catalog(tmp_path, back_office.url))) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await verify(stub, "conv-1")
        assert details_from_rpc_error(caught.value).reason == "CONNECTOR_SECRET_MISSING"
    assert back_office.office.requests == []
