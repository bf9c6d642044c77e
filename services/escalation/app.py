from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence

from opentelemetry import metrics

from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from servicekit import attributes
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
        _observe_queue_depth(store)
        yield [mount(EscalationServicer(store, settings.default_queue), escalation_pb2, escalation_pb2_grpc)]
    finally:
        engine.dispose()


def _observe_queue_depth(store: HandoffStore) -> None:
    # Called by the metric reader on its own thread at each export; a cheap indexed count.
    def observe(_: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        for (tenant, queue), count in store.waiting_by_queue().items():
            yield metrics.Observation(count, {attributes.TENANT_ID: tenant, attributes.ESCALATION_QUEUE: queue})

    metrics.get_meter("aftercare.escalation").create_observable_gauge(
        attributes.ESCALATION_QUEUE_DEPTH, callbacks=[observe], description="handoffs waiting for an agent"
    )


def main() -> None:
    run_service("escalation", EscalationSettings(), servicers)
