"""The back office run for real: `python -m demoshop` as its own process on a free port.

Also for other tests that need the demo company's system as a connector target (the actions
service's): `with LiveShop(tmp_path) as shop: ... shop.url, shop.token ...`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest

from demoshop.settings import DEFAULT_DATA_DIR
from tests.conftest import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
TAU_RETAIL = DEFAULT_DATA_DIR
# Every test module here starts with `pytestmark = needs_tau_retail`.
needs_tau_retail = pytest.mark.skipif(
    not (TAU_RETAIL / "orders.json").exists(), reason=f"the τ-bench retail data is not on this machine ({TAU_RETAIL})"
)


class LiveShop:
    """`python -m demoshop` on a free port with its database under `state_dir`; stopped (SIGTERM, then
    SIGKILL) on exit. `start()` again after `stop()` restarts it on the same database and port."""

    def __init__(
        self, state_dir: Path, token: str = "test-token-0123", data_dir: Path = TAU_RETAIL, start_timeout_s: float = 60
    ) -> None:
        self.token = token
        self.data_dir = data_dir
        self.db = state_dir / "demoshop" / "shop.db"
        self.log_path = state_dir / "demoshop.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30.0, **options)

    def start(self, *extra_args: str) -> LiveShop:
        argv = [sys.executable, "-m", "demoshop", "--port", str(self.port), "--data", str(self.data_dir)]
        argv += ["--db", str(self.db), *extra_args]
        env = {**os.environ, "DEMOSHOP_TOKEN": self.token}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"demoshop exited with {self.process.returncode}: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"demoshop did not answer within {self.start_timeout_s:.0f}s: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> LiveShop:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
