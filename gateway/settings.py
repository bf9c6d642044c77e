"""Settings of the gateway process, read from the environment.

The backend addresses have no default: a deployment that forgets one fails
at boot instead of answering 503 to every request later.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    # Backend addresses (host:port), one per service; required.
    retrieval_addr: str
    triage_addr: str
    concierge_addr: str
    escalation_addr: str
    outreach_addr: str
