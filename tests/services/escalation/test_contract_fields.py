"""What a CreateHandoff says by presence: a caller that searched and found nothing is not
searched again, a caller that triaged is not triaged again; the package's enums beside the
strings they deprecate (stored as strings, so a package stored before the enums reads back
with them); the shared routing tier. A v1 caller (deprecated fields only) is served as before."""

from __future__ import annotations

from pathlib import Path

import grpc
import sqlalchemy as sa
from google.protobuf.descriptor import Descriptor
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from aftercare.escalation.v1 import escalation_pb2
from aftercare.retrieval.v1 import retrieval_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import search_pb2, verdict_pb2
from services.escalation import origins
from services.escalation.models import HandoffRow
from services.escalation.store import HandoffStore, NewHandoff
from tests.services.escalation.conftest import (
    FakeRetrieval,
    FakeTriage,
    expect_error,
    handoff_request,
    running_stub,
    settings_for,
    settled,
)
from tests.services.escalation.test_context_package import PASSAGES, TWEETS

TENANT = "demo"
# What escalation's own triage would say: a test that sees it knows triage was asked.
ASKED = triage_pb2.TriageContactResponse(
    intent=triage_pb2.IntentPrediction(label="asked_triage", confidence=0.5),
    sentiment=triage_pb2.Sentiment(score=0.0),
)


def shared_hit(hit: retrieval_pb2.SearchHit) -> search_pb2.SearchHit:
    return search_pb2.SearchHit.FromString(hit.SerializeToString())


def sources_of(package: escalation_pb2.ContextPackage) -> set[str]:
    return {source.doc_id for s in package.suggested_resolutions for source in s.sources}


async def test_a_caller_whose_search_found_nothing_is_not_searched_again(tmp_path: Path) -> None:
    retrieval, triage = FakeRetrieval(PASSAGES), FakeTriage(ASKED)
    request = handoff_request(texts=TWEETS)
    # The caller triaged and found no intent, and searched and found nothing.
    request.triage.CopyFrom(verdict_pb2.TriageVerdict(tier=verdict_pb2.TIER_AI_ASSISTED, sentiment_score=-0.3))
    request.search.SetInParent()
    async with running_stub(settings_for(tmp_path), retrieval=retrieval, triage=triage) as stub:
        package = (await stub.CreateHandoff(request)).handoff.context

    assert retrieval.requests == [] and triage.calls == 0
    assert package.intent == "" and package.sentiment_score == -0.3
    # Nothing from the knowledge base: what a second search would have added.
    assert not sources_of(package)


async def test_the_callers_hits_and_verdict_are_used_and_the_deprecated_fields_ignored(tmp_path: Path) -> None:
    retrieval, triage = FakeRetrieval(PASSAGES), FakeTriage(ASKED)
    request = handoff_request(texts=TWEETS, intent="deprecated_intent")
    request.tier = triage_pb2.TIER_MANAGER_FLAGGED
    request.retrieved.append(PASSAGES[2])  # "plans": only in the deprecated list
    request.triage.CopyFrom(
        verdict_pb2.TriageVerdict(
            intent="refund_request", intent_confidence=0.8, sentiment_score=-0.6, tier=verdict_pb2.TIER_SPECIALIST
        )
    )
    request.search.hits.extend(shared_hit(hit) for hit in (PASSAGES[0], PASSAGES[3]))
    async with running_stub(settings_for(tmp_path), retrieval=retrieval, triage=triage) as stub:
        handoff = (await stub.CreateHandoff(request)).handoff
        listed = await stub.ListHandoffs(
            escalation_pb2.ListHandoffsRequest(tenant_id=TENANT, routing_tier=verdict_pb2.TIER_SPECIALIST)
        )

    assert retrieval.requests == [] and triage.calls == 0
    package = handoff.context
    assert (package.intent, package.intent_confidence) == ("refund_request", 0.8)
    assert (package.sentiment, package.sentiment_label) == (verdict_pb2.SENTIMENT_LABEL_NEGATIVE, "negative")
    # The search's passages, with the same relevance floor as a search of its own.
    assert "billing-faq" in sources_of(package) and not sources_of(package) & {"plans", "off-topic"}
    assert handoff.routing_tier == verdict_pb2.TIER_SPECIALIST and handoff.tier == triage_pb2.TIER_SPECIALIST
    assert [h.handoff_id for h in listed.handoffs] == [handoff.handoff_id]


