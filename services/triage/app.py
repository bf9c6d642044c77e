from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import structlog

from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from servicekit.server import Mount, mount, run_service
from services.triage.intent import TrainConfig
from services.triage.intents import IntentEngine, model_root
from services.triage.models import ModelStore
from services.triage.policy import load_policy
from services.triage.sentiment import SentimentScorer
from services.triage.servicer import TriageServicer
from services.triage.settings import TriageSettings

log = structlog.get_logger("services.triage")


def intent_engine(settings: TriageSettings, encoder: object | None = None) -> IntentEngine:
    """The intent engine; the encoder loads on first use unless one is given (tests share one)."""

    def load_encoder() -> object:
        if encoder is not None:
            return encoder
        from services.triage.encoder import Encoder

        return Encoder(torch_threads=settings.torch_threads)

    return IntentEngine(
        ModelStore(model_root(settings.data_dir)),
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
    yield [
        mount(
            TriageServicer(policy, SentimentScorer(), engine, max_examples=settings.intent_max_examples),
            triage_pb2,
            triage_pb2_grpc,
        )
    ]


def main() -> None:
    run_service("triage", TriageSettings(), servicers)
