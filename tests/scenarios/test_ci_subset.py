"""The golden conversations' fast subset (tag `ci`) through the real mesh: every service its own
process, started by bench/scenarios.py's own launcher, the conversations sent by its runner
through the gateway. These scenarios are deterministic on the CPU default (no LLM decides
them): a handoff on request and what follows it, a legal matter routed to people, a vague
message and an off-topic one, an injection, an answer from the knowledge base, and on the
shop tenant identity before any private data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.scenarios import Target, gateway_sender, load_suite, run_suite, select, started_mesh
from tests.demoshop.live import needs_tau_retail

pytestmark = [pytest.mark.mesh, needs_tau_retail]

SUITES = Path(__file__).resolve().parents[2] / "bench" / "scenarios"


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    with started_mesh({"demo", "shop"}, admin=False, say=lambda _: None) as running:
        yield running


@pytest.mark.parametrize("suite_file", ["demo.json", "shop.json"])
def test_the_ci_scenarios_pass(target: Target, suite_file: str) -> None:
    suite = load_suite(SUITES / suite_file)
    subset = select(suite.scenarios, ["ci"])
    assert subset
    send, client = gateway_sender(target)
    with client:
        report = run_suite(suite, subset, send, target=target.origin, say=lambda _: None)
    failures = [f"{r.name}: {failure}" for r in report.scenarios for failure in r.failures]
    assert report.passed == report.total == len(subset), "\n".join(failures)
    # Every turn was judged on something: a scenario with no assertion could never fail.
    assert all(r.assertions for r in report.scenarios)
