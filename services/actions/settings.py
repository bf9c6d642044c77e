"""Settings of the actions service."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field

from servicekit.settings import ServiceSettings
from services.actions.catalog import DEFAULT_CATALOG_DIR


class ActionsSettings(ServiceSettings):
    port: int = 50056
    # Any SQLAlchemy URL; empty means a SQLite file under data_dir.
    database_url: str = Field("", validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    # One `<tenant>.json` connector catalog per tenant.
    catalog_dir: Path = Field(
        DEFAULT_CATALOG_DIR, validation_alias=AliasChoices("ACTIONS_CATALOG_DIR", "catalog_dir")
    )
    # Tenants whose writes are not sent whatever their catalog says (comma-separated in the
    # environment): everything else happens, and the audit trail says dry_run.
    dry_run_tenants: str = Field("", validation_alias=AliasChoices("ACTIONS_DRY_RUN_TENANTS", "dry_run_tenants"))
    # A proposal the customer has not said yes to by then is cancelled.
    proposal_ttl_s: float = Field(1800.0, gt=0)
    # How long a repeated ConfirmAction waits for a concurrent execution of the same action.
    confirm_wait_s: float = Field(10.0, ge=0)
    # An execution's lease is its calls' timeouts plus this; past it the executor is presumed
    # dead and the reconciler re-sends the same idempotency key.
    lease_grace_s: float = Field(10.0, gt=0)
    # How often the reconciler looks for interrupted executions and due retries.
    reconcile_interval_s: float = Field(5.0, gt=0)
    # Attempts of an action that may have executed before the reconciler stops retrying it
    # (it stays RETRYABLE for an agent to see).
    max_attempts: int = Field(8, ge=1)
    # Backoff between the reconciler's attempts: base * 2^attempt, at most the cap.
    retry_backoff_s: float = Field(5.0, gt=0)
    retry_backoff_cap_s: float = Field(300.0, gt=0)

    @property
    def dry_run_tenant_ids(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.dry_run_tenants.split(",") if t.strip())
