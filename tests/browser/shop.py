"""A stack for the browser tests of the `shop` tenant's account: the gateway served by uvicorn,
the real actions service (the shop catalog) in front of the real demo back office (`python -m
demoshop`, started by the test module), the real escalation service (its LLM down: extractive
packages) wired to it, and the real concierge servicer whose LLM is the scripted planner of
tests/services/concierge/test_account_flow.py (an OpenAI-compatible double answering the JSON a
planner would: identity, reads, writes and the customer's yes are the concierge's own code).
Triage, retrieval and outreach are not under test: scripted fakes. Everything runs on one event
loop in a background thread, so Playwright's sync API has the test's thread to itself."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections import defaultdict
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import uvicorn

from aftercare.actions.v1 import actions_pb2_grpc
from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2_grpc
from aftercare.outreach.v1 import outreach_pb2, outreach_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from gateway.app import create_app
from gateway.backends import Backends
from gateway.keys import Role, create_key
from gateway.settings import GatewaySettings
from servicekit.database import make_engine
from servicekit.server import mount, serving, start_server
from servicekit.settings import ServiceSettings
from services.actions.app import servicers as actions_servicers
from services.actions.catalog import DEFAULT_CATALOG_DIR
from services.concierge.servicer import ConciergeServicer
from services.concierge.settings import ConciergeSettings
from services.concierge.store import ConversationStore
from services.escalation.app import servicers as escalation_servicers
from tests.conftest import free_port
from tests.demoshop.live import TAU_RETAIL
from tests.gateway.conftest import Fake
from tests.services.actions.conftest import settings_for as actions_settings_for
from tests.services.concierge.test_account_flow import ScriptedPlanner
from tests.services.concierge.test_concierge import OPEN, stand_in
from tests.services.concierge.test_concierge import FakeRetrieval as ConciergeRetrieval
from tests.services.concierge.test_concierge import FakeTriage as ConciergeTriage
from tests.services.escalation.conftest import FakeRetrieval, FakeTriage, fake_embed, llm_down
from tests.services.escalation.conftest import settings_for as escalation_settings_for

TENANT = "shop"
# Above this refund, the shop catalog's cancellation needs an agent's approval.
APPROVAL_THRESHOLD = 5000.0


@dataclass(frozen=True)
class Order:
    order_id: str
    status: str
    paid: float


@dataclass
class Customer:
    user_id: str
    email: str
    orders: list[Order] = field(default_factory=list)

    def pending(self, *, big: bool = False) -> list[Order]:
        return [o for o in self.orders if o.status == "pending" and (o.paid > APPROVAL_THRESHOLD) == big]

    def delivered(self) -> list[Order]:
        return [o for o in self.orders if o.status == "delivered"]


def customers() -> list[Customer]:
    """The τ-bench retail store's customers with their orders (as the data folder has them)."""
    users = json.loads((TAU_RETAIL / "users.json").read_text())
    orders = json.loads((TAU_RETAIL / "orders.json").read_text())
    found: dict[str, Customer] = {}
    by_user: dict[str, list[Order]] = defaultdict(list)
    for order_id, order in orders.items():
        paid = sum(p["amount"] for p in order["payment_history"] if p["transaction_type"] == "payment")
        by_user[order["user_id"]].append(Order(order_id, order["status"], round(paid, 2)))
    for user_id, its_orders in by_user.items():
        found[user_id] = Customer(user_id, users[user_id]["email"], its_orders)
    return list(found.values())


