"""RecordUsage and ListDrafts through a real in-process server and channel."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import timestamp_pb2

from aftercare.outreach.v1 import outreach_pb2
from servicekit.database import database_url, make_engine
from servicekit.errors import details_from_rpc_error
from services.outreach.models import OutreachDraftRow
from tests.services.outreach.conftest import (
    NOW,
    YESTERDAY,
    Stub,
    account,
    event,
    record,
    register,
    running_stub,
    ts,
)


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[Stub]:
    async with running_stub(tmp_path) as client:
        await register(client, account("acct-1"), account("acct-2"), account("acct-1", "acme"), account("a"))
        yield client


def query(data_dir: Path, sql: str) -> list[tuple[object, ...]]:
    engine = make_engine(database_url("", data_dir, "outreach"))
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(sql))]
    finally:
        engine.dispose()


def daily(data_dir: Path) -> dict[tuple[str, str, str, str], tuple[int, int]]:
    rows = query(data_dir, "SELECT account_id, day, feature, endpoint, event_count, error_count FROM usage_daily")
    return {
        (str(account), str(day), str(feature), str(endpoint)): (int(str(events)), int(str(errors)))
        for account, day, feature, endpoint, events, errors in rows
    }


async def test_valid_events_are_accepted_and_stored(stub: Stub, tmp_path: Path) -> None:
    response = await record(stub, [event("e1"), event("e2"), event("e3", account="acct-2")])

    assert (response.accepted, response.duplicates, list(response.rejected)) == (3, 0, [])
    assert query(tmp_path, "SELECT count(*) FROM usage_events") == [(3,)]


async def test_an_empty_stream_stores_nothing(stub: Stub) -> None:
    response = await record(stub, [])
    assert response == outreach_pb2.RecordUsageResponse()


async def test_duplicates_in_one_stream_and_a_later_one_are_counted_once(stub: Stub, tmp_path: Path) -> None:
    first = await record(stub, [event("e1", count=5), event("e1", count=5), event("e2", count=2)])
    assert (first.accepted, first.duplicates) == (2, 1)

    # A resent stream (the producer retried) plus one new event.
    second = await record(stub, [event("e1", count=5), event("e2", count=2), event("e3", count=1)])
    assert (second.accepted, second.duplicates) == (1, 2)

    day = str(YESTERDAY.date())
    assert daily(tmp_path) == {("acct-1", day, "dashboards", "GET /v2/dashboards"): (8, 0)}
    assert query(tmp_path, "SELECT count(*) FROM usage_events") == [(3,)]


async def test_the_same_event_id_in_another_tenant_is_not_a_duplicate(stub: Stub) -> None:
    response = await record(stub, [event("e1", tenant="demo"), event("e1", tenant="acme")])
    assert (response.accepted, response.duplicates) == (2, 0)


async def test_duplicates_across_batches_and_concurrent_streams(tmp_path: Path) -> None:
    async with running_stub(tmp_path, usage_batch_size=2) as stub:
        await register(stub, account("acct-1"))
        ids = [f"e{i}" for i in range(7)]
        responses = await asyncio.gather(
            record(stub, [event(i, count=3) for i in ids]),
            record(stub, [event(i, count=3) for i in reversed(ids)]),
            record(stub, [event(i, count=3) for i in ids[:4] + ids[:4]]),
        )

    assert sum(r.accepted for r in responses) == 7
    assert sum(r.accepted + r.duplicates for r in responses) == 7 + 7 + 8
    assert list(daily(tmp_path).values()) == [(21, 0)]


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (outreach_pb2.RecordUsageRequest(), "missing_event"),
        (event(""), "missing_event_id"),
        (event("x", tenant=""), "missing_tenant_id"),
        (event("x", account=" "), "missing_account_id"),
        (event("x", feature="f" * 201), "field_too_long"),
        (event("x", count=0), "missing_count"),
        (event("x", count=-3), "negative_count"),
        (event("x", when=None), "missing_occurred_at"),
        # A day ahead, not minutes: NOW is taken at collection, and a long run reaches this test
        # minutes later (10 minutes ahead had stopped being "the future" by then).
        (event("x", when=NOW + dt.timedelta(days=1)), "future_timestamp"),
        (event("x", when=NOW - dt.timedelta(days=401)), "stale_timestamp"),
        (
            outreach_pb2.RecordUsageRequest(
                event=outreach_pb2.UsageEvent(
                    event_id="x",
                    tenant_id="demo",
                    account_id="a",
                    count=1,
                    occurred_at=timestamp_pb2.Timestamp(seconds=10**12),
                )
            ),
            "invalid_timestamp",
        ),
    ],
)
async def test_each_invalid_event_is_rejected_with_a_stable_reason(
    stub: Stub, tmp_path: Path, request_: outreach_pb2.RecordUsageRequest, reason: str
) -> None:
    response = await record(stub, [request_, event("good")])

    assert response.accepted == 1
    assert [(r.event_id, r.reason) for r in response.rejected] == [(request_.event.event_id, reason)]
    assert query(tmp_path, "SELECT event_id FROM usage_events") == [("good",)]


async def test_small_clock_skew_and_old_events_within_the_window_are_accepted(stub: Stub) -> None:
    response = await record(
        stub,
        [
            event("skewed", when=NOW + dt.timedelta(minutes=4)),
            event("old", when=NOW - dt.timedelta(days=399)),
        ],
    )
    assert (response.accepted, list(response.rejected)) == (2, [])


async def test_a_rejected_event_id_can_be_sent_again_once_fixed(stub: Stub) -> None:
    response = await record(stub, [event("fixme", count=0), event("fixme", count=2)])
    assert (response.accepted, response.duplicates, len(response.rejected)) == (1, 0, 1)


async def test_usage_is_aggregated_per_account_day_feature_and_endpoint(stub: Stub, tmp_path: Path) -> None:
    two_days_ago = NOW - dt.timedelta(days=2)
    await record(
        stub,
        [
            event("a", count=10),
            event("b", count=5, status=429),
            event("c", count=2, status=200, error_code="E-1042"),
            event("d", count=7, endpoint="POST /v2/events/batch", status=500),
            event("e", count=3, when=two_days_ago),
            event("f", count=4, account="acct-2"),
            event("g", count=1, feature="", endpoint=""),
        ],
    )
    await record(stub, [event("h", count=1, status=503)])

    yesterday, before = str(YESTERDAY.date()), str(two_days_ago.date())
    assert daily(tmp_path) == {
        ("acct-1", yesterday, "dashboards", "GET /v2/dashboards"): (18, 8),
        ("acct-1", yesterday, "dashboards", "POST /v2/events/batch"): (7, 7),
        ("acct-1", before, "dashboards", "GET /v2/dashboards"): (3, 0),
        ("acct-2", yesterday, "dashboards", "GET /v2/dashboards"): (4, 0),
        ("acct-1", yesterday, "", ""): (1, 0),
    }


async def test_list_drafts_is_empty_until_drafts_are_written(stub: Stub, tmp_path: Path) -> None:
    response = await stub.ListDrafts(outreach_pb2.ListDraftsRequest(tenant_id="demo"))
    assert list(response.drafts) == []

    engine = make_engine(database_url("", tmp_path, "outreach"))
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.insert(OutreachDraftRow.__table__),
                [
                    {
                        "draft_id": f"d{i}",
                        "tenant_id": tenant,
                        "account_id": "acct-1",
                        "finding_id": f"f{i}",
                        "subject": "We noticed 429s",
                        "body": "Here is the fix.",
                        "state": state,
                        "created_at": NOW - dt.timedelta(minutes=i),
                    }
                    for i, (tenant, state) in enumerate(
                        [
                            ("demo", "DRAFT_STATE_PENDING_REVIEW"),
                            ("demo", "DRAFT_STATE_PENDING_REVIEW"),
                            ("demo", "DRAFT_STATE_APPROVED"),
                            ("acme", "DRAFT_STATE_PENDING_REVIEW"),
                        ]
                    )
                ],
            )
    finally:
        engine.dispose()

    pending = await stub.ListDrafts(outreach_pb2.ListDraftsRequest(tenant_id="demo"))
    assert [d.draft_id for d in pending.drafts] == ["d0", "d1"]
    assert pending.drafts[0].state == outreach_pb2.DRAFT_STATE_PENDING_REVIEW
    assert pending.drafts[0].created_at.ToDatetime(tzinfo=dt.UTC) == NOW
    approved = await stub.ListDrafts(
        outreach_pb2.ListDraftsRequest(tenant_id="demo", state=outreach_pb2.DRAFT_STATE_APPROVED)
    )
    assert [d.draft_id for d in approved.drafts] == ["d2"]


async def test_list_drafts_needs_a_tenant(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListDrafts(outreach_pb2.ListDraftsRequest())
    details = details_from_rpc_error(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.field_violations == [("tenant_id", "required")]


async def test_usage_survives_a_restart(tmp_path: Path) -> None:
    async with running_stub(tmp_path) as stub:
        await register(stub, account("acct-1"))
        await record(stub, [event("e1", count=4)])
    async with running_stub(tmp_path) as stub:
        again = await record(stub, [event("e1", count=4)])
    assert (again.accepted, again.duplicates) == (0, 1)
    assert list(daily(tmp_path).values()) == [(4, 0)]


async def test_events_of_unregistered_accounts_are_rejected_and_not_stored(stub: Stub, tmp_path: Path) -> None:
    response = await record(
        stub, [event("u1", account="stranger"), event("ok"), event("u2", account="acct-1", tenant="other")]
    )

    assert response.accepted == 1
    assert sorted((r.event_id, r.reason) for r in response.rejected) == [
        ("u1", "unknown_account"),
        ("u2", "unknown_account"),
    ]
    assert query(tmp_path, "SELECT event_id FROM usage_events") == [("ok",)]
    # Once registered, the same events are accepted (a rejected id was never stored).
    await register(stub, account("stranger"))
    again = await record(stub, [event("u1", account="stranger")])
    assert (again.accepted, list(again.rejected)) == (1, [])


async def test_accept_mode_registers_unknown_accounts(tmp_path: Path) -> None:
    async with running_stub(tmp_path, unknown_accounts="accept") as stub:
        response = await record(stub, [event("e1", account="new-1"), event("e2", account="new-1")])
    assert (response.accepted, list(response.rejected)) == (2, [])
    assert query(tmp_path, "SELECT account_id, contact_email FROM accounts") == [("new-1", "")]


async def test_late_events_are_counted_and_amend_the_closed_day(stub: Stub, tmp_path: Path) -> None:
    four_days_ago = NOW - dt.timedelta(days=4)
    await record(stub, [event("on-time", when=four_days_ago, count=10)])
    response = await record(stub, [event("late", when=four_days_ago, count=5, status=500), event("fresh", when=NOW)])

    # The first stream's event was late too (4 days after it happened).
    assert (response.accepted, response.late) == (2, 1)
    day = str(four_days_ago.date())
    assert daily(tmp_path)[("acct-1", day, "dashboards", "GET /v2/dashboards")] == (15, 5)


async def test_error_codes_and_client_versions_are_aggregated(stub: Stub, tmp_path: Path) -> None:
    await record(
        stub,
        [
            event("a", count=10, version="js-3.7.2"),
            event("b", count=4, status=429, error_code="E-1042", version="js-3.7.2"),
            event("c", count=3, status=429, error_code="E-1042", version="js-3.7.2"),
            event("d", count=6, version="js-3.8.1"),
        ],
    )
    assert query(tmp_path, "SELECT endpoint, status_code, error_code, error_count FROM usage_daily_errors") == [
        ("GET /v2/dashboards", 429, "E-1042", 7)
    ]
    versions = query(tmp_path, "SELECT client_version, event_count, error_count FROM usage_daily_versions ORDER BY 1")
    assert versions == [("js-3.7.2", 17, 7), ("js-3.8.1", 6, 0)]


async def test_upsert_accounts_creates_then_updates(stub: Stub, tmp_path: Path) -> None:
    response = await stub.UpsertAccounts(
        outreach_pb2.UpsertAccountsRequest(
            accounts=[account("acct-1", name="Acme", contact_email="ops@acme.example", timezone="Europe/Paris"),
                      account("acct-9")]
        )
    )
    assert (response.created, response.updated) == (1, 1)
    sql = "SELECT name, timezone FROM accounts WHERE account_id = 'acct-1' AND tenant_id = 'demo'"
    assert query(tmp_path, sql) == [("Acme", "Europe/Paris")]


async def test_upsert_accounts_lists_every_field_violation(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpsertAccounts(
            outreach_pb2.UpsertAccountsRequest(
                accounts=[account("", contact_email="nope"), account("ok", timezone="Mars/Olympus")]
            )
        )
    details = details_from_rpc_error(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.field_violations == [
        ("accounts[0].account_id", "required"),
        ("accounts[0].contact_email", "not an email address"),
        ("accounts[1].timezone", "not an IANA time zone, e.g. Europe/Paris"),
    ]


async def test_usage_on_postgresql_is_deduplicated_across_concurrent_streams(
    tmp_path: Path, postgres_url: str
) -> None:
    async with running_stub(tmp_path, database_url=postgres_url, usage_batch_size=3) as stub:
        await register(stub, account("acct-1"))
        ids = [f"e{i}" for i in range(10)]
        responses = await asyncio.gather(
            record(stub, [event(i, count=2, status=500 if i == "e3" else 200) for i in ids]),
            record(stub, [event(i, count=2, status=500 if i == "e3" else 200) for i in reversed(ids)]),
            record(stub, [event("x", account="nobody"), event("e1", count=2)]),
        )
    assert sum(r.accepted for r in responses) == 10
    assert [r.reason for r in responses[2].rejected] == ["unknown_account"]
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as connection:
            totals = connection.execute(sa.text("SELECT sum(event_count), sum(error_count) FROM usage_daily")).one()
            by_version = connection.execute(sa.text("SELECT sum(event_count) FROM usage_daily_versions")).scalar()
    finally:
        engine.dispose()
    assert tuple(totals) == (20, 2)
    assert by_version == 20


async def test_from_usage_to_a_sent_message_through_the_service(tmp_path: Path) -> None:
    """The whole path over gRPC with retrieval and the LLM down: evidence without passages,
    the template draft, approval, and the sender started with the service delivering it."""
    from tests.services.outreach.test_detection import AS_OF, build

    tenant, names = build()
    maildir = tmp_path / "maildir"
    async with running_stub(tmp_path, sender="file", outbox_dir=maildir, sender_interval_s=0.05,
                            quiet_hours_start=0, quiet_hours_end=0) as stub:
        await register(stub, *[account(n, contact_name="Ana", contact_email=f"{n}@customer.example") for n in names])
        stored = await record(stub, [outreach_pb2.RecordUsageRequest(events=tenant.events)])
        assert stored.accepted == len(tenant.events)
        detected = await stub.DetectRisks(outreach_pb2.DetectRisksRequest(tenant_id="demo", as_of=ts(AS_OF)))
        spike = next(f for f in detected.findings if f.kind == outreach_pb2.RISK_KIND_ERROR_SPIKE)
        assert spike.knowledge_unavailable and spike.evidence
        drafted = await stub.DraftOutreach(outreach_pb2.DraftOutreachRequest(tenant_id="demo",
                                                                            finding_id=spike.finding_id))
        (written,) = drafted.drafts
        assert written.generator == "template"
        await stub.ReviewDraft(outreach_pb2.ReviewDraftRequest(
            tenant_id="demo", draft_id=written.draft_id, action=outreach_pb2.REVIEW_ACTION_APPROVE,
            reviewer_id="agent-1"))
        for _ in range(100):
            sent = await stub.ListDrafts(outreach_pb2.ListDraftsRequest(tenant_id="demo",
                                                                       state=outreach_pb2.DRAFT_STATE_SENT))
            if sent.drafts:
                break
            await asyncio.sleep(0.05)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.DraftOutreach(outreach_pb2.DraftOutreachRequest(tenant_id="demo", finding_id="nope"))
    assert [d.draft_id for d in sent.drafts] == [written.draft_id]
    (message,) = (maildir / "new").iterdir()
    assert "To: spiky@customer.example" in message.read_text()
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