async def test_a_v1_caller_is_served_as_before(tmp_path: Path) -> None:
    retrieval, triage = FakeRetrieval(PASSAGES), FakeTriage(ASKED)
    # Triaged (a tier, no intent) and searched (passages): neither is asked again.
    triaged = handoff_request(key="triaged", texts=TWEETS)
    triaged.tier = triage_pb2.TIER_SPECIALIST
    triaged.retrieved.extend(PASSAGES)
    # Neither: escalation asks both, and an empty list means nobody searched.
    bare = handoff_request(key="bare", texts=TWEETS)
    async with running_stub(settings_for(tmp_path), retrieval=retrieval, triage=triage) as stub:
        first = (await stub.CreateHandoff(triaged)).handoff
        assert retrieval.requests == [] and triage.calls == 0
        second = (await stub.CreateHandoff(bare)).handoff
        by_old_tier = await stub.ListHandoffs(
            escalation_pb2.ListHandoffsRequest(tenant_id=TENANT, tier=triage_pb2.TIER_SPECIALIST)
        )

    # (Behaviour only: this test passes on the escalation from before the new fields too.)
    assert first.context.intent == "" and "billing-faq" in sources_of(first.context)
    assert first.tier == triage_pb2.TIER_SPECIALIST
    assert len(retrieval.requests) == 1 and triage.calls == 1
    assert second.context.intent == "asked_triage" and "billing-faq" in sources_of(second.context)
    assert [h.handoff_id for h in by_old_tier.handoffs] == [first.handoff_id]


async def test_routing_tier_wins_over_the_deprecated_tier_in_a_listing(tmp_path: Path) -> None:
    specialist = handoff_request(key="s")
    specialist.triage.tier = verdict_pb2.TIER_SPECIALIST
    flagged = handoff_request(key="f")
    flagged.tier = triage_pb2.TIER_MANAGER_FLAGGED  # a v1 caller's tier
    async with running_stub(settings_for(tmp_path)) as stub:
        made = (await stub.CreateHandoff(specialist)).handoff
        old = (await stub.CreateHandoff(flagged)).handoff
        await stub.CreateHandoff(handoff_request(key="a"))
        both = await stub.ListHandoffs(
            escalation_pb2.ListHandoffsRequest(
                tenant_id=TENANT, routing_tier=verdict_pb2.TIER_SPECIALIST, tier=triage_pb2.TIER_MANAGER_FLAGGED
            )
        )
        every = await stub.ListHandoffs(escalation_pb2.ListHandoffsRequest(tenant_id=TENANT))
    assert [h.handoff_id for h in both.handoffs] == [made.handoff_id]
    assert (old.tier, old.routing_tier) == (triage_pb2.TIER_MANAGER_FLAGGED, verdict_pb2.TIER_MANAGER_FLAGGED)
    assert {h.routing_tier for h in every.handoffs} == {
        verdict_pb2.TIER_SPECIALIST,
        verdict_pb2.TIER_MANAGER_FLAGGED,
        verdict_pb2.TIER_UNSPECIFIED,
    }


def _says_the_same(package: escalation_pb2.ContextPackage) -> None:
    assert package.summary_origin == origins.SUMMARY_ORIGINS[package.summary_method]
    assert package.draft_origin == origins.DRAFT_ORIGINS[package.draft_method]
    assert package.sentiment == origins.SENTIMENTS[package.sentiment_label]


async def test_the_package_enums_say_what_its_strings_say(tmp_path: Path) -> None:
    async with running_stub(settings_for(tmp_path), retrieval=FakeRetrieval(PASSAGES)) as stub:
        created = (await stub.CreateHandoff(handoff_request(texts=TWEETS))).handoff
        done = await settled(stub, created)

    # Made with an LLM configured: both are written afterwards (the LLM is down here).
    assert (created.context.summary_method, created.context.draft_method) == ("pending", "pending")
    assert created.context.summary_origin == escalation_pb2.SUMMARY_ORIGIN_PENDING
    # The template shows meanwhile, and the enum says the LLM's is coming.
    assert created.context.draft_origin == escalation_pb2.DRAFT_ORIGIN_PENDING
    assert done.context.summary_origin == escalation_pb2.SUMMARY_ORIGIN_EXTRACTIVE
    assert done.context.draft_origin == escalation_pb2.DRAFT_ORIGIN_TEMPLATE
    for package in (created.context, done.context):
        _says_the_same(package)
        assert package.sentiment != verdict_pb2.SENTIMENT_LABEL_UNSPECIFIED


