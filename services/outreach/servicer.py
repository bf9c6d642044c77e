from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable

import grpc
import structlog

from aftercare.outreach.v1 import outreach_pb2, outreach_pb2_grpc
from servicekit.database import utcnow
from servicekit.errors import Violations
from services.outreach.events import MAX_ID_CHARS, rejection_reason
from services.outreach.store import OutreachStore

log = structlog.get_logger("services.outreach")


class OutreachServicer(outreach_pb2_grpc.OutreachServiceServicer):
    def __init__(self, store: OutreachStore, batch_size: int, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self._store = store
        self._batch_size = batch_size
        self._clock = clock

    async def RecordUsage(
        self,
        request_iterator: AsyncIterator[outreach_pb2.RecordUsageRequest],
        context: grpc.aio.ServicerContext,
    ) -> outreach_pb2.RecordUsageResponse:
        # Valid events are stored in batches as the stream arrives, so a long stream needs
        # bounded memory; a stream cut short keeps what was stored, and resending it is
        # safe because event ids already stored count as duplicates.
        response = outreach_pb2.RecordUsageResponse()
        seen: set[tuple[str, str]] = set()
        batch: list[outreach_pb2.UsageEvent] = []

        async def flush() -> None:
            stored = await asyncio.to_thread(self._store.record_usage, batch, self._clock())
            response.accepted += stored
            response.duplicates += len(batch) - stored
            batch.clear()

        async for request in request_iterator:
            reason = rejection_reason(request, self._clock())
            if reason is not None:
                response.rejected.add(event_id=request.event.event_id[:MAX_ID_CHARS], reason=reason)
                continue
            key = (request.event.tenant_id, request.event.event_id)
            if key in seen:
                response.duplicates += 1
                continue
            seen.add(key)
            batch.append(request.event)
            if len(batch) >= self._batch_size:
                await flush()
        if batch:
            await flush()
        log.info(
            "usage_recorded",
            accepted=response.accepted,
            duplicates=response.duplicates,
            rejected=len(response.rejected),
        )
        return response

    async def ListDrafts(
        self, request: outreach_pb2.ListDraftsRequest, context: grpc.aio.ServicerContext
    ) -> outreach_pb2.ListDraftsResponse:
        problems = Violations()
        problems.check(bool(request.tenant_id.strip()), "tenant_id", "required")
        problems.raise_if_any()
        state = request.state or outreach_pb2.DRAFT_STATE_PENDING_REVIEW
        drafts = await asyncio.to_thread(self._store.list_drafts, request.tenant_id, state)
        return outreach_pb2.ListDraftsResponse(drafts=drafts)
