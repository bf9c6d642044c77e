"""The gateway served for real (uvicorn on a free port) on the fake mesh, for
clients that need a socket: the browser tests, schemathesis, the benchmark."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import uvicorn

from gateway.app import create_app
from gateway.backends import Backends
from tests.conftest import free_port
from tests.gateway.conftest import Mesh, start_mesh


class LiveGateway:
    """The gateway served by uvicorn on a free port, and the fake mesh behind
    it, on an event loop of their own in a background thread (Playwright's
    sync API needs the test's thread free of an event loop)."""

    def __init__(self, keys_path: Path, **settings: Any) -> None:
        self.keys_path = keys_path
        self.overrides = {"rate_limit_per_s": 1000.0, "rate_limit_burst": 1000} | settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mesh: Mesh
        self._ready = threading.Event()
        self._server: uvicorn.Server | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-gateway", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # surfaced to the test by start()
            self._failure = error
            self._ready.set()

    async def _serve(self) -> None:
        async with start_mesh(self.keys_path) as mesh:
            self.mesh = mesh
            settings = mesh.settings(port=self.port, **self.overrides)
            backends = Backends.connect(settings)
            config = uvicorn.Config(
                create_app(settings, backends), host="127.0.0.1", port=self.port, log_config=None, access_log=False
            )
            self._server = uvicorn.Server(config)
            serving = asyncio.create_task(self._server.serve())
            while not self._server.started and not serving.done():  # noqa: ASYNC110 (uvicorn has only a flag)
                await asyncio.sleep(0.02)
            self._ready.set()
            try:
                await serving
            finally:
                await backends.close()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30) or self._failure is not None:
            raise RuntimeError(f"live gateway did not start: {self._failure!r}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(15)
