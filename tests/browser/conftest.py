"""The console in real headless Chromium (Debian's /usr/bin/chromium, driven
by Playwright) against a live gateway on fake in-process gRPC backends.

Screenshots go to var/test-artifacts/browser/ (AFTERCARE_TEST_ARTIFACTS
overrides the folder)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.live import LiveGateway

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("AFTERCARE_CHROMIUM", "/usr/bin/chromium")


def _chromium() -> str | None:
    found = shutil.which(CHROMIUM)
    return found


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveGateway]:
    gateway = LiveGateway(tmp_path / "api_keys.json")
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


# Module scope, not session: Playwright's sync API keeps an event loop running on this thread while
# it is open, and the asyncio tests collected after these need the thread free.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    if executable is None:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set AFTERCARE_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI and containers run as root, where Chromium's sandbox cannot start.
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.set_default_timeout(10_000)
    try:
        yield opened
        assert errors == [], f"JavaScript errors on the page: {errors}"
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    folder = Path(os.environ.get("AFTERCARE_TEST_ARTIFACTS", REPO_ROOT / "var" / "test-artifacts")) / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
