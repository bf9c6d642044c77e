"""Concierge settings. Backend addresses and the LLM endpoint have no default:
a deployment that forgets one fails at boot, not on the first customer."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field

from servicekit.settings import ServiceSettings


class ConciergeSettings(ServiceSettings):
    port: int = 50053
    retrieval_addr: str
    triage_addr: str
    escalation_addr: str
    # OpenAI-compatible endpoint: the embedded llama.cpp server locally, `vllm serve` in production.
    llm_base_url: str = Field(validation_alias=AliasChoices("LLM_BASE_URL", "llm_base_url"))
    llm_model: str = Field("gemma-3-270m", validation_alias=AliasChoices("LLM_MODEL", "llm_model"))
    llm_api_key: str = Field("", validation_alias=AliasChoices("LLM_API_KEY", "llm_api_key"))
    llm_timeout_s: float = Field(20.0, validation_alias=AliasChoices("LLM_TIMEOUT_S", "llm_timeout_s"))
    # Token log-probabilities cost llama.cpp seconds per answer on a CPU (it then
    # computes logits for every prompt token); vLLM returns them almost for free.
    llm_logprobs: bool = Field(False, validation_alias=AliasChoices("LLM_LOGPROBS", "llm_logprobs"))
    # "extractive": the model must quote the passage that answers, and only a quote
    # verified against the passage is shown (the right mode for the small base model
    # on CPU). "generative": free answer from an instruction-tuned model (vLLM).
    answer_mode: Literal["extractive", "generative"] = "extractive"
    confidence_threshold: float = 0.85
    retrieval_top_k: int = 4
    # Below this cosine similarity the knowledge base has nothing on the question.
    min_similarity: float = 0.3
