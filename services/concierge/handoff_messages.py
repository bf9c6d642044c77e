"""What the customer reads when a person takes over: the reason in the persona's words,
the handoff's reference and the expected wait as a person says it."""

from __future__ import annotations

import math

from aftercare.escalation.v1 import escalation_pb2
from services.concierge.persona import Persona


def wait_in_words(seconds: float) -> str:
    """An expected wait as a person says it: "a minute", "10 minutes", "2 hours"."""
    minutes = max(1, math.ceil(seconds / 60))
    if minutes == 1:
        return "a minute"
    if minutes < 60:
        return f"{minutes if minutes < 15 else 5 * math.ceil(minutes / 5)} minutes"
    hours = int(minutes / 60 + 0.5)
    if hours <= 1:
        return "an hour"
    return f"{hours} hours" if hours < 24 else ("a day" if hours < 36 else f"{int(hours / 24 + 0.5)} days")


def handoff_reply(persona: Persona, reason_key: str, handoff: escalation_pb2.Handoff | None) -> str:
    """Says plainly that a person is taking over, with the reference and the expected wait
    when known; no question to answer (the handoff exists already)."""
    parts = [persona.message(reason_key)]
    if handoff is None:
        parts.append(persona.message("handoff_delayed"))
        return " ".join(parts)
    if handoff.reference:
        parts.append(persona.message("handoff_reference", reference=handoff.reference))
    if handoff.HasField("expected_wait"):
        wait = handoff.expected_wait.seconds + handoff.expected_wait.nanos / 1e9
        parts.append(persona.message("handoff_wait", wait=wait_in_words(wait)))
    else:
        parts.append(persona.message("handoff_no_wait"))
    return " ".join(parts)
