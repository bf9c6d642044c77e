"""Every /v1 route: JSON in, one gRPC call with the right fields, JSON out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.outreach.v1 import outreach_pb2
from aftercare.retrieval.v1 import retrieval_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import answer_pb2, conversation_pb2
from gateway.keys import Role
from servicekit.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from tests.gateway.conftest import TENANT, Mesh, bearer, one, open_gateway
from tests.gateway.live import LiveGateway

T = f"/v1/tenants/{TENANT}"


def _ts(day: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime(2026, 11, day, tzinfo=UTC))
    return stamp


def parse_sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


# --- streaming -------------------------------------------------------------

STREAM_URL = "/v1/conversations/conv-9/messages/stream"


async def test_stream_sends_deltas_then_the_outcome(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.concierge.stream_converse.outcome = [
        concierge_pb2.StreamConverseResponse(delta="Open Settings"),
        concierge_pb2.StreamConverseResponse(delta=" > Security."),
        concierge_pb2.StreamConverseResponse(
            outcome=concierge_pb2.ConverseResponse(
                reply="Open Settings > Security.",
                citations=[answer_pb2.Citation(doc_id="d1", chunk_id="d1#0", title="2FA", url="u", score=0.9)],
                confidence=answer_pb2.Confidence(score=0.92),
                decision=concierge_pb2.DECISION_ANSWERED,
                decision_reason="confident",
            )
        ),
    ]
    async with gateway.stream(
        "POST", STREAM_URL, json={"text": "2FA?", "customer": {"customer_id": "cust-1"}}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        text = (await response.aread()).decode()

    events = parse_sse(text)
    assert events[:2] == [("delta", {"text": "Open Settings"}), ("delta", {"text": " > Security."})]
    kind, outcome = events[2]
    assert kind == "outcome"
    assert (outcome["reply"], outcome["decision"], outcome["conversation_id"]) == (
        "Open Settings > Security.", "answered", "conv-9"
    )
    assert outcome["citations"][0]["doc_id"] == "d1"
    assert len(outcome["trace_id"]) == 32
    sent = one(mesh.concierge.stream_converse.requests).request
    assert (sent.conversation_id, sent.text, sent.customer.tenant_id, sent.customer.customer_id) == (
        "conv-9", "2FA?", TENANT, "cust-1"
    )


async def test_stream_refused_before_the_first_event_is_a_problem(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.concierge.stream_converse.outcome = InvalidArgument([("text", "too vague")])
    response = await gateway.post(STREAM_URL, json={"text": "?", "customer": {"customer_id": "c"}})

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"] == [{"field": "text", "description": "too vague"}]


async def test_stream_failing_midway_ends_with_an_error_event(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.concierge.stream_converse.outcome = [
        concierge_pb2.StreamConverseResponse(delta="Partial"),
        Unavailable("llm went away"),
    ]
    response = await gateway.post(STREAM_URL, json={"text": "q", "customer": {"customer_id": "c"}})

    assert response.status_code == 200
    events = parse_sse(response.text)
    assert events[0] == ("delta", {"text": "Partial"})
    kind, error = events[-1]
    assert kind == "error"
    assert (error["status"], error["reason"]) == (503, "UNAVAILABLE")


async def test_stream_invalid_body_is_400(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(STREAM_URL, json={"text": "", "customer": {"customer_id": "c"}})
    assert response.status_code == 400
    assert mesh.concierge.stream_converse.requests == []


# --- email intake ----------------------------------------------------------


async def test_email_intake_converses_on_the_email_channel(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.concierge.converse.outcome = concierge_pb2.ConverseResponse(
        reply="We will look into it.", decision=concierge_pb2.DECISION_ESCALATED, handoff_id="ho-3"
    )
    email = {"sender": "Ann@Example.com", "subject": "Re: Export fails", "body": "CSV export times out."}
    first = await gateway.post(f"{T}/intake/email", json=email)
    again = await gateway.post(f"{T}/intake/email", json=email | {"subject": "RE: Fwd: export FAILS "})
    threaded = await gateway.post(f"{T}/intake/email", json=email | {"thread_id": "ticket-77"})

    assert (first.status_code, again.status_code, threaded.status_code) == (200, 200, 200), first.text
    assert (first.json()["decision"], first.json()["handoff_id"]) == ("escalated", "ho-3")
    sent, replied, in_thread = mesh.concierge.converse.requests
    assert sent.channel == conversation_pb2.CHANNEL_EMAIL
    assert sent.customer.tenant_id == TENANT
    assert sent.customer.customer_id.startswith("email-") and "ann" not in sent.customer.customer_id.lower()
    assert first.json()["customer_id"] == sent.customer.customer_id
    assert replied.customer.customer_id == sent.customer.customer_id, "one address, one customer"
    assert sent.text == "Re: Export fails\n\nCSV export times out."
    assert sent.conversation_id.startswith("email-")
    assert first.json()["conversation_id"] == sent.conversation_id
    assert replied.conversation_id == sent.conversation_id, "replies to one subject share a conversation"
    assert in_thread.conversation_id == "ticket-77"


@pytest.mark.parametrize(
    "email",
    [
        {"sender": "not-an-address", "body": "hi"},
        {"sender": "a@b.c", "body": ""},
        {"sender": "a@b.c", "body": "x" * 3601},
        {"sender": "a@b.c", "body": "hi", "cc": "x@y.z"},
    ],
)
async def test_email_intake_refuses_bad_mail(mesh: Mesh, gateway: httpx.AsyncClient, email: dict) -> None:
    response = await gateway.post(f"{T}/intake/email", json=email)
    assert response.status_code == 400
    assert mesh.concierge.converse.requests == []


# --- Tier 0 ----------------------------------------------------------------


async def test_browsing_event_returns_a_suggestion(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.triage.suggest_for_context.outcome = triage_pb2.SuggestForContextResponse(
        suggestion=triage_pb2.Suggestion(
            doc_id="kb-9", title="Fix 429s", snippet="Batch your events.", url="/kb/9", relevance=0.8, reason="errors",
            kind=triage_pb2.SUGGESTION_KIND_TIP,
        )
    )
    event = {
        "customer_id": "cust-1", "page": "/settings/api", "feature": "api", "dwell_seconds": 45,
        "recent_errors": ["429"], "search_query": "limit", "dismissed_doc_ids": ["kb-1"],
    }
    response = await gateway.post(f"{T}/browsing-events", json=event)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "suggestion": {
            "doc_id": "kb-9", "title": "Fix 429s", "snippet": "Batch your events.", "url": "/kb/9",
            "relevance": 0.8, "reason": "errors", "kind": "tip",
        },
        "no_suggestion_reason": None,
        "retry_after_seconds": None,
    }
    sent = one(mesh.triage.suggest_for_context.requests)
    assert (sent.customer.tenant_id, sent.context.page, sent.context.dwell_seconds) == (TENANT, "/settings/api", 45)
    assert list(sent.context.recent_errors) == ["429"] and list(sent.dismissed_doc_ids) == ["kb-1"]


async def test_browsing_event_without_suggestion(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.triage.suggest_for_context.outcome = triage_pb2.SuggestForContextResponse(
        no_suggestion_reason="rate_limited", retry_after_seconds=30
    )
    response = await gateway.post(f"{T}/browsing-events", json={"customer_id": "c", "page": "/"})
    assert response.json() == {"suggestion": None, "no_suggestion_reason": "rate_limited", "retry_after_seconds": 30}


async def test_dismissing_a_suggestion_is_remembered(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.triage.dismiss_suggestion.outcome = triage_pb2.DismissSuggestionResponse(newly_dismissed=True)
    response = await gateway.post(f"{T}/suggestions/kb-9/dismiss", json={"customer_id": "cust-1"})

    assert response.json() == {"newly_dismissed": True}
    sent = one(mesh.triage.dismiss_suggestion.requests)
    assert (sent.customer.tenant_id, sent.customer.customer_id, sent.doc_id) == (TENANT, "cust-1", "kb-9")


# --- knowledge base --------------------------------------------------------


async def test_upload_streams_every_document(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.retrieval.ingest_documents.outcome = retrieval_pb2.IngestDocumentsResponse(
        results=[
            retrieval_pb2.IngestResult(doc_id="a", outcome=retrieval_pb2.INGEST_OUTCOME_CREATED, chunk_count=3,
                                       content_hash="h1"),
            retrieval_pb2.IngestResult(doc_id="b", outcome=retrieval_pb2.INGEST_OUTCOME_UNCHANGED, chunk_count=1,
                                       content_hash="h2"),
        ],
        chunks_written=3,
    )
    documents = [
        {"doc_id": "a", "title": "A", "body": "# A\ntext", "doc_type": "faq", "updated_at": "2026-11-01T00:00:00Z"},
        {"doc_id": "b", "title": "B", "body": "<p>b</p>", "format": "html"},
    ]
    response = await gateway.post(f"{T}/kb/documents", json={"documents": documents})

    assert response.status_code == 200, response.text
    assert response.json()["results"][1] == {"doc_id": "b", "outcome": "unchanged", "chunk_count": 1,
                                             "content_hash": "h2"}
    stream = one(mesh.retrieval.ingest_documents.requests)
    assert [r.document.doc_id for r in stream] == ["a", "b"]
    first, second = (r.document for r in stream)
    assert (first.tenant_id, first.doc_type, first.format) == (
        TENANT, retrieval_pb2.DOCUMENT_TYPE_FAQ, retrieval_pb2.DOCUMENT_FORMAT_MARKDOWN
    )
    assert first.updated_at.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 1, tzinfo=UTC)
    assert second.format == retrieval_pb2.DOCUMENT_FORMAT_HTML and not second.HasField("updated_at")


async def test_uploads_have_their_own_larger_body_limit(mesh: Mesh) -> None:
    body = {"documents": [{"doc_id": "big", "title": "Big", "body": "x" * 100_000}]}
    async with open_gateway(mesh.settings(max_upload_bytes=200_000), key=mesh.key(Role.ADMIN)) as gateway:
        accepted = await gateway.post(f"{T}/kb/documents", json=body)
        too_big_for_messages = await gateway.post(
            "/v1/conversations/c/messages", json={"text": "x" * 100_000, "customer": {"customer_id": "c"}}
        )
        too_big = await gateway.post(f"{T}/kb/documents", json={"documents": body["documents"] * 3})

    assert accepted.status_code == 200, accepted.text
    assert too_big_for_messages.status_code == 413
    assert too_big.status_code == 413


async def test_list_documents_pages(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.retrieval.list_documents.outcome = retrieval_pb2.ListDocumentsResponse(
        documents=[retrieval_pb2.DocumentSummary(doc_id="a", title="A", doc_type=retrieval_pb2.DOCUMENT_TYPE_POLICY,
                                                 chunk_count=4, content_hash="h", updated_at=_ts(3))],
        next_page_token="n",
    )
    response = await gateway.get(f"{T}/kb/documents", params={"page_size": 1})

    body = response.json()
    assert body["next_page_token"] == "n"
    assert body["documents"][0] | {"url": ""} == {
        "doc_id": "a", "title": "A", "url": "", "doc_type": "policy", "product": "", "version": "",
        "updated_at": "2026-11-03T00:00:00Z", "content_hash": "h", "chunk_count": 4,
    }
    sent = one(mesh.retrieval.list_documents.requests)
    assert (sent.tenant_id, sent.page_size, sent.page_token) == (TENANT, 1, "")


async def test_delete_document(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.retrieval.delete_documents.outcome = retrieval_pb2.DeleteDocumentsResponse(deleted_doc_ids=["a"])
    deleted = await gateway.delete(f"{T}/kb/documents/a")
    mesh.retrieval.delete_documents.outcome = retrieval_pb2.DeleteDocumentsResponse(missing_doc_ids=["zz"])
    missing = await gateway.delete(f"{T}/kb/documents/zz")

    assert (deleted.status_code, deleted.json()) == (200, {"doc_id": "a", "deleted": True})
    assert missing.status_code == 404 and missing.json()["reason"] == "DOCUMENT_NOT_FOUND"
    first = mesh.retrieval.delete_documents.requests[0]
    assert (first.tenant_id, list(first.doc_ids)) == (TENANT, ["a"])


# --- handoffs --------------------------------------------------------------


def _handoff(handoff_id: str, state: int = escalation_pb2.HANDOFF_STATE_WAITING) -> escalation_pb2.Handoff:
    return escalation_pb2.Handoff(
        handoff_id=handoff_id, queue="billing", priority=60, state=state,
        reason=escalation_pb2.HANDOFF_REASON_LOW_CONFIDENCE, created_at=_ts(20),
    )


async def test_queue_lists_handoffs_with_paging(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.list_handoffs.outcome = escalation_pb2.ListHandoffsResponse(
        handoffs=[_handoff("h1"), _handoff("h2")], next_page_token="p2"
    )
    response = await gateway.get(
        f"{T}/handoffs", params={"queue": "billing", "state": "assigned", "page_size": 2, "page_token": "p1"}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert [h["handoff_id"] for h in body["handoffs"]] == ["h1", "h2"]
    assert body["next_page_token"] == "p2"
    assert body["handoffs"][0]["created_at"] == "2026-11-20T00:00:00Z"
    sent = one(mesh.escalation.list_handoffs.requests)
    assert (sent.tenant_id, sent.queue, sent.state, sent.page_size, sent.page_token) == (
        TENANT, "billing", escalation_pb2.HANDOFF_STATE_ASSIGNED, 2, "p1"
    )


async def test_queue_defaults_and_bad_parameters(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    response = await gateway.get(f"{T}/handoffs")
    assert response.json() == {"handoffs": [], "next_page_token": None}
    sent = one(mesh.escalation.list_handoffs.requests)
    assert (sent.state, sent.page_size) == (escalation_pb2.HANDOFF_STATE_UNSPECIFIED, 50)
    bad = await gateway.get(f"{T}/handoffs", params={"state": "lost", "page_size": 0})
    assert bad.status_code == 400
    assert {e["field"] for e in bad.json()["errors"]} == {"query.state", "query.page_size"}


async def test_agent_reply_is_recorded_with_the_intent_correction(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.submit_agent_reply.outcome = escalation_pb2.SubmitAgentReplyResponse(
        draft_use=escalation_pb2.DRAFT_USE_EDITED, edit_ratio=0.12
    )
    response = await gateway.post(
        f"{T}/handoffs/h1/replies",
        json={"final_text": "Refunded.", "intent_correction": {"original_label": "a", "corrected_label": "b"},
              "expected_version": 3},
    )

    assert response.json() == {"draft_use": "edited", "edit_ratio": 0.12, "handoff": None, "message": None}
    sent = one(mesh.escalation.submit_agent_reply.requests)
    assert (sent.tenant_id, sent.handoff_id, sent.final_text, sent.agent_id) == (
        TENANT, "h1", "Refunded.", f"admin-{TENANT}"
    )
    assert (sent.intent_correction.original_label, sent.intent_correction.corrected_label) == ("a", "b")
    assert sent.expected_version == 3


async def test_assign_takes_the_handoff_for_the_keys_agent(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.assign_handoff.outcome = escalation_pb2.AssignHandoffResponse(
        handoff=escalation_pb2.Handoff(handoff_id="h1", state=escalation_pb2.HANDOFF_STATE_ASSIGNED,
                                       assigned_agent_id=f"admin-{TENANT}", version=4, assigned_at=_ts(22))
    )
    response = await gateway.post(f"{T}/handoffs/h1/assign", json={"expected_version": 3})

    body = response.json()
    assert (body["state"], body["version"], body["assigned_at"]) == ("assigned", 4, "2026-11-22T00:00:00Z")
    sent = one(mesh.escalation.assign_handoff.requests)
    assert (sent.tenant_id, sent.handoff_id, sent.agent_id, sent.expected_version) == (
        TENANT, "h1", f"admin-{TENANT}", 3
    )


async def test_a_stale_version_is_409(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    from servicekit.errors import Aborted

    mesh.escalation.assign_handoff.outcome = Aborted("handoff changed", reason="STALE_VERSION")
    response = await gateway.post(f"{T}/handoffs/h1/assign", json={})
    assert (response.status_code, response.json()["reason"]) == (409, "STALE_VERSION")


async def test_resolve_returns_the_closed_handoff(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.resolve_handoff.outcome = escalation_pb2.ResolveHandoffResponse(
        handoff=_handoff("h1", escalation_pb2.HANDOFF_STATE_RESOLVED)
    )
    response = await gateway.post(f"{T}/handoffs/h1/resolve", json={"resolution": "Refund issued."})

    assert (response.status_code, response.json()["state"]) == (200, "resolved")
    sent = one(mesh.escalation.resolve_handoff.requests)
    assert (sent.tenant_id, sent.handoff_id, sent.resolution) == (TENANT, "h1", "Refund issued.")


async def test_resolving_twice_is_409(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.resolve_handoff.outcome = FailedPrecondition("already resolved", reason="HANDOFF_RESOLVED")
    response = await gateway.post(f"{T}/handoffs/h1/resolve", json={"resolution": "again"})
    assert (response.status_code, response.json()["reason"]) == (409, "HANDOFF_RESOLVED")


# --- insights --------------------------------------------------------------


async def test_topic_insights_pass_the_period(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.get_topic_insights.outcome = escalation_pb2.GetTopicInsightsResponse(
        topics=[
            escalation_pb2.TopicSeries(
                topic="billing", confidence_drop_flagged=True, confidence_drop_detail="0.62 vs 0.91",
                points=[escalation_pb2.TopicPoint(day=_ts(1), contacts=4, mean_confidence=0.8, automation_rate=0.5,
                                                  escalation_rate=0.5, edit_rate=0.25)],
            )
        ]
    )
    response = await gateway.get(
        f"{T}/insights/topics", params={"start": "2026-11-01T00:00:00Z", "end": "2026-11-08T00:00:00Z"}
    )

    assert response.status_code == 200, response.text
    (topic,) = response.json()["topics"]
    assert topic == {
        "topic": "billing", "confidence_drop_flagged": True, "confidence_drop_detail": "0.62 vs 0.91",
        "points": [{"day": "2026-11-01T00:00:00Z", "contacts": 4, "mean_confidence": 0.8, "automation_rate": 0.5,
                    "escalation_rate": 0.5, "edit_rate": 0.25, "mean_csat": 0.0, "csat_ratings": 0}],
    }
    sent = one(mesh.escalation.get_topic_insights.requests)
    assert sent.start_time.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 1, tzinfo=UTC)
    assert sent.end_time.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 8, tzinfo=UTC)
    nothing_judged = {"bins": [], "judged": 0, "judged_by_agents": 0, "judged_by_customers": 0, "ece": 0.0}
    assert response.json()["reliability"] == nothing_judged


async def test_topic_insights_carry_the_reliability_diagram(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    bins = [escalation_pb2.ReliabilityBin(lower=i / 10, upper=(i + 1) / 10) for i in range(10)]
    bins[9].MergeFrom(escalation_pb2.ReliabilityBin(count=30, mean_confidence=0.93, accuracy=0.8))
    mesh.escalation.get_topic_insights.outcome = escalation_pb2.GetTopicInsightsResponse(
        reliability=escalation_pb2.Reliability(
            bins=bins, judged=30, judged_by_agents=12, judged_by_customers=18, ece=0.13
        )
    )
    response = await gateway.get(f"{T}/insights/topics")

    reliability = response.json()["reliability"]
    assert len(reliability["bins"]) == 10
    assert reliability["bins"][9] == {"lower": 0.9, "upper": 1.0, "count": 30, "mean_confidence": 0.93, "accuracy": 0.8}
    assert reliability["bins"][0]["count"] == 0
    assert (reliability["judged"], reliability["judged_by_agents"], reliability["judged_by_customers"]) == (30, 12, 18)
    assert reliability["ece"] == 0.13


async def test_knowledge_gaps_and_feedback_export(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.list_knowledge_gaps.outcome = escalation_pb2.ListKnowledgeGapsResponse(
        gaps=[escalation_pb2.KnowledgeGap(gap_id="g1", suggested_title="SSO with Okta", question_count=7,
                                          examples=["okta?"], last_seen=_ts(2))]
    )
    mesh.escalation.export_feedback.outcome = escalation_pb2.ExportFeedbackResponse(
        jsonl='{"prompt": "p", "rejected": "r", "chosen": "c"}\n', record_count=1
    )
    gaps = await gateway.get(f"{T}/insights/knowledge-gaps", params={"limit": 5})
    export = await gateway.get(f"{T}/feedback/export", params={"since": "2026-11-01T00:00:00+00:00"})

    assert gaps.json()["gaps"][0] == {
        "gap_id": "g1", "suggested_title": "SSO with Okta", "question_count": 7, "examples": ["okta?"],
        "last_seen": "2026-11-02T00:00:00Z",
    }
    assert one(mesh.escalation.list_knowledge_gaps.requests).limit == 5
    assert export.json()["record_count"] == 1
    assert json.loads(export.json()["jsonl"])["chosen"] == "c"
    assert one(mesh.escalation.export_feedback.requests).since.seconds > 0


async def test_intent_corrections_export(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.escalation.export_intent_corrections.outcome = escalation_pb2.ExportIntentCorrectionsResponse(
        jsonl='{"text": "t", "label": "refund"}\n', example_count=1
    )
    response = await gateway.get(f"{T}/feedback/intent-corrections")
    assert response.json() == {"example_count": 1, "jsonl": '{"text": "t", "label": "refund"}\n'}
    assert one(mesh.escalation.export_intent_corrections.requests).tenant_id == TENANT


# --- conversation history ----------------------------------------------------


async def test_conversation_history(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.concierge.get_conversation.outcome = concierge_pb2.GetConversationResponse(
        conversation=conversation_pb2.Conversation(messages=[
            conversation_pb2.Message(role=conversation_pb2.ROLE_CUSTOMER, text="hi"),
            conversation_pb2.Message(role=conversation_pb2.ROLE_ASSISTANT, text="hello"),
        ]),
        turns=[concierge_pb2.ConversationTurn(
            customer_text="hi", created_at=_ts(5), rating=concierge_pb2.TURN_RATING_NOT_HELPFUL,
            outcome=concierge_pb2.ConverseResponse(reply="hello", decision=concierge_pb2.DECISION_ANSWERED,
                                                   lineage=answer_pb2.Lineage(trace_id="ab" * 16)),
        ), concierge_pb2.ConversationTurn(customer_text="more?")],
    )
    response = await gateway.get("/v1/conversations/conv-1", params={"customer_id": "cust-1"})
    missing_customer = await gateway.get("/v1/conversations/conv-1")

    body = response.json()
    assert [m["role"] for m in body["messages"]] == ["customer", "assistant"]
    turn = body["turns"][0]
    assert (turn["customer_text"], turn["outcome"]["reply"], turn["outcome"]["trace_id"]) == ("hi", "hello", "ab" * 16)
    assert [t["rating"] for t in body["turns"]] == ["not_helpful", None]
    sent = one(mesh.concierge.get_conversation.requests)
    assert (sent.customer.tenant_id, sent.customer.customer_id, sent.conversation_id) == (TENANT, "cust-1", "conv-1")
    assert missing_customer.status_code == 400


# --- customers' ratings ------------------------------------------------------

RATING_URL = "/v1/conversations/conv-1/turns/2/rating"


async def test_a_rating_is_one_rate_turn_call(mesh: Mesh) -> None:
    mesh.concierge.rate_turn.outcome = concierge_pb2.RateTurnResponse(changed=True)
    async with open_gateway(mesh.settings(), key=mesh.key(Role.CHANNEL)) as channel:
        response = await channel.post(RATING_URL, json={"customer_id": "cust-1", "rating": "not_helpful"})

    assert response.status_code == 200, response.text
    assert response.json() == {"changed": True}
    sent = one(mesh.concierge.rate_turn.requests)
    assert (sent.customer.tenant_id, sent.customer.customer_id) == (TENANT, "cust-1")
    assert (sent.conversation_id, sent.turn_index, sent.rating) == ("conv-1", 2, concierge_pb2.TURN_RATING_NOT_HELPFUL)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (RATING_URL, {"customer_id": "cust-1", "rating": "meh"}, "body.rating"),
        (RATING_URL, {"customer_id": "cust-1", "rating": "helpful", "tenant_id": "acme"}, "body.tenant_id"),
        (RATING_URL, {"rating": "helpful"}, "body.customer_id"),
        ("/v1/conversations/conv-1/turns/-1/rating", {"customer_id": "c", "rating": "helpful"}, "path.turn_index"),
    ],
)
async def test_a_bad_rating_is_400_without_a_backend_call(
    mesh: Mesh, gateway: httpx.AsyncClient, path: str, body: dict[str, Any], field: str
) -> None:
    response = await gateway.post(path, json=body)
    assert response.status_code == 400, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert mesh.concierge.rate_turn.requests == []


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (
            FailedPrecondition("only an answered turn can be rated", reason="TURN_NOT_ANSWERED"),
            409,
            "TURN_NOT_ANSWERED",
        ),
        (NotFound("no conversation with this id for this customer"), 404, "NOT_FOUND"),
    ],
)
async def test_a_refused_rating_is_a_problem(
    mesh: Mesh, gateway: httpx.AsyncClient, error: Exception, status: int, reason: str
) -> None:
    mesh.concierge.rate_turn.outcome = error
    response = await gateway.post(RATING_URL, json={"customer_id": "cust-1", "rating": "helpful"})
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["reason"] == reason


# --- usage and outreach ----------------------------------------------------


async def test_usage_events_stream_to_outreach(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.outreach.record_usage.outcome = outreach_pb2.RecordUsageResponse(
        accepted=1, duplicates=1, late=1,
        rejected=[outreach_pb2.RejectedEvent(event_id="e3", reason="future_timestamp")],
    )
    events = [
        {"event_id": f"e{i}", "account_id": "acct-1", "occurred_at": "2026-11-20T10:00:00Z", "endpoint": "POST /x",
         "status_code": 429, "count": 3}
        for i in range(1, 4)
    ]
    response = await gateway.post(f"{T}/usage-events", json={"events": events})

    assert response.json() == {"accepted": 1, "duplicates": 1, "late": 1,
                               "rejected": [{"event_id": "e3", "reason": "future_timestamp"}]}
    (message,) = one(mesh.outreach.record_usage.requests)
    assert [e.event_id for e in message.events] == ["e1", "e2", "e3"] and not message.HasField("event")
    first = message.events[0]
    assert (first.tenant_id, first.status_code, first.count, first.endpoint) == (TENANT, 429, 3, "POST /x")
    assert first.occurred_at.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 20, 10, tzinfo=UTC)


async def test_many_usage_events_are_sent_in_batches(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    events = [{"event_id": f"e{i}", "account_id": "a", "occurred_at": "2026-11-20T10:00:00Z"} for i in range(1000)]
    response = await gateway.post(f"{T}/usage-events", json={"events": events})

    assert response.status_code == 200, response.text
    stream = one(mesh.outreach.record_usage.requests)
    assert [len(m.events) for m in stream] == [500, 500]
    assert stream[1].events[-1].event_id == "e999"


async def test_detect_draft_list_and_review(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    draft = outreach_pb2.OutreachDraft(
        draft_id="d1", account_id="acct-1", finding_id="f1", subject="429s since Tuesday", body="Here is the fix",
        state=outreach_pb2.DRAFT_STATE_PENDING_REVIEW, created_at=_ts(21),
    )
    mesh.outreach.detect_risks.outcome = outreach_pb2.DetectRisksResponse(
        findings=[outreach_pb2.RiskFinding(
            finding_id="f1", account_ids=["acct-1"], kind=outreach_pb2.RISK_KIND_ERROR_SPIKE, endpoint="POST /x",
            evidence=[outreach_pb2.Evidence(statement="429 rate rose", metric="error_rate", before=0.01, after=0.38)],
        )]
    )
    mesh.outreach.draft_outreach.outcome = outreach_pb2.DraftOutreachResponse(drafts=[draft])
    mesh.outreach.list_drafts.outcome = outreach_pb2.ListDraftsResponse(drafts=[draft])
    reviewed = outreach_pb2.OutreachDraft(draft_id="d1", body="Edited", state=outreach_pb2.DRAFT_STATE_APPROVED)
    mesh.outreach.review_draft.outcome = outreach_pb2.ReviewDraftResponse(draft=reviewed)

    found = await gateway.post(f"{T}/outreach/detect", json={"as_of": "2026-11-22T00:00:00Z"})
    drafted = await gateway.post(f"{T}/outreach/findings/f1/drafts")
    listed = await gateway.get(f"{T}/outreach/drafts", params={"state": "pending_review"})
    review = await gateway.post(f"{T}/outreach/drafts/d1/review", json={"action": "edit", "edited_body": "Edited"})

    finding = found.json()["findings"][0]
    assert (finding["kind"], finding["evidence"][0]["after"]) == ("error_spike", 0.38)
    assert one(mesh.outreach.detect_risks.requests).as_of.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 22, tzinfo=UTC)
    assert drafted.json()["drafts"][0]["subject"] == "429s since Tuesday"
    assert one(mesh.outreach.draft_outreach.requests).finding_id == "f1"
    assert listed.json()["drafts"][0]["state"] == "pending_review"
    assert one(mesh.outreach.list_drafts.requests).state == outreach_pb2.DRAFT_STATE_PENDING_REVIEW
    assert (review.json()["state"], review.json()["body"]) == ("approved", "Edited")
    sent = one(mesh.outreach.review_draft.requests)
    assert (sent.action, sent.edited_body, sent.reviewer_id) == (outreach_pb2.REVIEW_ACTION_EDIT, "Edited",
                                                                 f"admin-{TENANT}")


async def test_accounts_are_upserted_for_the_keys_tenant(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.outreach.upsert_accounts.outcome = outreach_pb2.UpsertAccountsResponse(created=1, updated=1)
    accounts = [{"account_id": "acct-1", "name": "Acme", "contact_email": "ops@acme.test", "opted_out": True},
                {"account_id": "acct-2", "churned_at": "2026-10-01T00:00:00Z"}]
    response = await gateway.put(f"{T}/outreach/accounts", json={"accounts": accounts})

    assert response.json() == {"created": 1, "updated": 1}
    first, second = one(mesh.outreach.upsert_accounts.requests).accounts
    assert (first.tenant_id, first.account_id, first.opted_out) == (TENANT, "acct-1", True)
    assert second.tenant_id == TENANT and second.HasField("churned_at") and not first.HasField("churned_at")


async def test_drafting_without_evidence_is_refused(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.outreach.draft_outreach.outcome = FailedPrecondition("finding has no evidence", reason="NO_EVIDENCE")
    response = await gateway.post(f"{T}/outreach/findings/f9/drafts")
    assert (response.status_code, response.json()["reason"]) == (409, "NO_EVIDENCE")


async def test_unknown_draft_is_404(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.outreach.review_draft.outcome = NotFound("no draft d9", reason="DRAFT_NOT_FOUND")
    response = await gateway.post(f"{T}/outreach/drafts/d9/review", json={"action": "reject"})
    assert response.status_code == 404


async def test_a_crashing_backend_is_a_generic_500(mesh: Mesh, gateway: httpx.AsyncClient) -> None:
    mesh.outreach.list_drafts.outcome = grpc.RpcError()  # not an ApiError: the server answers INTERNAL
    response = await gateway.get(f"{T}/outreach/drafts")
    assert response.status_code == 500 and response.json()["reason"] == "INTERNAL"


async def _until(condition: Callable[[], bool], failure: str, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, failure
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("path", "body", "rpc"),
    [
        ("/v1/conversations/conv-9/messages", {"text": "q", "customer": {"customer_id": "c"}}, "converse"),
        (STREAM_URL, {"text": "q", "customer": {"customer_id": "c"}}, "stream_converse"),
        (f"{T}/intake/email", {"sender": "ann@example.com", "body": "My TV is dead"}, "converse"),
    ],
)
async def test_a_client_leaving_before_the_answer_cancels_the_backend_call(
    tmp_path: Path, path: str, body: dict[str, Any], rpc: str
) -> None:
    # The concierge thinks for seconds before its first word; a customer who
    # closes the tab meanwhile must not keep holding an LLM slot.
    live = LiveGateway(tmp_path / "api_keys.json")
    await asyncio.to_thread(live.start)
    try:
        script = getattr(live.mesh.concierge, rpc)
        script.delay_s = 30.0
        script.outcome = concierge_pb2.ConverseResponse() if rpc == "converse" else []
        async with httpx.AsyncClient(base_url=live.url, headers=bearer(live.mesh.key(Role.CHANNEL))) as client:
            posting = asyncio.create_task(client.post(path, json=body, timeout=60.0))
            await _until(lambda: bool(script.requests), "the call never reached the backend")
            posting.cancel()  # the client leaves: its connection closes
            with pytest.raises(asyncio.CancelledError):
                await posting
        await _until(lambda: script.cancelled, "the backend kept working for a client that left")
    finally:
        await asyncio.to_thread(live.stop)


async def test_a_client_leaving_mid_stream_cancels_the_backend_call(tmp_path: Path) -> None:
    # Needs a real socket: only a real server sees the client go away.
    live = LiveGateway(tmp_path / "api_keys.json")
    await asyncio.to_thread(live.start)
    try:
        script = live.mesh.concierge.stream_converse
        script.outcome = [concierge_pb2.StreamConverseResponse(delta="First words"), 30.0,
                          concierge_pb2.StreamConverseResponse(delta="never sent")]
        async with httpx.AsyncClient(base_url=live.url, headers=bearer(live.mesh.key(Role.CHANNEL))) as client:
            async with client.stream("POST", STREAM_URL, json={"text": "q", "customer": {"customer_id": "c"}}) as r:
                async for chunk in r.aiter_text():
                    if "First words" in chunk:
                        break  # leave: closing the response drops the connection
        for _ in range(100):
            if script.cancelled:
                break
            await asyncio.sleep(0.05)
        assert script.cancelled, "the backend stream kept running for a client that left"
    finally:
        await asyncio.to_thread(live.stop)
