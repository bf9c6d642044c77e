"""Agents' replies reach email customers exactly once, threaded: reply routes, the worker
that reads escalation's delivery feed (a fake EscalationService on a real gRPC server)
into the outbox, and the sender that mails them."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import functools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from aftercare.outreach.v1 import outreach_pb2
from aftercare.type.v1 import conversation_pb2, customer_pb2
from servicekit.errors import details_from_rpc_error
from servicekit.server import RunningServer, mount, serving, start_server
from servicekit.settings import ServiceSettings
from services.escalation.app import servicers as escalation_servicers
from services.outreach.outbox import MaildirSink, Sender
from services.outreach.replies import FEED, ReplyDeliveryWorker, message_id_header, reply_subject, thread_subject
from services.outreach.store import OutreachStore
from tests.services.escalation import conftest as peer
from tests.services.outreach.conftest import Stub, running_stub, settings_for

TENANT = "demo"
ANN = customer_pb2.CustomerRef(tenant_id=TENANT, customer_id="email-ann")
BOB = customer_pb2.CustomerRef(tenant_id=TENANT, customer_id="email-bob")
# 23:00 in UTC: inside outreach's quiet hours, which agents' replies ignore.
NIGHT = dt.datetime(2026, 12, 6, 23, 0, tzinfo=dt.UTC)


class FakeEscalation(escalation_pb2_grpc.EscalationServiceServicer):
    """ListDeliveries over a list; the cursor is the position in it."""

    def __init__(self) -> None:
        self.deliveries: list[escalation_pb2.Delivery] = []
        self.requests: list[escalation_pb2.ListDeliveriesRequest] = []

    def reply(self, message_id: str, text: str, *, customer: customer_pb2.CustomerRef = ANN,
              conversation_id: str = "conv-1", reference: str = "HO-7KQ2M9") -> None:
        position = len(self.deliveries) + 1
        self.deliveries.append(escalation_pb2.Delivery(
            message=escalation_pb2.ThreadMessage(
                message_id=message_id, sequence=position, handoff_id="ho-1", author_id="agent-7",
                author_name="Maya from Beacon", channel=conversation_pb2.CHANNEL_EMAIL,
                conversation_id=conversation_id,
                message=conversation_pb2.Message(role=conversation_pb2.ROLE_AGENT, text=text),
            ),
            customer=customer, reference=reference, cursor=f"c{position}",
        ))

    async def ListDeliveries(
        self, request: escalation_pb2.ListDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> escalation_pb2.ListDeliveriesResponse:
        self.requests.append(request)
        start = int(request.after_cursor.removeprefix("c") or 0)
        page = self.deliveries[start : start + (request.page_size or 100)]
        return escalation_pb2.ListDeliveriesResponse(
            deliveries=page, next_cursor=page[-1].cursor if page else request.after_cursor)


@pytest.fixture
async def escalation() -> AsyncIterator[tuple[FakeEscalation, RunningServer]]:
    fake = FakeEscalation()
    server = await start_server(ServiceSettings(port=0), [mount(fake, escalation_pb2, escalation_pb2_grpc)])
    try:
        yield fake, server
    finally:
        await server.stop(0)


@pytest.fixture
def store(engine: Engine) -> Iterator[OutreachStore]:
    made = OutreachStore(engine)
    made.migrate()
    yield made


def route(customer: customer_pb2.CustomerRef = ANN, conversation_id: str = "conv-1", **fields: str) -> dict[str, str]:
    values = {"tenant_id": customer.tenant_id, "customer_id": customer.customer_id,
              "conversation_id": conversation_id, "address": "ann@example.com", "subject": "Export fails",
              "message_id": "<m1@mail.example>"}
    return values | fields


class Rig:
    """A worker and a sender over one store, reading the fake escalation through a real channel."""

    def __init__(self, store: OutreachStore, address: str, maildir: Path) -> None:
        self.store = store
        self.channel = grpc.aio.insecure_channel(address)
        self.settings = settings_for(maildir.parent, sender="file", escalation_addr=address)
        self.sink = MaildirSink(maildir, "outreach@beacon.example", "support@beacon.example")
        self.maildir = maildir

    def worker(self) -> ReplyDeliveryWorker:
        stub = escalation_pb2_grpc.EscalationServiceStub(self.channel)
        return ReplyDeliveryWorker(self.store, stub, self.settings, clock=lambda: NIGHT)

    def send(self) -> int:
        return Sender(self.store, self.sink, self.settings, clock=lambda: NIGHT).drain_once()

    def mails(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
                for p in sorted((self.maildir / "new").iterdir())]

    def outbox(self) -> dict[str, tuple[str, str]]:
        with self.store.engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT draft_id, status, last_error FROM outreach_outbox"))
            return {draft_id: (status, error) for draft_id, status, error in rows}


@pytest.fixture
async def rig(store: OutreachStore, escalation: tuple[FakeEscalation, RunningServer],
              tmp_path: Path) -> AsyncIterator[Rig]:
    made = Rig(store, f"127.0.0.1:{escalation[1].port}", tmp_path / "maildir")
    try:
        yield made
    finally:
        await made.channel.close()


async def test_a_reply_is_mailed_once_threaded_to_the_customer(
    rig: Rig, escalation: tuple[FakeEscalation, RunningServer]
) -> None:
    fake, _ = escalation
    rig.store.record_reply_route(route(), NIGHT)
    rig.store.record_reply_route(route(subject="Re: Export fails", message_id="<m2@mail.example>"), NIGHT)
    fake.reply("msg-1", "Your export works again: we raised the limit.")

    assert await rig.worker().poll_once() == 1
    assert rig.send() == 1, "no review, no account, no quiet hours: a reply the customer waits for goes now"

    (mail,) = rig.mails()
    assert mail["To"] == "ann@example.com"
    assert mail["From"] == "support@beacon.example"
    assert mail["Subject"] == "Re: Export fails [HO-7KQ2M9]"
    assert mail["In-Reply-To"] == "<m2@mail.example>"
    assert mail["References"] == "<m1@mail.example> <m2@mail.example>"
    assert mail["Message-ID"] == "<reply.msg-1@aftercare.outreach>"
    assert mail.get_content() == "Your export works again: we raised the limit.\n\n-- \nMaya from Beacon\n"
    request = fake.requests[0]
    assert (request.tenant_id, request.channel, request.after_cursor) == ("", conversation_pb2.CHANNEL_EMAIL, "")


async def test_a_replayed_feed_or_a_restarted_worker_sends_nothing_twice(
    rig: Rig, escalation: tuple[FakeEscalation, RunningServer]
) -> None:
    fake, _ = escalation
    rig.store.record_reply_route(route(), NIGHT)
    fake.reply("msg-1", "First answer.")
    fake.reply("msg-2", "Second answer.")
    await rig.worker().poll_once()
    assert rig.send() == 2

    # A restarted worker goes on from the stored cursor.
    restarted = rig.worker()
    assert await restarted.poll_once() == 0
    assert fake.requests[-1].after_cursor == "c2"
    # The feed replayed from the start (a cursor lost, escalation restored from a backup).
    with rig.store.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM feed_cursors"))
    assert await restarted.poll_once() == 2
    fake.reply("msg-3", "Third answer.")
    await asyncio.gather(rig.worker().poll_once(), rig.worker().poll_once())

    assert rig.send() == 1
    assert rig.send() == 0
    assert [m["Message-ID"] for m in rig.mails()] == [
        f"<reply.msg-{n}@aftercare.outreach>" for n in (1, 2, 3)]
    assert rig.store.feed_cursor(FEED) == "c3"


async def test_a_reply_without_a_route_is_undeliverable_and_nothing_is_sent(
    rig: Rig, escalation: tuple[FakeEscalation, RunningServer]
) -> None:
    fake, _ = escalation
    rig.store.record_reply_route(route(), NIGHT)
    fake.reply("msg-1", "Nowhere to go.", conversation_id="conv-unknown")
    # A conversation whose route belongs to someone else never sends them another customer's reply.
    fake.reply("msg-2", "Not for Ann.", customer=BOB)

    await rig.worker().poll_once()
    await rig.worker().poll_once()

    assert rig.send() == 0
    assert not (rig.maildir / "new").exists() or rig.mails() == []
    assert rig.outbox() == {"msg-1": ("undeliverable", "no_reply_route"),
                            "msg-2": ("undeliverable", "no_reply_route")}
    assert rig.store.feed_cursor(FEED) == "c2", "not retried forever: the feed moves on"


def test_the_thread_subject_drops_reply_prefixes_and_the_reference() -> None:
    assert thread_subject(" RE: Fwd:  Export\r\nfails [HO-7KQ2M9] ") == "Export fails"
    assert reply_subject("", "HO-7KQ2M9") == "Re: Your message [HO-7KQ2M9]"
    assert message_id_header("abc@mail.example") == "<abc@mail.example>"
    assert message_id_header("") == ""
    assert message_id_header("<a@b>\nBcc: x@y") is None


def test_a_route_keeps_its_thread_and_its_customer(store: OutreachStore) -> None:
    assert store.record_reply_route(route(message_id=""), NIGHT) == (True, True)
    assert store.record_reply_route(route(subject="Other", message_id="<m1@x>"), NIGHT) == (False, True)
    assert store.record_reply_route(route(message_id="<m2@x>", address="Ann@Example.com"), NIGHT) == (False, True)
    assert store.record_reply_route(route(BOB, address="bob@example.com"), NIGHT) == (False, False)

    (saved,) = store.reply_routes({(TENANT, "conv-1")}).values()
    assert (saved.customer_id, saved.address, saved.subject) == ("email-ann", "Ann@Example.com", "Export fails")
    assert (saved.first_message_id, saved.last_message_id) == ("<m1@x>", "<m2@x>")


async def test_record_reply_route_checks_its_input_and_delete_erases_the_address(tmp_path: Path) -> None:
    async with running_stub(tmp_path) as stub:
        good = outreach_pb2.RecordReplyRouteRequest(
            customer=ANN, conversation_id="conv-1", address="ann@example.com",
            subject="RE: Fwd: Export\r\nfails", message_id="m1@mail.example")
        assert await stub.RecordReplyRoute(good) == outreach_pb2.RecordReplyRouteResponse(created=True, recorded=True)
        assert (await stub.RecordReplyRoute(good)).created is False

        bad = outreach_pb2.RecordReplyRouteRequest(
            customer=customer_pb2.CustomerRef(tenant_id=TENANT), conversation_id="c",
            address="ann@example.com\r\nBcc: all@example.com", message_id="<no at sign>")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RecordReplyRoute(bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        fields = {name for name, _ in details_from_rpc_error(refused.value).field_violations}
        assert fields == {"customer.customer_id", "address", "message_id"}
        assert "all@example.com" not in (refused.value.details() or "")

        assert (await stub.DeleteReplyRoutes(outreach_pb2.DeleteReplyRoutesRequest(customer=ANN))).deleted == 1
        assert (await stub.DeleteReplyRoutes(outreach_pb2.DeleteReplyRoutesRequest(customer=ANN))).deleted == 0
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.DeleteReplyRoutes(outreach_pb2.DeleteReplyRoutesRequest())
        assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def _first_mail(maildir: Path, timeout_s: float = 10.0) -> email.message.EmailMessage:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        found = sorted((maildir / "new").glob("*.eml")) if (maildir / "new").exists() else []
        if found:
            return email.message_from_bytes(found[0].read_bytes(), policy=email.policy.default)  # type: ignore[return-value]
        await asyncio.sleep(0.05)
    raise AssertionError("no mail arrived")


async def test_the_service_delivers_replies_from_the_feed_it_starts_with(
    escalation: tuple[FakeEscalation, RunningServer], tmp_path: Path
) -> None:
    fake, server = escalation
    maildir = tmp_path / "maildir"
    # The sender's own interval is long: the worker wakes it when a reply is queued.
    async with running_stub(tmp_path, sender="file", outbox_dir=maildir, escalation_addr=f"127.0.0.1:{server.port}",
                            reply_poll_interval_s=0.05, sender_interval_s=60) as stub:
        await record_route(stub)
        fake.reply("msg-1", "Fixed on our side.")
        mail = await _first_mail(maildir)
    assert (mail["To"], mail["Subject"], mail["In-Reply-To"]) == (
        "ann@example.com", "Re: Export fails [HO-7KQ2M9]", "<m1@mail.example>")


async def record_route(stub: Stub) -> None:
    await stub.RecordReplyRoute(outreach_pb2.RecordReplyRouteRequest(
        customer=ANN, conversation_id="conv-1", address="ann@example.com", subject="Export fails",
        message_id="<m1@mail.example>"))


async def test_an_agents_reply_in_the_real_escalation_service_reaches_the_customer_once(tmp_path: Path) -> None:
    factory = functools.partial(escalation_servicers, llm=peer.llm_down(), retrieval=peer.FakeRetrieval(),
                                triage=peer.FakeTriage(), embed=peer.fake_embed)
    maildir = tmp_path / "maildir"
    async with (
        serving(peer.settings_for(tmp_path / "escalation"), factory) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
        running_stub(tmp_path / "outreach", sender="file", outbox_dir=maildir,
                     escalation_addr=f"127.0.0.1:{running.port}", reply_poll_interval_s=0.05,
                     sender_interval_s=60) as outreach,
    ):
        escalation = escalation_pb2_grpc.EscalationServiceStub(channel)
        request = peer.handoff_request(key="mail-1", customer_id=ANN.customer_id, conversation_id="conv-1")
        request.conversation.channel = conversation_pb2.CHANNEL_EMAIL
        handoff = (await escalation.CreateHandoff(request)).handoff
        await record_route(outreach)
        reply = escalation_pb2.SubmitAgentReplyRequest(
            tenant_id=TENANT, handoff_id=handoff.handoff_id, agent_id="agent-7", agent_name="Maya",
            final_text="We raised your export limit.", client_message_id="send-1")
        await escalation.SubmitAgentReply(reply)
        await escalation.SubmitAgentReply(reply)  # the console retried the send
        mail = await _first_mail(maildir)
        await asyncio.sleep(0.3)  # a few more rounds of the worker
    assert len(list((maildir / "new").iterdir())) == 1
    assert mail["Subject"] == f"Re: Export fails [{handoff.reference}]" and handoff.reference
    assert mail["In-Reply-To"] == "<m1@mail.example>"
    assert "We raised your export limit." in mail.get_content()
