"""Types every router's schemas share: ids, ISO date-times, the lowercase enum names and
proto time conversions, the strict request base, citations and the problem body.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from aftercare.type.v1 import answer_pb2
from servicekit.ids import CUSTOMER_ID_PATTERN, ID_PATTERN

# Ids in paths and bodies: what conversation ids, tenant ids and handoff ids look like
# (the grammar every service checks: servicekit.ids).
Id = Annotated[str, Field(pattern=ID_PATTERN, examples=["demo"])]
# The tenant's id of an end customer: the same grammar, up to 200 characters.
CustomerId = Annotated[str, Field(pattern=CUSTOMER_ID_PATTERN, examples=["web-3f9a1c"])]


def _iso_text_only(value: object) -> object:
    # pydantic also reads numbers (and numeric strings) as Unix times; an API
    # that documents ISO 8601 date-times refuses them rather than guess.
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and re.match(r"\d{4}-\d{2}-\d{2}", value):
        return value
    raise ValueError("must be an ISO 8601 date-time, e.g. 2026-11-24T09:30:00Z")


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_text_only)]


# --- enums -----------------------------------------------------------------


def enum_name(enum: Any, number: int) -> Any:
    """Lowercase value name without the enum's prefix; "unspecified" for numbers
    this build does not know (a newer backend), so a response still renders.
    Typed Any because the response model's Literal field is what checks it."""
    descriptor = enum.DESCRIPTOR
    prefix = descriptor.values_by_number[0].name.removesuffix("UNSPECIFIED")
    value = descriptor.values_by_number.get(number)
    return value.name.removeprefix(prefix).lower() if value is not None else "unspecified"


def proto_enum(enum: Any, name: str) -> str:
    """The full proto value name of a lowercase, prefix-less one ("chat" -> "CHANNEL_CHAT");
    protobuf constructors accept value names."""
    prefix = enum.DESCRIPTOR.values_by_number[0].name.removesuffix("UNSPECIFIED")
    full_name: str = enum.DESCRIPTOR.values_by_name[prefix + name.upper()].name
    return full_name


def to_timestamp(moment: datetime | None) -> Timestamp | None:
    """A proto Timestamp; a naive datetime is taken as UTC."""
    if moment is None:
        return None
    timestamp = Timestamp()
    timestamp.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return timestamp


def time_field(message: ProtoMessage, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    timestamp: Timestamp = getattr(message, field)
    moment: datetime = timestamp.ToDatetime(tzinfo=UTC)
    return moment


def whole_seconds(message: ProtoMessage, field: str) -> int | None:
    """A Duration field in whole seconds, rounded up (a wait is never shown shorter); None when unset."""
    if not message.HasField(field):
        return None
    duration: Duration = getattr(message, field)
    return math.ceil(duration.ToTimedelta().total_seconds())


def json_or_none(text: str) -> Any:
    """A JSON document a service wrote, parsed; None when empty. Text that is not JSON (never
    expected) is shown as the string it is rather than failing the whole response."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


class RequestBody(BaseModel):
    # Unknown fields are refused: a misspelt optional field would otherwise be ignored silently.
    # Numbers and flags are strict (StrictInt, StrictBool): JSON `false` is not 0, "5" is not 5.
    model_config = ConfigDict(extra="forbid")


class RecordRef(BaseModel):
    """A record of the company's systems that an answer used (through the actions service)."""

    kind: str = Field(description="Kind of record, as the tenant's action catalog names it, e.g. 'order'.")
    id: str = Field(description="The record's id in that system, e.g. '#W2378156'.")
    tool: str = Field(description="The catalog tool that read it, e.g. 'get_order_details'.")


class Citation(BaseModel):
    doc_id: str
    chunk_id: str
    title: str
    url: str
    score: float
    # Absent rather than null when unset: a knowledge-base citation reads as it always has.
    record: RecordRef | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Present only when the statement comes from the customer's own record (doc_id is then empty).",
    )

    @classmethod
    def from_proto(cls, citation: answer_pb2.Citation) -> Citation:
        record = citation.record
        return cls(
            doc_id=citation.doc_id,
            chunk_id=citation.chunk_id,
            title=citation.title,
            url=citation.url,
            score=citation.score,
            record=RecordRef(kind=record.kind, id=record.id, tool=record.tool) if citation.HasField("record") else None,
        )


class FieldError(BaseModel):
    field: str = Field(description="Path of the offending field, e.g. 'body.text'.")
    description: str


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (media type application/problem+json)."""

    type: str = "about:blank"
    title: str = Field(description="HTTP status phrase.")
    status: int
    detail: str = Field(description="What went wrong, for a human.")
    reason: str = Field(description="Stable machine-readable reason, e.g. 'INVALID_ARGUMENT'.")
    trace_id: str = Field(description="OpenTelemetry trace id of the request; quote it when reporting.")
    errors: list[FieldError] | None = Field(default=None, description="Every invalid field, for 400.")
