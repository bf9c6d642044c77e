"""The supervisor's side of its children: start them so that they die with it, turn the
signals that end a terminal session into an orderly stop, and name who holds a port."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

# prctl(2): the signal a child gets when the thread that forked it dies (Linux only).
_PR_SET_PDEATHSIG = 1
# SIGTERM, not SIGKILL: a service stops gracefully (flushes its stores, stops its own children).
DEATH_SIGNAL = signal.SIGTERM
# The signals that end a supervisor run like Ctrl+C does: a terminal that closes sends SIGHUP.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Resolved once here: the function that runs in the child between fork and exec must not
# import or load anything (another thread of the supervisor may hold a lock it would need).
_PRCTL = _load_prctl()
_DEATH_SIGNAL_NUMBER = int(DEATH_SIGNAL)


def _die_with(parent: int) -> Callable[[], None]:
    def in_child() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, _DEATH_SIGNAL_NUMBER, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before prctl: nobody would signal us
            os._exit(1)

    return in_child


def spawn_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
    new_session: bool = True,
) -> subprocess.Popen[bytes]:
    """Start a child that gets DEATH_SIGNAL when this supervisor dies, however it dies
    (SIGKILL included; Linux: PR_SET_PDEATHSIG). The signal is tied to the calling thread:
    spawn from the thread that lives as long as the supervisor (its main thread).

    `new_session`: the child gets a session of its own, so that Ctrl+C in the terminal
    reaches the supervisor only and the supervisor stops its children in order."""
    return subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env) if env is not None else None, stdout=stdout, stderr=stderr,
        start_new_session=new_session, preexec_fn=_die_with(os.getpid()),
    )


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP (the terminal closed) stop the supervisor as Ctrl+C does: its
    children are stopped in order (should the supervisor be killed instead, they get
    DEATH_SIGNAL from the kernel)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_interrupt)


# --- who holds a port ------------------------------------------------------------------

_TCP_LISTEN = "0A"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on host:port now. SO_REUSEADDR as servers set it (a port
    in TIME_WAIT is free), no SO_REUSEPORT (a listener that shares ports counts as taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _TCP_LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def port_holders(port: int) -> list[tuple[int, str]]:
    """(pid, command line) of each process listening on `port` that this user may inspect
    (Linux /proc; empty elsewhere or when the listener belongs to another user)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return []
    wanted = {f"socket:[{inode}]" for inode in inodes}
    holders = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
            if any(os.readlink(fd) in wanted for fd in fds):
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
                cmdline = " ".join(argv.split())[:160]
                holders.append((int(entry.name), cmdline))
        except OSError:
            continue  # gone, or not ours to see
    return sorted(holders)


def describe_port_holders(port: int) -> str:
    holders = port_holders(port)
    if not holders:
        return "another process (not one this user can see)"
    return "; ".join(f"pid {pid} ({cmdline or '?'})" for pid, cmdline in holders)
