"""Catalog loading (what a broken or dangerous catalog is refused for) and the HTTP
connector's guards (allow-list, private addresses, redirects, size cap, timeout)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from services.actions.catalog import DEFAULT_CATALOG_DIR, CatalogError, load_catalogs, parse_catalog
from services.actions.connector import ConnectorError, HttpCall, HttpConnector
from tests.services.actions.conftest import TOKEN, RunningOffice, acme_catalog, write_catalog

BASE = acme_catalog("http://127.0.0.1:9")


def _changed(change: Any) -> dict[str, Any]:
    catalog = copy.deepcopy(BASE)
    change(catalog)
    return catalog


def _tool(catalog: dict[str, Any], name: str) -> dict[str, Any]:
    return next(tool for tool in catalog["tools"] if tool["name"] == name)


def test_the_shipped_catalogs_load() -> None:
    catalogs = load_catalogs(DEFAULT_CATALOG_DIR, environ={})
    shop = catalogs["shop"]
    assert shop.version.startswith("2026-12-07.1+")
    reads = {name for name, tool in shop.tools.items() if not tool.is_write}
    writes = {name for name, tool in shop.tools.items() if tool.is_write}
    assert reads == {"find_user_id_by_email", "find_user_id_by_name_zip", "get_user_details", "get_order_details",
                     "get_product_details", "list_all_product_types"}
    assert writes == {"cancel_pending_order", "modify_pending_order_address", "modify_pending_order_items",
                      "modify_pending_order_payment", "modify_user_address", "return_delivered_order_items",
                      "exchange_delivered_order_items"}
    # Only the identity tools run before verification; every private read names its owner.
    assert {n for n, t in shop.tools.items() if not t.spec.requires_verification} == {
        "find_user_id_by_email", "find_user_id_by_name_zip"}
    # The demo back office is reached on loopback only because the catalog says so explicitly.
    assert shop.connector.host == "127.0.0.1" and shop.connector.allowed_private_hosts == {"127.0.0.1"}
    assert shop.connector.auth is not None and shop.connector.auth.secret_env == "DEMOSHOP_TOKEN"


def test_the_deployment_may_move_the_back_office_only_to_an_allowed_host() -> None:
    raw = json.loads((DEFAULT_CATALOG_DIR / "shop.json").read_text())
    moved = parse_catalog(raw, environ={"SHOP_BACKOFFICE_URL": "http://127.0.0.1:18090"})
    assert moved.connector.port == 18090
    with pytest.raises(CatalogError, match="allow-list"):
        parse_catalog(raw, environ={"SHOP_BACKOFFICE_URL": "http://evil.example.com"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["connector"].update(base_url="http://10.0.0.8/api", allowed_private_hosts=[]),
         "not in the catalog's allow-list"),
        (lambda c: c["connector"].update(base_url="http://169.254.169.254/", allowed_hosts=["169.254.169.254"],
                                         allowed_private_hosts=[]), "private address"),
        (lambda c: c["connector"].update(base_url="http://[::ffff:127.0.0.1]:80", allowed_hosts=["::ffff:127.0.0.1"],
                                         allowed_private_hosts=[]), "private address"),
        (lambda c: c["connector"].update(base_url="http://user:pw@127.0.0.1/"), "credentials"),
        (lambda c: c["connector"].update(base_url="ftp://127.0.0.1/"), "http"),
        (lambda c: c["connector"]["auth"].update(secret_env="lower-case"), "secret_env"),
        (lambda c: _tool(c, "refund_order")["preconditions"][0].update(rule="ordr.status == 'paid'"), "ordr"),
        (lambda c: _tool(c, "refund_order")["preconditions"][0].update(rule="__import__('os')"), "may be called"),
        (lambda c: _tool(c, "refund_order").update(reads=[]), "checks ownership"),
        (lambda c: _tool(c, "refund_order").update(summary=""), "summary"),
        (lambda c: _tool(c, "get_order").update(owner=""), "owner"),
        (lambda c: _tool(c, "get_order")["arguments"].pop("additionalProperties"), "additionalProperties"),
        (lambda c: _tool(c, "get_order")["arguments"].update(type="array"), "type"),
        (lambda c: _tool(c, "get_order")["request"].update(path="http://elsewhere/x"), "path"),
        (lambda c: _tool(c, "get_order")["request"].update(path="/orders/../admin"), "path"),
        (lambda c: c["tools"].append(copy.deepcopy(c["tools"][0])), "twice"),
        (lambda c: _tool(c, "refund_order")["reads"][0].update(tool="refund_order"), "not a read tool"),
        (lambda c: _tool(c, "find_customer").update(requires_verification=True), "identity tool"),
        (lambda c: _tool(c, "refund_order").update(unknown_field=1), "unknown_field"),
    ],
)
def test_a_dangerous_or_broken_catalog_is_refused(change: Any, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        parse_catalog(_changed(change), environ={})


def test_the_file_name_is_the_tenant(tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text(json.dumps(BASE))
    with pytest.raises(CatalogError, match="differs from the file name"):
        load_catalogs(tmp_path, environ={})


def _connector(url: str, **connector: Any):  # type: ignore[no-untyped-def]
    catalog = acme_catalog(url)
    catalog["connector"].update(connector)
    return parse_catalog(catalog, environ={}).connector


async def _send(url: str, path: str, resolver: Any = None, **connector: Any) -> Any:
    options = {"environ": {"ACME_TOKEN": TOKEN}}
    if resolver is not None:
        options["resolver"] = resolver
    client = HttpConnector(**options)
    try:
        return await client.send(_connector(url, **connector), HttpCall("GET", path, {}, None, timeout_s=1))
    finally:
        await client.aclose()


async def test_a_name_that_resolves_to_a_private_address_is_refused(back_office: RunningOffice) -> None:
    async def rebinding(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.1.2.3"]  # one public, one private: refused all the same

    with pytest.raises(ConnectorError) as caught:
        await _send("https://shop.example.com", "/orders/O-1", rebinding, allowed_hosts=["shop.example.com"],
                    allowed_private_hosts=[])
    assert caught.value.reason == "CONNECTOR_ADDRESS_NOT_ALLOWED" and not caught.value.transient


async def test_the_connection_goes_to_the_checked_address(back_office: RunningOffice) -> None:
    # The name resolves (once, checked) to the explicitly allowed loopback address of the office.
    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    outcome = await _send(f"http://office.internal:{back_office.port}", "/orders/O-1", resolver,
                          allowed_private_hosts=["office.internal"])
    assert outcome.status == 200 and outcome.body["order_id"] == "O-1"
    assert back_office.office.requests == [("GET", "/orders/O-1", None)]


async def test_redirects_are_not_followed(back_office: RunningOffice) -> None:
    with pytest.raises(ConnectorError) as caught:
        await _send(back_office.url, "/redirect")
    assert caught.value.reason == "CONNECTOR_REDIRECT"
    assert [path for _, path, _ in back_office.office.requests] == ["/redirect"]


async def test_a_response_over_the_cap_is_not_read(back_office: RunningOffice) -> None:
    # A 2xx over the cap: the call happened (a write did), its answer is not kept.
    capped = await _send(back_office.url, "/huge", max_response_bytes=4096)
    assert capped.truncated and capped.body is None
    outcome = await _send(back_office.url, "/huge", max_response_bytes=1024 * 1024)
    assert len(outcome.body["blob"]) == 100_000


async def test_a_slow_system_times_out_as_may_have_executed(back_office: RunningOffice) -> None:
    back_office.office.mode, back_office.office.delay_s = "slow", 3
    client = HttpConnector(environ={"ACME_TOKEN": TOKEN})
    try:
        with pytest.raises(ConnectorError) as caught:
            await client.send(_connector(back_office.url),
                              HttpCall("POST", "/orders/O-1/refund", {}, {"reason": "late"}, timeout_s=0.5,
                                       idempotency_key="k-1"))
    finally:
        await client.aclose()
    assert caught.value.reason == "CONNECTOR_TIMEOUT" and caught.value.transient and caught.value.may_have_executed


async def test_the_secret_and_the_idempotency_key_are_sent(back_office: RunningOffice) -> None:
    client = HttpConnector(environ={"ACME_TOKEN": TOKEN})
    try:
        outcome = await client.send(_connector(back_office.url),
                                    HttpCall("POST", "/orders/O-1/refund", {}, {"reason": "late"}, timeout_s=2,
                                             idempotency_key="k-1"))
        again = await client.send(_connector(back_office.url),
                                  HttpCall("POST", "/orders/O-1/refund", {}, {"reason": "late"}, timeout_s=2,
                                           idempotency_key="k-1"))
    finally:
        await client.aclose()
    assert outcome.status == 200 and not outcome.replayed and again.replayed
    assert back_office.office.effects == ["O-1"]
    wrong = HttpConnector(environ={"ACME_TOKEN": "wrong"})
    try:
        with pytest.raises(ConnectorError) as caught:
            await wrong.send(_connector(back_office.url), HttpCall("GET", "/orders/O-1", {}, None, timeout_s=2))
    finally:
        await wrong.aclose()
    assert caught.value.reason == "CONNECTOR_UNAUTHORIZED"


def test_write_catalog_helper_round_trips(tmp_path: Path) -> None:
    folder = write_catalog(tmp_path, acme_catalog("http://127.0.0.1:9"))
    assert set(load_catalogs(folder, environ={})) == {"acme"}
