"""Retrieval refuses a Milvus Lite data folder that another live process has open."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.stack import REPO_ROOT
from services.retrieval.app import EXIT_DATA_FOLDER_IN_USE
from services.retrieval.data_lock import DataFolderInUse, hold_lite_folder
from tests.conftest import free_port


def test_one_holder_per_folder(tmp_path: Path) -> None:
    uri = str(tmp_path / "retrieval" / "milvus.db")
    with hold_lite_folder(uri):
        with pytest.raises(DataFolderInUse, match=f"open in another live process \\(pid {os.getpid()}\\)"):
            with hold_lite_folder(uri):
                pass
    with hold_lite_folder(uri) as again:  # released: free again (the lock file stays)
        assert again is not None


def test_a_server_uri_needs_no_lock() -> None:
    with hold_lite_folder("http://milvus:19530") as lock:
        assert lock is None


def test_a_second_retrieval_on_one_folder_exits_non_zero(tmp_path: Path) -> None:
    uri = tmp_path / "retrieval" / "milvus.db"
    # The first: a live process that holds the folder as retrieval does while it serves.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom services.retrieval.data_lock import hold_lite_folder\n"
         f"with hold_lite_folder({str(uri)!r}):\n    print('held', flush=True)\n    time.sleep(120)\n"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "services.retrieval"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
            env={**os.environ, "DATA_DIR": str(tmp_path), "PORT": str(free_port()), "LOG_FORMAT": "json"},
        )
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == EXIT_DATA_FOLDER_IN_USE, second.stderr[-2000:]
    refusal = f"the Milvus Lite data folder {uri.parent} is open in another live process (pid {holder.pid})"
    assert refusal in second.stderr
    assert time.monotonic() - started < 60  # refused before loading anything
    assert [path.name for path in uri.parent.iterdir()] == [".retrieval.lock"]  # no engine was started
