"""SQLite engines: replicas opening a new database file together all get WAL,
instead of one of them failing with "database is locked"."""

from __future__ import annotations

import threading
from pathlib import Path

from servicekit.database import make_engine

# One race in about twenty lost before the retry; 40 fresh files make a regression near certain to show.
_FILES = 40
_REPLICAS = 4


def test_replicas_opening_a_new_sqlite_file_together_all_get_wal(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    modes: list[str] = []

    def open_file(url: str) -> None:
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                modes.append(connection.exec_driver_sql("PRAGMA journal_mode").scalar_one())
        except BaseException as error:
            errors.append(error)
        finally:
            engine.dispose()

    for index in range(_FILES):
        url = f"sqlite:///{tmp_path / f'new-{index}.db'}"
        threads = [threading.Thread(target=open_file, args=(url,)) for _ in range(_REPLICAS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    assert errors == []
    assert modes == ["wal"] * (_FILES * _REPLICAS)
