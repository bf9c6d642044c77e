"""Bodies of the models router (gateway/routes/models.py): a tenant's intent model, its
retrain as a long-running operation, and the operations themselves (AIP-151 as JSON).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import grpc
from pydantic import BaseModel, Field

from aftercare.operations.v1 import operations_pb2
from aftercare.triage.v1 import triage_pb2
from gateway.schemas.common import RequestBody, enum_name, time_field

# What triage accepts (services/triage/intent_training.py); triage checks it again.
MAX_TEXT_CHARS = 8000
MAX_LABEL_CHARS = 128
MAX_EXAMPLES = 100_000
# Operation ids as triage makes them (servicekit/operations.py).
OPERATION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

RetrainStateName = Literal["unspecified", "queued", "running", "succeeded", "failed", "cancelled"]


class LabeledExampleIn(RequestBody):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, examples=["I was charged twice this month"])
    label: str = Field(min_length=1, max_length=MAX_LABEL_CHARS, examples=["billing_issue"])


class RetrainRequest(RequestBody):
    """Labelled examples of every intent the new model knows (it replaces the old one's taxonomy):
    at least two labels, at least 5 examples each (the service's setting)."""

    examples: list[LabeledExampleIn] = Field(min_length=1, max_length=MAX_EXAMPLES)

    def to_proto(self, tenant_id: str) -> triage_pb2.StartRetrainRequest:
        return triage_pb2.StartRetrainRequest(
            tenant_id=tenant_id,
            examples=[triage_pb2.LabeledExample(text=e.text, label=e.label) for e in self.examples],
        )


class RetrainProgress(BaseModel):
    """A retrain operation's metadata: where it stands."""

    type: Literal["aftercare.triage.v1.RetrainMetadata"] = "aftercare.triage.v1.RetrainMetadata"
    tenant_id: str
    state: RetrainStateName
    progress_percent: int = Field(description="0 to 100.")
    step: str = Field(description="The step it is on, e.g. 'encoding 4000/10003 examples'.")
    examples: int
    attempts: int = Field(description="How many times a replica started it (2 or more after a takeover).")
    replica: str = Field(description="The replica running it; empty while queued or once done.")
    start_time: datetime | None = Field(description="When its current attempt started.")
    end_time: datetime | None

    @classmethod
    def from_proto(cls, metadata: triage_pb2.RetrainMetadata) -> RetrainProgress:
        return cls(
            tenant_id=metadata.tenant_id,
            state=enum_name(triage_pb2.RetrainState, metadata.state),
            progress_percent=metadata.progress_percent,
            step=metadata.step,
            examples=metadata.examples,
            attempts=metadata.attempts,
            replica=metadata.replica,
            start_time=time_field(metadata, "start_time"),
            end_time=time_field(metadata, "end_time"),
        )


class RetrainResult(BaseModel):
    """A retrain operation's response: the new version, its validation figures, whether it serves."""

    type: Literal["aftercare.triage.v1.RetrainResponse"] = "aftercare.triage.v1.RetrainResponse"
    model_version: str
    promoted: bool = Field(description="True when it validated at least as well as the serving version and serves.")
    validation_accuracy: float
    validation_ece: float


class OperationError(BaseModel):
    code: int = Field(description="gRPC status code (1 cancelled, 3 invalid argument, 13 internal...).")
    status: str = Field(description="The code's name, e.g. 'CANCELLED'.")
    message: str


def _code_name(code: int) -> str:
    return next((status.name for status in grpc.StatusCode if status.value[0] == code), "UNKNOWN")


class Operation(BaseModel):
    """A long-running operation: poll it (GET its location) until `done`."""

    name: str = Field(description="tenants/{tenant_id}/operations/{operation_id}.")
    id: str = Field(description="The operation id, as in its URL.")
    done: bool
    metadata: RetrainProgress | None
    response: RetrainResult | None = Field(description="Once done and succeeded.")
    error: OperationError | None = Field(description="Once done and failed or cancelled.")
    create_time: datetime | None
    update_time: datetime | None = Field(description="When its state or progress last changed.")

    @classmethod
    def from_proto(cls, operation: operations_pb2.Operation) -> Operation:
        metadata = triage_pb2.RetrainMetadata()
        response = triage_pb2.RetrainResponse()
        result = operation.WhichOneof("result")
        return cls(
            name=operation.name,
            id=operation.name.rsplit("/", 1)[-1],
            done=operation.done,
            metadata=RetrainProgress.from_proto(metadata) if operation.metadata.Unpack(metadata) else None,
            response=(
                RetrainResult(
                    model_version=response.model_version,
                    promoted=response.promoted,
                    validation_accuracy=response.validation_accuracy,
                    validation_ece=response.validation_ece,
                )
                if result == "response" and operation.response.Unpack(response)
                else None
            ),
            error=(
                OperationError(
                    code=operation.error.code, status=_code_name(operation.error.code), message=operation.error.message
                )
                if result == "error"
                else None
            ),
            create_time=time_field(operation, "create_time"),
            update_time=time_field(operation, "update_time"),
        )


class OperationsReply(BaseModel):
    operations: list[Operation] = Field(description="Newest first.")
    next_page_token: str | None

    @classmethod
    def from_proto(cls, response: operations_pb2.ListOperationsResponse) -> OperationsReply:
        return cls(
            operations=[Operation.from_proto(o) for o in response.operations],
            next_page_token=response.next_page_token or None,
        )


class IntentModelReply(BaseModel):
    serving_version: str = Field(description="The version the replica that answered serves; empty when none.")
    current_version: str = Field(description="The version the shared model store says serves.")
    versions: list[str] = Field(description="Every stored version, oldest first.")
    replica: str = Field(description="The triage replica that answered.")
    loaded_at: datetime | None = Field(description="When that replica loaded the version it serves.")

    @classmethod
    def from_proto(cls, response: triage_pb2.GetIntentModelResponse) -> IntentModelReply:
        return cls(
            serving_version=response.serving_version,
            current_version=response.current_version,
            versions=list(response.versions),
            replica=response.replica,
            loaded_at=time_field(response, "loaded_at"),
        )
