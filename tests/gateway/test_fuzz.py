"""Schemathesis against /openapi.json: generated requests, valid and invalid,
to every operation of a live gateway on the fake mesh. No response may be a
5xx, and every response must match what the schema documents (status, media
type, body). Bounded: a few examples per operation (~250 requests, seconds)."""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.app import create_app
from gateway.keys import Role, create_key
from gateway.settings import GatewaySettings
from tests.gateway.conftest import TENANT, bearer
from tests.gateway.live import LiveGateway

_UNUSED = "127.0.0.1:1"
# Made at import: schemathesis asks the auth provider while collecting.
_KEYS_DIR = Path(tempfile.mkdtemp(prefix="aftercare-fuzz-"))
ADMIN_KEY = create_key(_KEYS_DIR / "api_keys.json", TENANT, Role.ADMIN, "fuzzer")[0]


def _schema() -> dict[str, Any]:
    """The app's own schema (building the app connects nothing), with tenant
    paths narrowed to the key's tenant: other tenants only meet the tenant
    check (tests of their own), and valid requests should reach the backends."""
    document = create_app(
        GatewaySettings(
            retrieval_addr=_UNUSED, triage_addr=_UNUSED, concierge_addr=_UNUSED,
            escalation_addr=_UNUSED, outreach_addr=_UNUSED,
        )
    ).openapi()
    document = copy.deepcopy(document)
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "tenant_id" and parameter["in"] == "path":
                    parameter["schema"] = {"type": "string", "enum": [TENANT]}
    return document


schema = schemathesis.openapi.from_dict(_schema())


@schema.auth()
class _ApiKey:
    """The admin key of the live gateway, as schemathesis' own auth: negative
    cases that drop the header are then known to be deliberate."""

    def get(self, case: Any, context: Any) -> str:
        return ADMIN_KEY

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), **bearer(data)}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def live() -> Iterator[LiveGateway]:
    gateway = LiveGateway(_KEYS_DIR / "api_keys.json")
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
        shutil.rmtree(_KEYS_DIR, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=7, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_answers_as_documented(case: Any, live: LiveGateway) -> None:
    response = case.call(base_url=live.url, timeout=10)
    # 413 (body over the limit) is a rejection too, one schemathesis does not count as such.
    checks = [c for c in CHECKS if response.status_code != 413 or c is not negative_data_rejection]
    case.validate_response(response, checks=checks)
