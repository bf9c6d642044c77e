"""Children of the local stack's supervisor die with it, however the supervisor ends:
SIGKILL, SIGTERM, SIGHUP to its process group (a terminal that closes), or a second
Ctrl+C while it stops them. A small supervisor spawns short children through the
devstack's own spawn code (tests/devstack/_supervisor.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.stack import REPO_ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

START_TIMEOUT_S = 30.0
# Children must be gone well before the slow ones would have stopped by themselves (60 s).
GONE_TIMEOUT_S = 15.0


def alive(pid: int) -> bool:
    """Running, not a zombie that nobody reaped yet (a container's init may not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: list[int], timeout_s: float = GONE_TIMEOUT_S) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return []
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


class Supervisor:
    def __init__(self, tmp_path: Path, slow: bool) -> None:
        self.pid_file = tmp_path / "children.pids"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.devstack._supervisor", str(self.pid_file), *(["slow"] if slow else [])],
            cwd=REPO_ROOT, start_new_session=True,  # a process group of its own, as `make run` in a terminal
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.pid_file.exists() or not self.pid_file.read_text():
            assert self.process.poll() is None, "the supervisor exited before starting its children"
            assert time.monotonic() < deadline, "the supervisor did not start its children"
            time.sleep(0.1)
        self.children = [int(pid) for pid in self.pid_file.read_text().split()]
        assert len(self.children) == 3 and all(alive(pid) for pid in self.children)

    def cleanup(self) -> None:
        for pid in [self.process.pid, *self.children]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Callable[[bool], Supervisor]]:
    started: list[Supervisor] = []

    def start(slow: bool = False) -> Supervisor:
        started.append(Supervisor(tmp_path, slow))
        return started[-1]

    yield start
    for item in started:
        item.cleanup()


def test_sigkill_of_the_supervisor_takes_its_children(supervisor: Callable[[bool], Supervisor]) -> None:
    running = supervisor(False)
    running.process.kill()
    running.process.wait(timeout=10)
    assert wait_gone(running.children) == []


def test_sigterm_stops_the_children_in_order(supervisor: Callable[[bool], Supervisor]) -> None:
    running = supervisor(False)
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=GONE_TIMEOUT_S) == 0  # an orderly stop, not a death by signal
    assert wait_gone(running.children) == []


def test_sighup_to_the_process_group_stops_the_children(supervisor: Callable[[bool], Supervisor]) -> None:
    # What a terminal that closes does to `make run`.
    running = supervisor(False)
    os.killpg(running.process.pid, signal.SIGHUP)
    assert running.process.wait(timeout=GONE_TIMEOUT_S) == 0
    assert wait_gone(running.children) == []


def test_a_second_ctrl_c_while_stopping_kills_what_is_left(supervisor: Callable[[bool], Supervisor]) -> None:
    running = supervisor(True)  # children take 60 s to stop after SIGTERM
    os.killpg(running.process.pid, signal.SIGINT)
    # Once every child has its SIGTERM the supervisor is waiting for them (a fixed pause raced a
    # loaded machine: two Ctrl+C before the first was handled are one).
    stopping = running.pid_file.with_suffix(".stopping")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not stopping.exists() or len(stopping.read_text().split()) < len(running.children):
        assert time.monotonic() < deadline, "the supervisor did not start stopping its children"
        time.sleep(0.1)
    assert running.process.poll() is None and all(alive(pid) for pid in running.children)  # waiting for them
    os.killpg(running.process.pid, signal.SIGINT)
    running.process.wait(timeout=GONE_TIMEOUT_S)
    assert wait_gone(running.children) == []

