"""The releases card of the insights page, in headless Chromium, through a live gateway and the
concierge's real ReleaseService (its registry on SQLite): create a candidate, see its suite run,
promotion refused while the suite has not passed, promoted with a recorded override, compared,
rolled back with a reason, and every step in the history."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aftercare.concierge.v1 import releases_pb2, releases_pb2_grpc
from gateway.keys import Role
from servicekit.database import database_url, make_engine
from servicekit.server import RunningServer, mount, start_server
from servicekit.settings import ServiceSettings
from services.concierge.migrations import SCHEMA
from services.concierge.release_servicer import ReleaseServicer
from services.concierge.releases import ReleaseBook
from services.concierge.settings import ConciergeSettings
from tests.browser.conftest import LiveGateway
from tests.browser.test_console import enter_key
from tests.gateway.conftest import bearer

TENANT = "demo"


class LiveReleases:
    """The concierge's ReleaseService (the real registry, the repository's demo persona and
    fits, a SQLite file) on an event loop of its own in a background thread."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-releases", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:
            self._failure = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(database_url("", self.data_dir, "concierge"))
        SCHEMA.migrate(engine)
        settings = ConciergeSettings(  # type: ignore[call-arg]
            port=0, retrieval_addr="127.0.0.1:9", triage_addr="127.0.0.1:9", escalation_addr="127.0.0.1:9",
            llm_base_url="http://127.0.0.1:9/v1", data_dir=self.data_dir,
        )
        # No triage or actions stubs: their versions are recorded as "" (none in this test).
        book = ReleaseBook(engine, settings)
        running: RunningServer = await start_server(
            ServiceSettings(port=0), [mount(ReleaseServicer(book), releases_pb2, releases_pb2_grpc)]
        )
        self.port = running.port
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await running.stop(0)
            engine.dispose()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(60) or self._failure is not None:
            raise RuntimeError(f"the release service did not start: {self._failure!r}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture
def live_with_releases(tmp_path: Path) -> Iterator[LiveGateway]:
    releases = LiveReleases(tmp_path / "concierge")
    releases.start()
    # The gateway calls ReleaseService at the concierge's address; every other backend is the fake mesh.
    gateway = LiveGateway(tmp_path / "api_keys.json", concierge_addr=f"127.0.0.1:{releases.port}")
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
        releases.stop()


def _record_run(live: LiveGateway, release_id: str, passed: int, total: int) -> None:
    """What bench/scenarios.py --record sends, through the gateway."""
    results = [{"name": f"scenario-{i}", "passed": i < passed,
                "failures": [] if i < passed else [f"turn 1: decision answered, expected escalated ({i})"]}
               for i in range(total)]
    response = httpx.post(
        f"{live.url}/v1/tenants/{TENANT}/releases/{release_id}/suite-runs",
        headers=bearer(live.mesh.key(Role.ADMIN)),
        json={"suite_digest": "sha256:demo-suite", "total": total, "passed": passed, "results": results,
              "started_at": "2026-12-01T10:00:00Z", "finished_at": "2026-12-01T10:04:00Z"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def test_an_admin_creates_promotes_with_an_override_and_rolls_back(
    page: Any, live_with_releases: LiveGateway, artifacts: Path
) -> None:
    live = live_with_releases
    enter_key(page, live, "insights.html", Role.ADMIN)
    card = page.locator("#releases")
    card.get_by_text("No releases yet").wait_for()

    # A candidate: the tenant's first release (r1, live) is made from the working copy first.
    card.get_by_label("Description").fill("Stricter billing threshold")
    card.get_by_label("Thresholds").fill("billing=0.95")
    card.get_by_role("button", name="Create candidate").click()
    page.locator("#releases-notice", has_text="Candidate r2 created").wait_for()
    r1, r2 = card.locator('tr[data-release="r1"]'), card.locator('tr[data-release="r2"]')
    assert r1.locator(".badge.state").inner_text() == "live"
    assert r2.locator(".badge.state").inner_text() == "candidate"
    assert r2.locator(".suite").inner_text() == "no suite run"
    r2.locator("summary").click()
    assert "billing 0.95" in r2.locator(".thresholds").inner_text()

    # Its golden conversations fail one scenario (recorded as bench/scenarios.py would).
    _record_run(live, "r2", passed=59, total=60)
    page.reload()
    r2.locator(".suite", has_text="suite 59/60 passed").wait_for()
    assert "bad" in (r2.locator(".suite").get_attribute("class") or "")

    # Promotion without a reason is refused by the suite gate; the live release stays.
    r2.get_by_role("button", name="Promote r2…").click()
    panel = page.locator("#promote-panel")
    assert "has not passed its suite" in panel.inner_text()
    panel.get_by_role("button", name="Promote r2").click()
    error = page.locator("#releases-error")
    error.get_by_text("suite").wait_for()
    assert "Conflict" in error.inner_text()
    assert r1.locator(".badge.state").inner_text() == "live"
    page.screenshot(path=str(artifacts / "releases-refused.png"), full_page=True)

    # With an override reason it goes live, recorded as an override.
    panel.get_by_label("Override reason").fill("Hotfix approved by ops; scenario 59 is flaky")
    panel.get_by_role("button", name="Promote r2").click()
    page.locator("#releases-notice", has_text="r2 is live (promoted with override)").wait_for()
    r2.locator(".badge.state", has_text="live").wait_for()
    assert r1.locator(".badge.state").inner_text() == "retired"
    assert page.locator("#releases-error").inner_text() == ""

    # Compare r1 with r2: the billing threshold is what differs.
    card.get_by_label("Compare base release").select_option("r1")
    card.get_by_label("Compare other release").select_option("r2")
    card.get_by_role("button", name="Compare").click()
    change = page.locator("#release-compare tr", has_text="thresholds.billing")
    change.wait_for()
    assert "0.95" in change.inner_text()

    # Roll back to the release live before, with a reason.
    card.get_by_label("Rollback reason").fill("Billing customers handed over too often")
    card.get_by_role("button", name="Roll back").click()
    page.locator("#releases-notice", has_text="r1 is live again").wait_for()
    r1.locator(".badge.state", has_text="live").wait_for()
    assert r2.locator(".badge.state").inner_text() == "retired"

    # The history, newest first, with who and why.
    history = page.locator("#release-events tbody tr")
    history.first.get_by_text("rolled back").wait_for()
    kinds = [history.nth(i).get_attribute("data-kind") for i in range(history.count())]
    assert kinds[:4] == ["rolled_back", "promoted_with_override", "suite_recorded", "created"], kinds
    assert "Billing customers handed over too often" in history.nth(0).inner_text()
    assert "scenario 59 is flaky" in history.nth(1).inner_text()
    assert f"admin-{TENANT}" in history.nth(1).inner_text(), "the key's holder is who promoted"
    page.screenshot(path=str(artifacts / "releases.png"), full_page=True)


def test_an_agent_sees_no_releases_card(page: Any, live: LiveGateway) -> None:
    enter_key(page, live, "insights.html", Role.AGENT)
    page.locator("#intent-model").wait_for()
    assert page.locator("#releases").count() == 0
