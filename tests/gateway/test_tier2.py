"""Tier 2 as a conversation, at the HTTP edge: the forwarded decision and the
handoff's reference on message replies, agents' messages in the history, the
handoff's thread and lifecycle, the agent's reply with its idempotency key,
the customer's CSAT rating, the delivery feed and the handoff settings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import conversation_pb2, customer_pb2
from gateway.keys import Role
from servicekit.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from tests.gateway.conftest import OTHER_TENANT, TENANT, Mesh, one, open_gateway

T = f"/v1/tenants/{TENANT}"
HANDOFF_URL = f"{T}/handoffs/ho-1"
RATING_URL = "/v1/conversations/conv-1/handoffs/ho-1/rating"


def _ts(minute: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime(2026, 12, 6, 10, minute, tzinfo=UTC))
    return stamp


def _problem(response: httpx.Response, status: int, reason: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    if reason is not None:
        assert body["reason"] == reason
    return body


def thread_message(
    sequence: int, role: int = conversation_pb2.ROLE_AGENT, **fields: Any
) -> escalation_pb2.ThreadMessage:
    author = {"author_id": "agent-demo", "author_name": "Dana"} if role == conversation_pb2.ROLE_AGENT else {}
    defaults: dict[str, Any] = {
        "message_id": f"m-{sequence}",
        "sequence": sequence,
        "handoff_id": "ho-1",
        "conversation_id": "conv-1",
        "channel": conversation_pb2.CHANNEL_CHAT,
        "message": conversation_pb2.Message(role=role, text=f"text {sequence}", sent_at=_ts(sequence)),
    }
    return escalation_pb2.ThreadMessage(**(defaults | author | fields))


def handoff(**fields: Any) -> escalation_pb2.Handoff:
    defaults: dict[str, Any] = {
        "handoff_id": "ho-1",
        "reference": "HO-7KQ2M9",
        "conversation_id": "conv-1",
        "customer": customer_pb2.CustomerRef(tenant_id=TENANT, customer_id="cust-1"),
        "conversation": conversation_pb2.Conversation(conversation_id="conv-1"),
        "state": escalation_pb2.HANDOFF_STATE_RESOLVED,
    }
    return escalation_pb2.Handoff(**(defaults | fields))


# --- message replies -----------------------------------------------------------

MESSAGE = {"text": "Any news?", "customer": {"customer_id": "cust-1"}}


async def test_a_message_to_a_human_is_forwarded_with_the_reference(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.concierge.converse.outcome = concierge_pb2.ConverseResponse(
        decision=concierge_pb2.DECISION_FORWARDED,
        decision_reason="with_agent",
        reason=concierge_pb2.DECISION_REASON_WITH_AGENT,
        handoff_id="ho-1",
        handoff_reference="HO-7KQ2M9",
    )
    response = await gateway.post("/v1/conversations/conv-1/messages", json=MESSAGE)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["decision"], body["decision_reason"], body["reply"]) == ("forwarded", "with_agent", "")
    assert (body["handoff_id"], body["handoff_reference"], body["expected_wait_s"]) == ("ho-1", "HO-7KQ2M9", None)


async def test_an_escalation_says_the_reference_and_the_expected_wait(
    mesh: Mesh, gateway: httpx.AsyncClient
) -> None:
    outcome = concierge_pb2.ConverseResponse(
        reply="A colleague is taking over (HO-7KQ2M9).",
        decision=concierge_pb2.DECISION_ESCALATED,
        handoff_id="ho-1",
        handoff_reference="HO-7KQ2M9",
        expected_wait=Duration(seconds=299, nanos=500_000_000),
    )
    mesh.concierge.converse.outcome = outcome
    mesh.concierge.stream_converse.outcome = [concierge_pb2.StreamConverseResponse(outcome=outcome)]
    whole = (await gateway.post("/v1/conversations/conv-1/messages", json=MESSAGE)).json()
    streamed = await gateway.post("/v1/conversations/conv-1/messages/stream", json=MESSAGE)

    assert (whole["decision"], whole["handoff_reference"], whole["expected_wait_s"]) == ("escalated", "HO-7KQ2M9", 300)
    assert streamed.text.startswith("event: outcome\ndata: ")
    assert '"handoff_reference":"HO-7KQ2M9","expected_wait_s":300' in streamed.text


async def test_history_shows_agents_messages_with_their_names(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.concierge.get_conversation.outcome = concierge_pb2.GetConversationResponse(
        conversation=conversation_pb2.Conversation(messages=[
            conversation_pb2.Message(role=conversation_pb2.ROLE_CUSTOMER, text="Refund?", sent_at=_ts(1)),
            conversation_pb2.Message(role=conversation_pb2.ROLE_ASSISTANT, text="A colleague takes over."),
            conversation_pb2.Message(role=conversation_pb2.ROLE_AGENT, text="Done.", author_name="Dana"),
        ])
    )
    response = await gateway.get("/v1/conversations/conv-1", params={"customer_id": "cust-1"})

    messages = response.json()["messages"]
    assert [(m["role"], m["author_name"]) for m in messages] == [
        ("customer", None), ("assistant", None), ("agent", "Dana")
    ]


# --- the handoff, its thread and its lifecycle --------------------------------


async def test_a_handoff_carries_its_lifecycle_and_thread(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.get_handoff.outcome = escalation_pb2.GetHandoffResponse(
        handoff=handoff(
            state=escalation_pb2.HANDOFF_STATE_WAITING_ON_CUSTOMER,
            conversation=conversation_pb2.Conversation(conversation_id="conv-1"),
            history=[
                escalation_pb2.HandoffEvent(
                    kind=escalation_pb2.HANDOFF_EVENT_KIND_CREATED, at=_ts(1), actor="ai",
                    state=escalation_pb2.HANDOFF_STATE_WAITING,
                ),
                escalation_pb2.HandoffEvent(
                    kind=escalation_pb2.HANDOFF_EVENT_KIND_AGENT_REPLIED, at=_ts(3), actor="agent-demo",
                    state=escalation_pb2.HANDOFF_STATE_WAITING_ON_CUSTOMER,
                ),
            ],
            first_replied_at=_ts(3),
            thread_messages=2,
        ),
        thread=[thread_message(1, conversation_pb2.ROLE_CUSTOMER), thread_message(2)],
    )
    response = await gateway.get(HANDOFF_URL)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["state"], body["reference"], body["conversation_id"]) == ("waiting_on_customer", "HO-7KQ2M9", "conv-1")
    assert body["history"] == [
        {"kind": "created", "at": "2026-12-06T10:01:00Z", "actor": "ai", "state": "waiting"},
        {"kind": "agent_replied", "at": "2026-12-06T10:03:00Z", "actor": "agent-demo", "state": "waiting_on_customer"},
    ]
    assert (body["first_replied_at"], body["thread_messages"]) == ("2026-12-06T10:03:00Z", 2)
    assert (body["expected_wait_s"], body["queue_position"], body["csat_rating"]) == (None, None, None)
    assert body["thread"] == [
        {"message_id": "m-1", "sequence": 1, "role": "customer", "author_name": None, "text": "text 1",
         "sent_at": "2026-12-06T10:01:00Z"},
        {"message_id": "m-2", "sequence": 2, "role": "agent", "author_name": "Dana", "text": "text 2",
         "sent_at": "2026-12-06T10:02:00Z"},
    ]


async def test_a_waiting_handoff_says_its_place_and_wait(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.list_handoffs.outcome = escalation_pb2.ListHandoffsResponse(handoffs=[
        handoff(state=escalation_pb2.HANDOFF_STATE_WAITING, queue_position=3, expected_wait=Duration(seconds=420)),
        handoff(handoff_id="ho-2", state=escalation_pb2.HANDOFF_STATE_REOPENED, csat_rating=2),
    ])
    response = await gateway.get(f"{T}/handoffs", params={"state": "reopened"})

    assert response.status_code == 200, response.text
    first, second = response.json()["handoffs"]
    assert (first["state"], first["queue_position"], first["expected_wait_s"]) == ("waiting", 3, 420)
    assert (second["state"], second["csat_rating"]) == ("reopened", 2)
    assert one(mesh.escalation.list_handoffs.requests).state == escalation_pb2.HANDOFF_STATE_REOPENED


# --- the agent's reply ---------------------------------------------------------


async def test_a_reply_is_sent_once_under_its_id_and_returns_the_stored_message(
    mesh: Mesh, gateway: httpx.AsyncClient
) -> None:
    mesh.escalation.submit_agent_reply.outcome = escalation_pb2.SubmitAgentReplyResponse(
        draft_use=escalation_pb2.DRAFT_USE_EDITED,
        handoff=handoff(state=escalation_pb2.HANDOFF_STATE_WAITING_ON_CUSTOMER),
        message=thread_message(4),
    )
    response = await gateway.post(
        f"{HANDOFF_URL}/replies",
        json={"final_text": "Your refund is on its way.", "client_message_id": "send-1", "agent_name": "Dana"},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == {
        "message_id": "m-4", "sequence": 4, "role": "agent", "author_name": "Dana", "text": "text 4",
        "sent_at": "2026-12-06T10:04:00Z",
    }
    assert body["handoff"]["state"] == "waiting_on_customer"
    sent = one(mesh.escalation.submit_agent_reply.requests)
    assert (sent.client_message_id, sent.agent_name, sent.agent_id) == ("send-1", "Dana", f"admin-{TENANT}")


async def test_a_reply_without_the_new_fields_still_goes(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(f"{HANDOFF_URL}/replies", json={"final_text": "Done."})

    assert response.status_code == 200, response.text
    assert response.json()["message"] is None
    sent = one(mesh.escalation.submit_agent_reply.requests)
    assert (sent.client_message_id, sent.agent_name) == ("", "")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"final_text": "x", "client_message_id": ""}, "body.client_message_id"),
        ({"final_text": "x", "client_message_id": "c" * 129}, "body.client_message_id"),
        ({"final_text": "x", "agent_name": "n" * 129}, "body.agent_name"),
        ({"final_text": "x", "agent_id": "someone-else"}, "body.agent_id"),
    ],
)
async def test_a_bad_reply_is_400_without_a_backend_call(
    mesh: Mesh, gateway: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await gateway.post(f"{HANDOFF_URL}/replies", json=body)

    assert field in [e["field"] for e in _problem(response, 400, "INVALID_ARGUMENT")["errors"]]
    assert mesh.escalation.submit_agent_reply.requests == []


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (NotFound("handoff ho-1 not found", reason="HANDOFF_NOT_FOUND"), 404, "HANDOFF_NOT_FOUND"),
        (Aborted("the handoff changed since you read it", reason="STALE_VERSION"), 409, "STALE_VERSION"),
        (FailedPrecondition("the handoff is resolved", reason="HANDOFF_RESOLVED"), 409, "HANDOFF_RESOLVED"),
    ],
)
async def test_a_refused_reply_is_a_problem(
    mesh: Mesh, gateway: httpx.AsyncClient, error: Exception, status: int, reason: str
) -> None:
    mesh.escalation.submit_agent_reply.outcome = error
    response = await gateway.post(f"{HANDOFF_URL}/replies", json={"final_text": "Done.", "client_message_id": "s1"})

    assert _problem(response, status, reason)["detail"] == str(error)


# --- the customer's rating -------------------------------------------------------


def _channel(mesh: Mesh) -> Any:
    return open_gateway(mesh.settings(), key=mesh.key(Role.CHANNEL))


async def test_the_customer_rates_a_resolved_handoff(mesh: Mesh) -> None:
    mesh.escalation.get_handoff.outcome = escalation_pb2.GetHandoffResponse(handoff=handoff())
    mesh.escalation.rate_handoff.outcome = escalation_pb2.RateHandoffResponse(
        handoff=handoff(csat_rating=4), changed=True
    )
    async with _channel(mesh) as channel:
        response = await channel.post(
            RATING_URL, params={"customer_id": "cust-1"}, json={"rating": 4, "comment": "Quick, thanks"}
        )

    assert response.status_code == 200, response.text
    assert response.json() == {"changed": True, "csat_rating": 4}
    sent = one(mesh.escalation.rate_handoff.requests)
    assert (sent.customer.tenant_id, sent.customer.customer_id, sent.handoff_id) == (TENANT, "cust-1", "ho-1")
    assert (sent.rating, sent.comment) == (4, "Quick, thanks")
    assert one(mesh.escalation.get_handoff.requests).tenant_id == TENANT


@pytest.mark.parametrize(
    ("params", "body", "field"),
    [
        ({"customer_id": "cust-1"}, {"rating": 0}, "body.rating"),
        ({"customer_id": "cust-1"}, {"rating": 6}, "body.rating"),
        ({"customer_id": "cust-1"}, {"rating": "5"}, "body.rating"),
        ({"customer_id": "cust-1"}, {"rating": 4.5}, "body.rating"),
        ({"customer_id": "cust-1"}, {}, "body.rating"),
        ({"customer_id": "cust-1"}, {"rating": 5, "comment": "x" * 2001}, "body.comment"),
        ({"customer_id": "cust-1"}, {"rating": 5, "customer_id": "cust-2"}, "body.customer_id"),
        ({}, {"rating": 5}, "query.customer_id"),
    ],
)
async def test_a_bad_rating_is_400_without_a_backend_call(
    mesh: Mesh, params: dict[str, str], body: dict[str, Any], field: str
) -> None:
    async with _channel(mesh) as channel:
        response = await channel.post(RATING_URL, params=params, json=body)

    assert field in [e["field"] for e in _problem(response, 400, "INVALID_ARGUMENT")["errors"]]
    assert mesh.escalation.get_handoff.requests == mesh.escalation.rate_handoff.requests == []


@pytest.mark.parametrize(
    "owner",
    [
        {"conversation_id": "conv-2", "conversation": conversation_pb2.Conversation(conversation_id="conv-2")},
        {"customer": customer_pb2.CustomerRef(tenant_id=TENANT, customer_id="cust-2")},
    ],
    ids=["another-conversation", "another-customer"],
)
async def test_rating_a_handoff_of_another_conversation_is_404_and_writes_nothing(
    mesh: Mesh, owner: dict[str, Any]
) -> None:
    mesh.escalation.get_handoff.outcome = escalation_pb2.GetHandoffResponse(handoff=handoff(**owner))
    async with _channel(mesh) as channel:
        response = await channel.post(RATING_URL, params={"customer_id": "cust-1"}, json={"rating": 5})

    _problem(response, 404, "HANDOFF_NOT_FOUND")
    assert mesh.escalation.rate_handoff.requests == []


async def test_rating_an_unknown_handoff_is_404(mesh: Mesh) -> None:
    mesh.escalation.get_handoff.outcome = NotFound("handoff ho-1 not found", reason="HANDOFF_NOT_FOUND")
    async with _channel(mesh) as channel:
        response = await channel.post(RATING_URL, params={"customer_id": "cust-1"}, json={"rating": 5})

    _problem(response, 404, "HANDOFF_NOT_FOUND")
    assert mesh.escalation.rate_handoff.requests == []


async def test_rating_an_open_handoff_is_409(mesh: Mesh) -> None:
    mesh.escalation.get_handoff.outcome = escalation_pb2.GetHandoffResponse(
        handoff=handoff(state=escalation_pb2.HANDOFF_STATE_ASSIGNED)
    )
    mesh.escalation.rate_handoff.outcome = FailedPrecondition(
        "only a resolved handoff can be rated", reason="HANDOFF_NOT_RESOLVED"
    )
    async with _channel(mesh) as channel:
        response = await channel.post(RATING_URL, params={"customer_id": "cust-1"}, json={"rating": 5})

    assert _problem(response, 409, "HANDOFF_NOT_RESOLVED")["detail"] == "only a resolved handoff can be rated"


# --- the delivery feed -----------------------------------------------------------


async def test_the_delivery_feed_pages_by_cursor(mesh: Mesh) -> None:
    mesh.escalation.list_deliveries.outcome = escalation_pb2.ListDeliveriesResponse(
        deliveries=[
            escalation_pb2.Delivery(
                message=thread_message(2, channel=conversation_pb2.CHANNEL_API),
                customer=customer_pb2.CustomerRef(tenant_id=TENANT, customer_id="cust-1"),
                reference="HO-7KQ2M9",
                cursor="c-2",
            )
        ],
        next_cursor="c-2",
    )
    async with open_gateway(mesh.settings(), key=mesh.key(Role.AGENT)) as agent:
        response = await agent.get(f"{T}/deliveries", params={"channel": "api", "after": "c-1", "limit": 20})

    assert response.status_code == 200, response.text
    assert response.json() == {
        "deliveries": [{
            "message": {"message_id": "m-2", "sequence": 2, "role": "agent", "author_name": "Dana",
                        "text": "text 2", "sent_at": "2026-12-06T10:02:00Z"},
            "conversation_id": "conv-1", "handoff_id": "ho-1", "channel": "api", "customer_id": "cust-1",
            "reference": "HO-7KQ2M9", "cursor": "c-2",
        }],
        "next_cursor": "c-2",
    }
    sent = one(mesh.escalation.list_deliveries.requests)
    assert (sent.tenant_id, sent.channel, sent.after_cursor, sent.page_size) == (
        TENANT, conversation_pb2.CHANNEL_API, "c-1", 20
    )


async def test_the_delivery_feed_defaults_to_every_channel(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    response = await gateway.get(f"{T}/deliveries")

    assert response.json() == {"deliveries": [], "next_cursor": ""}
    sent = one(mesh.escalation.list_deliveries.requests)
    assert (sent.channel, sent.after_cursor, sent.page_size) == (conversation_pb2.CHANNEL_UNSPECIFIED, "", 100)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"channel": "fax"}, "query.channel"), ({"limit": 0}, "query.limit"), ({"limit": 501}, "query.limit")],
)
async def test_bad_feed_parameters_are_400(
    mesh: Mesh, gateway: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    response = await gateway.get(f"{T}/deliveries", params=params)

    assert field in [e["field"] for e in _problem(response, 400, "INVALID_ARGUMENT")["errors"]]
    assert mesh.escalation.list_deliveries.requests == []


async def test_a_bad_cursor_from_the_backend_is_400(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.list_deliveries.outcome = InvalidArgument([("after_cursor", "not a cursor of this feed")])
    response = await gateway.get(f"{T}/deliveries", params={"after": "garbage"})

    assert _problem(response, 400)["errors"] == [{"field": "after_cursor", "description": "not a cursor of this feed"}]


# --- handoff settings --------------------------------------------------------------

SETTINGS_URL = f"{T}/handoff-settings"


async def test_an_admin_reads_and_sets_the_reopen_window(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.get_handoff_settings.outcome = escalation_pb2.GetHandoffSettingsResponse(
        settings=escalation_pb2.HandoffSettings(reopen_window=Duration(seconds=72 * 3600))
    )
    mesh.escalation.update_handoff_settings.outcome = escalation_pb2.UpdateHandoffSettingsResponse(
        settings=escalation_pb2.HandoffSettings(reopen_window=Duration(seconds=3600))
    )
    read = await gateway.get(SETTINGS_URL)
    written = await gateway.put(SETTINGS_URL, json={"reopen_window_s": 3600})

    assert read.json() == {"reopen_window_s": 259200}
    assert written.json() == {"reopen_window_s": 3600}
    assert one(mesh.escalation.get_handoff_settings.requests).tenant_id == TENANT
    sent = one(mesh.escalation.update_handoff_settings.requests)
    assert (sent.tenant_id, sent.settings.reopen_window.seconds) == (TENANT, 3600)


@pytest.mark.parametrize(
    "body",
    [{"reopen_window_s": -1}, {"reopen_window_s": 90 * 86400 + 1}, {"reopen_window_s": "3600"},
     {"reopen_window_s": 1.5}, {}, {"reopen_window_s": 60, "extra": 1}],
)
async def test_a_bad_reopen_window_is_400_without_a_backend_call(
    mesh: Mesh, gateway: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await gateway.put(SETTINGS_URL, json=body)

    _problem(response, 400, "INVALID_ARGUMENT")
    assert mesh.escalation.update_handoff_settings.requests == []


async def test_zero_turns_reopening_off(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    response = await gateway.put(SETTINGS_URL, json={"reopen_window_s": 0})

    assert response.status_code == 200, response.text
    assert one(mesh.escalation.update_handoff_settings.requests).settings.HasField("reopen_window")


# --- roles and tenants ---------------------------------------------------------------

AGENT_ROUTES = [
    ("GET", f"{T}/deliveries", None),
    ("GET", f"{T}/conversations/conv-1/events", None),
    ("POST", f"{HANDOFF_URL}/replies", {"final_text": "Hi", "client_message_id": "s1"}),
]
ADMIN_ROUTES = [
    ("GET", SETTINGS_URL, None),
    ("PUT", SETTINGS_URL, {"reopen_window_s": 60}),
]


def _no_backend_call(mesh: Mesh) -> bool:
    return not any(script.requests for fake in mesh.fakes.values() for script in fake.scripts.values())


@pytest.mark.parametrize(("method", "path", "body"), AGENT_ROUTES + ADMIN_ROUTES)
async def test_a_channel_key_cannot_use_the_agents_side(mesh: Mesh, method: str, path: str, body: Any) -> None:
    async with _channel(mesh) as channel:
        response = await channel.request(method, path, json=body)

    _problem(response, 403, "ROLE_FORBIDDEN")
    assert _no_backend_call(mesh)


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_an_agent_key_cannot_change_settings(mesh: Mesh, method: str, path: str, body: Any) -> None:
    async with open_gateway(mesh.settings(), key=mesh.key(Role.AGENT)) as agent:
        response = await agent.request(method, path, json=body)

    _problem(response, 403, "ROLE_FORBIDDEN")
    assert _no_backend_call(mesh)


@pytest.mark.parametrize(("method", "path", "body"), AGENT_ROUTES + ADMIN_ROUTES)
async def test_no_key_reaches_another_tenants_tier2(mesh: Mesh, method: str, path: str, body: Any) -> None:
    path = path.replace(f"/tenants/{TENANT}/", f"/tenants/{OTHER_TENANT}/")
    async with open_gateway(mesh.settings(), key=mesh.key(Role.ADMIN, TENANT)) as admin:
        response = await admin.request(method, path, json=body)

    _problem(response, 403, "TENANT_FORBIDDEN")
    assert _no_backend_call(mesh)


async def test_the_rating_and_the_customers_stream_need_no_more_than_a_channel_key(mesh: Mesh) -> None:
    mesh.escalation.get_handoff.outcome = escalation_pb2.GetHandoffResponse(handoff=handoff())
    async with _channel(mesh) as channel:
        rated = await channel.post(RATING_URL, params={"customer_id": "cust-1"}, json={"rating": 5})
        events = await channel.get("/v1/conversations/conv-1/events", params={"customer_id": "cust-1"})

    assert rated.status_code == 200, rated.text
    assert events.status_code == 200, events.text
