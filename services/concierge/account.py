"""The account assistant: a turn about the customer's own account, for a tenant whose
actions service has a catalog. Identity first (an email, or first name, last name and
zip, through the catalog's identity tools; one customer per conversation), then reads
answered from the record (cited), and writes proposed, confirmed by an explicit yes to
exactly the proposed action, and executed by the actions service (or sent to an agent
for approval through a handoff). The pure parts live in account_plans.py.

The servicer makes one call: `AccountAssistant.converse(turn)`, None when the turn is
not the assistant's (the knowledge-base path runs as before)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import grpc
import structlog
from google.rpc import error_details_pb2, status_pb2

from aftercare.actions.v1 import actions_pb2, actions_pb2_grpc
from aftercare.concierge.v1 import concierge_pb2
from aftercare.type.v1 import answer_pb2, customer_pb2
from servicekit.errors import details_from_rpc_error
from servicekit.llm import JsonCompletion, LlmUnavailable
from servicekit.pii import EMAIL_MASK, mask
from servicekit.tracing import current_trace_id
from services.concierge import account_plans as plans
from services.concierge.decisions import Decision, Reason, reason_code, record_decision
from services.concierge.turns import Turn, message_key

log = structlog.get_logger(__name__)

ActionState = concierge_pb2.ActionState
ASSISTANT = actions_pb2.Actor(kind=actions_pb2.ACTOR_KIND_ASSISTANT)
CUSTOMER = actions_pb2.Actor(kind=actions_pb2.ACTOR_KIND_CUSTOMER)
ASK_YES = "Shall I go ahead? (yes/no)"
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# A read or a proposal waits this long for the actions service (a write's connector has its own timeout).
_CALL_TIMEOUT_S = 10.0
_CONFIRM_TIMEOUT_S = 30.0

ACTION_STATES = {
    actions_pb2.ACTION_STATE_PROPOSED: ActionState.ACTION_STATE_PROPOSED,
    actions_pb2.ACTION_STATE_AWAITING_APPROVAL: ActionState.ACTION_STATE_AWAITING_APPROVAL,
    actions_pb2.ACTION_STATE_SUCCEEDED: ActionState.ACTION_STATE_EXECUTED,
    actions_pb2.ACTION_STATE_CANCELLED: ActionState.ACTION_STATE_CANCELLED,
    actions_pb2.ACTION_STATE_REJECTED: ActionState.ACTION_STATE_REJECTED,
    actions_pb2.ACTION_STATE_FAILED: ActionState.ACTION_STATE_FAILED,
}


class JsonChat(Protocol):
    """What the assistant needs of the LLM client (servicekit.llm.LlmClient has it)."""

    async def chat_json(
        self, messages: list[dict[str, str]], schema: dict[str, Any], *, name: str = ..., max_tokens: int = ...,
        attempts: int = ..., timeout_s: float | None = ..., model: str = ...,
    ) -> JsonCompletion: ...


# The servicer's handoff: (turn, reason, what the AI proposed) -> the escalated outcome. For an
# approval, what the AI proposed is the action's summary, then a line with why approval is needed.
Escalate = Callable[[Turn, Reason, str], Awaitable[concierge_pb2.ConverseResponse]]


class ActionsUnreachable(Exception):
    """The actions service (or the company's system behind it) could not be reached."""


class AccountAssistant:
    def __init__(
        self,
        actions: actions_pb2_grpc.ActionsServiceStub | None,
        llm: JsonChat,
        escalate: Escalate,
        *,
        catalog_ttl_s: float = 30.0,
        llm_timeout_s: float | None = None,
    ) -> None:
        self._actions = actions
        self._llm_timeout_s = llm_timeout_s
        self._llm = llm
        self._escalate = escalate
        self._catalog_ttl_s = catalog_ttl_s
        # tenant -> (fetched at, catalog or None when the tenant has none).
        self._catalogs: dict[str, tuple[float, plans.Catalog | None]] = {}

    async def catalog(self, tenant_id: str, *, acting: bool = False) -> plans.Catalog | None:
        """The tenant's catalog, reused for a while; None when it has none. When the service
        cannot say: ActionsUnreachable for a tenant known to act (or a turn answering an action),
        else None (a tenant without actions keeps its knowledge-base answers)."""
        assert self._actions is not None
        cached = self._catalogs.get(tenant_id)
        if cached is not None and time.monotonic() - cached[0] < self._catalog_ttl_s:
            return cached[1]
        try:
            response = await self._actions.ListTools(
                actions_pb2.ListToolsRequest(tenant_id=tenant_id), timeout=_CALL_TIMEOUT_S
            )
            catalog: plans.Catalog | None = plans.Catalog.from_proto(response) if response.tools else None
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                log.warning("actions_catalog_unavailable", code=error.code().name)
                if acting or (cached is not None and cached[1] is not None):
                    raise ActionsUnreachable() from error
                return None
            catalog = None
        self._catalogs[tenant_id] = (time.monotonic(), catalog)
        return catalog

    async def converse(self, turn: Turn) -> concierge_pb2.ConverseResponse | None:
        """The turn's outcome when it is the account assistant's; None otherwise."""
        if self._actions is None:
            return None
        request = turn.request
        stored = turn.stored
        pending = stored.pending_action if stored else None
        verified = stored.verified_customer_id if stored else ""
        replying = request.HasField("action_reply")
        if not (replying or pending or _continues(turn) or plans.about_account(request.text)):
            return None
        session: _Session | None = None
        try:
            catalog = await self.catalog(request.customer.tenant_id, acting=bool(replying or pending))
            if catalog is None:
                return None
            session = _Session(self, turn, catalog, verified)
            if replying or pending:
                outcome = await session.answer_pending(pending)
            else:
                outcome = await session.plan()
        except ActionsUnreachable:
            outcome = _respond(
                turn, Decision.DECISION_CLARIFY, Reason.DECISION_REASON_ACTIONS_UNAVAILABLE,
                "I can't reach our order system right now, so I haven't looked anything up or changed "
                "anything. Please try again in a few minutes.",
                verified=verified,
            )
            if pending is not None:
                # Still waiting for the customer's answer: a later yes can still go ahead.
                outcome.pending_action.CopyFrom(pending)
        except LlmUnavailable as error:
            log.warning("account_planner_unavailable", error=str(error))
            outcome = await self._escalate(turn, Reason.DECISION_REASON_LLM_UNAVAILABLE, "")
        # Verified in this turn (before a failure) or earlier: the conversation keeps it.
        verified = session.verified if session is not None else verified
        if verified and not outcome.verified_customer_id:
            outcome.verified_customer_id = verified
        return outcome


def _continues(turn: Turn) -> bool:
    """Whether the message answers what the assistant asked last: identity details, or (after a
    question about a detail) anything."""
    if not _asked_last(turn) or turn.stored is None:
        return False
    if turn.stored.turns[-1].outcome.reason == Reason.DECISION_REASON_NEEDS_ARGUMENT:
        return True
    text = turn.request.text
    return bool(plans.emails(text) or plans.ZIP.search(text))


def _asked_last(turn: Turn) -> bool:
    """Whether the assistant's last turn asked the customer for their identity or a detail."""
    if turn.stored is None or not turn.stored.turns:
        return False
    asked = (Reason.DECISION_REASON_NEEDS_IDENTITY, Reason.DECISION_REASON_NEEDS_ARGUMENT)
    return turn.stored.turns[-1].outcome.reason in asked


class _Session:
    """One turn of the account assistant."""

    def __init__(self, assistant: AccountAssistant, turn: Turn, catalog: plans.Catalog, verified: str) -> None:
        assert assistant._actions is not None
        self.actions = assistant._actions
        self.llm = assistant._llm
        self.llm_timeout_s = assistant._llm_timeout_s
        self.escalate = assistant._escalate
        self.turn = turn
        self.catalog = catalog
        self.verified = verified
        self.tenant_id = turn.request.customer.tenant_id
        self.conversation_id = turn.request.conversation_id

    # --- identity ---------------------------------------------------------------------

    def _customer(self) -> customer_pb2.CustomerRef:
        return customer_pb2.CustomerRef(tenant_id=self.tenant_id, customer_id=self.verified)

    async def _verify_from(self, text: str) -> concierge_pb2.ConverseResponse | None:
        """Verify with what the message gives (an email; or names and a zip). None when verified
        now or already; an outcome when the customer must be asked (again)."""
        found = plans.emails(text)
        arguments: dict[str, str] | None = None
        tool = None
        if found:
            tool = self.catalog.identity_tool("email")
            arguments = {"email": found[0]}
        else:
            zips = plans.ZIP.findall(text)
            name = plans.full_name(text)
            if zips and name:
                tool = self.catalog.identity_tool("first_name", "last_name", "zip")
                arguments = {"first_name": name[0], "last_name": name[1], "zip": zips[0]}
        if tool is None or arguments is None:
            if self.verified:
                return None
            return self._ask_identity()
        try:
            response = await self.actions.ExecuteRead(
                actions_pb2.ExecuteReadRequest(
                    customer=customer_pb2.CustomerRef(tenant_id=self.tenant_id), conversation_id=self.conversation_id,
                    tool=tool.name, arguments_json=json.dumps(arguments), actor=ASSISTANT,
                ),
                timeout=_CALL_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in _UNREACHABLE:
                raise ActionsUnreachable() from error
            if error.code() == grpc.StatusCode.PERMISSION_DENIED:
                return self._clarify(
                    Reason.DECISION_REASON_ACTION_NOT_ALLOWED,
                    "This conversation is already verified for one customer, and I can only help one customer "
                    "per conversation. Please start a new conversation for another account.",
                )
            log.info("identity_not_found", code=error.code().name)
            return self._ask_identity(not_found=True)
        if self.verified and response.verified_customer_id != self.verified:
            return self._clarify(Reason.DECISION_REASON_ACTION_NOT_ALLOWED,
                                 "I can only help one customer per conversation.")
        self.verified = response.verified_customer_id
        return None

    def _ask_identity(self, not_found: bool = False) -> concierge_pb2.ConverseResponse:
        ask = ("I couldn't find an account with those details. " if not_found else
               "Before I look at your account, I need to verify who you are. ")
        return self._clarify(
            Reason.DECISION_REASON_NEEDS_IDENTITY,
            ask + "Please give me the email address of your account, or your first name, last name and zip code.",
        )

    # --- a turn without a pending action ----------------------------------------------

    def _customer_texts(self) -> list[str]:
        # Earlier messages are stored masked (emails hidden); the newest is as typed.
        history = list(self.turn.history[-4:])
        return [*history, self.turn.request.text]

    async def plan(self) -> concierge_pb2.ConverseResponse:
        asked = await self._verify_from(self.turn.request.text)
        if asked is not None:
            return asked
        texts = self._customer_texts()
        # After "I need the zip", "the zip is 97477" answers the question; it is not identity.
        if _only_identity(self.turn.request.text) and not _asked_for_detail(self.turn):
            if len(texts) == 1 or not _asked_last(self.turn):
                return self._clarify(Reason.DECISION_REASON_NEEDS_DETAIL,
                                     "Thank you, you're verified. What can I do for you with your account?")
            # "sara@example.com" after "where is my order?" (and perhaps a wrong email before it):
            # the request is the last message that was more than identity details.
            texts = texts[:-1]
            while len(texts) > 1 and _only_identity(texts[-1]):
                texts = texts[:-1]
        # A small model acts on whatever the prompt holds: earlier messages only when the latest
        # continues them (an answer to the assistant's question, a revision of its proposal).
        latest, earlier = texts[-1], (texts[-3:-1] if _continued(self.turn) else [])
        user = await self._read_optional("get_user_details", {"user_id": self.verified})
        orders = await self._orders([*earlier, latest])
        value = await self.llm.chat_json(
            plans.planner_messages(self.catalog, latest, earlier, plans.account_facts(user, orders)),
            plans.planner_schema(self.catalog), name="account_plan", max_tokens=160, timeout_s=self.llm_timeout_s,
            model=self.turn.llm_model,
        )
        plan = plans.parse_plan(self.catalog, value.value, self.verified)
        draft = self.turn.stored.account_draft if self.turn.stored and _asked_for_detail(self.turn) else None
        if draft and plan.tool is None:
            # "It's no longer needed" alone: the request asked about goes on.
            plan = plans.Plan(self.catalog.tools.get(str(draft.get("tool"))), {})
        carried = plans.carry_draft(plan, draft)
        if plan.tool is not None and plan.tool.write and not plans.asks_for_change(" ".join([*earlier, latest])):
            # A change the customer did not ask for: read what they asked about instead, if anything.
            log.info("account_plan_write_not_asked", tool=plan.tool.name)
            mentioned = plans.order_ids(latest)
            reader = self.catalog.tools.get("get_order_details")
            plan = plans.Plan(reader, {"order_id": mentioned[0]}) if mentioned and reader else plans.Plan(None, {})
        log.info("account_plan", tool=plan.tool.name if plan.tool else "none")
        if plan.tool is None:
            return self._clarify(
                Reason.DECISION_REASON_NEEDS_DETAIL,
                "I'm not sure what you'd like me to do with your account. You can ask about an order "
                "(e.g. \"where is my order #W1234567?\"), or ask me to cancel, return, exchange or change one.",
            )
        plans.fill_from_words(plan.tool, plan.arguments, [*texts, *carried], user, orders)
        missing = plans.unsupported_arguments(plan.tool, plan.arguments, [*texts, *carried], user, orders)
        if missing:
            settled = {name: value for name, value in plan.arguments.items() if name not in missing}
            self.turn.account_draft = {"tool": plan.tool.name, "arguments": settled}
            return self._clarify(Reason.DECISION_REASON_NEEDS_ARGUMENT,
                                 plans.question_for(plan.tool, missing, user, orders))
        if not plan.tool.write:
            return await self._answer_read(plan)
        return await self._propose(plan)

    async def _orders(self, texts: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for order_id in plans.order_ids(" ".join(texts))[-3:]:
            record = await self._read_optional("get_order_details", {"order_id": order_id})
            if isinstance(record, dict):
                found[order_id] = record
        return found

    async def _read_optional(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """A record the plan may draw on; None when the catalog has no such tool or refuses
        (another customer's order is never shown, and never planned on)."""
        if tool not in self.catalog.tools:
            return None
        try:
            response = await self._read(tool, arguments)
        except grpc.aio.AioRpcError as error:
            if error.code() in _UNREACHABLE:
                raise ActionsUnreachable() from error
            return None
        record = json.loads(response.record_json or "null")
        return record if isinstance(record, dict) else None

    async def _read(self, tool: str, arguments: dict[str, Any]) -> actions_pb2.ExecuteReadResponse:
        response: actions_pb2.ExecuteReadResponse = await self.actions.ExecuteRead(
            actions_pb2.ExecuteReadRequest(
                customer=self._customer(), conversation_id=self.conversation_id, tool=tool,
                arguments_json=json.dumps(arguments), actor=ASSISTANT,
            ),
            timeout=_CALL_TIMEOUT_S,
        )
        return response

    async def _answer_read(self, plan: plans.Plan) -> concierge_pb2.ConverseResponse:
        assert plan.tool is not None
        try:
            response = await self._read(plan.tool.name, plan.arguments)
        except grpc.aio.AioRpcError as error:
            if error.code() in _UNREACHABLE:
                raise ActionsUnreachable() from error
            if error.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND):
                # Another customer's record and no record at all read the same: nothing to show.
                return self._clarify(Reason.DECISION_REASON_NEEDS_ARGUMENT,
                                     "I couldn't find that in your account. Could you check the number?")
            return self._clarify(Reason.DECISION_REASON_ACTION_NOT_ALLOWED, _words_of(error))
        record = json.loads(response.record_json or "null")
        source = response.source
        reference = answer_pb2.RecordRef(
            kind=plans.record_kind(source.tool or plan.tool.name), id=source.record_id, tool=source.tool
        )
        citation = answer_pb2.Citation(title=f"{reference.kind} {reference.id}".strip(), record=reference)
        outcome = _respond(self.turn, Decision.DECISION_ANSWERED, Reason.DECISION_REASON_FROM_RECORDS,
                           plans.reply_from_record(source.tool or plan.tool.name, record), verified=self.verified)
        outcome.confidence.score = 1.0
        outcome.citations.append(citation)
        outcome.lineage.sources.append(citation)
        outcome.lineage.prompt_template_version = plans.PLANNER_VERSION
        return outcome

    async def _propose(self, plan: plans.Plan) -> concierge_pb2.ConverseResponse:
        assert plan.tool is not None
        try:
            response = await self.actions.ProposeAction(
                actions_pb2.ProposeActionRequest(
                    customer=self._customer(), conversation_id=self.conversation_id, tool=plan.tool.name,
                    arguments_json=json.dumps(plan.arguments), request_id=message_key(self.turn), actor=ASSISTANT,
                    # The release proposing it: the action's lineage.
                    release_id=self.turn.release_id,
                ),
                timeout=_CALL_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as error:
            return self._refused(error)
        action = response.action
        pending = _pending(action)
        reply = f"Here is what I'll do: {action.summary}"
        if action.approval.required:
            reply += " This needs an agent's approval after your yes: " + " ".join(action.approval.reasons)
        outcome = _respond(self.turn, Decision.DECISION_CONFIRM_ACTION, Reason.DECISION_REASON_ACTION_PROPOSED,
                           f"{reply} {ASK_YES}", verified=self.verified)
        outcome.pending_action.CopyFrom(pending)
        return outcome

    # --- a turn that answers a pending action -----------------------------------------

    async def answer_pending(self, pending: concierge_pb2.PendingAction | None) -> concierge_pb2.ConverseResponse:
        request = self.turn.request
        if request.HasField("action_reply"):
            reply = request.action_reply
            if pending is None or reply.action_id != pending.action_id or reply.fingerprint != pending.fingerprint:
                return self._mismatch(pending)
            confirmed: bool | None = reply.confirmed
        else:
            confirmed = plans.typed_answer(request.text)
        assert pending is not None
        if confirmed is None:
            # Anything but a plain yes or no revises: the proposal is withdrawn and planned again.
            await self._cancel(pending, "the customer asked for something else")
            return await self.plan()
        if not confirmed:
            await self._cancel(pending, "the customer said no")
            cancelled = _copy(pending, ActionState.ACTION_STATE_CANCELLED)
            outcome = _respond(self.turn, Decision.DECISION_ACTED, Reason.DECISION_REASON_ACTION_CANCELLED,
                               "All right, I haven't done it. Nothing was changed.", verified=self.verified)
            outcome.pending_action.CopyFrom(cancelled)
            return outcome
        return await self._confirm(pending)

    def _mismatch(self, pending: concierge_pb2.PendingAction | None) -> concierge_pb2.ConverseResponse:
        if pending is None:
            return self._clarify(Reason.DECISION_REASON_ACTION_NOT_ALLOWED,
                                 "There is no action waiting for your answer, so nothing was done.")
        outcome = _respond(
            self.turn, Decision.DECISION_CONFIRM_ACTION, Reason.DECISION_REASON_ACTION_PROPOSED,
            "That answer is not for the action I proposed, so nothing was done. What I proposed: "
            f"{pending.summary} {ASK_YES}",
            verified=self.verified,
        )
        outcome.pending_action.CopyFrom(pending)
        return outcome

    async def _cancel(self, pending: concierge_pb2.PendingAction, why: str) -> None:
        try:
            await self.actions.CancelAction(
                actions_pb2.CancelActionRequest(tenant_id=self.tenant_id, action_id=pending.action_id, reason=why,
                                                actor=CUSTOMER),
                timeout=_CALL_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in _UNREACHABLE:
                raise ActionsUnreachable() from error
            # Already expired or cancelled: it will not run either way.
            log.info("action_cancel_refused", code=error.code().name)

    async def _confirm(self, pending: concierge_pb2.PendingAction) -> concierge_pb2.ConverseResponse:
        try:
            response = await self.actions.ConfirmAction(
                actions_pb2.ConfirmActionRequest(
                    tenant_id=self.tenant_id, action_id=pending.action_id, fingerprint=pending.fingerprint,
                    confirmation_text=mask(self.turn.request.text)[:500], actor=CUSTOMER,
                    conversation_id=self.conversation_id,
                ),
                timeout=_CONFIRM_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in _UNREACHABLE:
                outcome = self._clarify(
                    Reason.DECISION_REASON_ACTIONS_UNAVAILABLE,
                    "I couldn't reach our order system, so nothing was done. You can say yes again in a few "
                    "minutes and I'll try once more.",
                )
                outcome.pending_action.CopyFrom(pending)
                return outcome
            return self._refused(error)
        action = response.action
        done = _pending(action)
        if action.state == actions_pb2.ACTION_STATE_SUCCEEDED:
            said = "Done (a dry run: nothing was sent)" if action.dry_run else "Done"
            outcome = _respond(self.turn, Decision.DECISION_ACTED, Reason.DECISION_REASON_ACTION_EXECUTED,
                               f"{said}: {action.summary}", verified=self.verified)
        elif action.state == actions_pb2.ACTION_STATE_AWAITING_APPROVAL:
            outcome = await self._to_approval(action)
        elif action.state == actions_pb2.ACTION_STATE_FAILED:
            outcome = self._clarify(
                Reason.DECISION_REASON_ACTION_NOT_ALLOWED,
                f"It could not be done, and nothing was changed: {action.error.message or 'refused'}",
            )
        else:
            # EXECUTING or RETRYABLE: sent, its answer not in yet; the actions service finishes it once.
            outcome = self._clarify(
                Reason.DECISION_REASON_ACTIONS_UNAVAILABLE,
                "Our order system is slow to answer. Your request is recorded and will be done exactly "
                "once; I'll have the result for you shortly.",
            )
        outcome.pending_action.CopyFrom(done)
        return outcome

    async def _to_approval(self, action: actions_pb2.Action) -> concierge_pb2.ConverseResponse:
        """An agent must approve: the request reaches them as a handoff, and the customer hears what next."""
        reasons = " ".join(action.approval.reasons)
        # What the agent is asked to approve: the action's summary on the first line, the approval
        # rules it met on the next (escalation's package words the handoff from the two).
        proposal = "\n".join(" ".join(part.split()) for part in (action.summary, reasons) if part)
        escalated = await self.escalate(self.turn, Reason.DECISION_REASON_ACTION_AWAITING_APPROVAL, proposal)
        reference = f" (reference {escalated.handoff_reference})" if escalated.handoff_reference else ""
        escalated.reply = (
            f"Thank you. {reasons} I've sent your request to our team{reference}: {action.summary} "
            "An agent will review it and you'll get their decision here."
        ).replace("  ", " ")
        escalated.decision = Decision.DECISION_ACTED
        escalated.reason = Reason.DECISION_REASON_ACTION_AWAITING_APPROVAL
        escalated.decision_reason = reason_code(Reason.DECISION_REASON_ACTION_AWAITING_APPROVAL)
        escalated.verified_customer_id = self.verified
        record_decision("acted", escalated.decision_reason)
        return escalated

    def _refused(self, error: grpc.aio.AioRpcError) -> concierge_pb2.ConverseResponse:
        code = error.code()
        if code in _UNREACHABLE:
            raise ActionsUnreachable() from error
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return self._clarify(Reason.DECISION_REASON_NEEDS_ARGUMENT,
                                 "Some of those details don't look right. Could you check them and tell me again?")
        if details_from_rpc_error(error).reason == "PROPOSAL_EXPIRED":
            return self._clarify(Reason.DECISION_REASON_ACTION_NOT_ALLOWED,
                                 "That proposal has expired, so nothing was done. Tell me again what you'd like "
                                 "and I'll propose it afresh.")
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return self._clarify(
                Reason.DECISION_REASON_ACTION_NOT_ALLOWED,
                "I can only act on your own account's orders and payment methods, so nothing was done.",
            )
        return self._clarify(Reason.DECISION_REASON_ACTION_NOT_ALLOWED,
                             f"I can't do that: {_words_of(error)} Nothing was changed.")

    def _clarify(self, reason: Reason, reply: str) -> concierge_pb2.ConverseResponse:
        return _respond(self.turn, Decision.DECISION_CLARIFY, reason, reply, verified=self.verified)


def _asked_for_detail(turn: Turn) -> bool:
    """Whether the assistant's last turn asked for a missing detail of a request."""
    return bool(turn.stored and turn.stored.turns
                and turn.stored.turns[-1].outcome.reason == Reason.DECISION_REASON_NEEDS_ARGUMENT)


def _continued(turn: Turn) -> bool:
    """Whether the latest message continues the previous request: the assistant asked for a
    detail, or proposed an action the message revises."""
    if turn.stored is None or not turn.stored.turns:
        return False
    previous = turn.stored.turns[-1].outcome.reason
    return previous in (Reason.DECISION_REASON_NEEDS_ARGUMENT, Reason.DECISION_REASON_ACTION_PROPOSED)


def _only_identity(text: str) -> bool:
    """A message that only gives identity details (an email, a name and a zip); earlier messages
    are stored masked, so a masked email counts as one."""
    if not (plans.emails(text) or plans.ZIP.search(text) or EMAIL_MASK in text) or plans.order_ids(text):
        return False
    rest = plans.EMAIL.sub(" ", text).replace(EMAIL_MASK, " ")
    rest = plans.ZIP.sub(" ", plans.NAME.sub(" ", rest))
    words = [w for w in rest.lower().replace(",", " ").split() if w not in _FILLER]
    return len(words) <= 2


_FILLER = frozenset({"my", "email", "is", "it's", "its", "zip", "code", "and", "the", "here", "it", "i'm", "im",
                     "name", "sure", "ok", "okay", "yes", "hi", "hello", "please", "thanks", "address", ":", "-"})


def _words_of(error: grpc.aio.AioRpcError) -> str:
    """The policy's reasons in words (PreconditionFailure descriptions), else the error's message."""
    found: list[str] = []
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value if isinstance(value, bytes) else value.encode())
        for detail in status.details:
            if detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
                failure = error_details_pb2.PreconditionFailure()
                detail.Unpack(failure)
                found += [violation.description for violation in failure.violations]
    text = " ".join(found) or (error.details() or "")
    return text if text.endswith(".") else text + "."


def _pending(action: actions_pb2.Action) -> concierge_pb2.PendingAction:
    return concierge_pb2.PendingAction(
        action_id=action.action_id, tool=action.tool, summary=action.summary, fingerprint=action.fingerprint,
        state=ACTION_STATES.get(action.state, ActionState.ACTION_STATE_UNSPECIFIED),
        approval_reasons=list(action.approval.reasons),
    )


def _copy(pending: concierge_pb2.PendingAction, state: concierge_pb2.ActionState) -> concierge_pb2.PendingAction:
    copied = concierge_pb2.PendingAction()
    copied.CopyFrom(pending)
    copied.state = state
    return copied


def _respond(
    turn: Turn, decision: Decision, reason: Reason, reply: str, *, verified: str
) -> concierge_pb2.ConverseResponse:
    code = reason_code(reason)
    record_decision(Decision.Name(decision).removeprefix("DECISION_").lower(), code)
    return concierge_pb2.ConverseResponse(
        reply=reply,
        confidence=answer_pb2.Confidence(score=0.0, threshold=turn.persona.threshold_for(turn.intent)),
        decision=decision,
        decision_reason=code,
        reason=reason,
        standalone_query=turn.standalone_query,
        verified_customer_id=verified,
        lineage=answer_pb2.Lineage(trace_id=current_trace_id()),
    )
