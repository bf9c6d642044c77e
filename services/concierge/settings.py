"""Concierge settings. Backend addresses and the LLM endpoint have no default:
a deployment that forgets one fails at boot, not on the first customer."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field

from servicekit.settings import LlmSettings
from services.concierge.confidence import DEFAULT_PATH as DEFAULT_CALIBRATION
from services.concierge.persona import DEFAULT_DIR as DEFAULT_PERSONAS


class ConciergeSettings(LlmSettings):
    port: int = 50053
    retrieval_addr: str
    triage_addr: str
    escalation_addr: str
    # Conversations: any SQLAlchemy URL; empty means a SQLite file under data_dir.
    database_url: str = Field("", validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    # "extractive": the model must quote the passage that answers, and only a quote
    # verified against the passage is shown (the right mode for the small base model
    # on CPU). "generative": free answer from an instruction-tuned model (vLLM).
    answer_mode: Literal["extractive", "generative"] = "extractive"
    # Default threshold of tenants whose persona file sets none of its own.
    confidence_threshold: float = 0.85
    # One JSON file per tenant (<tenant_id>.json) over default.json.
    persona_dir: Path = DEFAULT_PERSONAS
    # The fitted confidence model; without the file the uncalibrated heuristic serves.
    calibration_file: Path = DEFAULT_CALIBRATION
    retrieval_top_k: int = 4
    # Below this cosine similarity the knowledge base has nothing on the question.
    min_similarity: float = 0.3
    # Earlier customer turns used to rewrite a follow-up into a standalone query.
    history_turns: int = 3
