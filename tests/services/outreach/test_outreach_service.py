"""RecordUsage and ListDrafts through a real in-process server and channel."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import timestamp_pb2

from aftercare.outreach.v1 import outreach_pb2, outreach_pb2_grpc
from servicekit.database import database_url, make_engine
from servicekit.errors import details_from_rpc_error
from servicekit.server import serving
from services.outreach.app import servicers
from services.outreach.models import OutreachDraftRow
from services.outreach.settings import OutreachSettings

Stub = outreach_pb2_grpc.OutreachServiceStub
NOW = dt.datetime.now(dt.UTC)
YESTERDAY = NOW - dt.timedelta(days=1)


def ts(when: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


def event(
    event_id: str,
    *,
    account: str = "acct-1",
    tenant: str = "demo",
    when: dt.datetime | None = YESTERDAY,
    feature: str = "dashboards",
    endpoint: str = "GET /v2/dashboards",
    status: int = 200,
    error_code: str = "",
    count: int = 1,
) -> outreach_pb2.RecordUsageRequest:
    usage = outreach_pb2.UsageEvent(
        event_id=event_id,
        tenant_id=tenant,
        account_id=account,
        feature=feature,
        endpoint=endpoint,
        status_code=status,
        error_code=error_code,
        count=count,
        client_version="js-3.7.2",
    )
    if when is not None:
        usage.occurred_at.CopyFrom(ts(when))
    return outreach_pb2.RecordUsageRequest(event=usage)


@asynccontextmanager
async def running_stub(data_dir: Path, batch_size: int = 500) -> AsyncIterator[Stub]:
    settings = OutreachSettings(port=0, data_dir=data_dir, database_url="", usage_batch_size=batch_size)
    async with (
        serving(settings, servicers) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        yield Stub(channel)


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[Stub]:
    async with running_stub(tmp_path) as client:
        yield client


async def record(stub: Stub, requests: Iterable[outreach_pb2.RecordUsageRequest]) -> outreach_pb2.RecordUsageResponse:
    items = list(requests)

    async def stream() -> AsyncIterator[outreach_pb2.RecordUsageRequest]:
        for item in items:
            yield item

    return await stub.RecordUsage(stream())


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
    async with running_stub(tmp_path, batch_size=2) as stub:
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
        (event("x", when=NOW + dt.timedelta(minutes=10)), "future_timestamp"),
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
                        "finding_id": "f1",
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
        await record(stub, [event("e1", count=4)])
    async with running_stub(tmp_path) as stub:
        again = await record(stub, [event("e1", count=4)])
    assert (again.accepted, again.duplicates) == (0, 1)
    assert list(daily(tmp_path).values()) == [(4, 0)]
