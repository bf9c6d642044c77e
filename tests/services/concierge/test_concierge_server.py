"""The concierge process as deployed (app.servicers on a real gRPC server, its
SQLite store under data_dir), with every backend and the LLM unreachable: the
customer still gets an honest reply, the turn is stored, and errors are
status codes with details."""

from __future__ import annotations

import socket
from pathlib import Path

import grpc
import pytest

from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc
from aftercare.type.v1 import customer_pb2
from servicekit.clients import connect
from servicekit.errors import details_from_rpc_error
from servicekit.server import serving
from services.concierge.app import servicers
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


async def test_with_everything_down_the_customer_gets_an_honest_reply_and_the_turn_is_kept(
    settings: ConciergeSettings,
) -> None:
    async with serving(settings, servicers) as server:
        async with connect(f"127.0.0.1:{server.port}", "aftercare.concierge.v1.ConciergeService") as channel:
            stub = concierge_pb2_grpc.ConciergeServiceStub(channel)
            response = await stub.Converse(
                concierge_pb2.ConverseRequest(conversation_id="conv-1", customer=CUSTOMER,
                                              text="How do I rotate an API key?")
            )
            assert response.decision == concierge_pb2.DECISION_ESCALATED
            assert response.reason == concierge_pb2.DECISION_REASON_RETRIEVAL_UNAVAILABLE
            assert "support team" in response.reply
            stored = await stub.GetConversation(
                concierge_pb2.GetConversationRequest(conversation_id="conv-1", customer=CUSTOMER)
            )
            assert [t.customer_text for t in stored.turns] == ["How do I rotate an API key?"]
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
