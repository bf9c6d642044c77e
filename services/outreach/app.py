from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from aftercare.outreach.v1 import outreach_pb2, outreach_pb2_grpc
from servicekit.database import database_url, make_engine
from servicekit.server import Mount, mount, run_service
from services.outreach.servicer import OutreachServicer
from services.outreach.settings import OutreachSettings
from services.outreach.store import OutreachStore


@contextlib.asynccontextmanager
async def servicers(settings: OutreachSettings) -> AsyncIterator[Sequence[Mount]]:
    engine = make_engine(database_url(settings.database_url, settings.data_dir, "outreach"))
    try:
        store = OutreachStore(engine)
        await asyncio.to_thread(store.create_schema)
        yield [mount(OutreachServicer(store, settings.usage_batch_size), outreach_pb2, outreach_pb2_grpc)]
    finally:
        engine.dispose()


def main() -> None:
    run_service("outreach", OutreachSettings(), servicers)
