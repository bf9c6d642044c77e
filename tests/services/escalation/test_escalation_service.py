"""Handoffs through a real in-process server and channel, on a SQLite file."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from aftercare.escalation.v1 import escalation_pb2
from aftercare.retrieval.v1 import retrieval_pb2
from aftercare.type.v1 import conversation_pb2
from servicekit.database import database_url, make_engine
from servicekit.errors import details_from_rpc_error
from services.escalation.settings import EscalationSettings
from services.escalation.store import HandoffStore, NewHandoff
from services.escalation.summaries import shorten
from tests.services.escalation.conftest import (
    CUSTOMER,
    Stub,
    handoff_request,
    running_stub,
    settings_for,
    settled,
)


async def expect_error(call: object, code: grpc.StatusCode) -> list[tuple[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    details = details_from_rpc_error(caught.value)
    assert details.code == code
    return details.field_violations


def sqlite_settings(data_dir: Path) -> EscalationSettings:
    return settings_for(data_dir)


def handoff_count(data_dir: Path) -> int:
    engine = make_engine(database_url("", data_dir, "escalation"))
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT count(*) FROM handoffs")).scalar_one())
    finally:
        engine.dispose()


async def test_create_then_get_round_trips_the_handoff(stub: Stub) -> None:
    request = handoff_request()
    created = await stub.CreateHandoff(request)
    assert created.handoff.context.summary_method == "pending"  # the LLM's is written afterwards
    created.handoff.CopyFrom(await settled(stub, created.handoff))

    assert created.created
    handoff = created.handoff
    assert uuid.UUID(handoff.handoff_id)
    assert handoff.customer == request.customer
    assert handoff.conversation == request.conversation
    assert handoff.reason == escalation_pb2.HANDOFF_REASON_LOW_CONFIDENCE
    assert handoff.queue == "billing"
    assert handoff.priority == 50
    assert handoff.state == escalation_pb2.HANDOFF_STATE_WAITING
    assert handoff.created_at.seconds > 0
    assert handoff.updated_at == handoff.created_at
    package = handoff.context
    # LLM, retrieval and triage are all down here: the package is the deterministic one.
    assert package.summary_method == "extractive"
    assert package.summary == "Customer: My invoice is wrong."
    assert "I was charged twice for November." in package.detail
    assert package.account == request.account
    assert package.ai_attempt == request.ai_attempt
    assert package.intent == "" and package.sentiment_label in {"negative", "neutral", "positive"}
    assert not package.suggested_resolutions
    assert package.draft_method == "template" and package.draft_reply
    assert handoff.version == 1 and not handoff.HasField("assigned_at")

    fetched = await stub.GetHandoff(escalation_pb2.GetHandoffRequest(tenant_id="demo", handoff_id=handoff.handoff_id))
    assert fetched.handoff == handoff


async def test_a_handoff_names_the_release_that_handed_over(stub: Stub) -> None:
    request = handoff_request(key="released")
    request.release_id = "r3"
    created = (await stub.CreateHandoff(request)).handoff
    replayed = await stub.CreateHandoff(request)
    fetched = await stub.GetHandoff(escalation_pb2.GetHandoffRequest(tenant_id="demo", handoff_id=created.handoff_id))
    unnamed = (await stub.CreateHandoff(handoff_request(key="unnamed"))).handoff
    listed = await stub.ListHandoffs(escalation_pb2.ListHandoffsRequest(tenant_id="demo"))

    assert created.release_id == "r3"
    assert not replayed.created and replayed.handoff.release_id == "r3"
    assert fetched.handoff.release_id == "r3"
    assert {h.handoff_id: h.release_id for h in listed.handoffs} == {
        created.handoff_id: "r3", unnamed.handoff_id: "",
    }


async def test_an_empty_queue_means_the_default_queue(stub: Stub) -> None:
    created = await stub.CreateHandoff(handoff_request(queue=""))
    assert created.handoff.queue == "general"


def test_summary_is_cut_at_a_word_boundary() -> None:
    text = "I was charged twice " * 20
    summary = shorten(text, 200)
    assert len(summary) <= 200
    assert summary.endswith("twice…") or summary.endswith("charged…") or summary.endswith("was…")
    assert text.startswith(summary[:-1])
    assert shorten("short\n\n  and   sweet ", 200) == "short and sweet"
    assert len(shorten("x" * 500, 200)) == 200


async def test_the_same_idempotency_key_returns_the_stored_handoff(stub: Stub, tmp_path: Path) -> None:
    first = await stub.CreateHandoff(handoff_request(key="retry-me", priority=10))
    first.handoff.CopyFrom(await settled(stub, first.handoff))
    # A retry with other content still returns what was stored first.
    second = await stub.CreateHandoff(handoff_request(key="retry-me", priority=99))

    assert first.created and not second.created
    assert second.handoff == first.handoff
    assert handoff_count(tmp_path) == 1


async def test_idempotency_keys_are_per_tenant(stub: Stub, tmp_path: Path) -> None:
    demo = await stub.CreateHandoff(handoff_request(key="k", tenant="demo"))
    acme = await stub.CreateHandoff(handoff_request(key="k", tenant="acme"))

    assert demo.created and acme.created
    assert demo.handoff.handoff_id != acme.handoff.handoff_id
    assert handoff_count(tmp_path) == 2


async def test_racing_creates_with_one_key_store_one_handoff(stub: Stub, tmp_path: Path) -> None:
    responses = await asyncio.gather(*(stub.CreateHandoff(handoff_request(key="race")) for _ in range(12)))

    assert sum(response.created for response in responses) == 1
    assert len({response.handoff.handoff_id for response in responses}) == 1
    assert handoff_count(tmp_path) == 1


def test_a_create_that_loses_the_race_reads_the_winner_back(tmp_path: Path) -> None:
    engine = make_engine(database_url("", tmp_path, "escalation"))
    try:
        store = HandoffStore(engine)
        store.migrate()
        request = handoff_request(key="lost-race")
        winner, created = store.create(request, NewHandoff("billing", escalation_pb2.ContextPackage()))
        assert created

        # The pre-check misses the winner (it committed in between), so the insert hits the
        # unique constraint and the store must read the winner back.
        real_find = store.find_by_key
        calls: list[str] = []

        def find_after_race(tenant_id: str, key: str) -> escalation_pb2.Handoff | None:
            calls.append(key)
            return None if len(calls) == 1 else real_find(tenant_id, key)

        store.find_by_key = find_after_race  # type: ignore[method-assign]
        loser, created = store.create(request, NewHandoff("billing", escalation_pb2.ContextPackage()))
        assert not created
        assert loser == winner
        assert calls == ["lost-race", "lost-race"]
    finally:
        engine.dispose()


async def test_an_unknown_handoff_is_not_found(stub: Stub) -> None:
    await expect_error(
        stub.GetHandoff(escalation_pb2.GetHandoffRequest(tenant_id="demo", handoff_id=str(uuid.uuid4()))),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_another_tenants_handoff_is_not_found(stub: Stub) -> None:
    created = await stub.CreateHandoff(handoff_request(tenant="demo"))
    request = escalation_pb2.GetHandoffRequest(tenant_id="acme", handoff_id=created.handoff.handoff_id)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetHandoff(request)
    details = details_from_rpc_error(caught.value)
    assert details.code == grpc.StatusCode.NOT_FOUND
    assert details.reason == "HANDOFF_NOT_FOUND"


async def test_list_orders_by_priority_then_age_and_pages(stub: Stub) -> None:
    ids = {}
    for key, priority in [("low", 10), ("mid-old", 50), ("high", 90), ("mid-new", 50), ("mid-newest", 50)]:
        ids[key] = (await stub.CreateHandoff(handoff_request(key=key, priority=priority))).handoff.handoff_id
    await stub.CreateHandoff(handoff_request(key="other-tenant", tenant="acme", priority=100))
    expected = [ids[key] for key in ("high", "mid-old", "mid-new", "mid-newest", "low")]

    everything = await stub.ListHandoffs(escalation_pb2.ListHandoffsRequest(tenant_id="demo"))
    assert [h.handoff_id for h in everything.handoffs] == expected
    assert everything.next_page_token == ""

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await stub.ListHandoffs(
            escalation_pb2.ListHandoffsRequest(tenant_id="demo", page_size=2, page_token=token)
        )
        pages += 1
        seen += [h.handoff_id for h in page.handoffs]
        token = page.next_page_token
        if not token:
            break
    assert seen == expected
    assert pages == 3


async def test_list_filters_by_queue_and_state(stub: Stub) -> None:
    await stub.CreateHandoff(handoff_request(key="a", queue="billing"))
    await stub.CreateHandoff(handoff_request(key="b", queue="technical"))

    billing = await stub.ListHandoffs(escalation_pb2.ListHandoffsRequest(tenant_id="demo", queue="billing"))
    assert [h.queue for h in billing.handoffs] == ["billing"]
    waiting = await stub.ListHandoffs(
        escalation_pb2.ListHandoffsRequest(tenant_id="demo", state=escalation_pb2.HANDOFF_STATE_WAITING)
    )
    assert len(waiting.handoffs) == 2
    resolved = await stub.ListHandoffs(
        escalation_pb2.ListHandoffsRequest(tenant_id="demo", state=escalation_pb2.HANDOFF_STATE_RESOLVED)
    )
    assert len(resolved.handoffs) == 0


async def test_a_page_token_only_works_for_the_same_filters(stub: Stub) -> None:
    for key in ("a", "b", "c"):
        await stub.CreateHandoff(handoff_request(key=key))
    first = await stub.ListHandoffs(escalation_pb2.ListHandoffsRequest(tenant_id="demo", page_size=1))
    assert first.next_page_token

    violations = await expect_error(
        stub.ListHandoffs(
            escalation_pb2.ListHandoffsRequest(tenant_id="demo", queue="other", page_token=first.next_page_token)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [field for field, _ in violations] == ["page_token"]
    violations = await expect_error(
        stub.ListHandoffs(escalation_pb2.ListHandoffsRequest(tenant_id="demo", page_token="not-a-token")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [field for field, _ in violations] == ["page_token"]


def _too_many_messages() -> escalation_pb2.CreateHandoffRequest:
    request = handoff_request()
    del request.conversation.messages[:]
    request.conversation.messages.extend(conversation_pb2.Message(role=CUSTOMER, text="again") for _ in range(201))
    return request


def _too_much_text() -> escalation_pb2.CreateHandoffRequest:
    return handoff_request(texts=tuple("y" * 30_000 for _ in range(4)))


def _no_messages() -> escalation_pb2.CreateHandoffRequest:
    request = handoff_request()
    del request.conversation.messages[:]
    return request


def _bad_passages() -> escalation_pb2.CreateHandoffRequest:
    request = handoff_request()
    request.retrieved.extend(retrieval_pb2.SearchHit(chunk_id=f"c{i}", text="x") for i in range(51))
    request.retrieved[3].similarity = 1.5
    return request


def _bad_release() -> escalation_pb2.CreateHandoffRequest:
    request = handoff_request()
    request.release_id = "r" * 33
    return request


def _missing_ids() -> escalation_pb2.CreateHandoffRequest:
    request = handoff_request(key="", tenant="")
    request.customer.customer_id = ""
    request.conversation.messages[0].role = conversation_pb2.ROLE_UNSPECIFIED
    return request


@pytest.mark.parametrize(
    ("build", "fields"),
    [
        (
            _missing_ids,
            ["idempotency_key", "customer.tenant_id", "customer.customer_id", "conversation.messages[0].role"],
        ),
        (_no_messages, ["conversation.messages"]),
        (_too_many_messages, ["conversation.messages"]),
        (_too_much_text, ["conversation.messages"]),
        (lambda: handoff_request(priority=101), ["priority"]),
        (_bad_passages, ["retrieved", "retrieved[3].similarity"]),
        (_bad_release, ["release_id"]),
    ],
)
async def test_invalid_creates_are_refused_with_field_violations(
    stub: Stub, build: Callable[[], escalation_pb2.CreateHandoffRequest], fields: list[str]
) -> None:
    violations = await expect_error(stub.CreateHandoff(build()), grpc.StatusCode.INVALID_ARGUMENT)
    assert [field for field, _ in violations] == fields


async def test_get_and_list_need_a_tenant(stub: Stub) -> None:
    violations = await expect_error(
        stub.GetHandoff(escalation_pb2.GetHandoffRequest()), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert violations == [("tenant_id", "required"), ("handoff_id", "required")]
    violations = await expect_error(
        stub.ListHandoffs(escalation_pb2.ListHandoffsRequest(page_size=-1)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert [field for field, _ in violations] == ["tenant_id", "page_size"]


async def test_handoffs_survive_a_restart(tmp_path: Path) -> None:
    async with running_stub(sqlite_settings(tmp_path)) as stub:
        created = await stub.CreateHandoff(handoff_request(key="durable"))
        created.handoff.CopyFrom(await settled(stub, created.handoff))

    async with running_stub(sqlite_settings(tmp_path)) as stub:
        fetched = await stub.GetHandoff(
            escalation_pb2.GetHandoffRequest(tenant_id="demo", handoff_id=created.handoff.handoff_id)
        )
        replay = await stub.CreateHandoff(handoff_request(key="durable"))

    assert fetched.handoff == created.handoff
    assert not replay.created and replay.handoff == created.handoff
    assert (tmp_path / "escalation.db").exists()


def test_database_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    for name, value in {"LLM_BASE_URL": "http://llm:8000/v1", "RETRIEVAL_ADDR": "r:1", "TRIAGE_ADDR": "t:1"}.items():
        monkeypatch.setenv(name, value)
    assert EscalationSettings().database_url == "postgresql+psycopg://postgres@127.0.0.1:5432/test"


async def test_handoffs_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    url = postgres_url
    # A fresh tenant per run: the test database is shared and not cleaned.
    tenant = f"pg-{uuid.uuid4().hex[:12]}"
    settings = settings_for(tmp_path, database_url=url)
    async with running_stub(settings) as stub:
        responses = await asyncio.gather(
            *(stub.CreateHandoff(handoff_request(key="race", tenant=tenant)) for _ in range(8))
        )
        assert sum(response.created for response in responses) == 1
        first = await settled(stub, responses[0].handoff)
        low = await stub.CreateHandoff(handoff_request(key="low", tenant=tenant, priority=5))
        low.handoff.CopyFrom(await settled(stub, low.handoff))
        listed = await stub.ListHandoffs(escalation_pb2.ListHandoffsRequest(tenant_id=tenant, page_size=1))
        assert listed.handoffs[0] == first
        rest = await stub.ListHandoffs(
            escalation_pb2.ListHandoffsRequest(tenant_id=tenant, page_size=1, page_token=listed.next_page_token)
        )
        assert [h.handoff_id for h in rest.handoffs] == [low.handoff.handoff_id]
        fetched = await stub.GetHandoff(
            escalation_pb2.GetHandoffRequest(tenant_id=tenant, handoff_id=low.handoff.handoff_id)
        )
        assert fetched.handoff == low.handoff
