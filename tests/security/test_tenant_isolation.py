"""No tenant ever sees another's chunks, conversations, handoffs, insights or
outreach, through any gateway endpoint, with keys of any role.

Two tenants get the same shape of data with colliding ids (document ids,
conversation and customer ids, account and usage event ids: the same
simulated usage for both) and tenant-specific marker words in every text.
Then every /v1 endpoint is called, in a random order and with random keys
(seed in SECURITY_SEED, printed on failure), as each tenant against the
other: another tenant's path is 403, another tenant's object ids are 404,
and no answer ever carries the other tenant's markers or ids. The table of
endpoints is checked against the app's routes, so a new endpoint without an
isolation probe fails here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from gateway.app import create_app
from gateway.keys import Role
from gateway.schemas.outreach import AccountIn, UsageEventIn
from servicekit.clients import connect
from tests.gateway.test_streaming import served
from tests.security.conftest import TENANTS, RealMesh, as_

pytestmark = pytest.mark.asyncio(loop_scope="module")

SEED = int(os.environ.get("SECURITY_SEED", random.randrange(1 << 30)))
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class TenantData:
    """What one tenant stored, and the words and ids only it may see."""

    tenant: str
    marker: str
    doc_ids: list[str] = field(default_factory=list)
    conversations: list[tuple[str, str]] = field(default_factory=list)  # (conversation id, customer id)
    handoff_ids: list[str] = field(default_factory=list)
    finding_ids: list[str] = field(default_factory=list)
    draft_ids: list[str] = field(default_factory=list)
    chunk_ids: list[str] = field(default_factory=list)
    release_ids: list[str] = field(default_factory=list)
    shadow_ids: list[str] = field(default_factory=list)
    canary_ids: list[str] = field(default_factory=list)

    def secrets(self) -> list[str]:
        """Strings that must never appear in another tenant's answers (ids that are
        shared by design, like the colliding document ids, are not among them)."""
        return [self.marker, *self.handoff_ids, *self.finding_ids, *self.draft_ids, *self.chunk_ids,
                *self.shadow_ids, *self.canary_ids]


def _simulated_usage(tmp: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The same accounts and events for both tenants: every id collides."""
    subprocess.run(
        [sys.executable, "-m", "tools.simulate_usage", "--accounts", "12", "--weeks", "8", "--seed", "5",
         "--out", str(tmp)],
        cwd=REPO_ROOT, check=True, capture_output=True, timeout=120,
    )
    accounts = [AccountIn.model_validate({k: v for k, v in json.loads(line).items() if k != "tenant_id"})
                .model_dump(mode="json", exclude_none=True) for line in (tmp / "accounts.jsonl").open()]
    events = []
    for line in (tmp / "events.jsonl").open():
        try:
            events.append(UsageEventIn.model_validate(
                {k: v for k, v in json.loads(line).items() if k != "tenant_id"}).model_dump(mode="json"))
        except ValueError:
            continue  # the simulator plants a few invalid events
    return accounts, events


async def _search_units(mesh: RealMesh, tenant: str, query: str) -> list[retrieval_pb2.SearchHit]:
    """Retrieval's answer-unit search (the concierge's, which the gateway does not expose)."""
    async with connect(mesh.gateway_settings.retrieval_addr, "aftercare.retrieval.v1.RetrievalService") as channel:
        response = await retrieval_pb2_grpc.RetrievalServiceStub(channel).Search(
            retrieval_pb2.SearchRequest(tenant_id=tenant, query=query, top_k=50, answer_units=True,
                                        mode=retrieval_pb2.SEARCH_MODE_HYBRID)
        )
    return list(response.hits)


