"""The queue-depth metric counts waiting handoffs per tenant and queue."""

from __future__ import annotations

from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import conversation_pb2, customer_pb2
from servicekit.database import make_engine
from services.escalation.store import HandoffStore, NewHandoff


def _request(key: str, tenant: str) -> escalation_pb2.CreateHandoffRequest:
    return escalation_pb2.CreateHandoffRequest(
        idempotency_key=key,
        customer=customer_pb2.CustomerRef(tenant_id=tenant, customer_id="c"),
        conversation=conversation_pb2.Conversation(
            conversation_id=f"conv-{key}",
            messages=[conversation_pb2.Message(role=conversation_pb2.ROLE_CUSTOMER, text="help")],
        ),
    )


def test_waiting_handoffs_are_counted_per_tenant_and_queue() -> None:
    store = HandoffStore(make_engine("sqlite://"))
    store.migrate()
    store.create(_request("a", "t1"), NewHandoff("billing", escalation_pb2.ContextPackage()))
    store.create(_request("b", "t1"), NewHandoff("billing", escalation_pb2.ContextPackage()))
    store.create(_request("b", "t1"), NewHandoff("billing", escalation_pb2.ContextPackage()))  # same key: one handoff
    store.create(_request("c", "t2"), NewHandoff("general", escalation_pb2.ContextPackage()))
    assert store.waiting_by_queue() == {("t1", "billing"): 2, ("t2", "general"): 1}
