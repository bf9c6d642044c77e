"""The agent assist loop: assignment, replies next to the draft, intent
corrections for triage, resolution, the exports, and concurrent agents."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from aftercare.escalation.v1 import escalation_pb2
from aftercare.triage.v1 import triage_pb2
from servicekit.database import make_engine
from services.escalation import feedback
from services.escalation.feedback_store import FeedbackStore
from services.escalation.store import HandoffStore, NewHandoff, ReplyRecord, StaleHandoff
from services.triage.train import read_examples
from tests.services.escalation.conftest import Stub, expect_error, handoff_request, running_stub, settings_for

TENANT = "demo"


async def _create(stub: Stub, key: str = "k", **kwargs: object) -> escalation_pb2.Handoff:
    return (await stub.CreateHandoff(handoff_request(key=key, **kwargs))).handoff  # type: ignore[arg-type]


def _reply(
    handoff: escalation_pb2.Handoff, text: str, agent: str = "agent-1", **kwargs: object
) -> escalation_pb2.SubmitAgentReplyRequest:
    return escalation_pb2.SubmitAgentReplyRequest(
        tenant_id=TENANT,
        handoff_id=handoff.handoff_id,
        agent_id=agent,
        final_text=text,
        **kwargs,  # type: ignore[arg-type]
    )


def test_edit_ratio_counts_changed_words() -> None:
    assert feedback.edit_ratio("Reset your password from Settings.", "Reset your password from Settings.") == 0.0
    assert feedback.edit_ratio("a b c d", "a b x d") == 0.25
    assert feedback.edit_ratio("a b c d", "") == 1.0
    assert feedback.edit_ratio("", "") == 0.0
    # Case and spacing are not edits.
    assert feedback.edit_ratio("Hello  there", "hello there") == 0.0


@pytest.mark.parametrize(
    ("final", "use"),
    [
        ("Go to Settings, then Security, and press Reset to rotate the key now.", escalation_pb2.DRAFT_USE_ACCEPTED),
        ("Go to Settings, then Security, and press Reset to rotate the key today.", escalation_pb2.DRAFT_USE_EDITED),
        ("Open Settings and choose Security; there you can rotate keys yourself.", escalation_pb2.DRAFT_USE_REWRITTEN),
        ("We are sorry, our billing team will call you tomorrow morning.", escalation_pb2.DRAFT_USE_DISCARDED),
    ],
)
def test_draft_use_follows_the_edit_ratio(final: str, use: int) -> None:
    draft = "Go to Settings, then Security, and press Reset to rotate the key now."
    assert feedback.draft_use(draft, feedback.edit_ratio(draft, final)) == use


def test_without_a_draft_the_reply_counts_as_discarded() -> None:
    assert feedback.draft_use("", 1.0) == escalation_pb2.DRAFT_USE_DISCARDED


async def test_a_reply_records_the_edit_and_assigns_the_handoff(stub: Stub) -> None:
    handoff = await _create(stub)
    draft = handoff.context.draft_reply
    assert draft

    accepted = await stub.SubmitAgentReply(_reply(handoff, draft, expected_version=1))
    assert accepted.draft_use == escalation_pb2.DRAFT_USE_ACCEPTED and accepted.edit_ratio == 0.0
    after = accepted.handoff
    # The reply is on its way to the customer: the next move is theirs.
    assert after.state == escalation_pb2.HANDOFF_STATE_WAITING_ON_CUSTOMER
    assert after.assigned_agent_id == "agent-1" and after.HasField("assigned_at")
    assert after.version == 2

    edited = await stub.SubmitAgentReply(_reply(handoff, draft.replace("patience", "time")))
    assert edited.draft_use == escalation_pb2.DRAFT_USE_EDITED and 0 < edited.edit_ratio <= 0.35
    assert edited.handoff.version == 3


async def test_assignment_records_who_and_when(stub: Stub) -> None:
    handoff = await _create(stub)
    assigned = (
        await stub.AssignHandoff(
            escalation_pb2.AssignHandoffRequest(tenant_id=TENANT, handoff_id=handoff.handoff_id, agent_id="ana")
        )
    ).handoff
    assert assigned.state == escalation_pb2.HANDOFF_STATE_ASSIGNED and assigned.assigned_agent_id == "ana"
    assert assigned.assigned_at.seconds >= handoff.created_at.seconds

    _, reason = await expect_error(
        stub.AssignHandoff(
            escalation_pb2.AssignHandoffRequest(tenant_id=TENANT, handoff_id=handoff.handoff_id, agent_id="bob")
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason == "HANDOFF_ASSIGNED_TO_ANOTHER_AGENT"
    waiting = await stub.ListHandoffs(
        escalation_pb2.ListHandoffsRequest(tenant_id=TENANT, state=escalation_pb2.HANDOFF_STATE_ASSIGNED)
    )
    assert [h.handoff_id for h in waiting.handoffs] == [handoff.handoff_id]


async def test_queues_per_tier(stub: Stub) -> None:
    specialist = handoff_request(key="s")
    specialist.tier = triage_pb2.TIER_SPECIALIST
    await stub.CreateHandoff(specialist)
    await stub.CreateHandoff(handoff_request(key="a"))
    listed = await stub.ListHandoffs(
        escalation_pb2.ListHandoffsRequest(tenant_id=TENANT, tier=triage_pb2.TIER_SPECIALIST)
    )
    assert [h.tier for h in listed.handoffs] == [triage_pb2.TIER_SPECIALIST]
    assert len((await stub.ListHandoffs(escalation_pb2.ListHandoffsRequest(tenant_id=TENANT))).handoffs) == 2


async def test_resolving_records_who_when_and_how_and_closes_the_handoff(stub: Stub) -> None:
    handoff = await _create(stub)
    resolved = (
        await stub.ResolveHandoff(
            escalation_pb2.ResolveHandoffRequest(
                tenant_id=TENANT, handoff_id=handoff.handoff_id, agent_id="ana", resolution="Refunded the duplicate."
            )
        )
    ).handoff
    assert resolved.state == escalation_pb2.HANDOFF_STATE_RESOLVED
    assert resolved.resolved_by_agent_id == "ana" and resolved.HasField("resolved_at")
    assert resolved.resolution == "Refunded the duplicate."
    assert resolved.assigned_agent_id == "ana"

    _, reason = await expect_error(
        stub.SubmitAgentReply(_reply(handoff, "one more thing")), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason == "HANDOFF_RESOLVED"
    _, reason = await expect_error(
        stub.ResolveHandoff(
            escalation_pb2.ResolveHandoffRequest(
                tenant_id=TENANT, handoff_id=handoff.handoff_id, agent_id="ana", resolution="again"
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason == "HANDOFF_RESOLVED"


async def test_unknown_handoffs_stale_versions_and_bad_replies_are_refused(stub: Stub) -> None:
    handoff = await _create(stub)
    missing = escalation_pb2.Handoff(handoff_id="00000000-0000-0000-0000-000000000000")
    _, reason = await expect_error(stub.SubmitAgentReply(_reply(missing, "hi")), grpc.StatusCode.NOT_FOUND)
    assert reason == "HANDOFF_NOT_FOUND"
    await expect_error(
        stub.ResolveHandoff(
            escalation_pb2.ResolveHandoffRequest(
                tenant_id="acme", handoff_id=handoff.handoff_id, agent_id="a", resolution="x"
            )
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    _, reason = await expect_error(
        stub.SubmitAgentReply(_reply(handoff, "hi", expected_version=7)), grpc.StatusCode.ABORTED
    )
    assert reason == "HANDOFF_VERSION_CONFLICT"

    violations, _ = await expect_error(
        stub.SubmitAgentReply(
            escalation_pb2.SubmitAgentReplyRequest(
                tenant_id=TENANT,
                handoff_id=handoff.handoff_id,
                final_text=" ",
                expected_version=-1,
                intent_correction=escalation_pb2.IntentCorrection(original_label="card_arrival"),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [field for field, _ in violations] == [
        "agent_id",
        "expected_version",
        "final_text",
        "intent_correction.corrected_label",
    ]
    violations, _ = await expect_error(
        stub.SubmitAgentReply(_reply(handoff, "x" * 10_001)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert [field for field, _ in violations] == ["final_text"]
    # Nothing was written by the refused calls.
    fetched = await stub.GetHandoff(escalation_pb2.GetHandoffRequest(tenant_id=TENANT, handoff_id=handoff.handoff_id))
    assert fetched.handoff.version == 1


async def test_concurrent_replies_one_wins_the_other_is_aborted(stub: Stub) -> None:
    handoff = await _create(stub)
    results = await asyncio.gather(
        *(
            stub.SubmitAgentReply(_reply(handoff, f"reply {i}", agent=f"agent-{i}", expected_version=1))
            for i in range(6)
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, escalation_pb2.SubmitAgentReplyResponse)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 5
    assert all(error.code() == grpc.StatusCode.ABORTED for error in losers)
    assert "reload it and try again" in (losers[0].details() or "")
    assert winners[0].handoff.version == 2


def _race_store(url: str) -> None:
    """Two agents read version 1; the second commits between the first's read and write."""
    engine = make_engine(url)
    try:
        store = HandoffStore(engine)
        store.migrate()
        handoff, _ = store.create(handoff_request(key="race"), NewHandoff("general", escalation_pb2.ContextPackage()))

        def classify_while_another_agent_commits(draft: str) -> ReplyRecord:
            store.assign("demo", handoff.handoff_id, "other-agent", 0)
            return ReplyRecord(draft, "late reply", 1.0, escalation_pb2.DRAFT_USE_DISCARDED)

        with pytest.raises(StaleHandoff):
            store.submit_reply("demo", handoff.handoff_id, "agent", 0, classify_while_another_agent_commits, None)
        after = store.get("demo", handoff.handoff_id)
        assert after is not None and after.version == 2 and after.assigned_agent_id == "other-agent"
        # The loser's reply row was rolled back with its update, and so was its judgement.
        assert FeedbackStore(engine).feedback("demo", None, 10) == []
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM answer_judgements")).scalar_one() == 0
    finally:
        engine.dispose()