def test_a_package_is_stored_as_strings_and_one_stored_before_the_enums_reads_back_with_them(
    engine: Engine,
) -> None:
    store = HandoffStore(engine)
    store.migrate()
    strings = {"summary_method": "pending", "draft_method": "template", "sentiment_label": "neutral"}
    package = origins.fill_enums(escalation_pb2.ContextPackage(summary="s", **strings))
    made, _ = store.create(handoff_request(key="new"), NewHandoff(queue="q", context=package))
    with Session(engine) as session:
        stored = session.scalars(sa.select(HandoffRow.context).where(HandoffRow.handoff_id == made.handoff_id)).one()
    # An escalation rolled back to before the enums can still parse it.
    assert not set(stored) & set(origins.DERIVED_FIELDS) and stored["summary_method"] == "pending"
    assert made.context == package

    # As the service wrote a handoff before this change: strings, and the tier by triage's name.
    old, _ = store.create(handoff_request(key="old"), NewHandoff(queue="q", context=escalation_pb2.ContextPackage()))
    with Session(engine) as session, session.begin():
        session.execute(
            sa.update(HandoffRow)
            .where(HandoffRow.handoff_id == old.handoff_id)
            .values(
                context={
                    "summary": "old",
                    "summary_method": "llm",
                    "draft_method": "pending",
                    "sentiment_label": "negative",
                },
                tier="TIER_MANAGER_FLAGGED",
            )
        )
    read = store.get(TENANT, old.handoff_id)
    assert read is not None
    assert (read.context.summary_origin, read.context.draft_origin, read.context.sentiment) == (
        escalation_pb2.SUMMARY_ORIGIN_LLM,
        escalation_pb2.DRAFT_ORIGIN_PENDING,
        verdict_pb2.SENTIMENT_LABEL_NEGATIVE,
    )
    assert (read.tier, read.routing_tier) == (triage_pb2.TIER_MANAGER_FLAGGED, verdict_pb2.TIER_MANAGER_FLAGGED)
    # A handoff without a package still has none.
    bare, _ = store.create(handoff_request(key="bare"), NewHandoff(queue="q", context=escalation_pb2.ContextPackage()))
    assert not bare.HasField("context")


async def test_the_new_fields_are_checked_like_the_old_ones(tmp_path: Path) -> None:
    request = handoff_request()
    request.triage.CopyFrom(verdict_pb2.TriageVerdict(intent="x" * 201, intent_confidence=1.5, tier=99))
    request.search.hits.extend(search_pb2.SearchHit(chunk_id=f"c{i}", text="x") for i in range(51))
    request.search.hits[3].similarity = 1.5
    async with running_stub(settings_for(tmp_path)) as stub:
        violations, _ = await expect_error(stub.CreateHandoff(request), grpc.StatusCode.INVALID_ARGUMENT)
        listed, _ = await expect_error(
            stub.ListHandoffs(escalation_pb2.ListHandoffsRequest(tenant_id=TENANT, routing_tier=99)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    assert [field for field, _ in violations] == [
        "triage.intent",
        "triage.intent_confidence",
        "triage.tier",
        "search.hits",
        "search.hits[3].similarity",
    ]
    assert [field for field, _ in listed] == ["routing_tier"]


def test_the_shared_search_hit_is_retrievals_on_the_wire() -> None:
    """Escalation reads the shared hits as retrieval's (and the concierge sends retrieval's
    as the shared ones) by their bytes: the same fields, numbers and types."""

    def shape(descriptor: Descriptor) -> list[tuple[str, int, int, bool]]:
        return [(f.name, f.number, f.type, f.is_repeated) for f in descriptor.fields]

    assert shape(search_pb2.SearchHit.DESCRIPTOR) == shape(retrieval_pb2.SearchHit.DESCRIPTOR)
    shared = [(v.name, v.number) for v in search_pb2.DocumentType.DESCRIPTOR.values]
    assert shared == [(v.name, v.number) for v in retrieval_pb2.DocumentType.DESCRIPTOR.values]
    assert [(v.name, v.number) for v in verdict_pb2.Tier.DESCRIPTOR.values] == [
        (v.name, v.number) for v in triage_pb2.Tier.DESCRIPTOR.values
    ]
