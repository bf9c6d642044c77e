"""Migration 6 (the handoff as a conversation) on a database with handoffs made
before it, on SQLite and PostgreSQL: every handoff gets a reference, a
conversation id and the history its timestamps show; of several open handoffs
of one conversation (made before the one-per-conversation rule) the newest
holds the conversation, and new writes follow the rule."""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from aftercare.escalation.v1 import escalation_pb2
from services.escalation.migrations import SCHEMA
from services.escalation.store import ConversationHasOpenHandoff, HandoffStore, NewHandoff
from services.escalation.thread import CustomerMessage, ThreadStore
from tests.services.escalation.conftest import handoff_request

Kind = escalation_pb2.HandoffEventKind


def _insert_legacy(engine: Engine, handoff_id: str, conversation_id: str, state: str, created: str) -> None:
    resolved = "'2026-01-02 10:00:00'" if state == "HANDOFF_STATE_RESOLVED" else "NULL"
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO handoffs (handoff_id, tenant_id, customer_id, idempotency_key, conversation_id, "
                "conversation, reason, ai_attempt, account, context, queue, priority, state, assigned_agent_id, "
                f"created_at, updated_at, resolved_at, resolved_by) VALUES ('{handoff_id}', 'demo', 'c', "
                f"'key-{handoff_id}', '{conversation_id}', '{{}}', 'HANDOFF_REASON_POLICY', '{{}}', '{{}}', '{{}}', "
                f"'general', 40, '{state}', '', '{created}', '{created}', {resolved}, 'agent-1')"
            )
        )


def test_existing_handoffs_get_references_conversations_and_history(engine: Engine) -> None:
    assert SCHEMA.migrate(engine, target=5) == [1, 2, 3, 4, 5]
    _insert_legacy(engine, "old-dup", "conv-a", "HANDOFF_STATE_WAITING", "2026-01-01 10:00:00")
    _insert_legacy(engine, "new-dup", "conv-a", "HANDOFF_STATE_WAITING", "2026-01-01 11:00:00")
    _insert_legacy(engine, "no-conv", "", "HANDOFF_STATE_WAITING", "2026-01-01 12:00:00")
    _insert_legacy(engine, "closed", "conv-b", "HANDOFF_STATE_RESOLVED", "2026-01-01 09:00:00")

    assert SCHEMA.migrate(engine) == [6, 7, 8, 9, 10]

    store = HandoffStore(engine)
    handoffs = {hid: store.get("demo", hid) for hid in ("old-dup", "new-dup", "no-conv", "closed")}
    references = {h.reference for h in handoffs.values() if h is not None}
    assert len(references) == 4 and all(re.fullmatch(r"HO-[2-9A-HJKMNP-TV-Z]{6}", r) for r in references)
    assert handoffs["no-conv"] is not None and handoffs["no-conv"].conversation_id == "no-conv"
    closed = handoffs["closed"]
    assert closed is not None
    assert [event.kind for event in closed.history] == [
        Kind.Value("HANDOFF_EVENT_KIND_CREATED"),
        Kind.Value("HANDOFF_EVENT_KIND_RESOLVED"),
    ]
    # The newest open handoff of conv-a holds the conversation: a customer's message goes there.
    thread = ThreadStore(engine, dt.timedelta(hours=72))
    appended = thread.append_customer_message(CustomerMessage("demo", "c", "conv-a", "still there?", "m-1", 0))
    assert appended.appended and appended.handoff is not None and appended.handoff.handoff_id == "new-dup"
    # ... and a new handoff for it is refused by the database (the caller appends instead).
    request = handoff_request(key="fresh", conversation_id="conv-a", customer_id="c")
    try:
        store.create(request, NewHandoff("general", escalation_pb2.ContextPackage()))
    except ConversationHasOpenHandoff:
        pass
    else:
        raise AssertionError("a second open handoff was stored for conv-a")
