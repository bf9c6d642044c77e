"""A gRPC server whose port is taken fails at boot, clearly: no SO_REUSEPORT sharing
with a stale process on the same port."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest

from devstack.stack import REPO_ROOT
from servicekit.server import EXIT_CANNOT_BIND, CannotBind, start_server
from servicekit.settings import ServiceSettings
from tests.conftest import free_port


async def test_a_second_server_on_the_same_port_fails() -> None:
    settings = ServiceSettings(port=free_port())
    first = await start_server(settings, [])
    try:
        with pytest.raises(CannotBind, match=f"cannot listen on 127.0.0.1:{settings.port}: the port is in use"):
            await start_server(settings, [])
    finally:
        await first.stop(0)


def test_a_service_whose_port_is_taken_exits_non_zero_with_a_clear_message() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        script = textwrap.dedent(f"""
            import contextlib
            from servicekit.server import run_service
            from servicekit.settings import ServiceSettings

            @contextlib.asynccontextmanager
            async def nothing(settings):
                yield []

            run_service("probe", ServiceSettings(port={port}, log_format="json"), nothing)
        """)
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == EXIT_CANNOT_BIND, result.stderr
    assert f"probe: error: cannot listen on 127.0.0.1:{port}: the port is in use" in result.stderr
