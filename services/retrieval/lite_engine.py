"""Milvus Lite: the engine process behind a file URI, and how it is started.

Milvus Lite is Milvus 2.5's own engine (the `milvus` binary in the milvus-lite
package, started by pymilvus for a file URI and stopped when this process lets go
of the file's lock), so dense search, BM25 and filters work alike on Lite and on a
server; only the dense index differs (Lite's local mode builds no HNSW).
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

# milvus-lite 2.5.1 imports pkg_resources (pinned setuptools keeps it), which warns on import.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

# Milvus Lite's local mode refuses HNSW ("only support FLAT IVF_FLAT AUTOINDEX").
LITE_DENSE_INDEX = "AUTOINDEX"
# pymilvus pings every 10 s, even when idle; the engine's gRPC server allows one ping per
# 5 minutes without calls and answers more with GOAWAY "too_many_pings", which can fail
# a call in flight. On a local socket (whose other end the watchdog watches) 10 minutes do.
LITE_CHANNEL = {"grpc.keepalive_time_ms": 600_000}
# glog settings of the Milvus engine that Milvus Lite starts (kept where already set).
LITE_ENGINE_LOGGING = {"GLOG_logtostderr": "1", "GLOG_minloglevel": "2"}


class _DropSessionTsWarning(logging.Filter):
    """Milvus Lite hands query iterators no session timestamp; pymilvus then warns on
    every iterator and uses a client-side one, which is right for Lite."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to get mvccTs" not in record.getMessage()


logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(_DropSessionTsWarning())


def is_lite(uri: str) -> bool:
    """A Milvus Lite file, not a server."""
    return "://" not in uri


def prepare_lite(uri: str) -> None:
    """Before pymilvus starts the engine for `uri`: refuse a folder it cannot read, and
    set how the engine logs."""
    if Path(uri).is_dir():
        raise RuntimeError(
            f"{uri} is a folder written by Milvus Lite 3 (before aftercare moved to Milvus Lite 2.5's "
            "engine), which cannot read it: move it away and ingest the documents again"
        )
    # The engine (started by pymilvus with this environment) logs through glog: by
    # default ~1 MB of INFO files in /tmp per start. Errors to stderr, no files.
    os.environ.update({key: os.environ.get(key, value) for key, value in LITE_ENGINE_LOGGING.items()})


def lite_engine(uri: str) -> subprocess.Popen[bytes] | None:
    """The engine process that pymilvus' Milvus Lite server manager started for this file.
    milvus-lite 2.5.1 keeps it in private attributes (the version is pinned); None if not found."""
    from milvus_lite.server_manager import server_manager_instance

    server = server_manager_instance._servers.get(str(Path(uri).absolute().resolve()))
    engine = getattr(server, "_p", None)
    if engine is None:
        log.warning("milvus_lite_engine_not_found")
    return engine
