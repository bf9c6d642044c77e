"""The life of an action, and reads: verification, ownership, preconditions,
approval, exactly-once execution, reconciliation and the audit trail.

Exactly once: each action has one idempotency key, sent as `Idempotency-Key`
with every attempt. Before a request leaves, the action is EXECUTING in the
database (a compare-and-set, so one caller of many gets to send) with a lease
and an attempt number; the outcome is recorded only by the attempt that
claimed it. A process that dies between the call and the record leaves the
action EXECUTING; when its lease runs out the reconciler re-sends the same key,
and the company's system answers from its idempotency store instead of acting
twice. An answer that may have come after the system acted (a timeout, a 5xx)
is handled the same way: RETRYABLE, re-sent with the same key, never assumed undone.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import structlog

from servicekit import deadlines, pii
from servicekit.database import utcnow
from servicekit.errors import ApiError, FailedPrecondition, NotFound, Unavailable
from servicekit.tracing import current_trace_id
from services.actions.catalog import Catalog, Tool
from services.actions.connector import ConnectorError, HttpConnector
from services.actions.errors import PermissionDenied, PreconditionsFailed
from services.actions.expressions import ExpressionError
from services.actions.models import ActionRow
from services.actions.records import (
    Records,
    approval_reasons,
    base_env,
    build_call,
    canonical_json,
    masked_json,
    parse_arguments,
    project,
    summary,
)
from services.actions.settings import ActionsSettings
from services.actions.store import NEXT_ATTEMPT, ActionsStore, Event

log = structlog.get_logger("services.actions")
T = TypeVar("T")

PENDING = ("PROPOSED", "AWAITING_APPROVAL")
_DETAIL_CHARS = 500


@dataclass(frozen=True)
class Actor:
    kind: str
    id: str = ""


SYSTEM = Actor("SYSTEM", "reconciler")


@dataclass(frozen=True)
class ReadResult:
    record: Any
    record_id: str
    verified_customer_id: str
    catalog_version: str


def fingerprint(values: Mapping[str, Any]) -> str:
    """What the customer says yes to: this action, these arguments, this summary."""
    keys = ("action_id", "tenant_id", "customer_id", "conversation_id", "tool", "arguments_json", "summary")
    return hashlib.sha256(canonical_json({key: values[key] for key in keys}).encode()).hexdigest()


class ActionsEngine:
    def __init__(
        self,
        store: ActionsStore,
        catalogs: Mapping[str, Catalog],
        connector: HttpConnector,
        settings: ActionsSettings,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._store = store
        self._catalogs = dict(catalogs)
        self._connector = connector
        self._records = Records(connector)
        self._settings = settings
        self._clock = clock
        self._settled: dict[str, asyncio.Event] = {}
        # Executions run to their end even when the caller hangs up (shielded); kept referenced here.
        self._executions: set[asyncio.Task[ActionRow]] = set()

    @property
    def store(self) -> ActionsStore:
        return self._store

    # --- catalog ---------------------------------------------------------------

    def catalog(self, tenant_id: str) -> Catalog:
        catalog = self._catalogs.get(tenant_id)
        if catalog is None:
            raise NotFound(f"tenant {tenant_id!r} has no action catalog", reason="CATALOG_NOT_FOUND")
        return catalog

    def tool(self, catalog: Catalog, name: str, *, write: bool) -> Tool:
        tool = catalog.tool(name)
        if tool is None:
            raise NotFound(f"the catalog of {catalog.tenant_id!r} has no tool {name!r}", reason="UNKNOWN_TOOL")
        if tool.is_write != write:
            use = "ProposeAction and ConfirmAction" if tool.is_write else "ExecuteRead"
            raise FailedPrecondition(f"{name} is a {tool.spec.kind} tool: use {use}", reason="WRONG_TOOL_KIND")
        return tool

    def is_dry_run(self, catalog: Catalog, tool: Tool) -> bool:
        return tool.dry_run or catalog.tenant_id in self._settings.dry_run_tenant_ids

    # --- helpers ---------------------------------------------------------------

    async def _db(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(function, *args, **kwargs)

    def _event(
        self,
        kind: str,
        catalog: Catalog,
        actor: Actor,
        *,
        action: ActionRow | None = None,
        conversation_id: str = "",
        customer_id: str = "",
        tool: str = "",
        arguments: Any = None,
        result: Any = None,
        detail: str = "",
        dry_run: bool = False,
    ) -> Event:
        if action is not None:
            conversation_id, customer_id, tool = action.conversation_id, action.customer_id, action.tool
            arguments = json.loads(action.arguments_json)
            dry_run = dry_run or action.dry_run
        return Event(
            tenant_id=catalog.tenant_id,
            kind=kind,
            actor_kind=actor.kind,
            actor_id=actor.id,
            action_id=action.action_id if action is not None else "",
            conversation_id=conversation_id,
            customer_id=customer_id,
            tool=tool,
            arguments_json=masked_json(arguments, catalog.mask_fields),
            result_json=masked_json(result, catalog.mask_fields),
            detail=pii.mask(detail)[:_DETAIL_CHARS],
            trace_id=current_trace_id(),
            catalog_version=catalog.version,
            dry_run=dry_run,
        )

    async def _refuse(self, error: ApiError, catalog: Catalog, actor: Actor, **fields: Any) -> NoReturn:
        """Record a refusal in the audit trail, then refuse."""
        detail = f"{error.reason}: {error.message}"
        await self._db(self._store.append, self._event("REFUSED", catalog, actor, detail=detail, **fields))
        raise error

    async def get_action(self, tenant_id: str, action_id: str) -> ActionRow:
        row = await self._db(self._store.get, action_id)
        if row is None or row.tenant_id != tenant_id:
            raise NotFound(f"no action {action_id!r}", reason="ACTION_NOT_FOUND")
        return row

    def _lease(self, tool: Tool | None, calls: int = 1) -> dt.datetime:
        timeout = tool.timeout_s if tool is not None else 30.0
        return self._clock() + dt.timedelta(seconds=timeout * calls + self._settings.lease_grace_s)

    def _backoff(self, attempt: int) -> dt.datetime:
        delay = min(self._settings.retry_backoff_cap_s, self._settings.retry_backoff_s * 2 ** min(attempt, 16))
        return self._clock() + dt.timedelta(seconds=delay)

    async def _verified(self, catalog: Catalog, conversation_id: str) -> str | None:
        return await self._db(self._store.verified_customer, catalog.tenant_id, conversation_id)

    async def _check_identity(
        self, catalog: Catalog, actor: Actor, conversation_id: str, customer_id: str, **fields: Any
    ) -> str:
        """The conversation's verified customer, who must be the one the caller names."""
        verified = await self._verified(catalog, conversation_id)
        if verified is None:
            await self._refuse(
                FailedPrecondition(
                    "the customer's identity is not verified in this conversation; verify it first",
                    reason="IDENTITY_NOT_VERIFIED",
                ),
                catalog, actor, conversation_id=conversation_id, customer_id=customer_id, **fields,
            )
        if customer_id and customer_id != verified:
            await self._refuse(
                PermissionDenied(
                    "this conversation is verified as another customer; one customer per conversation",
                    reason="ANOTHER_CUSTOMER",
                ),
                catalog, actor, conversation_id=conversation_id, customer_id=str(verified), **fields,
            )
        return str(verified)

    # --- reads -----------------------------------------------------------------

    async def read(
        self, tenant_id: str, conversation_id: str, customer_id: str, tool_name: str, arguments_json: str, actor: Actor
    ) -> ReadResult:
        catalog = self.catalog(tenant_id)
        tool = self.tool(catalog, tool_name, write=False)
        arguments = parse_arguments(tool, arguments_json)
        fields: dict[str, Any] = {"tool": tool.name, "arguments": arguments}
        verified = await self._verified(catalog, conversation_id)
        if tool.spec.requires_verification:
            verified = await self._check_identity(catalog, actor, conversation_id, customer_id, **fields)
        try:
            fetched = await self._records.fetch(catalog, tool, arguments, verified)
        except PermissionDenied as error:
            await self._refuse(error, catalog, actor, conversation_id=conversation_id, customer_id=verified or "",
                               **fields)
        record = project(fetched.record, tool.spec.keep)
        if tool.verifies_identity is None:
            event = self._event("READ", catalog, actor, conversation_id=conversation_id, customer_id=verified or "",
                                detail=fetched.record_id, **fields)
            await self._db(self._store.append, event)
            return ReadResult(record, fetched.record_id, "", catalog.version)
        try:
            identity = tool.verifies_identity.evaluate({**arguments, "record": fetched.record})
        except ExpressionError:
            identity = None
        if not isinstance(identity, str) or not identity:
            raise FailedPrecondition(f"{tool.name} returned no customer", reason="NO_IDENTITY")
        event = self._event("IDENTITY_VERIFIED", catalog, actor, conversation_id=conversation_id,
                            customer_id=identity, detail=f"verified by {tool.name}", **fields)
        stored = await self._db(self._store.verify, tenant_id, conversation_id, identity, tool.name, event)
        if stored != identity:
            await self._refuse(
                PermissionDenied(
                    "this conversation is verified as another customer; one customer per conversation",
                    reason="ANOTHER_CUSTOMER",
                ),
                catalog, actor, conversation_id=conversation_id, customer_id=stored, **fields,
            )
        return ReadResult(record, fetched.record_id or identity, identity, catalog.version)

    # --- proposals ---------------------------------------------------------------

    async def propose(
        self,
        tenant_id: str,
        conversation_id: str,
        customer_id: str,
        tool_name: str,
        arguments_json: str,
        request_id: str,
        actor: Actor,
        replaces_action_id: str = "",
        release_id: str = "",
    ) -> ActionRow:
        """Store a proposal for the customer's yes. `release_id`: the concierge release that
        proposed it (lineage; not part of what the customer says yes to, so not fingerprinted)."""
        catalog = self.catalog(tenant_id)
        tool = self.tool(catalog, tool_name, write=True)
        arguments = parse_arguments(tool, arguments_json)
        canonical = canonical_json(arguments)
        existing = await self._db(self._store.by_request, tenant_id, conversation_id, request_id)
        if existing is not None:
            if existing.tool == tool.name and existing.arguments_json == canonical:
                return existing
            raise FailedPrecondition("request_id was used for another proposal", reason="REQUEST_ID_REUSED")
        fields: dict[str, Any] = {"tool": tool.name, "arguments": arguments}
        verified = await self._check_identity(catalog, actor, conversation_id, customer_id, **fields)
        replaced: ActionRow | None = None
        if replaces_action_id:
            replaced = await self.get_action(tenant_id, replaces_action_id)
            if replaced.conversation_id != conversation_id:
                raise NotFound(f"no action {replaces_action_id!r} in this conversation", reason="ACTION_NOT_FOUND")
            if replaced.state not in PENDING:
                raise FailedPrecondition(
                    f"action {replaces_action_id} is {replaced.state.lower()} and can no longer be revised",
                    reason="NOT_REVISABLE",
                )
        try:
            env = await self._records.gather(catalog, tool, arguments, verified)
        except (PermissionDenied, PreconditionsFailed) as error:
            await self._refuse(error, catalog, actor, conversation_id=conversation_id, customer_id=verified, **fields)
        reasons = approval_reasons(tool, env)
        now = self._clock()
        action_id = str(uuid.uuid4())
        values: dict[str, Any] = {
            "action_id": action_id,
            "tenant_id": tenant_id,
            "conversation_id": conversation_id,
            "customer_id": verified,
            "request_id": request_id,
            "tool": tool.name,
            "arguments_json": canonical,
            "summary": summary(tool, env),
            "state": "PROPOSED",
            "needs_approval": bool(reasons),
            "approval_reasons": json.dumps(reasons),
            "decided_by": "",
            "decision_note": "",
            "dry_run": self.is_dry_run(catalog, tool),
            "result_json": "",
            "error_reason": "",
            "error_message": "",
            "may_have_executed": False,
            "catalog_version": catalog.version,
            "idempotency_key": f"aftercare-action-{action_id}",
            "attempts": 0,
            "replaces_action_id": replaces_action_id,
            "release_id": release_id,
            "trace_id": current_trace_id(),
            "expires_at": now + dt.timedelta(seconds=self._settings.proposal_ttl_s),
        }
        values["fingerprint"] = fingerprint(values)
        common = {"conversation_id": conversation_id, "customer_id": verified, **fields}
        proposed = self._event(
            "PROPOSED", catalog, actor, result={"needs_approval": bool(reasons), "approval_reasons": reasons},
            detail=f"action {action_id}, fingerprint {values['fingerprint'][:16]}"
            + (f", release {release_id}" if release_id else ""),
            dry_run=values["dry_run"],
            **common,
        )
        revision = None
        if replaced is not None:
            cancelled = self._event("CANCELLED", catalog, actor, action=replaced, detail=f"revised by {action_id}")
            revision = (replaced.action_id, cancelled)
        row, _ = await self._db(self._store.insert, values, [_with_action(proposed, action_id)], replaces=revision)
        return row

    # --- the customer's yes --------------------------------------------------------

    async def confirm(
        self, tenant_id: str, action_id: str, given_fingerprint: str, text: str, actor: Actor, conversation_id: str
    ) -> ActionRow:
        row = await self.get_action(tenant_id, action_id)
        catalog = self.catalog(tenant_id)
        if conversation_id != row.conversation_id:
            await self._refuse(
                PermissionDenied("the yes was given in another conversation", reason="WRONG_CONVERSATION"),
                catalog, actor, action=row,
            )
        if given_fingerprint != row.fingerprint:
            await self._refuse(
                FailedPrecondition(
                    "the confirmation is for other details than the proposed action; "
                    "show the customer this action's summary and ask again",
                    reason="CONFIRMATION_MISMATCH",
                    metadata={"action_id": action_id},
                ),
                catalog, actor, action=row,
            )
        tool = catalog.tool(row.tool)
        for _ in range(8):
            if row.state == "PROPOSED":
                now = self._clock()
                if row.expires_at <= now:
                    await self._expire(row, catalog)
                confirmed = self._event("CONFIRMED", catalog, actor, action=row, detail=text)
                if row.needs_approval:
                    reasons = "; ".join(json.loads(row.approval_reasons))
                    requested = self._event("APPROVAL_REQUESTED", catalog, SYSTEM, action=row, detail=reasons)
                    moved = await self._db(self._store.transition, action_id, ["PROPOSED"], "AWAITING_APPROVAL",
                                           [confirmed, requested], not_expired_at=now)
                    if moved is not None:
                        return moved
                else:
                    executing = self._event("EXECUTING", catalog, actor, action=row, detail="attempt 1")
                    moved = await self._db(
                        self._store.transition, action_id, ["PROPOSED"], "EXECUTING", [confirmed, executing],
                        not_expired_at=now, attempts=NEXT_ATTEMPT,
                        lease_expires_at=self._lease(tool, 1 + len(tool.reads) if tool else 1),
                    )
                    if moved is not None:
                        return await self._run(moved, catalog, actor, recheck=True)
            elif row.state == "RETRYABLE":
                moved = await self._claim_retry(row, catalog, actor, "the customer confirmed again")
                if moved is not None:
                    return await self._run(moved, catalog, actor, recheck=not row.may_have_executed)
            elif row.state == "EXECUTING":
                return await self._wait_settled(row)
            elif row.state in ("CANCELLED", "REJECTED"):
                raise FailedPrecondition(
                    f"the action was {row.state.lower()}; it will not run",
                    reason=f"ACTION_{row.state}",
                    metadata={"action_id": action_id, "state": row.state},
                )
            else:
                # SUCCEEDED, FAILED, AWAITING_APPROVAL: the stored outcome, never a second execution.
                return row
            row = await self.get_action(tenant_id, action_id)
        return row

    async def _expire(self, row: ActionRow, catalog: Catalog) -> NoReturn:
        event = self._event("CANCELLED", catalog, SYSTEM, action=row, detail="the proposal expired unconfirmed")
        await self._db(self._store.transition, row.action_id, ["PROPOSED"], "CANCELLED", [event],
                       error_reason="EXPIRED", error_message="the proposal expired before the customer's yes")
        raise FailedPrecondition(
            "the proposal expired; propose the action again and ask the customer",
            reason="PROPOSAL_EXPIRED",
            metadata={"action_id": row.action_id},
        )

    async def _claim_retry(self, row: ActionRow, catalog: Catalog, actor: Actor, why: str) -> ActionRow | None:
        tool = catalog.tool(row.tool)
        event = self._event("EXECUTING", catalog, actor, action=row, detail=f"attempt {row.attempts + 1}: {why}")
        return await self._db(
            self._store.transition, row.action_id, ["RETRYABLE"], "EXECUTING", [event], attempt=row.attempts,
            attempts=NEXT_ATTEMPT, lease_expires_at=self._lease(tool, 1 + len(tool.reads) if tool else 1),
            next_attempt_at=None,
        )

    async def _wait_settled(self, row: ActionRow) -> ActionRow:
        """Wait (bounded) for a concurrent execution of this action to record its outcome."""
        left = deadlines.remaining()
        budget = self._settings.confirm_wait_s if left is None else min(self._settings.confirm_wait_s, left - 0.2)
        loop = asyncio.get_running_loop()
        until = loop.time() + max(0.0, budget)
        woken = self._settled.setdefault(row.action_id, asyncio.Event())
        while True:
            fresh = await self._db(self._store.get, row.action_id)
            if fresh is None or fresh.state != "EXECUTING" or loop.time() >= until:
                return fresh or row
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), min(0.1, max(0.01, until - loop.time())))

    def _wake(self, action_id: str) -> None:
        woken = self._settled.pop(action_id, None)
        if woken is not None:
            woken.set()

    # --- execution -------------------------------------------------------------------

    async def _run(self, row: ActionRow, catalog: Catalog, actor: Actor, **options: Any) -> ActionRow:
        """Execute to the end even if the caller goes away (its outcome must be recorded)."""
        task = asyncio.ensure_future(self._execute(row, catalog, actor, **options))
        self._executions.add(task)
        task.add_done_callback(self._executions.discard)
        return await asyncio.shield(task)

    async def _finish(self, row: ActionRow, attempt: int, state: str, events: list[Event], **values: Any) -> ActionRow:
        finished = await self._db(
            self._store.transition, row.action_id, ["EXECUTING"], state, events, attempt=attempt,
            lease_expires_at=None, **values,
        )
        if finished is None:
            # The lease ran out and the reconciler took this attempt over: its outcome counts.
            log.warning("action_outcome_fenced", action_id=row.action_id, attempt=attempt)
            return await self._wait_settled(row)
        log.info("action_settled", action_id=row.action_id, tool=row.tool, state=state, attempt=attempt)
        return finished

    async def _execute(
        self, row: ActionRow, catalog: Catalog, actor: Actor, *, recheck: bool, interrupted: bool = False,
        reconciling: bool = False,
    ) -> ActionRow:
        try:
            return await self._execute_attempt(row, catalog, actor, recheck=recheck, interrupted=interrupted,
                                               reconciling=reconciling)
        finally:
            self._wake(row.action_id)

    async def _execute_attempt(
        self, row: ActionRow, catalog: Catalog, actor: Actor, *, recheck: bool, interrupted: bool, reconciling: bool
    ) -> ActionRow:
        attempt = row.attempts
        tool = catalog.tool(row.tool)
        if tool is None or not tool.is_write:
            # With the tool gone nothing can be sent; an agent sees why (and whether an earlier try may have run).
            failed = self._event("FAILED", catalog, actor, action=row, detail="the tool is no longer in the catalog")
            return await self._finish(row, attempt, "FAILED", [failed], error_reason="TOOL_NOT_IN_CATALOG",
                                      error_message=f"{row.tool} is no longer in the catalog",
                                      may_have_executed=row.may_have_executed)
        arguments = json.loads(row.arguments_json)
        env: dict[str, Any] = base_env(tool, arguments, row.customer_id)
        if recheck:
            # Records change between the proposal and the yes (or the approval): the policy is
            # checked again on fresh records before anything is sent.
            try:
                env = await self._records.gather(catalog, tool, arguments, row.customer_id)
            except Unavailable as error:
                return await self._retryable(row, catalog, actor, attempt, error.reason, error.message, False,
                                             reconciling=reconciling)
            except ApiError as error:
                failed = self._event("FAILED", catalog, actor, action=row, detail=f"{error.reason}: {error.message}")
                return await self._finish(row, attempt, "FAILED", [failed], error_reason=error.reason,
                                          error_message=error.message)
            renewed = await self._db(self._store.transition, row.action_id, ["EXECUTING"], "EXECUTING", [],
                                     attempt=attempt, lease_expires_at=self._lease(tool))
            if renewed is None:
                return await self._wait_settled(row)
        try:
            call = build_call(tool, env, row.idempotency_key)
        except ApiError as error:
            # The catalog cannot describe the request: nothing was sent (by this attempt).
            failed = self._event("FAILED", catalog, actor, action=row, detail=f"{error.reason}: {error.message}")
            return await self._finish(row, attempt, "FAILED", [failed], error_reason=error.reason,
                                      error_message=error.message, may_have_executed=row.may_have_executed)
        if row.dry_run or self.is_dry_run(catalog, tool):
            result = {"dry_run": True, "request": {"method": call.method, "path": call.path,
                                                   "query": dict(call.query), "body": call.body}}
            done = self._event("EXECUTED", catalog, actor, action=row, result=result, dry_run=True,
                               detail="dry-run: the write was not sent")
            return await self._finish(row, attempt, "SUCCEEDED", [done], result_json=canonical_json(result),
                                      dry_run=True)
        try:
            outcome = await self._connector.send(catalog.connector, call)
        except ConnectorError as error:
            if error.transient:
                return await self._retryable(row, catalog, actor, attempt, error.reason, error.message,
                                             error.may_have_executed, reconciling=reconciling)
            failed = self._event("FAILED", catalog, actor, action=row, result={"status": error.status},
                                 detail=f"{error.reason}: {error.message}")
            return await self._finish(row, attempt, "FAILED", [failed], error_reason=error.reason,
                                      error_message=error.message)
        answer: Any = (
            {"status": outcome.status, "response_too_large": outcome.truncated}
            if outcome.body is None
            else project(outcome.body, tool.spec.keep)
        )
        events = [self._event("EXECUTED", catalog, actor, action=row, result=answer,
                              detail=f"attempt {attempt}" + (", answered from the idempotency store"
                                                             if outcome.replayed else ""))]
        if interrupted:
            said = ("answered from its idempotency store: it had acted once, before the interruption"
                    if outcome.replayed else "acted now")
            events.append(self._event(
                "RECONCILED", catalog, SYSTEM, action=row,
                detail=f"attempt {attempt - 1} was interrupted before its outcome was recorded; "
                       f"re-sent Idempotency-Key {row.idempotency_key}; the company's system {said}",
            ))
        return await self._finish(row, attempt, "SUCCEEDED", events, result_json=canonical_json(answer),
                                  error_reason="", error_message="")

    async def _retryable(
        self, row: ActionRow, catalog: Catalog, actor: Actor, attempt: int, reason: str, message: str,
        may_have_executed: bool, *, reconciling: bool,
    ) -> ActionRow:
        may = row.may_have_executed or may_have_executed
        failed = self._event(
            "FAILED", catalog, actor, action=row,
            detail=f"{reason}: {message} (retryable; {'may have' if may else 'has not'} reached the system)",
        )
        finished = await self._finish(row, attempt, "RETRYABLE", [failed], error_reason=reason, error_message=message,
                                      may_have_executed=may, next_attempt_at=self._backoff(attempt))
        if reconciling:
            return finished
        raise Unavailable(
            "the company's system is unavailable; nothing was changed"
            + (" as far as we know; the action will be settled with the same idempotency key" if may else "")
            + f" ({message})",
            reason=reason,
            metadata={"action_id": row.action_id, "state": finished.state, "may_have_executed": str(may).lower()},
        )

    # --- agents -----------------------------------------------------------------------

    async def decide(self, tenant_id: str, action_id: str, approve: bool, agent_id: str, note: str) -> ActionRow:
        row = await self.get_action(tenant_id, action_id)
        catalog = self.catalog(tenant_id)
        actor = Actor("AGENT", agent_id)
        tool = catalog.tool(row.tool)
        if row.state == "AWAITING_APPROVAL":
            if approve and await self._db(self._store.acted_on_by, action_id, agent_id):
                await self._refuse(
                    PermissionDenied("an agent cannot approve an action they proposed or confirmed",
                                     reason="SELF_APPROVAL"),
                    catalog, actor, action=row,
                )
            decided = {"decided_by": agent_id, "decision_note": note, "decided_at": self._clock()}
            if not approve:
                rejected = self._event("REJECTED", catalog, actor, action=row, detail=note)
                moved = await self._db(self._store.transition, action_id, ["AWAITING_APPROVAL"], "REJECTED",
                                       [rejected], **decided)
                return moved or await self.get_action(tenant_id, action_id)
            approved = self._event("APPROVED", catalog, actor, action=row, detail=note)
            executing = self._event("EXECUTING", catalog, actor, action=row, detail="attempt 1")
            moved = await self._db(
                self._store.transition, action_id, ["AWAITING_APPROVAL"], "EXECUTING", [approved, executing],
                attempts=NEXT_ATTEMPT, lease_expires_at=self._lease(tool, 1 + len(tool.reads) if tool else 1),
                **decided,
            )
            if moved is not None:
                return await self._run(moved, catalog, actor, recheck=True)
            row = await self.get_action(tenant_id, action_id)
        if approve and row.decided_by and row.state == "RETRYABLE":
            moved = await self._claim_retry(row, catalog, actor, f"approved again by {agent_id}")
            if moved is not None:
                return await self._run(moved, catalog, actor, recheck=not row.may_have_executed)
        if row.decided_by and (row.state == "REJECTED") == (not approve):
            # The same decision again (a retried call): its stored outcome.
            return await self._wait_settled(row) if row.state == "EXECUTING" else row
        raise FailedPrecondition(
            f"the action is {row.state.lower()}, not awaiting approval"
            + (" (the customer has not said yes yet)" if row.state == "PROPOSED" else ""),
            reason="NOT_AWAITING_APPROVAL",
            metadata={"action_id": action_id, "state": row.state},
        )

    async def cancel(self, tenant_id: str, action_id: str, reason: str, actor: Actor) -> ActionRow:
        row = await self.get_action(tenant_id, action_id)
        catalog = self.catalog(tenant_id)
        if row.state == "CANCELLED":
            return row
        event = self._event("CANCELLED", catalog, actor, action=row, detail=reason)
        values = {"error_reason": f"CANCELLED_BY_{actor.kind}", "error_message": reason}
        moved = await self._db(self._store.transition, action_id, PENDING, "CANCELLED", [event], **values)
        if moved is None:
            # An attempt that surely never reached the company's system can be withdrawn too.
            moved = await self._db(self._store.transition, action_id, ["RETRYABLE"], "CANCELLED", [event],
                                   not_sent=True, **values)
        if moved is None:
            current = await self.get_action(tenant_id, action_id)
            raise FailedPrecondition(
                f"the action is {current.state.lower()} and can no longer be cancelled",
                reason="NOT_CANCELLABLE",
                metadata={"action_id": action_id, "state": current.state},
            )
        return moved

    # --- reconciliation -------------------------------------------------------------

    async def reconcile_once(self) -> int:
        """Settle interrupted executions and due retries; returns how many were attempted."""
        now = self._clock()
        due = await self._db(self._store.due_for_reconciliation, now, self._settings.max_attempts)
        attempted = 0
        for row in due:
            catalog = self._catalogs.get(row.tenant_id)
            if catalog is None:
                log.warning("reconcile_without_catalog", action_id=row.action_id)
                continue
            tool = catalog.tool(row.tool)
            interrupted = row.state == "EXECUTING"
            why = "its executor stopped before recording an outcome" if interrupted else "a scheduled retry"
            event = self._event("EXECUTING", catalog, SYSTEM, action=row, detail=f"attempt {row.attempts + 1}: {why}")
            claimed = await self._db(
                self._store.transition, row.action_id, [row.state], "EXECUTING", [event], attempt=row.attempts,
                lease_expired_before=now if interrupted else None, attempts=NEXT_ATTEMPT,
                lease_expires_at=self._lease(tool), next_attempt_at=None,
                # Nobody knows whether the interrupted attempt reached the system.
                may_have_executed=True,
            )
            if claimed is None:
                continue
            attempted += 1
            await self._run(claimed, catalog, SYSTEM, recheck=False, interrupted=interrupted, reconciling=True)
        return attempted

    async def reconcile_forever(self) -> None:
        while True:
            try:
                await self.reconcile_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive a database hiccup
                log.exception("reconcile_failed")
            await asyncio.sleep(self._settings.reconcile_interval_s)

    async def drain(self, timeout_s: float) -> None:
        """Let executions in flight record their outcome before the process stops; one
        cut short stays EXECUTING and the reconciler settles it after the restart."""
        if self._executions:
            await asyncio.wait(list(self._executions), timeout=timeout_s)


def _with_action(event: Event, action_id: str) -> Event:
    return Event(**{**event.__dict__, "action_id": action_id})


__all__ = ["SYSTEM", "ActionsEngine", "Actor", "ReadResult", "fingerprint"]
