"""A stored context package's late parts in the relational store: the LLM summary and
draft reply are written after the handoff (see enrichment.py), settled here, and found
again at start when a stopped process left them pending. Not an agent's change: the
handoff's version stays. Sync SQLAlchemy, one transaction per write."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
import structlog
from google.protobuf import json_format
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from aftercare.type.v1 import conversation_pb2
from services.escalation import summaries
from services.escalation.lifecycle import RESOLVED
from services.escalation.models import HandoffRow

log = structlog.get_logger("services.escalation.enrichment_store")


@dataclass(frozen=True)
class PendingPackage:
    """A stored package whose background LLM work (summary, draft or both) never settled."""

    tenant_id: str
    handoff_id: str
    conversation: conversation_pb2.Conversation
    summary_pending: bool
    draft_pending: bool
    # What the draft is generated from and checked against (the suggestions' texts).
    draft_prompt: str
    notes: list[str]


class EnrichmentStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def pending_background(self, since: dt.datetime, limit: int) -> list[PendingPackage]:
        """Handoffs created since `since` whose LLM summary or draft never settled: the
        process writing them stopped first. Oldest first."""
        context = HandoffRow.context
        with Session(self._engine) as session:
            rows = session.execute(
                sa.select(
                    HandoffRow.tenant_id,
                    HandoffRow.handoff_id,
                    HandoffRow.conversation,
                    HandoffRow.draft_prompt,
                    HandoffRow.context,
                )
                .where(
                    HandoffRow.created_at >= since,
                    sa.or_(
                        context["summary_method"].as_string() == "pending",
                        context["draft_method"].as_string() == "pending",
                    ),
                )
                .order_by(HandoffRow.created_at)
                .limit(limit)
            ).all()
        return [
            PendingPackage(
                tenant_id=tenant_id,
                handoff_id=handoff_id,
                conversation=json_format.ParseDict(conversation, conversation_pb2.Conversation()),
                summary_pending=package.get("summary_method") == "pending",
                draft_pending=package.get("draft_method") == "pending",
                draft_prompt=draft_prompt,
                notes=[str(s.get("text", "")) for s in _json_objects(package.get("suggested_resolutions"))],
            )
            for tenant_id, handoff_id, conversation, draft_prompt, package in rows
        ]

    def update_summary(
        self, tenant_id: str, handoff_id: str, summary: str, detail: str, method: str, model: str
    ) -> bool:
        """Settle a package's pending summary (it is written after the handoff): the LLM's
        (method "llm") or the extractive one it has (method "extractive"). Not an agent's
        change: the version stays, so a reply based on what an agent read is not refused
        for it. False when the handoff is gone."""
        with Session(self._engine) as session, session.begin():
            row = session.scalars(
                sa.select(HandoffRow)
                .where(HandoffRow.tenant_id == tenant_id, HandoffRow.handoff_id == handoff_id)
                .with_for_update()
            ).one_or_none()
            if row is None:
                return False
            settled: dict[str, object] = {"summary_method": method}
            if method == "llm":
                lineage = {**_json_object(row.context.get("lineage")), "model": model}
                settled |= {"summary": summary, "detail": detail, "lineage": lineage}
            # A new dict, so that the JSON column is seen as changed.
            row.context = {**row.context, **settled}
        return True

    def update_draft(self, tenant_id: str, handoff_id: str, draft: str, method: str, model: str) -> str | None:
        """Settle a package's pending draft: the LLM's (method "llm") replaces the template
        shown meanwhile, or the template stays (method "template"). Like the summary, not an
        agent's change: the version stays, so an agent's Send is not refused because a draft
        arrived. Once an agent has replied (or resolved), what they worked from stays: the
        LLM's draft is dropped and the template settles. Returns the method stored, None
        when the handoff is gone."""
        with Session(self._engine) as session, session.begin():
            row = session.scalars(
                sa.select(HandoffRow)
                .where(HandoffRow.tenant_id == tenant_id, HandoffRow.handoff_id == handoff_id)
                .with_for_update()
            ).one_or_none()
            if row is None:
                return None
            if method == "llm" and (row.first_replied_at is not None or row.state == RESOLVED):
                log.info("llm_draft_too_late", tenant_id=tenant_id, handoff_id=handoff_id)
                method = "template"
            lineage = _json_object(row.context.get("lineage"))
            lineage["prompt_template_version"] = summaries.prompt_versions(method)
            settled: dict[str, object] = {"draft_method": method}
            if method == "llm":
                lineage["model"] = model
                settled["draft_reply"] = draft
                # An agent with the handoff open may still be working from it.
                row.template_draft = str(row.context.get("draft_reply", ""))
            # A new dict, so that the JSON column is seen as changed.
            row.context = {**row.context, **settled, "lineage": lineage}
        return method

    def draft_still_wanted(self, tenant_id: str, handoff_id: str) -> bool:
        """Whether an LLM draft could still be stored (no agent reply yet, not resolved):
        otherwise the LLM is not asked at all."""
        with Session(self._engine) as session:
            found = session.execute(
                sa.select(HandoffRow.first_replied_at, HandoffRow.state).where(
                    HandoffRow.tenant_id == tenant_id, HandoffRow.handoff_id == handoff_id
                )
            ).one_or_none()
        return found is not None and found.first_replied_at is None and found.state != RESOLVED


def _json_object(value: object) -> dict[str, object]:
    """A copy of a stored package's message field (a JSON object), {} when absent."""
    return dict(value) if isinstance(value, dict) else {}


def _json_objects(value: object) -> list[dict[str, object]]:
    """A stored package's repeated message field (a list of JSON objects), [] when absent."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
