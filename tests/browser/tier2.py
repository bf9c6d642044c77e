"""A stack for the Tier-2 browser tests: the gateway served by uvicorn, the
real escalation service (SQLite, its LLM down so summaries are extractive) and
the real concierge service (SQLite, unit answers without phrasing, the shipped
confidence fit, its LLM a port nobody listens on: the unit path needs none).
Triage, retrieval and outreach, which are not under test, are the scripted
fakes of the gateway tests; retrieval finds nothing near any question, so the
concierge hands every new question over (no_knowledge) and the conversation is
a person's from then on. Everything runs on one event loop in a background
thread, so Playwright's sync API has the test's thread to itself."""

from __future__ import annotations

import asyncio
import functools
import threading
from contextlib import AsyncExitStack
from pathlib import Path

import uvicorn

from aftercare.outreach.v1 import outreach_pb2, outreach_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from gateway.app import create_app
from gateway.backends import Backends
from gateway.keys import Role, create_key
from gateway.settings import GatewaySettings
from servicekit.server import mount, serving, start_server
from servicekit.settings import ServiceSettings
from services.concierge.app import servicers as concierge_servicers
from services.concierge.confidence import DEFAULT_FITS_DIR
from services.concierge.settings import ConciergeSettings
from services.escalation.app import servicers as escalation_servicers
from tests.conftest import free_port
from tests.gateway.conftest import Fake
from tests.services.escalation.conftest import FakeRetrieval, FakeTriage, fake_embed, llm_down, settings_for

TENANT = "demo"
# What the fake knowledge base returns for any question: one passage, far below the
# concierge's similarity floor (nothing in it is about the question).
UNRELATED = retrieval_pb2.SearchHit(
    doc_id="kb-shipping", chunk_id="kb-shipping#0", title="Shipping times",
    text="Orders ship within two business days.", similarity=0.05, score=0.05,
)


def concierge_settings(
    data_dir: Path, *, retrieval_addr: str, triage_addr: str, escalation_addr: str
) -> ConciergeSettings:
    """The concierge as tools/concierge_evaluation.py:eval_stack runs it without an LLM: every
    value given, so the caller's shell environment cannot leak in."""
    return ConciergeSettings(  # type: ignore[call-arg]
        port=0, data_dir=data_dir, database_url="",
        retrieval_addr=retrieval_addr, triage_addr=triage_addr, escalation_addr=escalation_addr,
        # Phrasing is off, so nothing calls the LLM: a port nobody listens on refuses at once.
        llm_base_url=f"http://127.0.0.1:{free_port()}/v1", llm_timeout_s=1.0,
        answer_mode="unit", phrasing="off", fits_dir=DEFAULT_FITS_DIR, allow_uncalibrated=False,
    )


class Tier2Stack:
    """Gateway + real escalation + real concierge, on free ports, in a thread of their own."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.keys_path = data_dir / "api_keys.json"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keys = {role: create_key(self.keys_path, TENANT, role, f"{role.label}-{TENANT}")[0]
                     for role in (Role.CHANNEL, Role.AGENT, Role.ADMIN)}
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._server: uvicorn.Server | None = None
        self._thread = threading.Thread(target=self._run, name="tier2-stack", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # surfaced to the test by start()
            self._failure = error
            self._ready.set()

    async def _serve(self) -> None:
        async with AsyncExitStack() as stack:
            fakes_addr = await self._start_fakes(stack)
            escalation_addr = await self._start_escalation(stack)
            concierge = await stack.enter_async_context(serving(concierge_settings(
                self.data_dir / "concierge", retrieval_addr=fakes_addr, triage_addr=fakes_addr,
                escalation_addr=escalation_addr,
            ), concierge_servicers))
            settings = GatewaySettings(
                concierge_addr=f"127.0.0.1:{concierge.port}", triage_addr=fakes_addr, retrieval_addr=fakes_addr,
                outreach_addr=fakes_addr, escalation_addr=escalation_addr, api_keys_file=self.keys_path,
                port=self.port, rate_limit_per_s=1000.0, rate_limit_burst=1000,
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
        """Triage (knows nothing: no route, no flags), retrieval (nothing near the question) and
        outreach, scripted, on one free port; its address."""
        triage, retrieval, outreach = (Fake(pb2, pb2_grpc) for pb2, pb2_grpc in (
            (triage_pb2, triage_pb2_grpc), (retrieval_pb2, retrieval_pb2_grpc), (outreach_pb2, outreach_pb2_grpc)))
        retrieval.search.outcome = retrieval_pb2.SearchResponse(hits=[UNRELATED])
        fakes = await start_server(ServiceSettings(port=0), [
            mount(triage, triage_pb2, triage_pb2_grpc), mount(retrieval, retrieval_pb2, retrieval_pb2_grpc),
            mount(outreach, outreach_pb2, outreach_pb2_grpc)])
        stack.push_async_callback(fakes.stop, 0)
        return f"127.0.0.1:{fakes.port}"

    async def _start_escalation(self, stack: AsyncExitStack) -> str:
        """The real escalation service on a free port; its address."""
        factory = functools.partial(escalation_servicers, llm=llm_down(), retrieval=FakeRetrieval(),
                                    triage=FakeTriage(), embed=fake_embed)
        escalation = await stack.enter_async_context(serving(settings_for(self.data_dir / "escalation"), factory))
        return f"127.0.0.1:{escalation.port}"

    def start(self) -> Tier2Stack:
        self._thread.start()
        if not self._ready.wait(60) or self._failure is not None:
            raise RuntimeError(f"the Tier-2 stack did not start: {self._failure!r}")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(15)
