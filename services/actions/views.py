"""Stored rows as the contract's messages, and the audit export's JSON Lines."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

from google.protobuf import json_format, timestamp_pb2

from aftercare.actions.v1 import actions_pb2
from services.actions.models import ActionRow, AuditEventRow
from services.actions.records import masked_json

ACTOR_KINDS = {
    "CUSTOMER": actions_pb2.ACTOR_KIND_CUSTOMER,
    "ASSISTANT": actions_pb2.ACTOR_KIND_ASSISTANT,
    "AGENT": actions_pb2.ACTOR_KIND_AGENT,
    "SYSTEM": actions_pb2.ACTOR_KIND_SYSTEM,
}
ACTOR_NAMES = {value: name for name, value in ACTOR_KINDS.items()}


def _timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def state_name(state: int) -> str:
    return actions_pb2.ActionState.Name(state).removeprefix("ACTION_STATE_")


def action_to_proto(row: ActionRow, mask_fields: frozenset[str] = frozenset()) -> actions_pb2.Action:
    """`mask_fields`: the tenant catalog's fields the audit trail masks (for masked_arguments_json)."""
    action = actions_pb2.Action(
        action_id=row.action_id,
        tenant_id=row.tenant_id,
        customer_id=row.customer_id,
        conversation_id=row.conversation_id,
        tool=row.tool,
        arguments_json=row.arguments_json,
        summary=row.summary,
        fingerprint=row.fingerprint,
        state=actions_pb2.ActionState.Value(f"ACTION_STATE_{row.state}"),  # type: ignore[arg-type]
        approval=actions_pb2.Approval(
            required=row.needs_approval,
            reasons=json.loads(row.approval_reasons),
            decided_by=row.decided_by,
            note=row.decision_note,
            decided_at=_timestamp(row.decided_at),
        ),
        dry_run=row.dry_run,
        result_json=row.result_json,
        catalog_version=row.catalog_version,
        idempotency_key=row.idempotency_key,
        attempts=row.attempts,
        created_at=_timestamp(row.created_at),
        updated_at=_timestamp(row.updated_at),
        replaces_action_id=row.replaces_action_id,
        release_id=row.release_id or "",
        expires_at=_timestamp(row.expires_at),
        masked_arguments_json=masked_json(json.loads(row.arguments_json), mask_fields) if row.arguments_json else "",
    )
    if row.error_reason:
        action.error.CopyFrom(
            actions_pb2.ActionError(
                reason=row.error_reason, message=row.error_message, may_have_executed=row.may_have_executed
            )
        )
    return action


def event_to_proto(row: AuditEventRow) -> actions_pb2.AuditEvent:
    return actions_pb2.AuditEvent(
        sequence=row.sequence,
        tenant_id=row.tenant_id,
        action_id=row.action_id,
        conversation_id=row.conversation_id,
        customer_id=row.customer_id,
        kind=actions_pb2.AuditEventKind.Value(f"AUDIT_EVENT_KIND_{row.kind}"),  # type: ignore[arg-type]
        actor=actions_pb2.Actor(kind=ACTOR_KINDS.get(row.actor_kind, actions_pb2.ACTOR_KIND_UNSPECIFIED),
                                id=row.actor_id),
        tool=row.tool,
        arguments_json=row.arguments_json,
        result_json=row.result_json,
        detail=row.detail,
        trace_id=row.trace_id,
        catalog_version=row.catalog_version,
        dry_run=row.dry_run,
        occurred_at=_timestamp(row.occurred_at),
    )


def events_to_jsonl(rows: Iterable[AuditEventRow]) -> str:
    """One JSON object per line, under the proto field names, every field present."""
    lines = [
        json.dumps(
            json_format.MessageToDict(
                event_to_proto(row), preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            ),
            ensure_ascii=False,
            sort_keys=True,
        )
        for row in rows
    ]
    return "".join(line + "\n" for line in lines)
