"""The back office as a real process over HTTP: the token, the endpoints, errors as JSON, Idempotency-Key,
concurrent writes, and the state endpoints a benchmark uses."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.demoshop import examples
from tests.demoshop.live import LiveShop, needs_tau_retail

pytestmark = needs_tau_retail

ADDRESS = {"address1": "9 Http Road", "address2": "", "city": "Austin", "state": "TX", "country": "USA", "zip": "73301"}
ENDPOINTS = [
    ("GET", "/users?email=a@example.com"),
    ("GET", "/users/lookup?first_name=A&last_name=B&zip=1"),
    ("GET", "/users/noah_brown_6181"),
    ("GET", "/orders/W5442520"),
    ("GET", "/products/9523456873"),
    ("GET", "/product-types"),
    ("POST", "/orders/W5442520/cancel"),
    ("POST", "/orders/W5442520/address"),
    ("POST", "/orders/W5442520/items"),
    ("POST", "/orders/W5442520/payment"),
    ("POST", "/orders/W5442520/return"),
    ("POST", "/orders/W5442520/exchange"),
    ("POST", "/users/noah_brown_6181/address"),
    ("GET", "/state/digest"),
    ("GET", "/state/export"),
    ("POST", "/admin/reset"),
    ("POST", "/admin/replay"),
]


def pending_order(source: dict[str, Any], kind: str = "credit_card") -> dict[str, Any]:
    return examples.first_order(source, lambda o: o["status"] == "pending" and examples.paid_with(o, kind))


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_needs_the_token(live_shop: LiveShop, method: str, path: str) -> None:
    for headers in ({}, {"authorization": "Bearer wrong-token"}, {"authorization": f"Basic {live_shop.token}"}):
        # A body that is not even JSON: the token is checked before anything else.
        response = httpx.request(method, live_shop.url + path, headers=headers, content=b"{not json", timeout=10)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"error": "Error: missing or invalid bearer token", "code": "unauthorized"}


def test_healthz_and_the_api_description_are_open(live_shop: LiveShop) -> None:
    assert httpx.get(f"{live_shop.url}/healthz").json() == {"status": "ok"}
    paths = httpx.get(f"{live_shop.url}/openapi.json").json()["paths"]
    assert "/orders/{order_id}/cancel" in paths


def test_reads(client: httpx.Client, source: dict[str, Any]) -> None:
    user_id, user = sorted(source["users"].items())[0]
    assert client.get("/users", params={"email": user["email"].upper()}).json() == {"user_id": user_id}
    name = {"first_name": user["name"]["first_name"].lower(), "last_name": user["name"]["last_name"]}
    assert client.get("/users/lookup", params={**name, "zip": user["address"]["zip"]}).json() == {"user_id": user_id}
    assert client.get(f"/users/{user_id}").json() == {"user_id": user_id, **user}
    order_id = user["orders"][0]
    assert client.get(f"/orders/{order_id[1:]}").json() == source["orders"][order_id]
    assert client.get("/orders/" + order_id.replace("#", "%23")).json() == source["orders"][order_id]
    product_id, product = sorted(source["products"].items())[0]
    assert client.get(f"/products/{product_id}").json() == product
    types = client.get("/product-types").json()
    assert list(types) == sorted(types) and types[product["name"]] == product_id


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/users", {"email": "nobody@example.com"}, "user_not_found"),
        ("/users/lookup", {"first_name": "No", "last_name": "Body", "zip": "00000"}, "user_not_found"),
        ("/users/nobody_1", {}, "user_not_found"),
        ("/orders/W0000000", {}, "order_not_found"),
        ("/products/0", {}, "product_not_found"),
    ],
)
def test_unknown_records_are_404(client: httpx.Client, path: str, params: dict[str, str], code: str) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 404
    assert response.json()["code"] == code


def test_each_write_endpoint(client: httpx.Client, source: dict[str, Any]) -> None:
    by_card = pending_order(source)
    assert client.post(f"/orders/{by_card['order_id'][1:]}/address", json=ADDRESS).json()["address"] == ADDRESS
    paypal = examples.first_order(
        source,
        lambda o: (
            o["status"] == "pending"
            and examples.paid_with(o, "credit_card")
            and examples.method_of_kind(source, o, "paypal") is not None
        ),
    )
    response = client.post(
        f"/orders/{paypal['order_id'][1:]}/payment",
        json={"payment_method_id": examples.method_of_kind(source, paypal, "paypal")},
    )
    assert response.status_code == 200 and len(response.json()["payment_history"]) == 3
    pending, item_id, new_item_id = examples.swappable(
        source, "pending", lambda o: o is not by_card and not examples.paid_with(o, "gift_card")
    )
    response = client.post(
        f"/orders/{pending['order_id'][1:]}/items",
        json={
            "item_ids": [item_id],
            "new_item_ids": [new_item_id],
            "payment_method_id": pending["payment_history"][0]["payment_method_id"],
        },
    )
    assert response.json().get("status") == "pending (item modified)", response.text
    cancel = client.post(f"/orders/{by_card['order_id'][1:]}/cancel", json={"reason": "no longer needed"})
    assert cancel.json()["status"] == "cancelled"
    delivered, item_id, new_item_id = examples.swappable(
        source, "delivered", lambda o: not examples.paid_with(o, "gift_card")
    )
    method_id = delivered["payment_history"][0]["payment_method_id"]
    swap = {"item_ids": [item_id], "new_item_ids": [new_item_id], "payment_method_id": method_id}
    response = client.post(f"/orders/{delivered['order_id'][1:]}/exchange", json=swap)
    assert response.json().get("status") == "exchange requested", response.text
    other = examples.first_order(source, lambda o: o["status"] == "delivered" and o is not delivered)
    response = client.post(
        f"/orders/{other['order_id'][1:]}/return",
        json={
            "item_ids": [other["items"][0]["item_id"]],
            "payment_method_id": other["payment_history"][0]["payment_method_id"],
        },
    )
    assert response.json()["status"] == "return requested"
    user_id = other["user_id"]
    changed = client.post(f"/users/{user_id}/address", json=ADDRESS).json()
    assert changed["address"] == ADDRESS
    assert client.get(f"/users/{user_id}").json() == changed


def test_a_refusal_is_json_with_tau_bench_message(client: httpx.Client, source: dict[str, Any]) -> None:
    delivered = examples.first_order(source, lambda o: o["status"] == "delivered")
    response = client.post(f"/orders/{delivered['order_id'][1:]}/cancel", json={"reason": "no longer needed"})
    assert response.status_code == 409
    assert response.json() == {"error": "Error: non-pending order cannot be cancelled", "code": "order_not_pending"}


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/orders/W5442520/cancel", b'{"reason": "no longer needed", "refund": 1000}'),  # unknown field
        ("/orders/W5442520/cancel", b'{"reason": 7}'),
        ("/orders/W5442520/cancel", b"{}"),
        ("/orders/W5442520/cancel", b"[not json"),
        ("/orders/W5442520/items", b'{"item_ids": "1", "new_item_ids": ["2"], "payment_method_id": "x"}'),
        ("/orders/W5442520/address", b'{"address1": "' + b"x" * 500 + b'"}'),
        ("/admin/replay", b'{"actions": "cancel everything"}'),
    ],
)
def test_a_malformed_request_is_422_and_tells_where(client: httpx.Client, path: str, content: bytes) -> None:
    before = client.get("/state/digest").json()
    response = client.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_request" and body["details"]
    assert "Traceback" not in response.text and "xxxxxxxx" not in response.text  # no stack, no echo
    assert client.get("/state/digest").json() == before


# Idempotency-Key.


def test_the_same_key_and_request_is_done_once(client: httpx.Client, source: dict[str, Any]) -> None:
    order_id = pending_order(source, "gift_card")["order_id"]
    path = f"/orders/{order_id[1:]}/cancel"
    first = client.post(path, json={"reason": "no longer needed"}, headers={"idempotency-key": "cancel-1"})
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    user_before = client.get(f"/users/{first.json()['user_id']}").json()
    # Again, with the '#' spelt %23 this time: the same order, the same request.
    key = {"idempotency-key": "cancel-1"}
    again = client.post(f"/orders/%23{order_id[1:]}/cancel", json={"reason": "no longer needed"}, headers=key)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert client.get(f"/users/{first.json()['user_id']}").json() == user_before  # no second gift card refund
    assert len(client.get(path.removesuffix("/cancel")).json()["payment_history"]) == 2
    # Without a key, the same request is a new one, and the order is no longer pending.
    assert client.post(path, json={"reason": "no longer needed"}).status_code == 409


def test_the_same_key_with_another_request_is_refused(client: httpx.Client, source: dict[str, Any]) -> None:
    order_id = pending_order(source)["order_id"][1:]
    headers = {"idempotency-key": "key-2"}
    assert client.post(f"/orders/{order_id}/cancel", json={"reason": "no longer needed"}, headers=headers).is_success
    for path, body in [
        (f"/orders/{order_id}/cancel", {"reason": "ordered by mistake"}),
        (f"/orders/{order_id}/address", ADDRESS),
    ]:
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == 422
        assert response.json()["code"] == "idempotency_key_reused"


def test_a_refusal_is_stored_under_its_key_too(client: httpx.Client, source: dict[str, Any]) -> None:
    delivered = examples.first_order(source, lambda o: o["status"] == "delivered")["order_id"][1:]
    headers = {"idempotency-key": "refused-1"}
    first = client.post(f"/orders/{delivered}/cancel", json={"reason": "no longer needed"}, headers=headers)
    again = client.post(f"/orders/{delivered}/cancel", json={"reason": "no longer needed"}, headers=headers)
    assert (first.status_code, again.status_code) == (409, 409)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"


def test_a_request_refused_before_it_runs_stores_nothing(client: httpx.Client, source: dict[str, Any]) -> None:
    order_id = pending_order(source)["order_id"][1:]
    headers = {"idempotency-key": "early-1"}
    assert client.post(f"/orders/{order_id}/cancel", json={"reason": 1}, headers=headers).status_code == 422
    assert client.post(f"/orders/{order_id}/cancel", json={"reason": "no longer needed"}, headers=headers).is_success


def test_fifty_concurrent_retries_of_one_write_execute_once(live_shop: LiveShop, source: dict[str, Any]) -> None:
    order = pending_order(source, "gift_card")
    gift = order["payment_history"][0]["payment_method_id"]
    with live_shop.client(limits=httpx.Limits(max_connections=50)) as client:
        client.post("/admin/reset").raise_for_status()
        before = client.get(f"/users/{order['user_id']}").json()["payment_methods"][gift]["balance"]

        def cancel(_: int) -> httpx.Response:
            return client.post(
                f"/orders/{order['order_id'][1:]}/cancel",
                json={"reason": "no longer needed"},
                headers={"idempotency-key": "retry-storm"},
            )

        with ThreadPoolExecutor(max_workers=50) as pool:
            responses = list(pool.map(cancel, range(50)))
        assert {response.status_code for response in responses} == {200}
        assert len({response.text for response in responses}) == 1
        assert sum("idempotent-replayed" not in response.headers for response in responses) == 1
        after = client.get(f"/orders/{order['order_id'][1:]}").json()
        assert [entry["transaction_type"] for entry in after["payment_history"]] == ["payment", "refund"]
        balance = client.get(f"/users/{order['user_id']}").json()["payment_methods"][gift]["balance"]
        assert balance == round(before + order["payment_history"][0]["amount"], 2)


def test_concurrent_different_writes_on_one_order_run_one_after_the_other(
    live_shop: LiveShop, source: dict[str, Any]
) -> None:
    pending, item_id, new_item_id = examples.swappable(source, "pending")
    method_id = pending["payment_history"][0]["payment_method_id"]
    path = f"/orders/{pending['order_id'][1:]}"
    with live_shop.client(limits=httpx.Limits(max_connections=20)) as client:
        client.post("/admin/reset").raise_for_status()

        def write(attempt: int) -> httpx.Response:
            if attempt % 2:
                return client.post(f"{path}/cancel", json={"reason": "no longer needed"})
            body = {"item_ids": [item_id], "new_item_ids": [new_item_id], "payment_method_id": method_id}
            return client.post(f"{path}/items", json=body)

        with ThreadPoolExecutor(max_workers=20) as pool:
            responses = list(pool.map(write, range(20)))
        codes = sorted(response.status_code for response in responses)
        # The first one wins; every other one finds the order no longer pending.
        assert codes == [200] + [409] * 19, [response.text for response in responses if response.status_code != 409]
        final = client.get(path).json()
        assert final["status"] in ("cancelled", "pending (item modified)")
        assert len(final["payment_history"]) == 2


# The state endpoints.


def test_digest_export_reset_and_replay(client: httpx.Client, source: dict[str, Any]) -> None:
    pristine = client.get("/state/digest").json()
    assert (pristine["users"], pristine["orders"]) == (500, 1000)
    exported = client.get("/state/export").json()
    assert exported == {"users": source["users"], "orders": source["orders"]}
    canonical = json.dumps(exported, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode()).hexdigest() == pristine["sha256"]

    order_id = pending_order(source)["order_id"]
    actions = [{"name": "cancel_pending_order", "kwargs": {"order_id": order_id, "reason": "ordered by mistake"}}]
    replayed = client.post("/admin/replay", json={"actions": actions}).json()
    assert replayed["results"] == [{"name": "cancel_pending_order", "ok": True}]
    assert client.get("/state/digest").json() == pristine  # the replay changed nothing live

    client.post(f"/orders/{order_id[1:]}/cancel", json={"reason": "ordered by mistake"}).raise_for_status()
    done = client.get("/state/digest").json()["sha256"]
    assert done == replayed["sha256"] != pristine["sha256"]
    assert client.post("/admin/reset").json() == {"sha256": pristine["sha256"]}
    assert client.get("/state/digest").json() == pristine


def test_replay_reports_refused_actions(client: httpx.Client, source: dict[str, Any]) -> None:
    delivered = examples.first_order(source, lambda o: o["status"] == "delivered")["order_id"]
    actions = [
        {"name": "cancel_pending_order", "kwargs": {"order_id": delivered, "reason": "no longer needed"}},
        {"name": "transfer_to_human_agents", "kwargs": {"summary": "x"}},
    ]
    results = client.post("/admin/replay", json={"actions": actions}).json()["results"]
    assert results == [
        {
            "name": "cancel_pending_order",
            "ok": False,
            "error": "Error: non-pending order cannot be cancelled",
            "code": "order_not_pending",
        },
        {"name": "transfer_to_human_agents", "ok": True, "skipped": "not a back-office tool"},
    ]


def test_the_request_log_holds_routes_not_ids_or_emails(
    live_shop: LiveShop, client: httpx.Client, source: dict[str, Any]
) -> None:
    user_id, user = sorted(source["users"].items())[-1]
    assert client.get("/users", params={"email": user["email"]}).json() == {"user_id": user_id}
    assert client.get(f"/users/{user_id}").status_code == 200
    deadline = time.monotonic() + 10
    while "GET /users/{user_id} 200" not in live_shop.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # written by another process
    log = live_shop.log_path.read_text()
    assert "GET /users 200" in log and "GET /users/{user_id} 200" in log
    assert user["email"] not in log and user_id not in log