def test_a_write_after_a_concurrent_commit_is_refused_on_sqlite(tmp_path: Path) -> None:
    _race_store(f"sqlite:///{tmp_path / 'race.db'}")


def test_a_write_after_a_concurrent_commit_is_refused_on_postgresql(postgres_url: str) -> None:
    _race_store(postgres_url)


async def test_concurrent_replies_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    async with running_stub(settings_for(tmp_path, database_url=postgres_url)) as stub:
        handoff = await _create(stub)
        results = await asyncio.gather(
            *(stub.SubmitAgentReply(_reply(handoff, f"reply {i}", expected_version=1)) for i in range(4)),
            return_exceptions=True,
        )
        assert sum(isinstance(r, escalation_pb2.SubmitAgentReplyResponse) for r in results) == 1
        assert all(r.code() == grpc.StatusCode.ABORTED for r in results if isinstance(r, grpc.aio.AioRpcError))


async def test_export_feedback_pairs_draft_and_final_with_personal_data_masked(stub: Stub) -> None:
    sent_as_is = await _create(stub, key="as-is")
    await stub.SubmitAgentReply(_reply(sent_as_is, sent_as_is.context.draft_reply))
    edited = await _create(
        stub, key="edited", texts=("Refund me, reach me at jane.doe@example.com or +1 415 555 0100",)
    )
    final = "Hi Jane, I refunded the duplicate charge. Write to jane.doe@example.com if it does not show up."
    await stub.SubmitAgentReply(_reply(edited, final))

    exported = await stub.ExportFeedback(escalation_pb2.ExportFeedbackRequest(tenant_id=TENANT))

    # A draft sent unchanged teaches no preference: one record.
    assert exported.record_count == 1
    lines = exported.jsonl.splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert set(record) == {"prompt", "rejected", "chosen"}
    assert record["rejected"] == edited.context.draft_reply
    assert record["chosen"] == final.replace("jane.doe@example.com", "[email]")
    assert "Customer:" in record["prompt"] and "Reply:" in record["prompt"]
    assert "jane.doe" not in exported.jsonl and "555 0100" not in exported.jsonl
    later = await stub.ExportFeedback(
        escalation_pb2.ExportFeedbackRequest(tenant_id=TENANT, since=edited.created_at.__class__(seconds=4_000_000_000))
    )
    assert later.record_count == 0
    other_tenant = await stub.ExportFeedback(escalation_pb2.ExportFeedbackRequest(tenant_id="acme"))
    assert other_tenant.record_count == 0


