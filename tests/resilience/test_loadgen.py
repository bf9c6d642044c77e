"""The drill's own instruments: the ledger check finds every kind of lost
record, the load phases are bounded in time, and the summaries count
shedding and timeouts as such. Run against the gateway with test doubles of
the backends, so a "lost" record is one the double deliberately forgets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.outreach.v1 import outreach_pb2
from aftercare.type.v1 import customer_pb2
from bench.loadgen import Client, Keys, Ledger, Recorder, Sample, Workload, bounded, run_workers, summarise, verify
from gateway.app import create_app
from gateway.backends import Backends
from gateway.keys import Role
from servicekit.errors import Unavailable
from tests.gateway.conftest import TENANT, Mesh


@pytest.fixture
async def workload(mesh: Mesh) -> AsyncIterator[Workload]:
    settings = mesh.settings()
    backends = Backends.connect(settings)
    keys = Keys(TENANT, channel=[mesh.key(Role.CHANNEL)], agent=[mesh.key(Role.AGENT)], admin=[mesh.key(Role.ADMIN)])
    client = Client("http://gateway", Recorder(), concurrency=4)
    await client.http.aclose()
    client.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings, backends)),
                                    base_url="http://gateway")
    try:
        yield Workload(client, keys, Ledger(), ["acct-1"])
    finally:
        await client.close()
        await backends.close()


def _handoff(handoff_id: str) -> escalation_pb2.Handoff:
    return escalation_pb2.Handoff(handoff_id=handoff_id, customer=customer_pb2.CustomerRef(tenant_id=TENANT))


async def test_verify_counts_what_the_backends_no_longer_have(mesh: Mesh, workload: Workload) -> None:
    ledger = workload.ledger
    ledger.turns[("c1", "u1")] = {0, 1}
    ledger.handoffs = {"h1", "h2"}
    ledger.replies = {"drillreplyaaa": "h1", "drillreplybbb": "h2"}
    ledger.usage_events = {f"e{i}": {"event_id": f"e{i}", "account_id": "acct-1",
                                     "occurred_at": "2026-11-20T10:00:00Z"} for i in range(3)}
    ledger.approved_drafts = {"d1", "d2"}
    # The doubles remember all but one of each.
    mesh.concierge.get_conversation.outcome = concierge_pb2.GetConversationResponse(
        turns=[concierge_pb2.ConversationTurn(customer_text="hi", outcome=concierge_pb2.ConverseResponse(turn_index=0))]
    )
    mesh.escalation.list_handoffs.outcome = escalation_pb2.ListHandoffsResponse(handoffs=[_handoff("h1")])
    mesh.escalation.export_feedback.outcome = escalation_pb2.ExportFeedbackResponse(
        jsonl='{"prompt": "p", "rejected": "d", "chosen": "ok drillreplyaaa"}\n', record_count=1
    )
    mesh.outreach.record_usage.outcome = outreach_pb2.RecordUsageResponse(accepted=1, duplicates=2)
    mesh.outreach.list_drafts.outcome = outreach_pb2.ListDraftsResponse(
        drafts=[outreach_pb2.OutreachDraft(draft_id="d1", state=outreach_pb2.DRAFT_STATE_APPROVED)]
    )

    result = await verify(workload)

    assert result["acknowledged"] == {"conversation_turns": 2, "handoffs": 2, "agent_replies": 2, "usage_events": 3,
                                      "approved_drafts": 2}
    assert result["lost"] == {"conversation_turns": 1, "handoffs": 1, "agent_replies": 1, "usage_events": 1,
                              "approved_drafts": 1}
    assert result["missing_examples"]["conversation_turns"] == ["c1#1"]
    assert result["missing_examples"]["handoffs"] == ["h2"]


async def test_verify_finds_nothing_lost_when_everything_is_there(mesh: Mesh, workload: Workload) -> None:
    workload.ledger.handoffs = {"h1"}
    workload.ledger.usage_events = {"e0": {"event_id": "e0", "account_id": "acct-1",
                                           "occurred_at": "2026-11-20T10:00:00Z"}}
    mesh.escalation.list_handoffs.outcome = escalation_pb2.ListHandoffsResponse(handoffs=[_handoff("h1")])
    mesh.outreach.record_usage.outcome = outreach_pb2.RecordUsageResponse(duplicates=1)
    result = await verify(workload)
    assert sum(result["lost"].values()) == 0 and result["unreadable"] == {}


async def test_a_backend_that_stays_down_is_unreadable_not_lost(mesh: Mesh, workload: Workload,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.loadgen.asyncio.sleep", _no_sleep)
    workload.ledger.handoffs = {"h1"}
    mesh.escalation.list_handoffs.outcome = Unavailable("down")
    result = await verify(workload)
    assert result["lost"]["handoffs"] == 0 and result["unreadable"]["handoffs"] == 1


async def _no_sleep(_: float) -> None:
    return None


async def test_acknowledged_turns_and_handoffs_enter_the_ledger(mesh: Mesh, workload: Workload) -> None:
    mesh.concierge.converse.outcome = concierge_pb2.ConverseResponse(
        decision=concierge_pb2.DECISION_ESCALATED, handoff_id="h9", turn_index=0, reply="passing you on"
    )
    await workload.conversation()
    assert workload.ledger.handoffs == {"h9"}
    assert sum(len(t) for t in workload.ledger.turns.values()) == 1


async def test_workers_stop_by_themselves(mesh: Mesh, workload: Workload) -> None:
    mesh.triage.suggest_for_context.delay_s = 5.0  # a backend far slower than the phase
    workload.mix = {"browsing": 1}
    started = time.monotonic()
    await run_workers(workload, workers=3, duration_s=0.3, grace_s=0.5)
    assert time.monotonic() - started < 3.0


async def test_bounded_starts_nothing_after_its_budget() -> None:
    ran = []

    async def job() -> None:
        ran.append(1)
        await asyncio.sleep(0.2)

    started = await bounded([job] * 20, concurrency=2, budget_s=0.3, grace_s=1.0)
    assert started == len(ran) and 2 <= started <= 6


def test_summary_tells_shedding_from_timeouts() -> None:
    now = time.monotonic()
    samples = [
        Sample("chat", 200, 100.0, now), Sample("chat", 200, 300.0, now),
        Sample("chat", 429, 1.0, now, retry_after="1"), Sample("chat", 503, 1.0, now),
        Sample("chat", 0, 30000.0, now, failure="timeout"),
    ]
    block = summarise(samples, 10.0)["endpoints"]["chat"]
    assert block["ok"] == 2 and block["shed"] == 2 and block["shed_with_retry_after"] == 1
    assert block["timeouts"] == 1
    assert block["outcomes"] == {"200": 2, "429": 1, "503": 1, "timeout": 1}
    assert block["p50_ms"] in (100.0, 300.0)
