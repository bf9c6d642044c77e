"""The handoff the concierge makes, as the real escalation service (its servicers on a real
gRPC server, SQLite) reads it: what the concierge's triage and search found is not asked
for again, and a search that found nothing is not run again."""

from __future__ import annotations

from pathlib import Path

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.retrieval.v1 import retrieval_pb2
from aftercare.triage.v1 import triage_pb2
from aftercare.type.v1 import verdict_pb2
from tests.services.concierge.test_concierge import FakeLlm, FakeRetrieval, _refuse, converse, make, request
from tests.services.escalation.conftest import FakeRetrieval as EscalationRetrieval
from tests.services.escalation.conftest import FakeTriage as EscalationTriage
from tests.services.escalation.conftest import running_stub, settings_for


async def test_escalation_does_not_search_again_when_the_concierge_found_nothing(tmp_path: Path) -> None:
    # Escalation's own backends, counted: a package built from them would quote this passage.
    passage = retrieval_pb2.SearchHit(
        doc_id="erp", chunk_id="erp#0", title="ERP", similarity=0.9, text="Export invoices from Billing, then Export."
    )
    searches = EscalationRetrieval(hits=[passage])
    triage = EscalationTriage(triage_pb2.TriageContactResponse(intent=triage_pb2.IntentPrediction(label="asked")))
    async with running_stub(settings_for(tmp_path / "escalation"), retrieval=searches, triage=triage) as escalation:
        rig = make(FakeLlm(fail=_refuse), f"sqlite:///{tmp_path / 'concierge.db'}",
                   retrieval=FakeRetrieval(units=False, passages=False))
        rig.servicer._escalation = escalation

        handed = await converse(rig, request("How do I export invoices to my ERP system?"))
        assert handed.reason == concierge_pb2.DECISION_REASON_NO_KNOWLEDGE and handed.handoff_id
        got = await escalation.GetHandoff(
            escalation_pb2.GetHandoffRequest(tenant_id="demo", handoff_id=handed.handoff_id)
        )

    assert searches.requests == [], "the concierge searched and found nothing: no second search"
    assert triage.calls == 0, "the concierge triaged: no second triage"
    package = got.handoff.context
    assert not package.suggested_resolutions and package.intent == ""
    assert got.handoff.routing_tier == verdict_pb2.TIER_AI_RESOLVED
