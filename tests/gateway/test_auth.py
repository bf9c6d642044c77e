"""API keys, roles, tenant isolation, rate limits and CORS at the edge."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
import pytest

from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import customer_pb2
from gateway.auth import RateLimiter
from gateway.keys import KeyStore, Role, create_key, issue_demo_keys, main, revoke_key
from tests.gateway.conftest import OTHER_TENANT, TENANT, Mesh, bearer, open_gateway

HANDOFF_URL = f"/v1/tenants/{TENANT}/handoffs/ho-1"


def _problem(response: httpx.Response, status: int, reason: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert (body["status"], body["reason"]) == (status, reason)
    return body


# --- the key store ---------------------------------------------------------


def test_keys_are_stored_hashed_and_verified(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key, record = create_key(path, "acme", Role.AGENT, "alice")

    stored = path.read_text()
    # ak_<key id>_<secret>; the secret itself may contain "_".
    assert key not in stored and key.split("_", 2)[2] not in stored, "the secret is never stored"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    store = KeyStore(path=path)
    found = store.verify(key)
    assert found is not None and (found.tenant_id, found.role, found.name) == ("acme", Role.AGENT, "alice")
    assert found.key_id == record.key_id
    # A wrong secret with the right key id, garbage, and an empty string all fail.
    assert store.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.verify("ak_nothing") is None
    assert store.verify("") is None


def test_a_running_store_sees_new_and_revoked_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.keys._RELOAD_CHECK_S", 0.0)
    path = tmp_path / "keys.json"
    store = KeyStore(path=path)
    assert len(store) == 0
    key, record = create_key(path, "acme", Role.CHANNEL)
    os.utime(path, (1, 1))  # mtime granularity: make the change visible for sure
    assert store.verify(key) is not None
    assert revoke_key(path, record.key_id)
    os.utime(path, (2, 2))
    assert store.verify(key) is None


def test_malformed_inline_store_is_refused() -> None:
    with pytest.raises(ValueError, match="malformed"):
        KeyStore(document='{"keys": [{"tenant_id": "x"}]}')


def test_cli_prints_the_key_once_and_lists_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    assert main(["--file", str(path), "create", "--tenant", "acme", "--role", "channel", "--name", "web"]) == 0
    key = capsys.readouterr().out.strip()
    assert KeyStore(path=path).verify(key) is not None
    assert main(["--file", str(path), "list"]) == 0
    listed = capsys.readouterr().out
    assert "acme" in listed and "channel" in listed and key not in listed
    assert main(["--file", str(path), "create", "--tenant", "bad tenant!", "--role", "agent"]) == 2
    assert main(["--file", str(path), "revoke", "nope"]) == 1


def test_demo_keys_replace_the_previous_demo_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = issue_demo_keys(path, "demo")
    second = issue_demo_keys(path, "demo")
    store = KeyStore(path=path)
    assert set(second) == {"channel", "agent", "admin"}
    assert all(store.verify(key) is not None for key in second.values())
    assert all(store.verify(key) is None for key in first.values())
    assert len(json.loads(path.read_text())["keys"]) == 3


# --- authentication --------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Bearer"}, id="empty"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic"),
        pytest.param({"Authorization": "Bearer ak_0123456789ab_" + "x" * 43}, id="unknown-key"),
    ],
)
async def test_v1_without_a_valid_key_is_401(mesh: Mesh, headers: dict[str, str]) -> None:
    async with open_gateway(mesh.settings()) as gateway:
        response = await gateway.get(HANDOFF_URL, headers=headers)
        posted = await gateway.post(
            "/v1/conversations/c1/messages", json={"text": "hi", "customer": {"customer_id": "c"}}, headers=headers
        )

    _problem(response, 401, "UNAUTHENTICATED")
    assert response.headers["www-authenticate"] == "Bearer"
    _problem(posted, 401, "UNAUTHENTICATED")
    assert mesh.escalation.get_handoff.requests == [] and mesh.concierge.converse.requests == []


async def test_health_openapi_and_console_need_no_key(mesh: Mesh) -> None:
    async with open_gateway(mesh.settings()) as gateway:
        for path in ("/healthz", "/readyz", "/openapi.json", "/console/", "/console/chat.js"):
            assert (await gateway.get(path)).status_code == 200, path
        page = await gateway.get("/console/agent.html")
        root = await gateway.get("/")

    # The pages run only the gateway's own scripts: no inline script, no third party, no framing.
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert "<script>" not in page.text, "no inline scripts (the policy would block them)"
    assert (root.status_code, root.headers["location"]) == (307, "/console/")


# --- roles -----------------------------------------------------------------

# (method, path, body) of every route a channel key must not use.
AGENT_ROUTES = [
    ("GET", f"/v1/tenants/{TENANT}/handoffs", None),
    ("GET", HANDOFF_URL, None),
    ("POST", f"{HANDOFF_URL}/replies", {"final_text": "hi"}),
    ("POST", f"{HANDOFF_URL}/resolve", {"resolution": "done"}),
    ("GET", f"/v1/tenants/{TENANT}/insights/topics", None),
    ("GET", f"/v1/tenants/{TENANT}/insights/knowledge-gaps", None),
    ("GET", f"/v1/tenants/{TENANT}/outreach/drafts", None),
    ("POST", f"/v1/tenants/{TENANT}/outreach/drafts/d1/review", {"action": "approve"}),
    ("POST", f"/v1/tenants/{TENANT}/outreach/detect", {}),
    ("POST", f"/v1/tenants/{TENANT}/outreach/findings/f1/drafts", None),
    ("POST", f"/v1/tenants/{TENANT}/triage", {"text": "hi", "customer_id": "c"}),
]
ADMIN_ROUTES = [
    ("POST", f"/v1/tenants/{TENANT}/kb/documents", {"documents": [{"doc_id": "d", "title": "t", "body": "b"}]}),
    ("DELETE", f"/v1/tenants/{TENANT}/kb/documents/d", None),
    ("GET", f"/v1/tenants/{TENANT}/feedback/export", None),
]


@pytest.mark.parametrize(("method", "path", "body"), AGENT_ROUTES + ADMIN_ROUTES)
async def test_a_channel_key_cannot_read_handoffs_insights_or_administer(
    mesh: Mesh, method: str, path: str, body: dict | None
) -> None:
    async with open_gateway(mesh.settings(), key=mesh.key(Role.CHANNEL)) as gateway:
        response = await gateway.request(method, path, json=body)

    _problem(response, 403, "ROLE_FORBIDDEN")
    assert not any(script.requests for fake in mesh.fakes.values() for script in fake.scripts.values())


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_an_agent_key_cannot_administer(mesh: Mesh, method: str, path: str, body: dict | None) -> None:
    async with open_gateway(mesh.settings(), key=mesh.key(Role.AGENT)) as gateway:
        response = await gateway.request(method, path, json=body)

    _problem(response, 403, "ROLE_FORBIDDEN")


async def test_an_agent_key_reads_handoffs_as_its_named_agent(mesh: Mesh) -> None:
    async with open_gateway(mesh.settings(), key=mesh.key(Role.AGENT)) as gateway:
        assert (await gateway.get(HANDOFF_URL)).status_code == 200
        response = await gateway.post(f"{HANDOFF_URL}/replies", json={"final_text": "Done."})

    assert response.status_code == 200, response.text
    assert mesh.escalation.submit_agent_reply.requests[0].agent_id == f"agent-{TENANT}"


# --- tenants ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [(m, p.replace(f"/tenants/{TENANT}/", f"/tenants/{OTHER_TENANT}/"), b) for m, p, b in AGENT_ROUTES + ADMIN_ROUTES]
    + [
        ("POST", f"/v1/tenants/{OTHER_TENANT}/kb/search", {"query": "x"}),
        ("POST", f"/v1/tenants/{OTHER_TENANT}/intake/email", {"sender": "a@b.c", "body": "hi"}),
        ("POST", f"/v1/tenants/{OTHER_TENANT}/browsing-events", {"customer_id": "c", "page": "/p"}),
        ("POST", f"/v1/tenants/{OTHER_TENANT}/usage-events", {"events": []}),
    ],
)
async def test_no_key_reaches_another_tenant(mesh: Mesh, method: str, path: str, body: dict | None) -> None:
    # The strongest key of tenant demo, against tenant acme's paths.
    async with open_gateway(mesh.settings(), key=mesh.key(Role.ADMIN, TENANT)) as gateway:
        response = await gateway.request(method, path, json=body)

    _problem(response, 403, "TENANT_FORBIDDEN")
    assert not any(script.requests for fake in mesh.fakes.values() for script in fake.scripts.values())


@pytest.mark.parametrize("stream", [False, True])
async def test_a_body_tenant_must_be_the_keys_tenant(mesh: Mesh, stream: bool) -> None:
    url = "/v1/conversations/c1/messages" + ("/stream" if stream else "")
    async with open_gateway(mesh.settings(), key=mesh.key(Role.CHANNEL, TENANT)) as gateway:
        foreign = await gateway.post(
            url, json={"text": "hi", "customer": {"tenant_id": OTHER_TENANT, "customer_id": "c"}}
        )
        own = await gateway.post(url, json={"text": "hi", "customer": {"customer_id": "c"}})

    _problem(foreign, 403, "TENANT_FORBIDDEN")
    assert own.status_code == 200, own.text
    script = mesh.concierge.stream_converse if stream else mesh.concierge.converse
    (sent,) = script.requests
    customer = sent.request.customer if stream else sent.customer
    assert customer.tenant_id == TENANT, "the tenant always comes from the key"


async def test_the_tenant_sent_to_backends_is_the_keys_even_when_ids_collide(mesh: Mesh) -> None:
    # Tenant acme asks for a handoff id that exists in demo: the backend is asked for acme's.
    mesh.escalation.get_handoff.outcome = escalation_pb2.GetHandoffResponse(
        handoff=escalation_pb2.Handoff(handoff_id="ho-1", customer=customer_pb2.CustomerRef(tenant_id=OTHER_TENANT))
    )
    async with open_gateway(mesh.settings(), key=mesh.key(Role.AGENT, OTHER_TENANT)) as gateway:
        response = await gateway.get(f"/v1/tenants/{OTHER_TENANT}/handoffs/ho-1")

    assert response.status_code == 200
    assert mesh.escalation.get_handoff.requests[0].tenant_id == OTHER_TENANT


# --- rate limits -----------------------------------------------------------


def test_token_bucket_refills_at_its_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.acquire("k", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("k", now=0.0) == pytest.approx(0.5)
    assert limiter.acquire("other", now=0.0) == 0.0, "buckets are per key"
    assert limiter.acquire("k", now=0.5) == 0.0
    assert limiter.acquire("k", now=0.5) > 0


async def test_a_key_over_its_rate_gets_429_with_retry_after(mesh: Mesh) -> None:
    settings = mesh.settings(rate_limit_per_s=0.5, rate_limit_burst=3)
    async with open_gateway(settings, key=mesh.key(Role.AGENT)) as gateway:
        statuses = [(await gateway.get(HANDOFF_URL)).status_code for _ in range(3)]
        limited = await gateway.get(HANDOFF_URL)
        other_key = await gateway.get(HANDOFF_URL, headers=bearer(mesh.key(Role.ADMIN)))

    assert statuses == [200, 200, 200]
    body = _problem(limited, 429, "RATE_LIMITED")
    assert limited.headers["retry-after"] == "2"
    assert "retry" in body["detail"]
    assert other_key.status_code == 200, "another key has its own bucket"
    assert len(mesh.escalation.get_handoff.requests) == 4


# --- CORS ------------------------------------------------------------------


async def test_cors_allows_only_configured_origins(mesh: Mesh) -> None:
    settings = mesh.settings(cors_origins="https://shop.example.com")
    assert settings.cors_origins == ["https://shop.example.com"]
    preflight_headers = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    async with open_gateway(settings, key=mesh.key(Role.CHANNEL)) as gateway:
        allowed = await gateway.options(
            "/v1/conversations/c1/messages", headers={"Origin": "https://shop.example.com", **preflight_headers}
        )
        refused = await gateway.options(
            "/v1/conversations/c1/messages", headers={"Origin": "https://evil.example", **preflight_headers}
        )
        simple = await gateway.get("/healthz", headers={"Origin": "https://evil.example"})
        unauthorized = await gateway.get(
            HANDOFF_URL, headers={"Origin": "https://shop.example.com", "Authorization": ""}
        )

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert "access-control-allow-origin" not in simple.headers
    assert unauthorized.status_code == 401
    assert unauthorized.headers["access-control-allow-origin"] == "https://shop.example.com"


async def test_no_cors_by_default(mesh: Mesh) -> None:
    async with open_gateway(mesh.settings()) as gateway:
        response = await gateway.get("/healthz", headers={"Origin": "https://shop.example.com"})
    assert "access-control-allow-origin" not in response.headers


async def test_keys_inline_from_the_environment_replace_the_file(mesh: Mesh, tmp_path: Path) -> None:
    # What Kubernetes does: the store's JSON comes from a Secret in API_KEYS.
    inline_store = tmp_path / "from-secret.json"
    key, _ = create_key(inline_store, TENANT, Role.AGENT, "from-secret")
    file_key = mesh.key(Role.AGENT)
    async with open_gateway(mesh.settings(api_keys=inline_store.read_text())) as gateway:
        inline = await gateway.get(f"/v1/tenants/{TENANT}/handoffs", headers=bearer(key))
        from_file = await gateway.get(f"/v1/tenants/{TENANT}/handoffs", headers=bearer(file_key))

    assert inline.status_code == 200
    _problem(from_file, 401, "UNAUTHENTICATED")


async def test_without_a_key_store_every_key_is_refused(mesh: Mesh, tmp_path: Path) -> None:
    async with open_gateway(mesh.settings(api_keys_file=tmp_path / "missing.json")) as gateway:
        response = await gateway.get("/v1/me", headers=bearer(mesh.key(Role.ADMIN)))
    _problem(response, 401, "UNAUTHENTICATED")


async def test_me_names_the_key(mesh: Mesh) -> None:
    async with open_gateway(mesh.settings(), key=mesh.key(Role.CHANNEL, OTHER_TENANT)) as gateway:
        response = await gateway.get("/v1/me")
    body = response.json()
    assert (body["tenant_id"], body["role"], body["name"]) == (OTHER_TENANT, "channel", f"channel-{OTHER_TENANT}")


def test_a_store_broken_while_running_keeps_the_last_good_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.keys._RELOAD_CHECK_S", 0.0)
    path = tmp_path / "keys.json"
    key, _ = create_key(path, "acme", Role.AGENT)
    store = KeyStore(path=path)
    path.write_text("{not json")
    assert store.verify(key) is not None
    with pytest.raises(ValueError):
        KeyStore(path=path)  # but a broken store never starts a gateway
