"""Concierge settings. Backend addresses and the LLM endpoint have no default:
a deployment that forgets one fails at boot, not on the first customer."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field

from servicekit.settings import LlmSettings
from services.concierge.confidence import DEFAULT_FITS_DIR
from services.concierge.persona import DEFAULT_DIR as DEFAULT_PERSONAS


class ConciergeSettings(LlmSettings):
    port: int = 50053
    retrieval_addr: str
    triage_addr: str
    escalation_addr: str
    # The actions service (customers' own records and actions). Optional: empty means this
    # concierge never reads accounts or acts, and answers from the knowledge base only.
    actions_addr: str = ""
    # How long a tenant's catalog (ListTools) is reused before it is asked again.
    actions_catalog_ttl_s: float = 30.0
    # The account planner's LLM timeout: its prompt (the catalog's tools) is long, and a CPU model's
    # first, uncached read of it takes tens of seconds (later ones hit the server's prompt cache).
    # Within the gateway's 60 s budget for a message.
    account_llm_timeout_s: float = 45.0
    # Conversations: any SQLAlchemy URL; empty means a SQLite file under data_dir.
    database_url: str = Field(default="", validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    # "unit": the reply is the best-matching answer unit's own text (cut to its answering
    # sentences when long), optionally phrased by the LLM (see phrasing); the right path for
    # a small CPU model. "generative": the LLM answers freely over the best units (vLLM), and
    # only a reply whose every sentence they support is shown.
    answer_mode: Literal["unit", "generative"] = "unit"
    # When the LLM rephrases a unit's text in the customer's words (unit mode): "off" never,
    # "long" only an excerpt of a long unit, "always" every reply. A phrasing whose
    # sentences the unit does not all support is dropped for the unit's own text.
    phrasing: Literal["off", "long", "always"] = "off"
    # Default threshold of tenants whose persona file sets none of its own.
    confidence_threshold: float = 0.85
    # One JSON file per tenant (<tenant_id>.json) over default.json.
    persona_dir: Path = DEFAULT_PERSONAS
    # Confidence fits, one per serving configuration (services/concierge/confidence.py).
    fits_dir: Path = Field(default=DEFAULT_FITS_DIR, validation_alias=AliasChoices("CONCIERGE_FITS_DIR", "fits_dir"))
    # Without a fit for the serving configuration the service refuses to start, unless this
    # is set: then it runs with the gate closed (every question goes to a human).
    allow_uncalibrated: bool = Field(
        default=False, validation_alias=AliasChoices("CONCIERGE_ALLOW_UNCALIBRATED", "allow_uncalibrated")
    )
    # Answer units and passages asked of retrieval for each question.
    unit_top_k: int = 5
    retrieval_top_k: int = 4
    # Below this cosine similarity the knowledge base has nothing on the question.
    min_similarity: float = 0.3
    # Earlier customer turns used to rewrite a follow-up into a standalone query.
    history_turns: int = 3
    # Shadow decisions (shadow.py) running at once per replica; a sampled turn arriving while
    # they are all busy is skipped and counted, so a shadow never adds more than this much load.
    shadow_max_in_flight: int = Field(default=2, ge=1)
    # How long one shadow decision may take before it is abandoned.
    shadow_timeout_s: float = Field(default=30.0, gt=0)
    # How often every running canary is evaluated against the live release (canary.py).
    canary_evaluate_interval_s: float = Field(default=5.0, gt=0)
