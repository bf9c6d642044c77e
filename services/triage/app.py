from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import structlog

from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from servicekit.server import Mount, mount, run_service
from services.triage.policy import load_policy
from services.triage.sentiment import SentimentScorer
from services.triage.servicer import TriageServicer
from services.triage.settings import TriageSettings

log = structlog.get_logger("services.triage")


@contextlib.asynccontextmanager
async def servicers(settings: TriageSettings) -> AsyncIterator[Sequence[Mount]]:
    policy = load_policy(settings.policy_file)
    log.info("triage_policy_loaded", path=str(settings.policy_file), version=policy.version)
    yield [mount(TriageServicer(policy, SentimentScorer()), triage_pb2, triage_pb2_grpc)]


def main() -> None:
    run_service("triage", TriageSettings(), servicers)
