"""The real services (retrieval, triage, escalation, outreach, concierge) in
this process, each on its own gRPC server on port 0 with its own storage, and
the gateway app in front of them with API keys of two tenants and every role.

Isolation is a property of the services' storage and queries as much as of
the gateway's checks, so these tests run the real code paths end to end; only
the LLM is down (every service has a deterministic path without it) and the
processes are one, which makes the module start in seconds."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from gateway.keys import Role, create_key
from gateway.settings import GatewaySettings
from servicekit.server import serving
from services.actions.app import servicers as actions_servicers
from services.actions.settings import ActionsSettings
from services.concierge.app import servicers as concierge_servicers
from services.concierge.settings import ConciergeSettings
from services.escalation.app import servicers as escalation_servicers
from services.escalation.settings import EscalationSettings
from services.outreach.app import servicers as outreach_servicers
from services.outreach.settings import OutreachSettings
from services.retrieval.app import servicers as retrieval_servicers
from services.retrieval.settings import RetrievalSettings
from services.triage.app import servicers as triage_servicers
from services.triage.settings import TriageSettings
from tests.gateway.conftest import open_gateway

# Nothing listens there: the LLM is down for every service.
LLM_DOWN = "http://127.0.0.1:9/v1"
TENANTS = ("north", "south")


@dataclass
class RealMesh:
    gateway_settings: GatewaySettings
    keys_path: Path
    keys: dict[tuple[str, Role], str] = field(default_factory=dict)

    def key(self, tenant: str, role: Role) -> str:
        if (tenant, role) not in self.keys:
            self.keys[tenant, role] = create_key(self.keys_path, tenant, role, f"{role.label}-{tenant}")[0]
        return self.keys[tenant, role]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def real_mesh(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> AsyncIterator[RealMesh]:
    root = tmp_path_factory.mktemp("security-mesh")
    async with AsyncExitStack() as stack:
        def data(name: str) -> Path:
            path = root / name
            path.mkdir()
            return path

        retrieval = await stack.enter_async_context(serving(
            RetrievalSettings(port=0, data_dir=data("retrieval")),  # type: ignore[call-arg]
            functools.partial(retrieval_servicers, embedder=embedder),
        ))
        retrieval_addr = f"127.0.0.1:{retrieval.port}"
        triage = await stack.enter_async_context(serving(
            TriageSettings(port=0, data_dir=data("triage"), retrieval_addr=retrieval_addr,  # type: ignore[call-arg]
                           sentiment_model="vader"),
            triage_servicers,
        ))
        triage_addr = f"127.0.0.1:{triage.port}"
        escalation = await stack.enter_async_context(serving(
            EscalationSettings(port=0, data_dir=data("escalation"), database_url="",  # type: ignore[call-arg]
                               llm_base_url=LLM_DOWN, llm_timeout_s=1.0, retrieval_addr=retrieval_addr,
                               triage_addr=triage_addr),
            escalation_servicers,
        ))
        escalation_addr = f"127.0.0.1:{escalation.port}"
        outreach = await stack.enter_async_context(serving(
            OutreachSettings(port=0, data_dir=data("outreach"), database_url="",  # type: ignore[call-arg]
                             llm_base_url=LLM_DOWN, llm_timeout_s=1.0, retrieval_addr=retrieval_addr, sender="off",
                             escalation_addr=escalation_addr),
            outreach_servicers,
        ))
        concierge = await stack.enter_async_context(serving(
            ConciergeSettings(port=0, data_dir=data("concierge"), database_url="",  # type: ignore[call-arg]
                              llm_base_url=LLM_DOWN, llm_timeout_s=1.0, retrieval_addr=retrieval_addr,
                              triage_addr=triage_addr, escalation_addr=escalation_addr),
            concierge_servicers,
        ))
        # No catalog for these tenants: the actions routes answer for them as for any tenant without one.
        actions = await stack.enter_async_context(serving(
            ActionsSettings(port=0, data_dir=data("actions"), database_url=""),
            actions_servicers,
        ))
        keys_path = root / "api_keys.json"
        settings = GatewaySettings(
            retrieval_addr=retrieval_addr, triage_addr=triage_addr, escalation_addr=escalation_addr,
            outreach_addr=f"127.0.0.1:{outreach.port}", concierge_addr=f"127.0.0.1:{concierge.port}",
            actions_addr=f"127.0.0.1:{actions.port}",
            api_keys_file=keys_path, rate_limit_per_s=1000.0, rate_limit_burst=1000,
        )
        yield RealMesh(gateway_settings=settings, keys_path=keys_path)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(real_mesh: RealMesh) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway over ASGI; each request names its key (see `as_`)."""
    async with open_gateway(real_mesh.gateway_settings, raise_app_exceptions=False) as client:
        yield client


def as_(mesh: RealMesh, tenant: str, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {mesh.key(tenant, role)}"}
