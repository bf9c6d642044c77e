"""Milvus' engine as a gRPC server on a TCP port, without Docker: the `milvus`
binary that the milvus-lite package (2.5.1) ships and that pymilvus starts on a
Unix socket for a Milvus Lite file. Given an address instead, it serves the
Milvus API there, so the retrieval service reaches it by `MILVUS_URI` as it
would a Milvus server. Its local mode builds no HNSW: give the service
`MILVUS_DENSE_INDEX=AUTOINDEX`.

Used by the tests of the server path and by bench/retrieval_latency.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from services.retrieval.lite_engine import LITE_ENGINE_LOGGING

READY_TIMEOUT_S = 60.0


def binary() -> Path:
    """The engine inside the installed milvus-lite package."""
    from milvus_lite.server import BIN_PATH

    return Path(BIN_PATH) / "milvus"


def command(data_dir: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """argv and environment of a server storing under `data_dir` (created), on 127.0.0.1:port."""
    data_dir.mkdir(parents=True, exist_ok=True)
    exe = binary()
    env = {
        **LITE_ENGINE_LOGGING,
        **os.environ,
        "LD_LIBRARY_PATH": f"{exe.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
    }
    # The data file's name must be short and plain (the engine checks it).
    return [str(exe), str(data_dir / "kb.db"), f"127.0.0.1:{port}", "ERROR"], env


def wait_ready(uri: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = READY_TIMEOUT_S) -> float:
    """Seconds until the server answers; RuntimeError with its log when it exits or stays silent."""
    from pymilvus import MilvusClient

    started = time.monotonic()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"milvus exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            client = MilvusClient(uri=uri, timeout=2)
            client.list_collections()
            client.close()
            return time.monotonic() - started
        except Exception as error:
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(
                    f"milvus not ready in {timeout_s:.0f} s ({error}):\n{log.read_text()[-2000:]}"
                ) from error
            time.sleep(0.3)


@contextlib.contextmanager
def running(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A server process in its own process group, output to `log`; the whole group is
    stopped on exit (a wrapper such as PyPI milvus' milvus-server leaves its child
    running on SIGTERM, so the group gets SIGKILL after it)."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=wait_s)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                break
            except subprocess.TimeoutExpired:
                continue


@contextlib.contextmanager
def milvus_server(data_dir: Path, port: int) -> Iterator[str]:
    """A running server; yields its URI."""
    argv, env = command(data_dir, port)
    with running(argv, data_dir / "server.log", env) as process:
        uri = f"http://127.0.0.1:{port}"
        wait_ready(uri, process, data_dir / "server.log")
        yield uri
