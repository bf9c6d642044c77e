"""Background LLM work takes turns after customers (services/escalation/background.py)."""

from __future__ import annotations

import asyncio
import time

from services.escalation.background import QuietTurns


async def _run(turns: QuietTurns, started: float, log: list[tuple[str, float]], name: str) -> None:
    async with turns.turn():
        log.append((name, time.monotonic() - started))
        await asyncio.sleep(0.05)


async def test_a_job_waits_for_quiet_and_each_contact_restarts_the_wait() -> None:
    turns = QuietTurns(quiet_s=0.3, max_wait_s=10.0)
    started = time.monotonic()
    log: list[tuple[str, float]] = []
    turns.contact()
    job = asyncio.create_task(_run(turns, started, log, "summary"))
    await asyncio.sleep(0.2)
    turns.contact()  # another customer: quiet again only 0.3 s from now
    await asyncio.wait_for(job, 5)
    assert log[0][1] >= 0.45


async def test_jobs_run_one_at_a_time_and_at_once_when_it_is_quiet() -> None:
    turns = QuietTurns(quiet_s=0.3, max_wait_s=10.0)
    started = time.monotonic()
    log: list[tuple[str, float]] = []
    await asyncio.wait_for(asyncio.gather(*(_run(turns, started, log, n) for n in ("a", "b"))), 5)
    (_, at_first), (_, at_second) = log
    assert at_first < 0.1  # no contact yet: nothing to wait for
    assert at_second - at_first >= 0.05  # the second waited for the first to finish


async def test_a_busy_stretch_delays_a_job_but_never_starves_it() -> None:
    turns = QuietTurns(quiet_s=0.5, max_wait_s=0.4)
    started = time.monotonic()
    log: list[tuple[str, float]] = []
    job = asyncio.create_task(_run(turns, started, log, "summary"))
    for _ in range(20):  # contacts every 0.05 s for a second: never quiet
        turns.contact()
        await asyncio.sleep(0.05)
        if log:
            break
    await asyncio.wait_for(job, 5)
    assert 0.35 <= log[0][1] < 0.9