async def _seed(http: httpx.AsyncClient, mesh: RealMesh, tenant: str, marker: str, rng: random.Random,
                usage: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> TenantData:
    data = TenantData(tenant, marker)
    admin, agent, channel = (as_(mesh, tenant, role) for role in (Role.ADMIN, Role.AGENT, Role.CHANNEL))
    base = f"/v1/tenants/{tenant}"
    documents = [
        {"doc_id": "shared-api-keys", "title": "Rotating API keys",
         "body": f"# Rotating API keys\n\nOpen Settings, then API keys, and choose Rotate. The {marker} console "
                 f"keeps the old key valid for 24 hours so that {marker} integrations keep working."},
        {"doc_id": "shared-exports", "title": "Exports to S3",
         "body": f"# Exports\n\nScheduled exports to S3 run nightly. The {marker} bucket policy must allow "
                 f"PutObject for the {marker} export role."},
        {"doc_id": f"only-{tenant}", "title": f"{marker} internal runbook",
         "body": f"# {marker} runbook\n\nThe {marker} escalation phone tree and the {marker} on-call rota."},
    ]
    response = await http.post(f"{base}/kb/documents", headers=admin, json={"documents": documents})
    assert response.status_code == 200, response.text
    data.doc_ids = [d["doc_id"] for d in documents]
    hits = await http.post(f"{base}/kb/search", headers=channel, json={"query": f"{marker} API keys", "top_k": 10})
    assert hits.status_code == 200, hits.text
    data.chunk_ids = [h["chunk_id"] for h in hits.json()["hits"]]
    assert data.chunk_ids, "the tenant's own search finds its own chunks"
    # The answer units made at ingestion (what the concierge answers and cites) are the tenant's too.
    units = await _search_units(mesh, tenant, f"{marker} API keys exports runbook")
    assert units, "the tenant's own documents make answer units"
    data.chunk_ids += [unit.chunk_id for unit in units]

    # Conversations with the same ids in both tenants; asking for a human makes a handoff.
    for i in range(3):
        conversation, customer = f"conv-shared-{i}", f"cust-shared-{i % 2}"
        texts = [f"My {marker} invoice shows a charge I do not recognise.",
                 f"I want to talk to a human about the {marker} charge now."]
        for text in texts[: rng.randint(1, 2)] if i else texts:
            reply = await http.post(f"/v1/conversations/{conversation}/messages", headers=channel,
                                    json={"text": text, "customer": {"customer_id": customer}})
            assert reply.status_code == 200, reply.text
            if reply.json()["handoff_id"]:
                data.handoff_ids.append(reply.json()["handoff_id"])
        data.conversations.append((conversation, customer))
    mail = await http.post(f"{base}/intake/email", headers=channel, json={
        "sender": "someone@shared.example", "subject": "Billing", "thread_id": "thread-shared",
        "body": f"Please call me about the {marker} renewal, I need a person.",
    })
    assert mail.status_code == 200, mail.text
    data.conversations.append((mail.json()["conversation_id"], mail.json()["customer_id"]))
    if mail.json()["handoff_id"]:
        data.handoff_ids.append(mail.json()["handoff_id"])
    assert data.handoff_ids, "asking for a human hands over"
    for handoff_id in data.handoff_ids[:2]:
        replied = await http.post(f"{base}/handoffs/{handoff_id}/replies", headers=agent, json={
            "final_text": f"Hello, I refunded the {marker} charge today and sent you a confirmation.",
            "intent_correction": {"original_label": "billing", "corrected_label": f"billing_{marker}"},
        })
        assert replied.status_code == 200, replied.text

    # A candidate release named after the tenant, with a suite run: the other tenant sees neither.
    # Release ids collide by design (both tenants have r1 and r2); their contents are the tenant's own.
    created = await http.post(f"{base}/releases", headers=admin, json={
        "description": f"Stricter {marker} billing", "request_id": f"seed-{marker}",
        "overrides": {"thresholds": {f"billing_{marker}": 0.9}},
    })
    assert created.status_code == 200, created.text
    candidate = created.json()["release_id"]
    recorded = await http.post(f"{base}/releases/{candidate}/suite-runs", headers=admin, json={
        "suite_digest": f"sha256:{marker}", "total": 2, "passed": 1, "started_at": "2026-12-01T10:00:00Z",
        "finished_at": "2026-12-01T10:01:00Z", "results": [
            {"name": f"{marker} refund question", "passed": False, "failures": [f"turn 1: {marker} not cited"]},
            {"name": f"{marker} human on request", "passed": True}],
    })
    assert recorded.status_code == 200, recorded.text
    live = await http.get(f"{base}/releases/live", headers=admin)
    assert live.status_code == 200, live.text
    data.release_ids = [live.json()["release_id"], candidate]
    # The candidate in shadow, deciding a turn that names the tenant (its report quotes the customer),
    # then as a canary: the other tenant reads neither the report, nor the canary, nor their ids.
    shadow = await http.post(f"{base}/releases/{candidate}:shadow", headers=admin, json={"sample_rate": 1.0})
    assert shadow.status_code == 200, shadow.text
    data.shadow_ids = [shadow.json()["shadow"]["shadow_id"]]
    shadowed = await http.post("/v1/conversations/conv-shadowed/messages", headers=channel, json={
        "text": f"How do I rotate the {marker} API keys?", "customer": {"customer_id": "cust-shared-0"}})
    assert shadowed.status_code == 200, shadowed.text
    data.conversations.append(("conv-shadowed", "cust-shared-0"))
    canary = await http.post(f"{base}/releases/{candidate}:canary", headers=admin,
                             json={"percent": 10, "override_reason": f"{marker} suite has one flaky scenario"})
    assert canary.status_code == 200, canary.text
    data.canary_ids = [canary.json()["canary"]["canary_id"]]

    accounts, events = usage
    put = await http.put(f"{base}/outreach/accounts", headers=admin, json={"accounts": accounts})
    assert put.status_code == 200, put.text
    accepted = 0
    for start in range(0, len(events), 1000):
        posted = await http.post(f"{base}/usage-events", headers=channel, json={"events": events[start:start + 1000]})
        assert posted.status_code == 200, posted.text
        accepted += posted.json()["accepted"]
    # The other tenant sent the very same event ids: they are this tenant's own, not duplicates.
    assert accepted >= len(events) - 100, f"{tenant}: only {accepted} of {len(events)} events accepted"
    detected = await http.post(f"{base}/outreach/detect", headers=agent, json={})
    assert detected.status_code == 200, detected.text
    data.finding_ids = [f["finding_id"] for f in detected.json()["findings"]]
    for finding_id in data.finding_ids[:2]:
        drafted = await http.post(f"{base}/outreach/findings/{finding_id}/drafts", headers=agent)
        assert drafted.status_code in (200, 409), drafted.text
        if drafted.status_code == 200:
            data.draft_ids.extend(d["draft_id"] for d in drafted.json()["drafts"])
    return data


@pytest.fixture(scope="module")
def usage(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return _simulated_usage(tmp_path_factory.mktemp("usage"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def seeded(http: httpx.AsyncClient, real_mesh: RealMesh, usage: Any) -> dict[str, TenantData]:
    rng = random.Random(SEED)
    return {
        tenant: await _seed(http, real_mesh, tenant, f"{tenant}{rng.randrange(16**6):06x}x", rng, usage)
        for tenant in TENANTS
    }


# Every /v1 route, with how to call it: (method, path template, body or None, least role).
# {t} is the tenant in the path; {handoff}, {doc}, {draft}, {finding}, {conv}, {cust}, {turn}, {release},
# {shadow} are filled with ids of the tenant under test or of the other one.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, Role]] = [
    ("GET", "/v1/me", None, Role.CHANNEL),
    ("POST", "/v1/conversations/{conv}/messages", {"text": "Rotate API keys {marker}",
                                                    "customer": {"customer_id": "{cust}"}}, Role.CHANNEL),
    ("POST", "/v1/conversations/{conv}/messages/stream", {"text": "Exports {marker}",
                                                           "customer": {"customer_id": "{cust}"}}, Role.CHANNEL),
    ("GET", "/v1/conversations/{conv}?customer_id={cust}", None, Role.CHANNEL),
    ("POST", "/v1/conversations/{conv}/turns/{turn}/rating", {"customer_id": "{cust}", "rating": "helpful"},
     Role.CHANNEL),
    ("POST", "/v1/tenants/{t}/intake/email", {"sender": "someone@shared.example", "subject": "Billing",
                                              "body": "Any news on {marker}?", "thread_id": "thread-shared"},
     Role.CHANNEL),
    ("POST", "/v1/tenants/{t}/browsing-events", {"customer_id": "{cust}", "page": "/settings/api-keys",
                                                 "feature": "api_keys", "dwell_seconds": 120,
                                                 "search_query": "{marker} rotate API keys"}, Role.CHANNEL),
    ("POST", "/v1/tenants/{t}/suggestions/{doc}/dismiss", {"customer_id": "{cust}"}, Role.CHANNEL),
    ("POST", "/v1/tenants/{t}/kb/search", {"query": "{marker} API keys runbook", "top_k": 20}, Role.CHANNEL),
    ("POST", "/v1/tenants/{t}/usage-events", {"events": [{"event_id": "probe-ev", "account_id": "{account}",
                                                          "occurred_at": "2026-11-20T10:00:00Z"}]}, Role.CHANNEL),
    ("GET", "/v1/tenants/{t}/kb/documents?page_size=200", None, Role.AGENT),
    ("GET", "/v1/tenants/{t}/handoffs?page_size=200", None, Role.AGENT),
    ("GET", "/v1/tenants/{t}/handoffs?state=assigned&page_size=200", None, Role.AGENT),
    ("GET", "/v1/tenants/{t}/handoffs/{handoff}", None, Role.AGENT),
    ("POST", "/v1/tenants/{t}/handoffs/{handoff}/assign", {}, Role.AGENT),
    ("POST", "/v1/tenants/{t}/handoffs/{handoff}/replies", {"final_text": "Probe reply"}, Role.AGENT),
    ("POST", "/v1/tenants/{t}/handoffs/{handoff}/resolve", {"resolution": "Probe resolution"}, Role.AGENT),
    ("POST", "/v1/conversations/{conv}/handoffs/{handoff}/rating?customer_id={cust}", {"rating": 4}, Role.CHANNEL),
    ("GET", "/v1/conversations/{conv}/events?customer_id={cust}", None, Role.CHANNEL),
    ("GET", "/v1/tenants/{t}/conversations/{conv}/events", None, Role.AGENT),
    ("GET", "/v1/tenants/{t}/deliveries?limit=500", None, Role.AGENT),
    ("GET", "/v1/tenants/{t}/handoff-settings", None, Role.ADMIN),
    ("PUT", "/v1/tenants/{t}/handoff-settings", {"reopen_window_s": 259200}, Role.ADMIN),
    ("POST", "/v1/tenants/{t}/triage", {"text": "{marker} invoice", "customer_id": "{cust}"}, Role.AGENT),
    ("GET", "/v1/tenants/{t}/insights/topics", None, Role.AGENT),
    ("GET", "/v1/tenants/{t}/insights/knowledge-gaps", None, Role.AGENT),
    ("POST", "/v1/tenants/{t}/outreach/detect", {}, Role.AGENT),
    ("POST", "/v1/tenants/{t}/outreach/findings/{finding}/drafts", None, Role.AGENT),
    ("GET", "/v1/tenants/{t}/outreach/drafts", None, Role.AGENT),
    ("GET", "/v1/tenants/{t}/outreach/drafts?state=rejected", None, Role.AGENT),
    ("POST", "/v1/tenants/{t}/outreach/drafts/{draft}/review", {"action": "reject"}, Role.AGENT),
    ("GET", "/v1/tenants/{t}/feedback/export", None, Role.ADMIN),
    ("GET", "/v1/tenants/{t}/intent-model", None, Role.AGENT),
    ("POST", "/v1/tenants/{t}/intent-model:retrain", {"examples": [{"text": "probe {marker}", "label": "a"},
                                                                   {"text": "other probe", "label": "b"}]},
     Role.ADMIN),
    ("GET", "/v1/tenants/{t}/operations", None, Role.AGENT),
    ("GET", "/v1/tenants/{t}/operations/{operation}", None, Role.AGENT),
    ("POST", "/v1/tenants/{t}/operations/{operation}:cancel", {}, Role.ADMIN),
    ("GET", "/v1/tenants/{t}/actions", None, Role.AGENT),
    ("GET", "/v1/tenants/{t}/actions/pending-approvals", None, Role.AGENT),
    ("GET", "/v1/tenants/{t}/actions/{action}", None, Role.AGENT),
    ("POST", "/v1/tenants/{t}/actions/{action}:approve", {"note": "probe"}, Role.AGENT),
    ("POST", "/v1/tenants/{t}/actions/{action}:reject", {"note": "probe"}, Role.AGENT),
    ("POST", "/v1/tenants/{t}/actions/{action}:confirm", {"conversation_id": "{conv}", "fingerprint": "probe"},
     Role.AGENT),
    ("GET", "/v1/tenants/{t}/tools", None, Role.AGENT),
    ("POST", "/v1/tenants/{t}/conversations/{conv}/records:read", {"tool": "get_order_details", "customer_id": "{cust}",
                                                                   "arguments": {"order_id": "#W0000000"}}, Role.AGENT),
    ("POST", "/v1/tenants/{t}/conversations/{conv}/actions", {"tool": "cancel_pending_order", "customer_id": "{cust}",
                                                              "request_id": "probe-request", "arguments": {}},
     Role.AGENT),
    ("GET", "/v1/tenants/{t}/audit", None, Role.AGENT),
    ("GET", "/v1/tenants/{t}/audit:export", None, Role.ADMIN),
    ("GET", "/v1/tenants/{t}/feedback/intent-corrections", None, Role.ADMIN),
    ("POST", "/v1/tenants/{t}/kb/documents", {"documents": [{"doc_id": "probe-doc", "title": "Probe",
                                                             "body": "Probe body."}]}, Role.ADMIN),
    ("PUT", "/v1/tenants/{t}/outreach/accounts", {"accounts": [{"account_id": "{account}"}]}, Role.ADMIN),
    ("DELETE", "/v1/tenants/{t}/kb/documents/{doc}", None, Role.ADMIN),
    ("GET", "/v1/tenants/{t}/releases", None, Role.ADMIN),
    ("GET", "/v1/tenants/{t}/releases/{release}", None, Role.ADMIN),
    ("GET", "/v1/tenants/{t}/releases/{release}:compare?with=live", None, Role.ADMIN),
    ("POST", "/v1/tenants/{t}/releases", {"description": "Probe {marker}", "request_id": "probe-release"}, Role.ADMIN),
    ("POST", "/v1/tenants/{t}/releases/{release}/suite-runs", {"suite_digest": "sha256:probe", "total": 1,
                                                               "passed": 1, "results": [{"name": "probe {marker}",
                                                                                         "passed": True}],
                                                               "started_at": "2026-12-01T10:00:00Z",
                                                               "finished_at": "2026-12-01T10:01:00Z"}, Role.ADMIN),
    ("POST", "/v1/tenants/{t}/releases/{release}:promote", {"override_reason": "probe {marker}"}, Role.ADMIN),
    ("POST", "/v1/tenants/{t}/releases:rollback", {"reason": "probe {marker}"}, Role.ADMIN),
    ("GET", "/v1/tenants/{t}/release-events", None, Role.ADMIN),
    ("POST", "/v1/tenants/{t}/releases/{release}:shadow", {"sample_rate": 0.5}, Role.ADMIN),
    ("POST", "/v1/tenants/{t}/shadow:stop", {}, Role.ADMIN),
    ("GET", "/v1/tenants/{t}/shadow-report", None, Role.ADMIN),
    ("GET", "/v1/tenants/{t}/shadow-report?shadow_id={shadow}", None, Role.ADMIN),
    ("POST", "/v1/tenants/{t}/releases/{release}:canary", {"percent": 10, "override_reason": "probe {marker}"},
     Role.ADMIN),
    ("POST", "/v1/tenants/{t}/canary:stop", {"reason": "probe {marker}"}, Role.ADMIN),
    ("GET", "/v1/tenants/{t}/canary", None, Role.ADMIN),
    ("POST", "/v1/tenants/{t}/releases:refit", {"request_id": "probe-refit"}, Role.ADMIN),
]


async def test_every_v1_route_has_an_isolation_probe(real_mesh: RealMesh) -> None:
    app = create_app(real_mesh.gateway_settings, backends=object())  # type: ignore[arg-type]
    routes = {(method.upper(), path) for path, operations in app.openapi()["paths"].items() if path.startswith("/v1")
              for method in operations}
    probed = {(method, template.split("?")[0].replace("{t}", "{tenant_id}").replace("{conv}", "{conversation_id}")
               .replace("{handoff}", "{handoff_id}").replace("{doc}", "{doc_id}").replace("{draft}", "{draft_id}")
               .replace("{finding}", "{finding_id}").replace("{turn}", "{turn_index}")
               .replace("{operation}", "{operation_id}").replace("{action}", "{action_id}")
               .replace("{release}", "{release_id}"))
              for method, template, _, _ in ENDPOINTS}
    assert routes - probed == set(), f"endpoints without an isolation probe: {sorted(routes - probed)}"


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, replacement in ids.items():
            value = value.replace("{" + name + "}", replacement)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


def _ids(owner: TenantData, path_tenant: str, marker: str, rng: random.Random, account: str) -> dict[str, str]:
    conversation, customer = rng.choice(owner.conversations)
    return {
        "t": path_tenant,
        "conv": conversation,
        "cust": customer,
        "marker": marker,
        "handoff": rng.choice(owner.handoff_ids),
        "doc": rng.choice(owner.doc_ids),
        "draft": rng.choice(owner.draft_ids or ["no-draft"]),
        "finding": rng.choice(owner.finding_ids or ["no-finding"]),
        "account": account,
        "turn": "0",
        # Neither tenant has actions (no catalog) or retrains in this mesh: ids that exist nowhere.
        "operation": "op-probe",
        "action": "act-probe",
        "release": rng.choice(owner.release_ids),
        "shadow": rng.choice(owner.shadow_ids),
    }


async def _call(http: httpx.AsyncClient, method: str, path: str, body: Any, headers: dict[str, str]
                ) -> httpx.Response:
    if path.split("?")[0].endswith("/events"):
        return await _events_for_a_while(http, path, headers)
    return await http.request(method, path, json=body, headers=headers)


async def _events_for_a_while(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> httpx.Response:
    """A live event stream never ends: what it sent within a second, then the client leaves."""
    async with http.stream("GET", path, headers=headers) as response:
        received = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async for chunk in response.aiter_bytes():
                    received.append(chunk)
    return httpx.Response(
        response.status_code, headers=response.headers, content=b"".join(received), request=response.request
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(real_mesh: RealMesh) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway served on a socket (not over ASGI, which holds a response until it
    ends): a live event stream is then read for a while and left, as a browser would."""
    async with served(real_mesh.gateway_settings) as url, httpx.AsyncClient(base_url=url, timeout=60) as client:
        yield client


def _leaks(response: httpx.Response, other: TenantData) -> list[str]:
    """The other tenant's secrets in the answer; an id the caller sent itself (a 404
    naming the handoff it asked for) is not news to the caller."""
    text, asked = response.text, str(response.request.url)
    return [secret for secret in other.secrets() if secret and secret in text and secret not in asked]


async def test_no_endpoint_answers_with_another_tenants_data(
    http: httpx.AsyncClient, real_mesh: RealMesh, seeded: dict[str, TenantData], usage: Any
) -> None:
    """Each tenant's own keys on its own path, with ids that exist in both tenants or only in
    the other: never a byte of the other tenant's data."""
    rng = random.Random(SEED + 1)
    account = usage[0][0]["account_id"]
    failures = []
    for _ in range(2):  # two random passes over every endpoint
        for tenant in rng.sample(list(TENANTS), len(TENANTS)):
            me, other = seeded[tenant], seeded[next(t for t in TENANTS if t != tenant)]
            for method, template, body, least in rng.sample(ENDPOINTS, len(ENDPOINTS)):
                role = rng.choice([r for r in Role if r >= least])
                # Object ids of the other tenant, asked for through one's own tenant.
                ids = _ids(other, tenant, me.marker, rng, account)
                path = _fill(template, ids)
                response = await _call(http, method, path, _fill(body, ids), as_(real_mesh, tenant, role))
                if response.status_code >= 500:
                    failures.append(f"{method} {path} as {tenant}/{role.label}: {response.status_code}")
                if leaked := _leaks(response, other):
                    failures.append(f"{method} {path} as {tenant}/{role.label} returned {other.tenant}'s {leaked}")
                # The other tenant's handoffs, drafts, findings and shadows do not exist for this tenant.
                if any(f"{{{name}}}" in template for name in ("handoff", "draft", "finding", "shadow")):
                    if response.status_code != 404:
                        failures.append(f"{method} {path} as {tenant}: {response.status_code}, expected 404")
                # A document id only the other tenant has cannot be deleted from here.
                if method == "DELETE" and ids["doc"] == f"only-{other.tenant}" and response.status_code != 404:
                    failures.append(f"DELETE {path} as {tenant}: {response.status_code}, expected 404")
    assert not failures, f"seed {SEED}:\n" + "\n".join(failures)


async def test_the_other_tenant_is_forbidden_in_every_path(
    http: httpx.AsyncClient, real_mesh: RealMesh, seeded: dict[str, TenantData], usage: Any
) -> None:
    rng = random.Random(SEED + 2)
    account = usage[0][0]["account_id"]
    failures = []
    for method, template, body, least in ENDPOINTS:
        if "{t}" not in template:
            continue
        for tenant in TENANTS:
            other = seeded[next(t for t in TENANTS if t != tenant)]
            role = rng.choice([r for r in Role if r >= least])
            ids = _ids(other, other.tenant, other.marker, rng, account)
            path = _fill(template, ids)
            response = await _call(http, method, path, _fill(body, ids), as_(real_mesh, tenant, role))
            if response.status_code != 403 or _leaks(response, other):
                failures.append(f"{method} {path} as {tenant}/{role.label}: {response.status_code}")
    assert not failures, f"seed {SEED}:\n" + "\n".join(failures)


async def test_a_body_naming_another_tenant_is_forbidden(
    http: httpx.AsyncClient, real_mesh: RealMesh, seeded: dict[str, TenantData]
) -> None:
    for tenant in TENANTS:
        other = next(t for t in TENANTS if t != tenant)
        for suffix in ("", "/stream"):
            response = await http.post(f"/v1/conversations/conv-shared-0/messages{suffix}",
                                       headers=as_(real_mesh, tenant, Role.CHANNEL),
                                       json={"text": "hi", "customer": {"tenant_id": other, "customer_id": "c"}})
            assert response.status_code == 403, response.text


async def test_colliding_conversation_ids_keep_each_tenants_history(
    http: httpx.AsyncClient, real_mesh: RealMesh, seeded: dict[str, TenantData]
) -> None:
    for tenant in TENANTS:
        me, other = seeded[tenant], seeded[next(t for t in TENANTS if t != tenant)]
        for conversation, customer in me.conversations:
            response = await http.get(f"/v1/conversations/{conversation}", params={"customer_id": customer},
                                      headers=as_(real_mesh, tenant, Role.CHANNEL))
            assert response.status_code == 200, response.text
            assert me.marker in response.text and other.marker not in response.text


async def test_searching_for_the_other_tenants_words_finds_only_ones_own_chunks(
    http: httpx.AsyncClient, real_mesh: RealMesh, seeded: dict[str, TenantData]
) -> None:
    for tenant in TENANTS:
        other = seeded[next(t for t in TENANTS if t != tenant)]
        for mode in ("hybrid", "dense", "keyword"):
            response = await http.post(f"/v1/tenants/{tenant}/kb/search", headers=as_(real_mesh, tenant, Role.CHANNEL),
                                       json={"query": f"{other.marker} runbook on-call rota", "top_k": 50,
                                             "mode": mode})
            assert response.status_code == 200, response.text
            hits = response.json()["hits"]
            assert all(h["chunk_id"] not in other.chunk_ids for h in hits)
            assert f"only-{other.tenant}" not in {h["doc_id"] for h in hits}
            assert other.marker not in response.text


async def test_searching_answer_units_for_the_other_tenants_words_finds_only_ones_own(
    real_mesh: RealMesh, seeded: dict[str, TenantData]
) -> None:
    for tenant in TENANTS:
        me, other = seeded[tenant], seeded[next(t for t in TENANTS if t != tenant)]
        units = await _search_units(real_mesh, tenant, f"{other.marker} runbook on-call rota")
        assert units and all(unit.unit_question for unit in units)
        assert all(unit.chunk_id not in other.chunk_ids for unit in units)
        assert f"only-{other.tenant}" not in {unit.doc_id for unit in units}
        assert not any(other.marker in f"{unit.unit_question} {unit.text}" for unit in units)
        assert any(me.marker in unit.text for unit in units)


async def test_a_channel_key_reads_no_handoffs_insights_or_outreach(
    http: httpx.AsyncClient, real_mesh: RealMesh, seeded: dict[str, TenantData], usage: Any
) -> None:
    rng = random.Random(SEED + 3)
    account = usage[0][0]["account_id"]
    for tenant in TENANTS:
        me = seeded[tenant]
        for method, template, body, least in ENDPOINTS:
            if least == Role.CHANNEL:
                continue
            ids = _ids(me, tenant, me.marker, rng, account)
            path = _fill(template, ids)
            response = await _call(http, method, path, _fill(body, ids), as_(real_mesh, tenant, Role.CHANNEL))
            assert response.status_code == 403, f"{method} {path}: {response.status_code}"
            assert response.json()["reason"] == "ROLE_FORBIDDEN"
            assert me.marker not in response.text
