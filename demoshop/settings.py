"""Settings of the back office, from DEMOSHOP_* environment variables (command-line flags override them)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
# The τ-bench retail data folder beside the repository (never copied into it).
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "tau_retail"
DEFAULT_PORT = 8090


class ShopSettings(BaseSettings):
    """Everything the back office needs; built once in main() and passed down."""

    model_config = SettingsConfigDict(env_prefix="DEMOSHOP_", extra="ignore", frozen=True)

    # The bearer token every caller must send (DEMOSHOP_TOKEN); required: no token, no start.
    token: SecretStr = Field(min_length=8)
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    # users.json, orders.json and products.json are loaded from here.
    data: Path = DEFAULT_DATA_DIR
    # The SQLite file the store lives in.
    db: Path = Path("var") / "demoshop" / "shop.db"
    log_level: str = "info"
