"""Hostile characters in any text field of any endpoint get a clean 4xx or a
normal answer from the real services, never a 5xx: NUL bytes (which storage
and search layers refuse), terminal escapes, bidirectional overrides and
zero-width characters, emoji, long runs of multi-byte characters.

(The drill found NUL in chat and browsing text reaching retrieval and coming back
as a 500; those fields now refuse NUL with a field violation.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gateway.keys import Role
from tests.security.conftest import RealMesh, as_

pytestmark = pytest.mark.asyncio(loop_scope="module")

HOSTILE = {
    "nul": "a\x00b",
    "escapes": "\x07\x1b[31mred\x1b[0m\x08",
    "bidi": "\u202eevil\u202c\u200b\u2066x\u2069",
    "emoji": "😀👩‍👩‍👧 ｆｕｌｌｗｉｄｔｈ",
    "multibyte": "é" * 1500,
}
Body = Callable[[str], dict[str, Any]]
ENDPOINTS: dict[str, tuple[str, str, Body]] = {
    "chat text": ("POST", "/v1/conversations/hostile-c/messages",
                  lambda v: {"text": f"How do I rotate an API key? {v}", "customer": {"customer_id": "c1"}}),
    "chat customer id": ("POST", "/v1/conversations/hostile-c/messages",
                         lambda v: {"text": "How do I rotate an API key?", "customer": {"customer_id": f"c{v}"}}),
    "email body": ("POST", "/v1/tenants/north/intake/email",
                   lambda v: {"sender": "a@b.example", "subject": "Help", "body": f"Rotate keys {v}"}),
    "email subject": ("POST", "/v1/tenants/north/intake/email",
                      lambda v: {"sender": "a@b.example", "subject": f"Help {v}", "body": "Rotate keys"}),
    "browsing search": ("POST", "/v1/tenants/north/browsing-events",
                        lambda v: {"customer_id": "c1", "page": "/settings", "search_query": f"rotate {v}"}),
    "browsing page": ("POST", "/v1/tenants/north/browsing-events",
                      lambda v: {"customer_id": "c1", "page": f"/settings{v}", "recent_errors": [f"E-1{v}"]}),
    "kb search": ("POST", "/v1/tenants/north/kb/search", lambda v: {"query": f"rotate {v}"}),
    "triage": ("POST", "/v1/tenants/north/triage", lambda v: {"text": f"refund {v}", "customer_id": "c1"}),
    "usage event": ("POST", "/v1/tenants/north/usage-events",
                    lambda v: {"events": [{"event_id": f"e{v}", "account_id": f"a{v}",
                                           "occurred_at": "2026-11-20T10:00:00Z", "feature": f"f{v}"}]}),
    "account": ("PUT", "/v1/tenants/north/outreach/accounts",
                lambda v: {"accounts": [{"account_id": f"acct{v}", "name": f"n{v}"}]}),
    "document": ("POST", "/v1/tenants/north/kb/documents",
                 lambda v: {"documents": [{"doc_id": "hostile-doc", "title": f"T{v}", "body": f"# T\n\nBody {v}."}]}),
}


def _cases() -> list[Any]:
    return [
        pytest.param(endpoint, kind, id=f"{endpoint}-{kind}")
        for endpoint in ENDPOINTS for kind in HOSTILE
    ]


@pytest.mark.parametrize(("endpoint", "kind"), _cases())
async def test_hostile_characters_never_make_a_5xx(
    http: httpx.AsyncClient, real_mesh: RealMesh, endpoint: str, kind: str
) -> None:
    method, path, body = ENDPOINTS[endpoint]
    response = await http.request(method, path, json=body(HOSTILE[kind]), headers=as_(real_mesh, "north", Role.ADMIN))
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text
