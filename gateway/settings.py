"""Settings of the gateway process, read from the environment.

The backend addresses have no default: a deployment that forgets one fails
at boot instead of answering 503 to every request later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class GatewaySettings(BaseSettings):
    """Everything the gateway needs; built once in main() and passed down."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = 8080
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Budget of one HTTP request; every gRPC call it makes gets at most what is left.
    request_timeout_s: float = Field(default=60.0, gt=0)
    # Request bodies above this are refused with 413 before they reach a handler.
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    # Bulk uploads (documents, usage events, accounts) get a larger limit.
    max_upload_bytes: int = Field(default=4 * 1024 * 1024, gt=0)

    # Where the API key store lives by default (DATA_DIR, as for the services).
    data_dir: Path = Path("var")
    # Hashed API keys (JSON written by `python -m gateway.keys`); empty means
    # <DATA_DIR>/gateway/api_keys.json. Re-read when the file changes.
    api_keys_file: Path | None = None
    # The same JSON document inline (e.g. from a Kubernetes Secret); when set,
    # it is used instead of the file.
    api_keys: str = ""
    # Key of the pseudonyms that email senders become (HMAC-SHA256): the address
    # itself is never a customer id, so it is not stored, logged or traced. Set it
    # in production (a Secret), so that ids cannot be matched to guessed addresses.
    pseudonym_key: SecretStr = SecretStr("")
    # Per-key token bucket: sustained requests per second and burst size.
    rate_limit_per_s: float = Field(default=10.0, gt=0)
    rate_limit_burst: int = Field(default=40, ge=1)
    # Browser origins allowed to call the API cross-origin (comma-separated);
    # empty means same-origin only (the console is served by the gateway itself).
    cors_origins: Annotated[list[str], NoDecode] = []
    # While this file exists, /readyz answers 503 with its text (the stack is warming up: the local
    # stack's demo knowledge base is being ingested). Unset: readiness is the backends' alone.
    ready_gate_file: Path | None = None

    # Backend addresses (host:port), one per service; required.
    retrieval_addr: str
    triage_addr: str
    concierge_addr: str
    escalation_addr: str
    outreach_addr: str
    # The actions service (host:port). Optional, unlike the five above: empty means this gateway runs
    # without it (its /actions and /audit routes answer 503 ACTIONS_NOT_CONFIGURED, /readyz leaves it out).
    actions_addr: str = ""

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @property
    def keys_path(self) -> Path:
        return self.api_keys_file or self.data_dir / "gateway" / "api_keys.json"
