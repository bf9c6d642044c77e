"""Concierge process: wires its backends (retrieval, triage, escalation, LLM) and serves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from aftercare.concierge.v1 import concierge_pb2, concierge_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2_grpc
from servicekit.clients import connect
from servicekit.llm import LlmClient
from servicekit.server import Mount, mount, run_service
from services.concierge.servicer import ConciergeServicer
from services.concierge.settings import ConciergeSettings


@contextlib.asynccontextmanager
async def servicers(settings: ConciergeSettings) -> AsyncIterator[Sequence[Mount]]:
    retrieval = connect(settings.retrieval_addr, "aftercare.retrieval.v1.RetrievalService")
    triage = connect(settings.triage_addr, "aftercare.triage.v1.TriageService")
    escalation = connect(settings.escalation_addr, "aftercare.escalation.v1.EscalationService")
    llm = LlmClient(
        settings.llm_base_url, settings.llm_model, api_key=settings.llm_api_key, timeout_s=settings.llm_timeout_s
    )
    servicer = ConciergeServicer(
        settings,
        retrieval=retrieval_pb2_grpc.RetrievalServiceStub(retrieval),
        triage=triage_pb2_grpc.TriageServiceStub(triage),
        escalation=escalation_pb2_grpc.EscalationServiceStub(escalation),
        llm=llm,
    )
    warm_up = asyncio.create_task(servicer.warm_up())
    try:
        yield [mount(servicer, concierge_pb2, concierge_pb2_grpc)]
    finally:
        warm_up.cancel()
        await llm.aclose()
        for channel in (retrieval, triage, escalation):
            await channel.close()


def main() -> None:
    run_service("concierge", ConciergeSettings(), servicers)  # type: ignore[call-arg]
