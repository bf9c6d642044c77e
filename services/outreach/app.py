from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from aftercare.escalation.v1 import escalation_pb2_grpc
from aftercare.outreach.v1 import outreach_pb2, outreach_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2_grpc
from servicekit.clients import connect
from servicekit.database import database_url, make_engine
from servicekit.llm import LlmClient
from servicekit.server import Mount, mount, run_service
from services.outreach.detection import Detector
from services.outreach.detector_config import DetectorConfig
from services.outreach.outbox import Sender, make_sink
from services.outreach.replies import ReplyDeliveryWorker
from services.outreach.servicer import OutreachServicer
from services.outreach.settings import OutreachSettings
from services.outreach.store import OutreachStore


@contextlib.asynccontextmanager
async def servicers(settings: OutreachSettings) -> AsyncIterator[Sequence[Mount]]:
    detector_config = DetectorConfig.load(settings.detectors_file)
    engine = make_engine(database_url(settings.database_url, settings.data_dir, "outreach"))
    retrieval = connect(settings.retrieval_addr, "aftercare.retrieval.v1.RetrievalService")
    escalation = connect(settings.escalation_addr, "aftercare.escalation.v1.EscalationService")
    llm = LlmClient.from_settings(settings)
    tasks: list[asyncio.Task[None]] = []
    try:
        store = OutreachStore(engine)
        await asyncio.to_thread(store.migrate)
        servicer = OutreachServicer(
            store,
            settings,
            detector=Detector(engine, detector_config),
            retrieval=retrieval_pb2_grpc.RetrievalServiceStub(retrieval),
            llm=llm,
        )
        sink = make_sink(settings)
        if sink is not None:
            # With sending off, agents' replies stay in escalation's feed until a sender runs.
            sender = Sender(store, sink, settings)
            replies = ReplyDeliveryWorker(store, escalation_pb2_grpc.EscalationServiceStub(escalation), settings,
                                          on_queued=sender.wake)
            tasks += [asyncio.create_task(sender.run()), asyncio.create_task(replies.run())]
        yield [mount(servicer, outreach_pb2, outreach_pb2_grpc)]
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await llm.aclose()
        await escalation.close()
        await retrieval.close()
        engine.dispose()


def main() -> None:
    # Settings come from the environment; mypy sees its required fields (addresses, LLM URL) as missing arguments.
    run_service("outreach", OutreachSettings(), servicers)  # type: ignore[call-arg]
