"""aftercare.actions.v1.ActionsService: request validation and the contract's
messages around the engine (services/actions/engine.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc

from aftercare.actions.v1 import actions_pb2, actions_pb2_grpc
from servicekit.errors import InvalidArgument, NotFound, Violations
from servicekit.ids import check_customer_id, check_id
from services.actions.engine import ActionsEngine, Actor
from services.actions.models import ActionRow
from services.actions.store import ActionFilter, decode_token, encode_token
from services.actions.views import ACTOR_NAMES, action_to_proto, event_to_proto, events_to_jsonl, state_name

MAX_TEXT_CHARS = 2_000
MAX_FINGERPRINT_CHARS = 128
# A concierge release id ("r3"), as the action's column holds it.
MAX_RELEASE_ID_CHARS = 32
ACTION_PAGE = (50, 200)
EVENT_PAGE = (100, 500)
Context = grpc.aio.ServicerContext[Any, Any]


def _actor(
    violations: Violations, actor: actions_pb2.Actor, field_path: str, *, allowed: set[int] | None = None
) -> Actor:
    # SYSTEM is aftercare itself (the reconciler): no caller speaks as it.
    allowed = allowed or {
        actions_pb2.ACTOR_KIND_CUSTOMER, actions_pb2.ACTOR_KIND_ASSISTANT, actions_pb2.ACTOR_KIND_AGENT
    }
    if actor.kind == actions_pb2.ACTOR_KIND_UNSPECIFIED or actor.kind not in ACTOR_NAMES:
        violations.add(f"{field_path}.kind", "required")
    elif actor.kind not in allowed:
        names = ", ".join(sorted(actions_pb2.ActorKind.Name(k) for k in allowed))
        violations.add(f"{field_path}.kind", f"must be one of {names}")
    if actor.kind == actions_pb2.ACTOR_KIND_AGENT or actor.id:
        check_customer_id(violations, actor.id, f"{field_path}.id")
    return Actor(ACTOR_NAMES.get(actor.kind, "UNSPECIFIED"), actor.id)


def _page_size(violations: Violations, value: int, limits: tuple[int, int]) -> int:
    default, most = limits
    violations.check(0 <= value <= most, "page_size", f"0 to {most}")
    return value or default


def _text(violations: Violations, value: str, field_path: str) -> None:
    violations.check(len(value) <= MAX_TEXT_CHARS, field_path, f"at most {MAX_TEXT_CHARS} characters")


class ActionsServicer(actions_pb2_grpc.ActionsServiceServicer):
    def __init__(self, engine: ActionsEngine) -> None:
        self._engine = engine
        self._store = engine.store

    def _action(self, row: ActionRow) -> actions_pb2.Action:
        """The action as callers see it, its arguments also masked by the tenant catalog's rules."""
        try:
            mask_fields = self._engine.catalog(row.tenant_id).mask_fields
        except NotFound:  # the tenant's catalog was removed since: the generic masking still applies
            mask_fields = frozenset()
        return action_to_proto(row, mask_fields)

    async def ListTools(
        self, request: actions_pb2.ListToolsRequest, context: Context
    ) -> actions_pb2.ListToolsResponse:
        violations = Violations()
        check_id(violations, request.tenant_id, "tenant_id")
        violations.check(request.kind in actions_pb2.ToolKind.values(), "kind", "unknown tool kind")
        violations.raise_if_any()
        catalog = self._engine.catalog(request.tenant_id)
        response = actions_pb2.ListToolsResponse(catalog_version=catalog.version)
        for tool in catalog.tools.values():
            kind = actions_pb2.TOOL_KIND_WRITE if tool.is_write else actions_pb2.TOOL_KIND_READ
            if request.kind not in (actions_pb2.TOOL_KIND_UNSPECIFIED, kind):
                continue
            response.tools.add(
                name=tool.name,
                description=tool.spec.description,
                kind=kind,
                arguments_schema_json=json.dumps(tool.spec.arguments, sort_keys=True),
                requires_verification=tool.spec.requires_verification,
                verifies_identity=tool.verifies_identity is not None,
                preconditions=[check.message.text for check in tool.preconditions],
                approval_rules=[rule.reason for rule in tool.approval],
                dry_run=self._engine.is_dry_run(catalog, tool),
            )
        return response

    async def ExecuteRead(
        self, request: actions_pb2.ExecuteReadRequest, context: Context
    ) -> actions_pb2.ExecuteReadResponse:
        violations = Violations()
        check_id(violations, request.customer.tenant_id, "customer.tenant_id")
        if request.customer.customer_id:
            check_customer_id(violations, request.customer.customer_id, "customer.customer_id")
        check_id(violations, request.conversation_id, "conversation_id")
        violations.check(bool(request.tool), "tool", "required")
        actor = _actor(violations, request.actor, "actor")
        violations.raise_if_any()
        result = await self._engine.read(
            request.customer.tenant_id, request.conversation_id, request.customer.customer_id, request.tool,
            request.arguments_json, actor,
        )
        return actions_pb2.ExecuteReadResponse(
            record_json=json.dumps(result.record, ensure_ascii=False),
            source=actions_pb2.RecordSource(
                tool=request.tool, record_id=result.record_id, catalog_version=result.catalog_version
            ),
            verified_customer_id=result.verified_customer_id,
        )

    async def ProposeAction(
        self, request: actions_pb2.ProposeActionRequest, context: Context
    ) -> actions_pb2.ProposeActionResponse:
        violations = Violations()
        check_id(violations, request.customer.tenant_id, "customer.tenant_id")
        check_customer_id(violations, request.customer.customer_id, "customer.customer_id")
        check_id(violations, request.conversation_id, "conversation_id")
        check_id(violations, request.request_id, "request_id")
        violations.check(bool(request.tool), "tool", "required")
        if request.replaces_action_id:
            check_id(violations, request.replaces_action_id, "replaces_action_id")
        if request.release_id:
            check_id(violations, request.release_id, "release_id", max_chars=MAX_RELEASE_ID_CHARS)
        actor = _actor(violations, request.actor, "actor")
        violations.raise_if_any()
        row = await self._engine.propose(
            request.customer.tenant_id, request.conversation_id, request.customer.customer_id, request.tool,
            request.arguments_json, request.request_id, actor, request.replaces_action_id,
            release_id=request.release_id,
        )
        return actions_pb2.ProposeActionResponse(action=self._action(row))

    async def ConfirmAction(
        self, request: actions_pb2.ConfirmActionRequest, context: Context
    ) -> actions_pb2.ConfirmActionResponse:
        violations = Violations()
        check_id(violations, request.tenant_id, "tenant_id")
        check_id(violations, request.action_id, "action_id")
        check_id(violations, request.conversation_id, "conversation_id")
        violations.check(0 < len(request.fingerprint) <= MAX_FINGERPRINT_CHARS, "fingerprint", "required")
        _text(violations, request.confirmation_text, "confirmation_text")
        # A yes is the customer's (relayed by the assistant), or an agent's on the copilot path.
        actor = _actor(violations, request.actor, "actor",
                       allowed={actions_pb2.ACTOR_KIND_CUSTOMER, actions_pb2.ACTOR_KIND_AGENT})
        violations.raise_if_any()
        row = await self._engine.confirm(
            request.tenant_id, request.action_id, request.fingerprint, request.confirmation_text, actor,
            request.conversation_id,
        )
        return actions_pb2.ConfirmActionResponse(action=self._action(row))

    async def CancelAction(
        self, request: actions_pb2.CancelActionRequest, context: Context
    ) -> actions_pb2.CancelActionResponse:
        violations = Violations()
        check_id(violations, request.tenant_id, "tenant_id")
        check_id(violations, request.action_id, "action_id")
        _text(violations, request.reason, "reason")
        actor = _actor(violations, request.actor, "actor")
        violations.raise_if_any()
        row = await self._engine.cancel(request.tenant_id, request.action_id, request.reason, actor)
        return actions_pb2.CancelActionResponse(action=self._action(row))

    async def DecideApproval(
        self, request: actions_pb2.DecideApprovalRequest, context: Context
    ) -> actions_pb2.DecideApprovalResponse:
        violations = Violations()
        check_id(violations, request.tenant_id, "tenant_id")
        check_id(violations, request.action_id, "action_id")
        check_customer_id(violations, request.agent_id, "agent_id")
        violations.check(
            request.decision in (actions_pb2.APPROVAL_DECISION_APPROVE, actions_pb2.APPROVAL_DECISION_REJECT),
            "decision", "APPROVAL_DECISION_APPROVE or APPROVAL_DECISION_REJECT",
        )
        _text(violations, request.note, "note")
        violations.raise_if_any()
        row = await self._engine.decide(
            request.tenant_id, request.action_id, request.decision == actions_pb2.APPROVAL_DECISION_APPROVE,
            request.agent_id, request.note,
        )
        return actions_pb2.DecideApprovalResponse(action=self._action(row))

    async def GetAction(
        self, request: actions_pb2.GetActionRequest, context: Context
    ) -> actions_pb2.GetActionResponse:
        violations = Violations()
        check_id(violations, request.tenant_id, "tenant_id")
        check_id(violations, request.action_id, "action_id")
        violations.raise_if_any()
        row = await self._engine.get_action(request.tenant_id, request.action_id)
        return actions_pb2.GetActionResponse(action=self._action(row))

    def _filter(self, violations: Violations, request: actions_pb2.ListActionsRequest
                | actions_pb2.ListAuditEventsRequest | actions_pb2.ExportAuditRequest) -> None:
        check_id(violations, request.tenant_id, "tenant_id")
        if request.conversation_id:
            check_id(violations, request.conversation_id, "conversation_id")
        if request.customer_id:
            check_customer_id(violations, request.customer_id, "customer_id")

    async def ListActions(
        self, request: actions_pb2.ListActionsRequest, context: Context
    ) -> actions_pb2.ListActionsResponse:
        violations = Violations()
        self._filter(violations, request)
        size = _page_size(violations, request.page_size, ACTION_PAGE)
        known = set(actions_pb2.ActionState.values()) - {actions_pb2.ACTION_STATE_UNSPECIFIED}
        violations.check(all(s in known for s in request.states), "states", "unknown state")
        states = [state_name(s) for s in request.states if s in known]
        token = decode_token(request.page_token) if request.page_token else None
        violations.check(not request.page_token or (token is not None and {"t", "a"} <= set(token)),
                         "page_token", "not a token of this list")
        violations.raise_if_any()
        selection = ActionFilter(request.tenant_id, request.conversation_id, request.customer_id, states=states)
        rows, next_token = await asyncio.to_thread(self._store.list_actions, selection, size, token)
        return actions_pb2.ListActionsResponse(actions=[self._action(r) for r in rows], next_page_token=next_token)

    async def ListAuditEvents(
        self, request: actions_pb2.ListAuditEventsRequest, context: Context
    ) -> actions_pb2.ListAuditEventsResponse:
        violations = Violations()
        self._filter(violations, request)
        if request.action_id:
            check_id(violations, request.action_id, "action_id")
        size = _page_size(violations, request.page_size, EVENT_PAGE)
        token = decode_token(request.page_token) if request.page_token else {"s": 0}
        after = token.get("s") if token is not None else None
        violations.check(isinstance(after, int) and after >= 0, "page_token", "not a token of this list")
        violations.raise_if_any()
        assert isinstance(after, int)
        selection = ActionFilter(request.tenant_id, request.conversation_id, request.customer_id, request.action_id)
        rows, last = await asyncio.to_thread(self._store.list_events, selection, size, after)
        return actions_pb2.ListAuditEventsResponse(
            events=[event_to_proto(r) for r in rows], next_page_token=encode_token({"s": last}) if last else ""
        )

    async def ExportAudit(
        self, request: actions_pb2.ExportAuditRequest, context: Context
    ) -> AsyncIterator[actions_pb2.ExportAuditResponse]:
        violations = Violations()
        self._filter(violations, request)
        violations.raise_if_any()
        since = request.since.ToDatetime(tzinfo=dt.UTC) if request.HasField("since") else None
        until = request.until.ToDatetime(tzinfo=dt.UTC) if request.HasField("until") else None
        if since is not None and until is not None and until <= since:
            raise InvalidArgument([("until", "must be after since")])
        selection = ActionFilter(request.tenant_id, request.conversation_id, request.customer_id, since=since,
                                 until=until)
        batches = self._store.iter_events(selection)
        while True:
            batch = await asyncio.to_thread(next, batches, None)
            if batch is None:
                return
            yield actions_pb2.ExportAuditResponse(jsonl=events_to_jsonl(batch), event_count=len(batch))
