"""Helpers of the outreach tests: settings for an in-process server, usage events, streams."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
from google.protobuf import timestamp_pb2

from aftercare.outreach.v1 import outreach_pb2, outreach_pb2_grpc
from servicekit.llm import LlmClient
from servicekit.server import serving
from services.outreach.app import servicers
from services.outreach.settings import OutreachSettings
from tests.llm_stream import completion

Stub = outreach_pb2_grpc.OutreachServiceStub
NOW = dt.datetime.now(dt.UTC)
YESTERDAY = NOW - dt.timedelta(days=1)
# Nothing listens there: a dependency that is down.
DOWN = "127.0.0.1:9"


def settings_for(data_dir: Path, **overrides: Any) -> OutreachSettings:
    values: dict[str, Any] = {
        "port": 0,
        "data_dir": data_dir,
        "database_url": "",
        "llm_base_url": f"http://{DOWN}/v1",
        "retrieval_addr": DOWN,
        "escalation_addr": DOWN,
        "sender": "off",
        **overrides,
    }
    return OutreachSettings(**values)


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
    version: str = "js-3.7.2",
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
        client_version=version,
    )
    if when is not None:
        usage.occurred_at.CopyFrom(ts(when))
    return outreach_pb2.RecordUsageRequest(event=usage)


def account(account_id: str, tenant: str = "demo", **fields: Any) -> outreach_pb2.Account:
    return outreach_pb2.Account(tenant_id=tenant, account_id=account_id, **fields)


async def register(stub: Stub, *accounts: outreach_pb2.Account) -> None:
    await stub.UpsertAccounts(outreach_pb2.UpsertAccountsRequest(accounts=accounts))


@asynccontextmanager
async def running_stub(data_dir: Path, **overrides: Any) -> AsyncIterator[Stub]:
    async with (
        serving(settings_for(data_dir, **overrides), servicers) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        yield Stub(channel)


async def record(stub: Stub, requests: Iterable[outreach_pb2.RecordUsageRequest]) -> outreach_pb2.RecordUsageResponse:
    items = list(requests)

    async def stream() -> AsyncIterator[outreach_pb2.RecordUsageRequest]:
        for item in items:
            yield item

    return await stub.RecordUsage(stream())


class FakeLlm:
    """An OpenAI-compatible server double: streams a scripted reply, or fails like a server that is down."""

    def __init__(self, reply: str = "", *, down: bool = False):
        self.reply = reply
        self.down = down
        self.prompts: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        body = json.loads(request.content)
        self.prompts.append(str(body["prompt"]))
        return completion([(" " if i else "") + word for i, word in enumerate(self.reply.split(" "))])

    def client(self) -> LlmClient:
        return LlmClient("http://llm.test/v1", "test-model", transport=httpx.MockTransport(self.handler), timeout_s=2)