async def test_intent_corrections_become_triage_training_examples(stub: Stub, tmp_path: Path) -> None:
    first = await _create(
        stub, key="a", texts=("my card still hasn't arrived, mail me at a@b.example",), intent="card_arrival"
    )
    second = await _create(stub, key="b", texts=("I was charged twice for one order",), intent="card_arrival")
    await stub.SubmitAgentReply(
        _reply(
            first,
            "We sent a new card.",
            intent_correction=escalation_pb2.IntentCorrection(
                original_label="card_arrival", corrected_label="card_delivery_estimate"
            ),
        )
    )
    corrected = await stub.SubmitAgentReply(
        _reply(
            second,
            "Refunded.",
            intent_correction=escalation_pb2.IntentCorrection(corrected_label="transaction_charged_twice"),
        )
    )
    assert corrected.handoff.context.intent == "card_arrival"  # the package shows what triage said

    exported = await stub.ExportIntentCorrections(escalation_pb2.ExportIntentCorrectionsRequest(tenant_id=TENANT))

    assert exported.example_count == 2
    assert [(e.text, e.label) for e in exported.examples] == [
        ("my card still hasn't arrived, mail me at [email]", "card_delivery_estimate"),
        ("I was charged twice for one order", "transaction_charged_twice"),
    ]
    # The JSONL is exactly what triage's train CLI reads.
    path = tmp_path / "corrections.jsonl"
    path.write_text(exported.jsonl)
    examples = read_examples(path)
    assert examples.labels == ["card_delivery_estimate", "transaction_charged_twice"]
    assert examples.texts[1] == "I was charged twice for one order"


async def test_the_export_cli_writes_what_triage_trains_on(tmp_path: Path) -> None:
    import functools

    from servicekit.server import serving
    from services.escalation.app import servicers
    from services.escalation.export import export
    from tests.services.escalation.conftest import FakeRetrieval, FakeTriage, llm_down

    factory = functools.partial(servicers, llm=llm_down(), retrieval=FakeRetrieval(), triage=FakeTriage())
    async with serving(settings_for(tmp_path), factory) as running:
        target = f"127.0.0.1:{running.port}"
        async with grpc.aio.insecure_channel(target) as channel:
            stub = Stub(channel)
            handoff = await _create(stub, texts=("where is my new card",))
            fix = escalation_pb2.IntentCorrection(corrected_label="card_arrival")
            await stub.SubmitAgentReply(_reply(handoff, "It ships today.", intent_correction=fix))
        intents, count = await export(target, TENANT, "intents", None)
        pairs, pair_count = await export(target, TENANT, "feedback", None)

    assert count == 1 and json.loads(intents) == {"text": "where is my new card", "label": "card_arrival"}
    assert pair_count == 1 and json.loads(pairs)["chosen"] == "It ships today."
