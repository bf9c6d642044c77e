"""`python -m demoshop` as a process: refuses to start without what it needs, keeps its state (and the
stored Idempotency-Key outcomes) across a restart, reloads with --reset, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.demoshop.live import REPO_ROOT, LiveShop, needs_tau_retail

pytestmark = needs_tau_retail


def run_cli(*args: str, token: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DEMOSHOP_")}
    if token is not None:
        env["DEMOSHOP_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "demoshop", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def test_no_token_no_start(tmp_path: Path) -> None:
    done = run_cli("--port", "1", "--db", str(tmp_path / "shop.db"))
    assert done.returncode == 2
    assert "DEMOSHOP_TOKEN" in done.stderr and "Traceback" not in done.stderr
    assert run_cli("--port", "1", "--db", str(tmp_path / "shop.db"), token="short").returncode == 2


def test_a_missing_data_folder_is_named_at_start(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere")
    done = run_cli("--port", "1", "--db", str(tmp_path / "shop.db"), "--data", missing, token="t" * 12)
    assert done.returncode == 2
    assert "nowhere/users.json" in done.stderr and "Traceback" not in done.stderr


def test_state_and_idempotency_keys_survive_a_restart_and_reset_drops_them(tmp_path: Path) -> None:
    shop = LiveShop(tmp_path)
    with shop:
        with shop.client() as client:
            pristine = client.get("/state/digest").json()["sha256"]
            first = client.post(
                "/orders/W5442520/cancel", json={"reason": "no longer needed"}, headers={"idempotency-key": "k-restart"}
            )
            assert first.status_code == 200
            changed = client.get("/state/digest").json()["sha256"]
    assert shop.process is None  # stopped (SIGTERM)

    with shop:  # same database: kept as it was
        with shop.client() as client:
            assert client.get("/state/digest").json()["sha256"] == changed
            again = client.post(
                "/orders/W5442520/cancel", json={"reason": "no longer needed"}, headers={"idempotency-key": "k-restart"}
            )
            assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
            assert again.json() == first.json()

    shop.start("--reset")
    try:
        with shop.client() as client:
            assert client.get("/state/digest").json()["sha256"] == pristine
            fresh = client.post(
                "/orders/W5442520/cancel", json={"reason": "no longer needed"}, headers={"idempotency-key": "k-restart"}
            )
            assert fresh.status_code == 200 and "idempotent-replayed" not in fresh.headers
    finally:
        shop.stop()


def test_sigterm_stops_it_cleanly(tmp_path: Path) -> None:
    shop = LiveShop(tmp_path).start()
    process = shop.process
    assert process is not None
    process.terminate()
    # uvicorn shuts down gracefully, then re-raises the signal it caught (so the exit says SIGTERM).
    assert process.wait(timeout=15) in (0, -signal.SIGTERM)
    shop.process = None
    log = shop.log_path.read_text()
    assert "Finished server process" in log and "Traceback" not in log
