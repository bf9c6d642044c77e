"""What the concierge's RPCs accept: ids in the shared grammar, a message's text within
bounds, a rating the store knows. Each refusal names its field."""

from __future__ import annotations

from aftercare.concierge.v1 import concierge_pb2
from aftercare.type.v1 import customer_pb2
from servicekit.errors import Violations
from servicekit.ids import check_customer_id, check_id

MAX_TEXT_CHARS = 4000
RATINGS = frozenset({concierge_pb2.TURN_RATING_HELPFUL, concierge_pb2.TURN_RATING_NOT_HELPFUL})


def check_conversation(
    violations: Violations, customer: customer_pb2.CustomerRef, conversation_id: str, prefix: str = ""
) -> None:
    check_id(violations, conversation_id, f"{prefix}conversation_id")
    check_id(violations, customer.tenant_id, f"{prefix}customer.tenant_id")
    check_customer_id(violations, customer.customer_id, f"{prefix}customer.customer_id")


def validate(request: concierge_pb2.ConverseRequest, prefix: str = "") -> None:
    violations = Violations()
    check_conversation(violations, request.customer, request.conversation_id, prefix)
    violations.check(bool(request.text.strip()), f"{prefix}text", "must not be empty")
    violations.check(len(request.text) <= MAX_TEXT_CHARS, f"{prefix}text",
                     f"must be at most {MAX_TEXT_CHARS} characters")
    # NUL is no text: the stores and retrieval refuse it, so it is refused here, by field.
    violations.check("\x00" not in request.text, f"{prefix}text", "must not contain NUL characters")
    if request.client_message_id:
        check_id(violations, request.client_message_id, f"{prefix}client_message_id")
    if request.HasField("action_reply"):
        reply = request.action_reply
        for name, value in (("action_id", reply.action_id), ("fingerprint", reply.fingerprint)):
            violations.check(0 < len(value) <= 128, f"{prefix}action_reply.{name}", "must be 1 to 128 characters")
    violations.raise_if_any()


def validate_get(request: concierge_pb2.GetConversationRequest) -> None:
    violations = Violations()
    check_conversation(violations, request.customer, request.conversation_id)
    violations.raise_if_any()


def validate_rating(request: concierge_pb2.RateTurnRequest) -> None:
    violations = Violations()
    check_conversation(violations, request.customer, request.conversation_id)
    violations.check(request.turn_index >= 0, "turn_index", "must be 0 or more")
    violations.check(request.rating in RATINGS, "rating", "must be TURN_RATING_HELPFUL or TURN_RATING_NOT_HELPFUL")
    violations.raise_if_any()
