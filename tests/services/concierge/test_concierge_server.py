"""The concierge process as deployed (app.servicers on a real gRPC server, its
SQLite store under data_dir), with every backend and the LLM unreachable: the
customer still gets an honest reply, the turn is stored, and errors are
status codes with details."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc
from aftercare.type.v1 import customer_pb2
from servicekit.clients import connect
from servicekit.errors import details_from_rpc_error
from servicekit.server import serving
from services.concierge.app import servicers
from services.concierge.confidence import CalibrationError
from services.concierge.settings import ConciergeSettings


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path) -> ConciergeSettings:
    nowhere = f"127.0.0.1:{_closed_port()}"
    return ConciergeSettings(  # type: ignore[call-arg]
        port=0, data_dir=tmp_path, database_url="", retrieval_addr=nowhere, triage_addr=nowhere,
        escalation_addr=nowhere, llm_base_url=f"http://{nowhere}/v1", llm_timeout_s=1.0,
    )


CUSTOMER = customer_pb2.CustomerRef(tenant_id="demo", customer_id="cust-1")
QUESTION = "How do I rotate an API key?"


@contextlib.asynccontextmanager
async def concierge(settings: ConciergeSettings) -> AsyncIterator[concierge_pb2_grpc.ConciergeServiceStub]:
    """The concierge process's servicers on a free port, and a stub on a real channel to them."""
    async with serving(settings, servicers) as server:
        async with connect(f"127.0.0.1:{server.port}", "aftercare.concierge.v1.ConciergeService") as channel:
            yield concierge_pb2_grpc.ConciergeServiceStub(channel)


async def ask(stub: concierge_pb2_grpc.ConciergeServiceStub, conversation_id: str) -> concierge_pb2.ConverseResponse:
    return await stub.Converse(
        concierge_pb2.ConverseRequest(conversation_id=conversation_id, customer=CUSTOMER, text=QUESTION)
    )


async def test_with_everything_down_the_customer_gets_an_honest_reply_and_the_turn_is_kept(
    settings: ConciergeSettings,
) -> None:
    async with concierge(settings) as stub:
        response = await ask(stub, "conv-1")
        assert response.decision == concierge_pb2.DECISION_ESCALATED
        assert response.reason == concierge_pb2.DECISION_REASON_RETRIEVAL_UNAVAILABLE
        assert "support team" in response.reply
        stored = await stub.GetConversation(
            concierge_pb2.GetConversationRequest(conversation_id="conv-1", customer=CUSTOMER)
        )
        assert [t.customer_text for t in stored.turns] == [QUESTION]
        assert stored.turns[0].outcome.lineage.trace_id == response.lineage.trace_id
    assert (settings.data_dir / "concierge.db").exists()


async def test_errors_are_status_codes_with_details(settings: ConciergeSettings) -> None:
    async with serving(settings, servicers) as server:
        async with connect(f"127.0.0.1:{server.port}", "aftercare.concierge.v1.ConciergeService") as channel:
            stub = concierge_pb2_grpc.ConciergeServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await stub.GetConversation(
                    concierge_pb2.GetConversationRequest(conversation_id="nope", customer=CUSTOMER)
                )
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await stub.Converse(concierge_pb2.ConverseRequest(conversation_id="c 1", customer=CUSTOMER, text=""))
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            fields = {name for name, _ in details_from_rpc_error(bad.value).field_violations}
            assert {"conversation_id", "text"} <= fields
            assert "Traceback" not in (bad.value.details() or "")


async def test_without_a_fit_for_its_configuration_the_process_refuses_to_start(
    settings: ConciergeSettings, tmp_path: Path
) -> None:
    unfitted = settings.model_copy(update={"fits_dir": tmp_path / "no-fits"})
    with pytest.raises(CalibrationError, match="CONCIERGE_ALLOW_UNCALIBRATED"):
        async with serving(unfitted, servicers):
            pytest.fail("the concierge served without a confidence fit")
    # Phrasing by the LLM is another configuration: the shipped fits are not for it.
    with pytest.raises(CalibrationError, match="phrasing=always"):
        async with serving(settings.model_copy(update={"phrasing": "always"}), servicers):
            pytest.fail("the concierge served a configuration without its fit")


async def test_told_to_run_uncalibrated_it_serves_and_every_response_says_so(
    settings: ConciergeSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As deployed: the setting comes from the environment.
    monkeypatch.setenv("CONCIERGE_ALLOW_UNCALIBRATED", "true")
    monkeypatch.setenv("CONCIERGE_FITS_DIR", str(tmp_path / "no-fits"))
    uncalibrated = ConciergeSettings(**settings.model_dump(exclude={"allow_uncalibrated", "fits_dir"}))
    assert uncalibrated.allow_uncalibrated and uncalibrated.fits_dir == tmp_path / "no-fits"
    async with concierge(uncalibrated) as stub:
        response = await ask(stub, "conv-2")
        assert response.decision == concierge_pb2.DECISION_ESCALATED
        assert not response.confidence.calibrated
        assert response.confidence.calibration_version == "uncalibrated"
        assert response.confidence.configuration_id == "unit-v2|phrasing=off"
