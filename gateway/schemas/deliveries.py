"""Bodies of the deliveries router (gateway/routes/deliveries.py): agents' messages for a channel
integration to deliver.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import conversation_pb2
from gateway.schemas.common import enum_name
from gateway.schemas.handoffs import ThreadMessage


class Delivery(BaseModel):
    """One agent message for a channel integration to deliver."""

    message: ThreadMessage = Field(description="Its message_id is the integration's idempotency key.")
    conversation_id: str
    handoff_id: str
    channel: Literal["unspecified", "chat", "email", "api"]
    customer_id: str = Field(description="Who to deliver it to.")
    reference: str = Field(description="The handoff's reference, e.g. for a subject line.")
    cursor: str = Field(description="Position in the feed; pass the last one as `after`.")

    @classmethod
    def from_proto(cls, delivery: escalation_pb2.Delivery) -> Delivery:
        message = delivery.message
        return cls(
            message=ThreadMessage.from_proto(message),
            conversation_id=message.conversation_id,
            handoff_id=message.handoff_id,
            channel=enum_name(conversation_pb2.Channel, message.channel),
            customer_id=delivery.customer.customer_id,
            reference=delivery.reference,
            cursor=delivery.cursor,
        )


class DeliveriesReply(BaseModel):
    deliveries: list[Delivery] = Field(description="Oldest first.")
    next_cursor: str = Field(description="Pass as `after` for what comes next (the same one when nothing came).")

    @classmethod
    def from_proto(cls, response: escalation_pb2.ListDeliveriesResponse) -> DeliveriesReply:
        return cls(
            deliveries=[Delivery.from_proto(d) for d in response.deliveries], next_cursor=response.next_cursor
        )
