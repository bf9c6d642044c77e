"""Concierge process: wires its backends (retrieval, triage, escalation, LLM,
conversation store, the tenants' releases with their shadows, canaries and refits) and
serves ConciergeService and ReleaseService."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from aftercare.actions.v1 import actions_pb2_grpc
from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc, releases_pb2, releases_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2_grpc
from servicekit.clients import connect
from servicekit.database import database_url, make_engine
from servicekit.llm import LlmClient
from servicekit.server import Mount, mount, run_service
from services.concierge.canary import CanaryBook
from services.concierge.confidence import Confidence
from services.concierge.human_labels import HumanLabels
from services.concierge.persona import PersonaBook
from services.concierge.refit import Refitter
from services.concierge.release_servicer import ReleaseServicer
from services.concierge.releases import ReleaseBook
from services.concierge.servicer import ConciergeServicer, configuration
from services.concierge.settings import ConciergeSettings
from services.concierge.shadow import ShadowBook
from services.concierge.store import ConversationStore


@contextlib.asynccontextmanager
async def servicers(settings: ConciergeSettings) -> AsyncIterator[Sequence[Mount]]:
    # First, before anything is opened: no fit for the serving configuration, no start.
    confidence = Confidence.load(
        settings.fits_dir, configuration(settings), allow_uncalibrated=settings.allow_uncalibrated
    )
    engine = make_engine(database_url(settings.database_url, settings.data_dir, "concierge"))
    store = ConversationStore(engine)
    await asyncio.to_thread(store.migrate)
    retrieval = connect(settings.retrieval_addr, "aftercare.retrieval.v1.RetrievalService")
    triage = connect(settings.triage_addr, "aftercare.triage.v1.TriageService")
    escalation = connect(settings.escalation_addr, "aftercare.escalation.v1.EscalationService")
    # Optional: without it the concierge answers from the knowledge base only.
    actions = connect(settings.actions_addr, "aftercare.actions.v1.ActionsService") if settings.actions_addr else None
    llm = LlmClient.from_settings(settings)
    triage_stub = triage_pb2_grpc.TriageServiceStub(triage)
    escalation_stub = escalation_pb2_grpc.EscalationServiceStub(escalation)
    actions_stub = actions_pb2_grpc.ActionsServiceStub(actions) if actions is not None else None
    # What humans did with each turn: customers' ratings here, agents' judgements in escalation.
    labels = HumanLabels(engine, escalation_stub)
    canaries = CanaryBook(engine, labels)
    # The working copy (persona files, the fit loaded above) that releases are made from.
    personas = PersonaBook(settings.persona_dir, settings.confidence_threshold)
    releases = ReleaseBook(
        engine, settings, personas=personas, confidence=confidence, triage=triage_stub, actions=actions_stub,
        canaries=canaries,
    )
    shadows = ShadowBook(
        engine, releases, labels, max_in_flight=settings.shadow_max_in_flight, timeout_s=settings.shadow_timeout_s
    )
    servicer = ConciergeServicer(
        settings,
        retrieval=retrieval_pb2_grpc.RetrievalServiceStub(retrieval),
        triage=triage_stub,
        escalation=escalation_stub,
        llm=llm,
        store=store,
        personas=personas,
        confidence=confidence,
        actions=actions_stub,
        releases=releases,
        shadows=shadows,
    )
    release_servicer = ReleaseServicer(releases, shadows=shadows, refitter=Refitter(releases, labels))
    warm_up = asyncio.create_task(servicer.warm_up())
    # Messages held for an agent while escalation was down, before a restart.
    servicer.start_redelivery()
    # Every replica evaluates the running canaries; the rollback itself happens once (canary.py).
    canary_monitor = asyncio.create_task(canaries.run_monitor(settings.canary_evaluate_interval_s))
    try:
        yield [
            mount(servicer, concierge_pb2, concierge_pb2_grpc),
            mount(release_servicer, releases_pb2, releases_pb2_grpc),
        ]
    finally:
        warm_up.cancel()
        canary_monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await canary_monitor
        # Shadow decisions in flight are abandoned: none may write to the engine disposed below.
        await shadows.close()
        servicer.stop_redelivery()
        await llm.aclose()
        for channel in (retrieval, triage, escalation):
            await channel.close()
        if actions is not None:
            await actions.close()
        engine.dispose()


def main() -> None:
    # Settings come from the environment; mypy sees its required fields (addresses, LLM URL) as missing arguments.
    run_service("concierge", ConciergeSettings(), servicers)  # type: ignore[call-arg]
