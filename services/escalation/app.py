from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from servicekit.database import database_url, make_engine
from servicekit.server import Mount, mount, run_service
from services.escalation.servicer import EscalationServicer
from services.escalation.settings import EscalationSettings
from services.escalation.store import HandoffStore


@contextlib.asynccontextmanager
async def servicers(settings: EscalationSettings) -> AsyncIterator[Sequence[Mount]]:
    engine = make_engine(database_url(settings.database_url, settings.data_dir, "escalation"))
    try:
        store = HandoffStore(engine)
        await asyncio.to_thread(store.create_schema)
        yield [mount(EscalationServicer(store, settings.default_queue), escalation_pb2, escalation_pb2_grpc)]
    finally:
        engine.dispose()


def main() -> None:
    run_service("escalation", EscalationSettings(), servicers)
