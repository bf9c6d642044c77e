"""DraftOutreach (LLM grounded or template), ReviewDraft, caps, opt-outs, quiet hours,
and the sender draining the outbox exactly once."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from aftercare.outreach.v1 import outreach_pb2
from servicekit.database import make_engine
from servicekit.errors import FailedPrecondition, InvalidArgument, NotFound
from services.outreach import drafting
from services.outreach.detector_config import DetectorConfig
from services.outreach.models import RiskFindingRow
from services.outreach.outbox import MaildirSink, Sender, next_send_time
from services.outreach.servicer import OutreachServicer
from services.outreach.settings import DEFAULT_DETECTORS_FILE
from services.outreach.store import OutreachStore
from tests.services.outreach.conftest import FakeLlm, account, settings_for
from tests.services.outreach.test_detection import AS_OF, EXPORTS, FakeRetrieval, build, detect, servicer

GROUNDED = (
    "Over the last 3 days, calls to GET /v2/exports started failing with HTTP 403 E-3001. "
    "To fix it, upgrade to @northwind/beacon-js 3.8.1, or add batchSize: 500 to your Beacon.init options."
)
INVENTED = "Your exports failed 73% of the time on GET /v2/exports; please upgrade to version 9.9 today."
# Midday in Paris, so quiet hours do not hold anything back.
NOON = dt.datetime(2026, 11, 24, 11, 0, tzinfo=dt.UTC)


def contacts(**overrides: dict[str, object]) -> list[outreach_pb2.Account]:
    _, names = build()
    made = []
    for name in names:
        fields: dict[str, object] = {"name": f"{name} Inc", "contact_name": "Ana", "csm_name": "Maya Lin",
                                     "contact_email": f"{name}@customer.example", "timezone": "Europe/Paris"}
        fields.update(overrides.get(name, {}))
        made.append(account(name, **fields))  # type: ignore[arg-type]
    return made


@pytest.fixture
def store(tmp_path: Path) -> Iterator[OutreachStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'outreach.db'}")
    made = OutreachStore(engine)
    made.migrate()
    tenant, _ = build()
    made.upsert_accounts(contacts(**{"old-sdk-1": {"opted_out": True}, "old-sdk-2": {"contact_email": ""}}), AS_OF)
    made.record_usage(tenant.events, AS_OF, late_after=dt.timedelta(days=1000))
    yield made
    engine.dispose()


def rig(store: OutreachStore, tmp_path: Path, llm: FakeLlm | None = None, **settings: object) -> OutreachServicer:
    made = servicer(store, tmp_path, FakeRetrieval(), llm, **settings)
    made._clock = lambda: NOON  # type: ignore[method-assign]
    return made


async def finding_of(made: OutreachServicer, kind: int) -> outreach_pb2.RiskFinding:
    response = await detect(made)
    return next(f for f in response.findings if f.kind == kind)


async def draft(made: OutreachServicer, finding_id: str) -> outreach_pb2.DraftOutreachResponse:
    return await made.DraftOutreach(  # type: ignore[arg-type]
        outreach_pb2.DraftOutreachRequest(tenant_id="demo", finding_id=finding_id), None)


async def review(made: OutreachServicer, draft_id: str, action: int, body: str = "",
                 reviewer: str = "agent-7") -> outreach_pb2.OutreachDraft:
    response = await made.ReviewDraft(outreach_pb2.ReviewDraftRequest(  # type: ignore[arg-type]
        tenant_id="demo", draft_id=draft_id, action=action, edited_body=body, reviewer_id=reviewer), None)
    return response.draft


async def test_a_grounded_llm_paragraph_is_used(store: OutreachStore, tmp_path: Path) -> None:
    llm = FakeLlm(GROUNDED)
    made = rig(store, tmp_path, llm)
    spike = await finding_of(made, outreach_pb2.RISK_KIND_ERROR_SPIKE)
    response = await draft(made, spike.finding_id)

    (written,) = response.drafts
    assert written.generator == "llm"
    assert written.account_id == "spiky" and written.state == outreach_pb2.DRAFT_STATE_PENDING_REVIEW
    assert written.body.startswith("Hi Ana,\n\n" + GROUNDED)
    assert "Maya Lin" in written.body
    assert written.lineage.prompt_template_version == "outreach-paragraph-v1"
    assert written.lineage.model == "test-model"
    assert [s.doc_id for s in written.lineage.sources] == ["ticket-e1042"]
    # The prompt carries the evidence and the fix, never the contact's address.
    assert "E-3001" in llm.prompts[0] and "spiky@customer.example" not in llm.prompts[0]


async def test_a_grounded_sentence_without_the_fix_gets_the_retrieved_fix(store: OutreachStore, tmp_path: Path) -> None:
    sentence = "Recently, many of your calls to GET /v2/exports have failed with HTTP 403 E-3001."
    made = rig(store, tmp_path, FakeLlm(sentence))
    spike = await finding_of(made, outreach_pb2.RISK_KIND_ERROR_SPIKE)
    (written,) = (await draft(made, spike.finding_id)).drafts
    assert written.generator == "llm"
    assert f"{sentence}\n\nWhat fixes it: To fix it, upgrade to @northwind/beacon-js 3.8.1" in written.body


INVENTED_DAY = "Since Friday, many of your calls to GET /v2/exports have failed with HTTP 403 E-3001."


@pytest.mark.parametrize(
    "llm", [FakeLlm(INVENTED), FakeLlm(INVENTED_DAY), FakeLlm("Are you okay?"), FakeLlm(down=True)]
)
async def test_an_ungrounded_reply_or_a_down_llm_gives_the_template(
    store: OutreachStore, tmp_path: Path, llm: FakeLlm
) -> None:
    made = rig(store, tmp_path, llm)
    spike = await finding_of(made, outreach_pb2.RISK_KIND_ERROR_SPIKE)
    (written,) = (await draft(made, spike.finding_id)).drafts

    assert written.generator == "template"
    assert written.lineage.prompt_template_version == "outreach-template-v1"
    assert spike.evidence[0].statement in written.body
    assert "What fixes it: " in written.body and "73%" not in written.body
    assert written.subject == f"E-3001 errors on {EXPORTS}: what happened and how to fix it"


async def test_a_cluster_gets_one_draft_for_its_eligible_accounts(store: OutreachStore, tmp_path: Path) -> None:
    made = rig(store, tmp_path)
    cluster = await finding_of(made, outreach_pb2.RISK_KIND_RELEASE_CLUSTER)
    response = await draft(made, cluster.finding_id)

    (written,) = response.drafts
    assert written.account_id == "" and list(written.recipient_account_ids) == ["old-sdk-0", "old-sdk-3"]
    # One text for several people: a neutral greeting the reviewer can read as it is; each
    # recipient is greeted by name when it is sent.
    assert written.body.startswith(f"{drafting.NEUTRAL_GREETING}\n\n") and drafting.placeholders(written.body) == []
    assert sorted((s.account_id, s.reason) for s in response.skipped) == [
        ("old-sdk-1", "opted_out"), ("old-sdk-2", "no_contact")]
    # Asking again returns the same draft.
    again = await draft(made, cluster.finding_id)
    assert [d.draft_id for d in again.drafts] == [written.draft_id]


async def test_no_concrete_finding_no_draft(store: OutreachStore, tmp_path: Path) -> None:
    made = rig(store, tmp_path)
    spike = await finding_of(made, outreach_pb2.RISK_KIND_ERROR_SPIKE)
    with Session(store.engine) as session, session.begin():
        row = session.get(RiskFindingRow, spike.finding_id)
        assert row is not None
        row.evidence = [{"statement": "Something may be off.", "metric": "vibes", "before": 1.0, "after": 1.0}]
    with pytest.raises(FailedPrecondition) as caught:
        await draft(made, spike.finding_id)
    assert caught.value.reason == "NO_CONCRETE_FINDING"
    with pytest.raises(NotFound):
        await draft(made, "no-such-finding")
    with pytest.raises(InvalidArgument):
        await made.DraftOutreach(outreach_pb2.DraftOutreachRequest(), None)  # type: ignore[arg-type]


async def test_review_approve_edit_reject_and_feedback(store: OutreachStore, tmp_path: Path) -> None:
    made = rig(store, tmp_path)
    findings = (await detect(made)).findings
    drafts = {}
    for finding in findings:
        for written in (await draft(made, finding.finding_id)).drafts:
            drafts[finding.kind] = written

    approve = outreach_pb2.REVIEW_ACTION_APPROVE
    approved = await review(made, drafts[outreach_pb2.RISK_KIND_ERROR_SPIKE].draft_id, approve)
    edited_text = "Hi Ana,\n\nYour exports fail with E-3001: grant s3:PutObject to the Beacon role.\n\nMaya"
    edit = outreach_pb2.REVIEW_ACTION_EDIT
    edited = await review(made, drafts[outreach_pb2.RISK_KIND_ACTIVITY_DROP].draft_id, edit, edited_text)
    rejected = await review(made, drafts[outreach_pb2.RISK_KIND_CHURN_TREND].draft_id,
                            outreach_pb2.REVIEW_ACTION_REJECT)

    assert approved.state == outreach_pb2.DRAFT_STATE_APPROVED and approved.reviewer_id == "agent-7"
    assert edited.body == edited_text and edited.original_body != edited_text
    assert rejected.state == outreach_pb2.DRAFT_STATE_REJECTED
    with store.engine.connect() as connection:
        feedback = connection.exec_driver_sql(
            "SELECT action, edit_ratio FROM outreach_feedback ORDER BY created_at, action").all()
        outbox = connection.exec_driver_sql("SELECT account_id, to_address FROM outreach_outbox ORDER BY 1").all()
    assert sorted((a, r > 0) for a, r in feedback) == [("approve", False), ("edit", True), ("reject", True)]
    assert [tuple(r) for r in outbox] == [("dropper", "dropper@customer.example"), ("spiky", "spiky@customer.example")]
    with pytest.raises(FailedPrecondition) as caught:
        await review(made, approved.draft_id, outreach_pb2.REVIEW_ACTION_APPROVE)
    assert caught.value.reason == "DRAFT_NOT_PENDING"


async def test_review_checks_its_request(store: OutreachStore, tmp_path: Path) -> None:
    made = rig(store, tmp_path)
    with pytest.raises(InvalidArgument) as caught:
        await made.ReviewDraft(outreach_pb2.ReviewDraftRequest(  # type: ignore[arg-type]
            tenant_id="demo", draft_id="d", action=outreach_pb2.REVIEW_ACTION_EDIT), None)
    assert caught.value.violations == [("reviewer_id", "required"), ("edited_body", "required to edit")]
    with pytest.raises(NotFound):
        await review(made, "nope", outreach_pb2.REVIEW_ACTION_APPROVE)


async def test_a_concurrent_second_review_is_aborted(store: OutreachStore, tmp_path: Path) -> None:
    made = rig(store, tmp_path)
    spike = await finding_of(made, outreach_pb2.RISK_KIND_ERROR_SPIKE)
    (written,) = (await draft(made, spike.finding_id)).drafts
    stale = store.get_draft("demo", written.draft_id)
    assert stale is not None
    await review(made, written.draft_id, outreach_pb2.REVIEW_ACTION_REJECT)
    # A reviewer who loaded the draft before that decision lost the race.
    assert store.review(stale, state="DRAFT_STATE_APPROVED", final_body="x", action="approve", reviewer_id="b",
                        edit_ratio=0.0, outbox=[], now=NOON) is None


async def test_frequency_cap_and_opt_out_at_approval(store: OutreachStore, tmp_path: Path) -> None:
    made = rig(store, tmp_path)
    findings = (await detect(made)).findings
    spike = next(f for f in findings if f.kind == outreach_pb2.RISK_KIND_ERROR_SPIKE)
    drop = next(f for f in findings if f.kind == outreach_pb2.RISK_KIND_ACTIVITY_DROP)
    (first,) = (await draft(made, spike.finding_id)).drafts
    await review(made, first.draft_id, outreach_pb2.REVIEW_ACTION_APPROVE)
    # Another finding about the same account, the same week: capped.
    with session_for(store) as session, session.begin():
        row = session.get(RiskFindingRow, drop.finding_id)
        assert row is not None
        row.account_ids = ["spiky", "dropper"]
    response = await draft(made, drop.finding_id)
    assert [(s.account_id, s.reason) for s in response.skipped] == [("spiky", "frequency_cap")]
    (second,) = response.drafts
    store.upsert_accounts(contacts(dropper={"opted_out": True}), NOON)
    with pytest.raises(FailedPrecondition) as caught:
        await review(made, second.draft_id, outreach_pb2.REVIEW_ACTION_APPROVE)
    assert caught.value.reason == "NO_ELIGIBLE_RECIPIENT"


def session_for(store: OutreachStore) -> Session:
    return Session(store.engine)


def test_quiet_hours_follow_the_contact_time_zone() -> None:
    late_in_paris = dt.datetime(2026, 11, 24, 21, 30, tzinfo=dt.UTC)  # 22:30 in Paris
    assert next_send_time(late_in_paris, "Europe/Paris", 20, 8) == dt.datetime(2026, 11, 25, 7, 0, tzinfo=dt.UTC)
    early = dt.datetime(2026, 11, 24, 5, 0, tzinfo=dt.UTC)  # 06:00 in Paris
    assert next_send_time(early, "Europe/Paris", 20, 8) == dt.datetime(2026, 11, 24, 7, 0, tzinfo=dt.UTC)
    assert next_send_time(NOON, "Europe/Paris", 20, 8) == NOON
    assert next_send_time(late_in_paris, "", 20, 8) == dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


async def test_the_sender_delivers_each_approved_message_exactly_once(store: OutreachStore, tmp_path: Path) -> None:
    made = rig(store, tmp_path)
    cluster = await finding_of(made, outreach_pb2.RISK_KIND_RELEASE_CLUSTER)
    (written,) = (await draft(made, cluster.finding_id)).drafts
    await review(made, written.draft_id, outreach_pb2.REVIEW_ACTION_APPROVE)
    settings = settings_for(tmp_path, sender="file")
    sink = MaildirSink(tmp_path / "maildir", "outreach@northwind.example")
    senders = [Sender(store, sink, settings, clock=lambda: NOON) for _ in range(3)]

    threads = [threading.Thread(target=s.drain_once) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert senders[0].drain_once() == 0  # nothing left

    delivered = sorted((tmp_path / "maildir" / "new").iterdir())
    assert len(delivered) == 2
    texts = [p.read_text() for p in delivered]
    assert all("Hi Ana," in t and "{first_name}" not in t for t in texts)
    assert {line for t in texts for line in t.splitlines() if line.startswith("To: ")} == {
        "To: old-sdk-0@customer.example", "To: old-sdk-3@customer.example"}
    assert store.get_draft("demo", written.draft_id).state == "DRAFT_STATE_SENT"  # type: ignore[union-attr]


async def test_quiet_hours_hold_and_opt_out_cancels(store: OutreachStore, tmp_path: Path) -> None:
    night = dt.datetime(2026, 11, 24, 22, 0, tzinfo=dt.UTC)
    made = rig(store, tmp_path)
    made._clock = lambda: night  # type: ignore[method-assign]
    spike = await finding_of(made, outreach_pb2.RISK_KIND_ERROR_SPIKE)
    drop = await finding_of(made, outreach_pb2.RISK_KIND_ACTIVITY_DROP)
    for finding in (spike, drop):
        (written,) = (await draft(made, finding.finding_id)).drafts
        await review(made, written.draft_id, outreach_pb2.REVIEW_ACTION_APPROVE)
    sink = MaildirSink(tmp_path / "maildir", "outreach@northwind.example")
    settings = settings_for(tmp_path, sender="file")
    assert Sender(store, sink, settings, clock=lambda: night).drain_once() == 0
    store.upsert_accounts(contacts(dropper={"opted_out": True}), night)
    morning = dt.datetime(2026, 11, 25, 7, 30, tzinfo=dt.UTC)
    assert Sender(store, sink, settings, clock=lambda: morning).drain_once() == 1
    with store.engine.connect() as connection:
        statuses = dict(connection.exec_driver_sql("SELECT account_id, status FROM outreach_outbox").all())
    assert statuses == {"spiky": "sent", "dropper": "cancelled"}


def test_default_detector_config_file_is_valid() -> None:
    assert DetectorConfig.load(DEFAULT_DETECTORS_FILE).activity_drop.drop_ratio == 0.7
