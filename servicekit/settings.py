"""Settings shared by every process. Each service subclasses ServiceSettings
with its own fields; values come from the environment (the ecosystem's names
where one exists: MILVUS_URI, DATABASE_URL, OTEL_*), and a required value
without a default makes a bad deployment fail at boot."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
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
    # Calls in flight at once; more are refused with RESOURCE_EXHAUSTED (load shedding).
    max_concurrent_rpcs: int = 256
    # Shared secret of the signed service-to-service tokens (servicekit.meshauth);
    # empty: calls are neither signed nor checked (the embedded default).
    mesh_secret: SecretStr = Field(default=SecretStr(""), validation_alias=AliasChoices("MESH_SECRET", "mesh_secret"))

    @property
    def listen_address(self) -> str:
        return f"{self.host}:{self.port}"


class LlmSettings(ServiceSettings):
    """Settings of a service that calls the OpenAI-compatible LLM server (the
    embedded llama.cpp server locally, `vllm serve` in production). The
    endpoint has no default: a deployment that forgets it fails at boot."""

    llm_base_url: str = Field(validation_alias=AliasChoices("LLM_BASE_URL", "llm_base_url"))
    llm_model: str = Field(
        default="qwen2.5-coder-0.5b-instruct-q4_k_m", validation_alias=AliasChoices("LLM_MODEL", "llm_model")
    )
    llm_api_key: str = Field(default="", validation_alias=AliasChoices("LLM_API_KEY", "llm_api_key"))
    llm_timeout_s: float = Field(default=20.0, validation_alias=AliasChoices("LLM_TIMEOUT_S", "llm_timeout_s"))
    # Token log-probabilities cost llama.cpp seconds per answer on a CPU (it then
    # computes logits for every prompt token); vLLM returns them almost for free.
    llm_logprobs: bool = Field(default=False, validation_alias=AliasChoices("LLM_LOGPROBS", "llm_logprobs"))
    # LLM calls in flight from this process, and calls that may wait for one; past that a
    # call is refused at once (load shedding) instead of queueing past every deadline.
    llm_max_concurrency: int = Field(
        default=4, ge=1, validation_alias=AliasChoices("LLM_MAX_CONCURRENCY", "llm_max_concurrency")
    )
    llm_max_waiting: int = Field(default=8, ge=0, validation_alias=AliasChoices("LLM_MAX_WAITING", "llm_max_waiting"))
