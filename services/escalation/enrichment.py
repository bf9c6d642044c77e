"""A stored handoff's background LLM work: its package's summary and draft reply are
written after the handoff is stored, each in a quiet turn of its own (a customer who
comes in between goes first, see background.py), then settled in the store; at start,
the ones a stopped process left pending are picked up again."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable

import structlog

from servicekit.database import utcnow
from services.escalation.background import QuietTurns
from services.escalation.context import ContextBuilder
from services.escalation.enrichment_store import EnrichmentStore

log = structlog.get_logger("services.escalation.enrichment")

# At start, summaries left pending by a stopped process are written for handoffs this recent
# (older ones have likely been read with the extractive summary already), at most this many.
RESUME_SUMMARIES_HOURS = 24
RESUME_SUMMARIES_MAX = 500

# (summary, detail, method, model) and (draft, method, model), as the context builder makes them.
Summarize = Callable[[], Awaitable[tuple[str, str, str, str]]]
WriteDraft = Callable[[], Awaitable[tuple[str, str, str]]]


class Enricher:
    def __init__(self, store: EnrichmentStore, context_builder: ContextBuilder, background: QuietTurns) -> None:
        self._store = store
        self._context = context_builder
        # LLM summaries and drafts take turns after customers (see background.py).
        self._background = background
        # LLM summaries and drafts being written into packages already stored (kept referenced until done).
        self._tasks: set[asyncio.Task[None]] = set()

    def start(
        self,
        tenant_id: str,
        handoff_id: str,
        summarize: Summarize | None,
        write_draft: WriteDraft | None,
        *,
        summary_pending: bool,
        draft_pending: bool,
    ) -> None:
        """Write a new handoff's pending summary and draft in the background."""
        enrich = self._enrich(
            tenant_id,
            handoff_id,
            summarize,
            write_draft,
            summary_pending=summary_pending,
            draft_pending=draft_pending,
        )
        self._keep(asyncio.create_task(enrich))

    def resume(self) -> None:
        """Write the LLM summaries and drafts a stopped process left pending (recent handoffs
        only), one at a time in the background, behind the new handoffs' own."""
        self._keep(asyncio.create_task(self._resume()))

    async def close(self) -> None:
        """Stop summaries and drafts still being written: they stay pending until the next start."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resume(self) -> None:
        since = utcnow() - dt.timedelta(hours=RESUME_SUMMARIES_HOURS)
        pending = await asyncio.to_thread(self._store.pending_background, since, RESUME_SUMMARIES_MAX)
        if pending:
            log.info("summaries_resumed", handoffs=len(pending))
        for left in pending:
            summarize = self._context.summarizer(left.conversation) if left.summary_pending else None
            write_draft = (
                self._context.drafter(left.draft_prompt, left.conversation, left.notes) if left.draft_pending else None
            )
            await self._enrich(
                left.tenant_id,
                left.handoff_id,
                summarize,
                write_draft,
                summary_pending=left.summary_pending,
                draft_pending=left.draft_pending,
            )

    async def _enrich(
        self,
        tenant_id: str,
        handoff_id: str,
        summarize: Summarize | None,
        write_draft: WriteDraft | None,
        *,
        summary_pending: bool,
        draft_pending: bool,
    ) -> None:
        """A stored package's background LLM work: the summary, then the draft, each in a turn
        of its own (a customer who comes in between goes first). Without a job for a part
        that is pending, that part settles on what it has (extractive summary, template)."""
        if summary_pending:
            await self._summarize(tenant_id, handoff_id, summarize)
        if draft_pending:
            await self._draft(tenant_id, handoff_id, write_draft)

    async def _summarize(self, tenant_id: str, handoff_id: str, summarize: Summarize | None) -> None:
        summary, detail, method, model = "", "", "extractive", ""
        if summarize is not None:
            try:
                async with self._background.turn():
                    summary, detail, method, model = await summarize()
            except Exception as error:  # a summary is an extra: the handoff is stored already
                log.warning("summary_failed", handoff_id=handoff_id, error=type(error).__name__)
        # Not "llm": it failed its grounding check or did not come; the extractive summary stays.
        method = "llm" if method == "llm" else "extractive"
        await asyncio.to_thread(self._store.update_summary, tenant_id, handoff_id, summary, detail, method, model)
        log.info("summary_settled", tenant_id=tenant_id, handoff_id=handoff_id, summary_method=method)

    async def _draft(self, tenant_id: str, handoff_id: str, write_draft: WriteDraft | None) -> None:
        draft, method, model = "", "template", ""
        try:
            if write_draft is not None:
                async with self._background.turn():
                    # Checked inside the turn: an agent may have replied while it waited.
                    if await asyncio.to_thread(self._store.draft_still_wanted, tenant_id, handoff_id):
                        draft, method, model = await write_draft()
        except Exception as error:  # a draft is an extra: the template stays
            log.warning("draft_failed", handoff_id=handoff_id, error=type(error).__name__)
            draft, method, model = "", "template", ""
        method = "llm" if method == "llm" and draft else "template"
        stored = await asyncio.to_thread(self._store.update_draft, tenant_id, handoff_id, draft, method, model)
        log.info("draft_settled", tenant_id=tenant_id, handoff_id=handoff_id, draft_method=stored)
