"""Retraining the intent model from the insights page, in headless Chromium, through a
live gateway and a real triage server: a file of labelled examples, a live progress
bar, the outcome, and Cancel."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.keys import Role
from servicekit.server import serving
from services.triage.app import servicers
from services.triage.encoder import Encoder
from services.triage.settings import TriageSettings
from tests.browser.conftest import LiveGateway
from tests.browser.test_console import enter_key
from tests.gateway.test_operations import SMALL, demo_rows


class LiveTriage:
    """A real triage server on an event loop of its own in a background thread."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-triage", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:
            self._failure = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        settings = TriageSettings(port=0, data_dir=self.data_dir, retrieval_addr="127.0.0.1:9")
        encoder = Encoder(torch_threads=1)
        async with serving(settings, lambda s: servicers(s, encoder)) as running:
            self.port = running.port
            self._ready.set()
            await self._stop.wait()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(120) or self._failure is not None:
            raise RuntimeError(f"triage did not start: {self._failure!r}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


@pytest.fixture
def live_with_triage(tmp_path: Path) -> Iterator[LiveGateway]:
    triage = LiveTriage(tmp_path / "triage")
    triage.start()
    gateway = LiveGateway(tmp_path / "api_keys.json", triage_addr=f"127.0.0.1:{triage.port}")
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
        triage.stop()


def _jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_an_admin_retrains_and_cancels_from_the_insights_page(
    page: Any, live_with_triage: LiveGateway, tmp_path: Path, artifacts: Path
) -> None:
    live = live_with_triage
    enter_key(page, live, "insights.html", Role.ADMIN)
    serving_line = page.locator("#intent-model-serving")
    serving_line.get_by_text("No intent model serves").wait_for()

    page.get_by_label("Labelled examples file").set_input_files(str(_jsonl(tmp_path / "small.jsonl", SMALL)))
    page.get_by_role("button", name="Retrain intent model").click()
    outcome = page.locator("#retrain-outcome")
    outcome.wait_for(timeout=120_000)
    assert "promoted" in outcome.inner_text() and "It serves now." in outcome.inner_text()
    assert page.locator("#retrain-progress").get_attribute("value") == "100"
    serving_line.get_by_text("Serving v").wait_for()
    page.screenshot(path=str(artifacts / "retrain-done.png"), full_page=True)

    # A larger set, watched while it runs, then cancelled.
    page.get_by_label("Labelled examples file").set_input_files(str(_jsonl(tmp_path / "big.jsonl", demo_rows() * 2)))
    page.get_by_role("button", name="Retrain intent model").click()
    page.locator("#retrain-step", has_text="encoding").wait_for(timeout=60_000)
    assert page.get_by_role("button", name="Retrain intent model").is_disabled()
    page.screenshot(path=str(artifacts / "retrain-running.png"), full_page=True)
    page.locator("#retrain-cancel").click()
    page.locator("#retrain-outcome", has_text="cancelled").wait_for(timeout=60_000)
    assert "serving version is unchanged" in page.locator("#retrain-outcome").inner_text()
    assert page.get_by_role("button", name="Retrain intent model").is_enabled()

    # A reload shows the newest retrain's outcome again.
    page.reload()
    page.locator("#retrain-outcome", has_text="cancelled").wait_for()


def test_an_agent_sees_the_model_but_no_retrain_form(page: Any, live_with_triage: LiveGateway) -> None:
    enter_key(page, live_with_triage, "insights.html", Role.AGENT)
    page.locator("#intent-model-serving").get_by_text("No intent model serves").wait_for()
    assert page.locator("#retrain-form").count() == 0
