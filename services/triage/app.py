from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import structlog

from aftercare.operations.v1 import operations_pb2, operations_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2_grpc
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from servicekit.clients import connect
from servicekit.database import database_url, make_engine
from servicekit.operation_runner import OperationRunner
from servicekit.operations import OperationsServicer, OperationStore
from servicekit.server import Mount, mount, run_service
from services.triage.contacts import ContactLog
from services.triage.intent_config import TrainConfig
from services.triage.intent_service import IntentEngine
from services.triage.intent_store import ModelStore
from services.triage.policy import load_policy
from services.triage.sentiment import SentimentScorer
from services.triage.servicer import RETRAIN_KIND, TriageServicer, retrain_metadata, retrain_work
from services.triage.settings import TriageSettings
from services.triage.tier0 import Suggester
from services.triage.tier0_store import RateLimit, Tier0Store

log = structlog.get_logger("services.triage")


def encoder_cache_dir(settings: TriageSettings) -> Path:
    """Where encoders assembled from PyPI parts are unpacked: one per machine, not per data dir."""
    if settings.encoder_cache_dir is not None:
        return settings.encoder_cache_dir
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aftercare" / "encoders"


def intent_engine(settings: TriageSettings, encoder: object | None = None) -> IntentEngine:
    """The intent engine; the encoder loads on first use unless one is given (tests share one)."""

    def load_encoder() -> object:
        if encoder is not None:
            return encoder
        from services.triage.encoder import load_encoders

        return load_encoders(
            settings.intent_encoders, cache_dir=encoder_cache_dir(settings), torch_threads=settings.torch_threads
        )

    return IntentEngine(
        ModelStore.open(settings.database_url, settings.data_dir),
        load_encoder,
        config=TrainConfig(min_examples_per_label=settings.intent_min_examples_per_label),
        accuracy_tolerance=settings.intent_accuracy_tolerance,
        ece_tolerance=settings.intent_ece_tolerance,
    )


@contextlib.asynccontextmanager
async def servicers(settings: TriageSettings, encoder: object | None = None) -> AsyncIterator[Sequence[Mount]]:
    policy = load_policy(settings.policy_file)
    log.info("triage_policy_loaded", path=str(settings.policy_file), version=policy.version)
    engine = intent_engine(settings, encoder)
    database = make_engine(database_url(settings.database_url, settings.data_dir, "triage"))
    retrieval = connect(settings.retrieval_addr, "aftercare.retrieval.v1.RetrievalService")
    runner: OperationRunner | None = None
    try:
        # Every tenant's current model is loaded before the server reports SERVING; then the
        # shared model store is followed (a promotion through any replica reaches this one).
        await engine.load_current()
        engine.start_following(settings.intent_follow_seconds)
        store = Tier0Store(
            database,
            RateLimit(
                max_per_window=settings.tier0_max_per_window,
                window=dt.timedelta(seconds=settings.tier0_window_s),
                min_interval=dt.timedelta(seconds=settings.tier0_min_interval_s),
                repeat_after=dt.timedelta(seconds=settings.tier0_repeat_after_s),
            ),
        )
        await asyncio.to_thread(store.migrate)
        suggester = Suggester(
            retrieval_pb2_grpc.RetrievalServiceStub(retrieval),
            store,
            min_relevance=settings.tier0_min_relevance,
            min_dwell_seconds=settings.tier0_min_dwell_s,
        )
        sentiment = SentimentScorer.from_setting(settings.sentiment_model, engine.encode_primary)
        log.info("triage_sentiment_loaded", version=sentiment.version)
        # Retrains are long-running operations in the triage database: any replica runs them,
        # every replica answers for them (servicekit/operations.py).
        operations = OperationStore(database)
        await asyncio.to_thread(operations.migrate)
        runner = OperationRunner(
            operations, {RETRAIN_KIND: retrain_work(engine)}, stale_after=settings.operation_stale_s
        )
        servicer = TriageServicer(
            policy,
            sentiment,
            engine,
            suggester,
            operations=operations,
            contacts=ContactLog(database),
            max_examples=settings.intent_max_examples,
            operation_created=runner.wake,
        )
        runner.start()
        operations_servicer = OperationsServicer(operations, {RETRAIN_KIND: retrain_metadata})
        yield [
            mount(servicer, triage_pb2, triage_pb2_grpc),
            mount(operations_servicer, operations_pb2, operations_pb2_grpc),
        ]
    finally:
        # A retrain still running is handed back to the queue (another replica, or this one
        # restarted, runs it again from its request).
        if runner is not None:
            await runner.stop()
        await engine.close()
        await retrieval.close()
        database.dispose()


def main() -> None:
    # Settings come from the environment; mypy sees the required retrieval_addr as a missing argument.
    run_service("triage", TriageSettings(), servicers)  # type: ignore[call-arg]
