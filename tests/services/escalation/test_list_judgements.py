"""ListJudgements: a tenant's judgements of the AI's answers, oldest judged first, an agent's
with the release that handed over and the intent the agent finally set; paged with opaque
tokens bound to the tenant and `since`; one tenant never sees another's."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import grpc
import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import customer_pb2
from services.escalation.feedback_store import FeedbackStore
from services.escalation.judgements import AGENT_JUDGEMENT, CUSTOMER_JUDGEMENT
from services.escalation.migrations import SCHEMA
from services.escalation.models import AnswerJudgementRow
from tests.services.escalation.conftest import Stub, expect_error, handoff_request

TENANT = "demo"
OTHER = "acme"
AGENT = escalation_pb2.JUDGEMENT_SOURCE_AGENT
CUSTOMER = escalation_pb2.JUDGEMENT_SOURCE_CUSTOMER
RIGHT = "Hi! Refunds take 5 days to reach your card."
WRONG = "Sorry, I cannot help with that; a colleague will write to you."


async def _judged_handoff(
    stub: Stub, key: str, final_text: str, *, tenant: str = TENANT, release_id: str = "r2", **reply: Any
) -> escalation_pb2.Handoff:
    request = handoff_request(key=key, tenant=tenant, intent="refunds", confidence=0.42)
    request.release_id = release_id
    handoff: escalation_pb2.Handoff = (await stub.CreateHandoff(request)).handoff
    await stub.SubmitAgentReply(
        escalation_pb2.SubmitAgentReplyRequest(
            tenant_id=tenant, handoff_id=handoff.handoff_id, agent_id="ana", final_text=final_text, **reply
        )
    )
    return handoff


async def _customer_verdict(stub: Stub, key: str, correct: bool, *, tenant: str = TENANT) -> None:
    await stub.RecordJudgement(
        escalation_pb2.RecordJudgementRequest(
            idempotency_key=key,
            customer=customer_pb2.CustomerRef(tenant_id=tenant, customer_id="cust-7"),
            source=CUSTOMER,
            intent="",
            confidence=0.91,
            correct=correct,
        )
    )


async def _all(stub: Stub, tenant: str = TENANT, page_size: int = 0, **request: Any) -> list[Any]:
    """Every judgement, page by page; asserts each page holds at most page_size."""
    records: list[escalation_pb2.JudgementRecord] = []
    token = ""
    for _ in range(100):
        page = await stub.ListJudgements(
            escalation_pb2.ListJudgementsRequest(tenant_id=tenant, page_size=page_size, page_token=token, **request)
        )
        assert not page_size or len(page.judgements) <= page_size
        records.extend(page.judgements)
        token = page.next_page_token
        if not token:
            return records
    raise AssertionError("the pages never ended")


async def test_judgements_come_oldest_first_with_release_and_the_intent_the_agent_set(stub: Stub) -> None:
    kept = await _judged_handoff(stub, "h-kept", RIGHT, release_id="r2")
    await _customer_verdict(stub, "turn-key-1", correct=False)
    corrected = await _judged_handoff(
        stub, "h-corrected", WRONG, release_id="r3",
        intent_correction=escalation_pb2.IntentCorrection(original_label="refunds", corrected_label="billing"),
    )

    page = await stub.ListJudgements(escalation_pb2.ListJudgementsRequest(tenant_id=TENANT))
    first, customer, last = page.judgements

    assert first.key == f"handoff:{kept.handoff_id}" and first.source == AGENT
    assert first.handoff_id == kept.handoff_id and first.release_id == "r2"
    assert first.correct is True and first.confidence == pytest.approx(0.42)
    assert first.intent == "refunds" and first.final_intent == "refunds"
    assert first.answered_at == kept.created_at
    assert first.judged_at.ToDatetime(dt.UTC) >= kept.created_at.ToDatetime(dt.UTC)
    # A customer's verdict names no handoff, release or final intent.
    assert customer.key == "turn-key-1" and customer.source == CUSTOMER and customer.correct is False
    assert (customer.handoff_id, customer.release_id, customer.final_intent) == ("", "", "")
    assert customer.confidence == pytest.approx(0.91)
    assert last.handoff_id == corrected.handoff_id and last.release_id == "r3"
    assert last.correct is False and last.final_intent == "billing"
    assert [r.judged_at.ToDatetime(dt.UTC) for r in (first, customer, last)] == sorted(
        r.judged_at.ToDatetime(dt.UTC) for r in (first, customer, last)
    )


async def test_pages_list_every_judgement_once_and_a_replaced_verdict_comes_again_last(stub: Stub) -> None:
    handoffs = [await _judged_handoff(stub, f"h-{i}", RIGHT) for i in range(5)]
    for i in range(3):
        await _customer_verdict(stub, f"turn-{i}", correct=True)

    paged = await _all(stub, page_size=3)
    assert len(paged) == 8 and len({r.key for r in paged}) == 8
    assert [r.key for r in paged] == [r.key for r in await _all(stub)]

    # The first handoff's agent writes again, saying something else: judged anew, it moves to the end.
    await stub.SubmitAgentReply(
        escalation_pb2.SubmitAgentReplyRequest(
            tenant_id=TENANT, handoff_id=handoffs[0].handoff_id, agent_id="ana", final_text=WRONG
        )
    )
    again = await _all(stub, page_size=3)
    assert len(again) == 8
    assert again[-1].handoff_id == handoffs[0].handoff_id and again[-1].correct is False


async def test_since_keeps_the_judgements_judged_at_or_after_it(stub: Stub) -> None:
    await _customer_verdict(stub, "early", correct=True)
    records = await _all(stub)
    cut = records[0].judged_at.ToDatetime(dt.UTC) + dt.timedelta(microseconds=1)
    await _customer_verdict(stub, "late", correct=False)

    since = escalation_pb2.ListJudgementsRequest().since
    since.FromDatetime(cut)
    assert [r.key for r in await _all(stub, since=since)] == ["late"]
    since.FromDatetime(records[0].judged_at.ToDatetime(dt.UTC))
    assert [r.key for r in await _all(stub, since=since)] == ["early", "late"]


async def test_a_tenant_sees_only_its_own_judgements_and_tokens(stub: Stub) -> None:
    await _judged_handoff(stub, "h-demo", RIGHT)
    await _customer_verdict(stub, "demo-turn", correct=True)
    await _judged_handoff(stub, "h-acme", RIGHT, tenant=OTHER)
    await _customer_verdict(stub, "acme-turn", correct=True, tenant=OTHER)

    acme, demo = await _all(stub, tenant=OTHER), await _all(stub)
    assert len(acme) == 2 and len(demo) == 2 and "acme-turn" in {r.key for r in acme}
    assert not {r.key for r in acme} & {r.key for r in demo}

    page = await stub.ListJudgements(escalation_pb2.ListJudgementsRequest(tenant_id=TENANT, page_size=1))
    assert page.next_page_token
    # The demo tenant's token does not read the other tenant's judgements (nor under another since).
    violations, _ = await expect_error(
        stub.ListJudgements(escalation_pb2.ListJudgementsRequest(tenant_id=OTHER, page_token=page.next_page_token)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [field for field, _ in violations] == ["page_token"]
    later = escalation_pb2.ListJudgementsRequest(tenant_id=TENANT, page_token=page.next_page_token)
    later.since.FromDatetime(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    await expect_error(stub.ListJudgements(later), grpc.StatusCode.INVALID_ARGUMENT)


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (escalation_pb2.ListJudgementsRequest(), ["tenant_id"]),
        (escalation_pb2.ListJudgementsRequest(tenant_id="bad tenant!", page_size=-1), ["tenant_id", "page_size"]),
        (escalation_pb2.ListJudgementsRequest(tenant_id=TENANT, page_token="not-a-token"), ["page_token"]),
    ],
)
async def test_bad_requests_name_their_fields(
    stub: Stub, request_: escalation_pb2.ListJudgementsRequest, fields: list[str]
) -> None:
    violations, _ = await expect_error(stub.ListJudgements(request_), grpc.StatusCode.INVALID_ARGUMENT)
    assert [field for field, _ in violations] == fields


async def test_a_page_larger_than_the_maximum_is_served_at_the_maximum(stub: Stub) -> None:
    await _customer_verdict(stub, "one", correct=True)
    page = await stub.ListJudgements(escalation_pb2.ListJudgementsRequest(tenant_id=TENANT, page_size=5000))
    assert [r.key for r in page.judgements] == ["one"] and page.next_page_token == ""


def test_judgements_judged_at_the_same_instant_page_in_id_order(engine: Engine) -> None:
    """On SQLite and PostgreSQL: the keyset's tie-break keeps equal timestamps in one order, none lost."""
    SCHEMA.migrate(engine)
    at = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    keys = [f"handoff:h-{i}" if i % 2 else f"turn-{i}" for i in range(7)]
    with Session(engine) as session, session.begin():
        for i, key in enumerate(keys):
            session.add(AnswerJudgementRow(
                judgement_id=str(uuid.UUID(int=i + 1)), tenant_id=TENANT, idempotency_key=key,
                source=AGENT_JUDGEMENT if i % 2 else CUSTOMER_JUDGEMENT, intent="refunds", confidence=0.5,
                correct=bool(i % 3), answered_at=at, judged_at=at,
            ))
    store = FeedbackStore(engine)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        records, cursor = store.judgements_page(TENANT, None, cursor, 3)
        seen.extend(record.key for record in records)
        if cursor is None:
            break
    assert seen == keys
    assert store.judgements_page(TENANT, at + dt.timedelta(seconds=1), None, 3) == ([], None)
    assert store.judgements_page(OTHER, None, None, 3) == ([], None)
