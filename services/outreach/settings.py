"""Outreach settings. The store settings are all the importer CLI
needs; the service adds the LLM endpoint and the retrieval and escalation
addresses, which have no default: a deployment that forgets one fails at boot."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field

from servicekit.settings import LlmSettings, ServiceSettings

DEFAULT_DETECTORS_FILE = Path(__file__).with_name("detectors.default.json")


class OutreachStoreSettings(ServiceSettings):
    port: int = 50055
    # Any SQLAlchemy URL; empty means a SQLite file under data_dir.
    database_url: str = Field(default="", validation_alias=AliasChoices("DATABASE_URL", "database_url"))


class OutreachSettings(OutreachStoreSettings, LlmSettings):
    # Valid events of a RecordUsage stream are stored in transactions of at most this many.
    usage_batch_size: int = Field(default=500, ge=1, le=10_000)
    # "reject": usage of an account not registered by UpsertAccounts is refused as
    # unknown_account (a typo or another tenant's id must not create a customer).
    # "accept": any account id is taken as is (registers it, without contact data).
    unknown_accounts: Literal["reject", "accept"] = "reject"
    # An accepted event this much older than its arrival counts as late (its day was closed).
    late_after_hours: float = Field(default=24.0, gt=0)
    retrieval_addr: str
    # Escalation, whose feed of agents' replies to email conversations outreach delivers.
    escalation_addr: str
    # Detector thresholds and volume guards (JSON); see detectors.default.json.
    detectors_file: Path = DEFAULT_DETECTORS_FILE
    # Knowledge-base passages looked up per finding, and the similarity below which one is irrelevant.
    retrieval_top_k: int = Field(default=3, ge=1, le=10)
    min_similarity: float = 0.3
    # Drafts: at most this many messages (approved or sent) per account per window.
    frequency_cap_messages: int = Field(default=1, ge=1)
    frequency_cap_days: int = Field(default=7, ge=1)
    # Nothing is sent between these local hours of the contact (start > end wraps midnight).
    quiet_hours_start: int = Field(default=20, ge=0, le=23)
    quiet_hours_end: int = Field(default=8, ge=0, le=23)
    # The sender: "file" writes each message into a maildir under outbox_dir; "smtp" sends it.
    sender: Literal["file", "smtp", "off"] = "file"
    outbox_dir: Path | None = None
    sender_interval_s: float = Field(default=5.0, gt=0)
    # A claim older than this is taken to be from a sender that died mid-send.
    sender_claim_timeout_s: float = Field(default=300.0, gt=0)
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_from: str = "outreach@localhost"
    # From address of agents' replies (where customers' answers must reach the email intake);
    # empty means smtp_from.
    reply_from: str = ""
    # How often the delivery feed is read when it had nothing new.
    reply_poll_interval_s: float = Field(default=2.0, gt=0)
