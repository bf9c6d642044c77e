"""Email and ticket intake: what the intake route (POST /v1/tenants/{tenant_id}/intake/email)
makes of a mail webhook's message before it calls the backends.

The sender becomes a keyed pseudonym (the customer id), the mail's thread or subject names
the conversation, and outreach is told where agents' replies go. The gateway stores and logs
only the pseudonym; the address goes to outreach alone, for those replies.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from aftercare.concierge.v1 import concierge_pb2
from aftercare.outreach.v1 import outreach_pb2
from aftercare.type.v1 import conversation_pb2, customer_pb2
from gateway.schemas.conversations import EmailIntakeRequest

_REPLY_PREFIX = re.compile(r"^\s*(re|fwd?|aw|wg|tr)\s*:\s*", re.IGNORECASE)
_HANDOFF_TAG = re.compile(r"\s*\[HO-[0-9A-Z]{4,12}\]\s*$", re.IGNORECASE)


def sender_pseudonym(tenant_id: str, sender: str, pseudonym_key: bytes) -> str:
    """The sender's customer id: the same address always gives the same id (one
    customer history), and the id does not give the address back."""
    address = f"{tenant_id}\n{sender.strip().lower()}".encode()
    return "email-" + hmac.new(pseudonym_key, address, hashlib.sha256).hexdigest()[:32]


def conversation_id(email: EmailIntakeRequest, customer_id: str) -> str:
    """The mail's thread id; without one, the sender and the subject (without Re:/Fwd:) name it."""
    if email.thread_id:
        return email.thread_id
    subject = email.subject
    while (stripped := _REPLY_PREFIX.sub("", subject, count=1)) != subject:
        subject = stripped
    # An answer to an agent's reply ("Re: <subject> [HO-7KQ2M9]") stays in the conversation.
    subject = _HANDOFF_TAG.sub("", subject)
    thread = f"{customer_id}\n{subject.strip().casefold()}"
    return "email-" + hashlib.sha256(thread.encode()).hexdigest()[:24]


def converse_request(email: EmailIntakeRequest, tenant_id: str, pseudonym_key: bytes) -> concierge_pb2.ConverseRequest:
    """The concierge call that answers the mail, on the email channel, as the sender's pseudonym."""
    customer_id = sender_pseudonym(tenant_id, email.sender, pseudonym_key)
    text = f"{email.subject.strip()}\n\n{email.body}" if email.subject.strip() else email.body
    return concierge_pb2.ConverseRequest(
        conversation_id=conversation_id(email, customer_id),
        customer=customer_pb2.CustomerRef(tenant_id=tenant_id, customer_id=customer_id),
        text=text,
        channel=conversation_pb2.CHANNEL_EMAIL,
    )


def reply_route(
    email: EmailIntakeRequest, converse: concierge_pb2.ConverseRequest
) -> outreach_pb2.RecordReplyRouteRequest:
    """Where agents' replies to this conversation go. Outreach keeps the address for that
    alone (erased with the customer's data); the gateway stores and logs only the pseudonym."""
    return outreach_pb2.RecordReplyRouteRequest(
        customer=converse.customer,
        conversation_id=converse.conversation_id,
        address=email.sender.strip(),
        subject=email.subject,
        message_id=email.message_id or "",
    )
