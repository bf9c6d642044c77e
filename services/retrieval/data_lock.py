"""One retrieval process per Milvus Lite data folder.

Milvus Lite's own lock is not enough: a process that fails to get it deletes the lock
file on its way out, so the next one creates a new file, gets that lock and starts a
second engine on the same folder. This lock lives in a file of ours that is never
deleted, held (flock) for as long as the process serves; the kernel releases it when
the process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".retrieval.lock"


class DataFolderInUse(RuntimeError):
    """Another live process has this Milvus Lite data folder open."""


class DataFolderLock:
    """An exclusive lock on a data folder; release() or process exit frees it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / LOCK_NAME
        folder.mkdir(parents=True, exist_ok=True)
        # Not inherited by children (O_CLOEXEC): the lock is this process's, not its engine's.
        self._file = self.path.open("a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            raise DataFolderInUse(
                f"the Milvus Lite data folder {folder} is open in another live process (pid {holder}); "
                "stop it first (two engines on one folder corrupt it)"
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def release(self) -> None:
        if not self._file.closed:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()


@contextlib.contextmanager
def hold_lite_folder(uri: str) -> Iterator[DataFolderLock | None]:
    """Lock the data folder of a Milvus Lite file `uri` while the block runs; a Milvus
    server URI (scheme://) needs no lock: yields None. Raises DataFolderInUse."""
    if "://" in uri:
        yield None
        return
    lock = DataFolderLock(Path(uri).resolve().parent)
    try:
        yield lock
    finally:
        lock.release()
