"""Settings shared by every process. Each service subclasses ServiceSettings
with its own fields; values come from the environment (the ecosystem's names
where one exists: MILVUS_URI, DATABASE_URL, OTEL_*), and a required value
without a default makes a bad deployment fail at boot."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Settings every gRPC service process has."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Seconds in-flight RPCs get to finish after SIGTERM.
    shutdown_grace_s: float = 5.0
    # Where embedded state (Milvus Lite file, SQLite database) lives.
    data_dir: Path = Path("var")

    @property
    def listen_address(self) -> str:
        return f"{self.host}:{self.port}"
