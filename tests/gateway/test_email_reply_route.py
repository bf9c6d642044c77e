"""The email intake records where agents' replies go (outreach's RecordReplyRoute) before the
concierge sees the mail: the address and Message-ID travel to outreach, nowhere else."""

from __future__ import annotations

import httpx

from aftercare.concierge.v1 import concierge_pb2
from servicekit.errors import Unavailable
from tests.gateway.conftest import TENANT, Mesh, one

T = f"/v1/tenants/{TENANT}"
MAIL = {"sender": "Ann@Example.com", "subject": "Re: Export fails", "body": "CSV export times out.",
        "message_id": "<CAF=abc.123@mail.example>"}


async def test_the_intake_records_the_reply_route_of_the_conversation(
    mesh: Mesh, gateway: httpx.AsyncClient
) -> None:
    mesh.concierge.converse.outcome = concierge_pb2.ConverseResponse(reply="We will look into it.")

    response = await gateway.post(f"{T}/intake/email", json=MAIL)

    assert response.status_code == 200, response.text
    recorded = one(mesh.outreach.record_reply_route.requests)
    conversed = one(mesh.concierge.converse.requests)
    assert recorded.customer == conversed.customer
    assert recorded.conversation_id == conversed.conversation_id == response.json()["conversation_id"]
    assert (recorded.address, recorded.subject, recorded.message_id) == (
        "Ann@Example.com", "Re: Export fails", "<CAF=abc.123@mail.example>")
    assert "example.com" not in conversed.SerializeToString().decode(errors="ignore").lower()


async def test_a_mail_without_a_message_id_still_gets_a_route(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mail = {k: v for k, v in MAIL.items() if k != "message_id"} | {"thread_id": "ticket-77"}
    assert (await gateway.post(f"{T}/intake/email", json=mail)).status_code == 200
    recorded = one(mesh.outreach.record_reply_route.requests)
    assert (recorded.conversation_id, recorded.message_id) == ("ticket-77", "")


async def test_a_bad_message_id_is_refused_before_anything_is_recorded(
    mesh: Mesh, gateway: httpx.AsyncClient
) -> None:
    for bad in ("no-at-sign", "<a@b>\r\nBcc: x@y.z", "<a b@c>", "x" * 901 + "@y"):
        response = await gateway.post(f"{T}/intake/email", json=MAIL | {"message_id": bad})
        assert response.status_code == 400, bad
        assert response.headers["content-type"].startswith("application/problem+json")
    assert mesh.outreach.record_reply_route.requests == []
    assert mesh.concierge.converse.requests == []


async def test_outreach_down_leaves_the_mail_unprocessed_for_a_retry(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.outreach.record_reply_route.outcome = Unavailable("outreach is down")

    response = await gateway.post(f"{T}/intake/email", json=MAIL)

    assert response.status_code == 503
    assert mesh.concierge.converse.requests == [], "no answer without a way to deliver the agent's reply"


async def test_the_customers_answer_to_an_agents_reply_stays_in_the_conversation(
    mesh: Mesh, gateway: httpx.AsyncClient
) -> None:
    first = await gateway.post(f"{T}/intake/email", json=MAIL)
    answer = await gateway.post(f"{T}/intake/email", json=MAIL | {
        "subject": "RE: Re: Export fails [HO-7KQ2M9]", "message_id": "<second@mail.example>"})

    assert first.json()["conversation_id"] == answer.json()["conversation_id"]
    routes = mesh.outreach.record_reply_route.requests
    assert [r.message_id for r in routes] == ["<CAF=abc.123@mail.example>", "<second@mail.example>"]
    assert routes[0].conversation_id == routes[1].conversation_id