class ShopStack:
    """Gateway + real actions + real escalation + real concierge (scripted planner), on free ports,
    in a thread of their own. The back office's address and token come from the environment
    (SHOP_BACKOFFICE_URL, DEMOSHOP_TOKEN), as the shop catalog reads them."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.keys_path = data_dir / "api_keys.json"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keys = {role: create_key(self.keys_path, TENANT, role, f"{role.label}-{TENANT}")[0]
                     for role in (Role.CHANNEL, Role.AGENT, Role.ADMIN)}
        self.planner = ScriptedPlanner()
        self.escalation_address = ""
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._server: uvicorn.Server | None = None
        self._thread = threading.Thread(target=self._run, name="shop-stack", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # surfaced to the test by start()
            self._failure = error
            self._ready.set()

    async def _serve(self) -> None:
        async with AsyncExitStack() as stack:
            fakes_addr = await self._start_fakes(stack)
            actions = await stack.enter_async_context(
                serving(actions_settings_for(self.data_dir / "actions", DEFAULT_CATALOG_DIR), actions_servicers)
            )
            actions_addr = f"127.0.0.1:{actions.port}"
            escalation_factory = functools.partial(escalation_servicers, llm=llm_down(), retrieval=FakeRetrieval(),
                                                   triage=FakeTriage(), embed=fake_embed)
            escalation = await stack.enter_async_context(serving(
                escalation_settings_for(self.data_dir / "escalation", actions_addr=actions_addr), escalation_factory))
            self.escalation_address = f"127.0.0.1:{escalation.port}"
            concierge_addr = await self._start_concierge(stack, actions_addr, self.escalation_address)
            settings = GatewaySettings(
                concierge_addr=concierge_addr, triage_addr=fakes_addr, retrieval_addr=fakes_addr,
                outreach_addr=fakes_addr, escalation_addr=self.escalation_address, actions_addr=actions_addr,
                api_keys_file=self.keys_path, port=self.port, rate_limit_per_s=1000.0, rate_limit_burst=1000,
            )
            backends = Backends.connect(settings)
            stack.push_async_callback(backends.close)
            config = uvicorn.Config(create_app(settings, backends), host="127.0.0.1", port=self.port,
                                    log_config=None, access_log=False, timeout_graceful_shutdown=2)
            self._server = uvicorn.Server(config)
            serving_task = asyncio.create_task(self._server.serve())
            while not self._server.started and not serving_task.done():  # noqa: ASYNC110 (uvicorn has only a flag)
                await asyncio.sleep(0.02)
            self._ready.set()
            await serving_task

    async def _start_fakes(self, stack: AsyncExitStack) -> str:
        """Triage, retrieval and outreach as the gateway sees them, scripted, on one free port."""
        mounts = [mount(Fake(pb2, pb2_grpc), pb2, pb2_grpc) for pb2, pb2_grpc in (
            (triage_pb2, triage_pb2_grpc), (retrieval_pb2, retrieval_pb2_grpc), (outreach_pb2, outreach_pb2_grpc))]
        fakes = await start_server(ServiceSettings(port=0), mounts)
        stack.push_async_callback(fakes.stop, 0)
        return f"127.0.0.1:{fakes.port}"

    async def _start_concierge(self, stack: AsyncExitStack, actions_addr: str, escalation_addr: str) -> str:
        """The concierge's servicer on real channels to actions and escalation, its LLM the planner."""
        config = ConciergeSettings(  # type: ignore[call-arg]
            port=0, data_dir=self.data_dir / "concierge", database_url="", retrieval_addr="unused:1",
            triage_addr="unused:1", escalation_addr=escalation_addr, actions_addr=actions_addr,
            llm_base_url="http://llm.test/v1",
        )
        (self.data_dir / "concierge").mkdir(parents=True, exist_ok=True)
        engine = make_engine(f"sqlite:///{self.data_dir / 'concierge' / 'concierge.db'}")
        stack.callback(engine.dispose)
        store = ConversationStore(engine)
        store.migrate()
        actions_channel = grpc.aio.insecure_channel(actions_addr)
        escalation_channel = grpc.aio.insecure_channel(escalation_addr)
        stack.push_async_callback(actions_channel.close)
        stack.push_async_callback(escalation_channel.close)
        servicer = ConciergeServicer(
            config, ConciergeRetrieval(), ConciergeTriage(),  # type: ignore[arg-type]
            escalation_pb2_grpc.EscalationServiceStub(escalation_channel), self.planner.client(), store,
            confidence=stand_in(config, OPEN), actions=actions_pb2_grpc.ActionsServiceStub(actions_channel),
        )
        stack.callback(servicer.stop_redelivery)
        server = await start_server(ServiceSettings(port=0), [mount(servicer, concierge_pb2, concierge_pb2_grpc)])
        stack.push_async_callback(server.stop, 0)
        return f"127.0.0.1:{server.port}"

    def start(self) -> ShopStack:
        self._thread.start()
        if not self._ready.wait(60) or self._failure is not None:
            raise RuntimeError(f"the shop stack did not start: {self._failure!r}")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(15)
