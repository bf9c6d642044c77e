"""Escalation process: its database (migrated at start), its backends
(retrieval, triage, the LLM) for context packages, the optional actions
service (account activity, approvals and their late outcomes), and the servicer."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Iterable, Sequence

from opentelemetry import metrics

from aftercare.actions.v1 import actions_pb2_grpc
from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2_grpc
from servicekit import attributes
from servicekit.clients import connect
from servicekit.database import database_url, make_engine
from servicekit.llm import LlmClient
from servicekit.server import Mount, mount, run_service
from services.escalation.account_activity import AccountActivityReader
from services.escalation.approvals import Approvals
from services.escalation.background import QuietTurns
from services.escalation.context import ContextBuilder
from services.escalation.enrichment import Enricher
from services.escalation.enrichment_store import EnrichmentStore
from services.escalation.feedback_store import FeedbackStore
from services.escalation.insights import Embed, InsightsEngine
from services.escalation.insights_store import InsightsStore
from services.escalation.late_outcomes import LateOutcomes, PendingOutcomeStore
from services.escalation.servicer import EscalationServicer
from services.escalation.settings import EscalationSettings
from services.escalation.store import HandoffStore
from services.escalation.thread import ThreadStore
from services.escalation.watch import Notifier


@contextlib.asynccontextmanager
async def servicers(
    settings: EscalationSettings,
    *,
    llm: LlmClient | None = None,
    retrieval: retrieval_pb2_grpc.RetrievalServiceStub | None = None,
    triage: triage_pb2_grpc.TriageServiceStub | None = None,
    embed: Embed | None = None,
    connect_backends: bool = True,
) -> AsyncIterator[Sequence[Mount]]:
    """The service's servicers; tests pass doubles for the LLM, backends and embeddings.
    Without `connect_backends` (a benchmark of the LLM part alone) retrieval and triage
    are left out, as if they were down."""
    engine = make_engine(database_url(settings.database_url, settings.data_dir, "escalation"))
    channels = []
    if retrieval is None and connect_backends:
        channels.append(connect(settings.retrieval_addr, "aftercare.retrieval.v1.RetrievalService"))
        retrieval = retrieval_pb2_grpc.RetrievalServiceStub(channels[-1])
    if triage is None and connect_backends:
        channels.append(connect(settings.triage_addr, "aftercare.triage.v1.TriageService"))
        triage = triage_pb2_grpc.TriageServiceStub(channels[-1])
    actions = None
    if settings.actions_addr and connect_backends:
        channels.append(connect(settings.actions_addr, "aftercare.actions.v1.ActionsService"))
        actions = actions_pb2_grpc.ActionsServiceStub(channels[-1])
    own_llm = llm is None
    llm = llm or LlmClient.from_settings(settings)
    try:
        store = HandoffStore(engine)
        await asyncio.to_thread(store.migrate)
        _observe_queue_depth(store)
        builder = ContextBuilder(settings, store, llm, retrieval, triage)
        insights = InsightsEngine(settings, InsightsStore(engine), embed)
        background = QuietTurns(settings.summary_quiet_s, settings.summary_max_wait_s)
        thread = ThreadStore(engine, dt.timedelta(seconds=settings.reopen_window_s))
        enricher = Enricher(EnrichmentStore(engine), builder, background)
        # Wakes this process's watchers after its writes: the servicer's and the late outcomes'.
        notifier = Notifier()
        approvals = Approvals(actions) if actions is not None else None
        late_outcomes = None
        if approvals is not None:
            late_outcomes = LateOutcomes(
                PendingOutcomeStore(engine), store, approvals, notifier, settings.late_outcome_poll_s
            )
        servicer = EscalationServicer(
            store,
            settings.default_queue,
            builder,
            insights,
            background,
            thread,
            enricher,
            FeedbackStore(engine),
            notifier,
            approvals=approvals,
            late_outcomes=late_outcomes,
            account_activity=AccountActivityReader(actions, settings.account_activity_timeout_s),
            watch_poll_s=settings.watch_poll_s,
            watch_max_streams=settings.watch_max_streams,
        )
        enricher.resume()
        if late_outcomes is not None:
            late_outcomes.start()
        try:
            yield [mount(servicer, escalation_pb2, escalation_pb2_grpc)]
        finally:
            await enricher.close()
            if late_outcomes is not None:
                await late_outcomes.close()
    finally:
        if own_llm:
            await llm.aclose()
        for channel in channels:
            await channel.close()
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
    # Settings come from the environment; mypy sees its required fields (addresses, LLM URL) as missing arguments.
    run_service("escalation", EscalationSettings(), servicers)  # type: ignore[call-arg]
