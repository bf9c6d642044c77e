"""Escalation settings. The LLM endpoint and the retrieval and triage addresses
have no default (a deployment that forgets one fails at boot); when one of
them is down at run time the context package degrades to its deterministic
parts instead. The actions service is optional (a deployment without customer
data or actions)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field

from servicekit.settings import LlmSettings


class EscalationSettings(LlmSettings):
    port: int = 50054
    # Any SQLAlchemy URL; empty means a SQLite file under data_dir.
    database_url: str = Field(default="", validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    # Queue a handoff waits in when routing named none.
    default_queue: str = "general"
    retrieval_addr: str
    triage_addr: str
    # The actions service (host:port): the customer's records read and the actions taken in a
    # handoff's conversation, and agents' approvals. Empty: no actions service (no account
    # activity; DecideActionApproval is refused).
    actions_addr: str = ""
    # Seconds GetHandoff waits for the account activity; past it the handoff is served
    # with the activity marked incomplete.
    account_activity_timeout_s: float = Field(default=2.0, gt=0)
    # Seconds between checks of approved actions still running when their decision returned
    # (their outcome is told once they settle; each action's checks back off from this, up to
    # 5 minutes: services/escalation/late_outcomes.py).
    late_outcome_poll_s: float = Field(default=5.0, gt=0)
    # Seconds the context package may take in CreateHandoff (retrieval, triage and the
    # store together); what is not done by then is replaced by its deterministic version.
    context_budget_s: float = 3.0
    # Seconds the LLM summary may take; it runs after the handoff is stored.
    summary_budget_s: float = 60.0
    # Summaries run one at a time, once no handoff or outcome has come for summary_quiet_s
    # (at most summary_max_wait_s after the handoff): a CPU LLM server serves one request
    # at a time, and customers' answers go first (services/escalation/background.py).
    summary_quiet_s: float = 2.0
    summary_max_wait_s: float = 60.0
    # "llm": the handoff is stored with the template draft (draft_method "pending") and the
    # instruction-tuned model's draft replaces it in the background, after the summary and
    # with the same turns, when it passes the grounding and quoting checks. "template": the
    # draft is only ever the top grounded suggestion, quoted (no LLM call for drafts).
    draft_mode: Literal["template", "llm"] = "llm"
    # Seconds the LLM draft may take once its turn came (160 tokens: about 6 s on 2 cores).
    draft_budget_s: float = 60.0
    # Knowledge-base passages asked from retrieval for suggested resolutions.
    retrieval_top_k: int = 4
    # Below this cosine similarity a passage is not about the question.
    min_similarity: float = 0.3
    # Resolved handoffs compared with a new one to find similar cases.
    similar_case_pool: int = 500
    # Knowledge gaps: cosine distance under which two questions are one topic.
    gap_distance: float = 0.45
    # Knowledge gaps: how far back questions are read, and how many at most.
    gap_window_days: int = 30
    gap_max_questions: int = 2000
    # Insights: flag a topic whose day mean confidence fell this much below its
    # mean over the baseline days before (with at least drop_min_contacts that day).
    drop_threshold: float = 0.15
    drop_baseline_days: int = 7
    drop_min_contacts: int = 5
    # Encoder threads for knowledge-gap embeddings (one is fastest on a small shared CPU).
    torch_threads: int = 1
    # A resolved handoff reopens when its customer writes within this many seconds of its
    # resolution (per-tenant value: UpdateHandoffSettings); 0 never reopens.
    reopen_window_s: int = Field(default=72 * 3600, ge=0, le=90 * 86_400)
    # WatchConversation reads the database this often (another replica may have stored
    # the change); a write in this process wakes its watchers at once.
    watch_poll_s: float = Field(default=0.5, gt=0)
    # Open WatchConversation streams per process; past it a new one gets RESOURCE_EXHAUSTED.
    watch_max_streams: int = Field(default=1000, ge=1)
