from __future__ import annotations

import asyncio
import datetime as dt
import difflib
import time
import uuid
from collections.abc import AsyncIterator, Callable

import grpc
import structlog

from aftercare.outreach.v1 import outreach_pb2, outreach_pb2_grpc
from aftercare.retrieval.v1 import retrieval_pb2_grpc
from servicekit.database import utcnow
from servicekit.errors import Aborted, FailedPrecondition, NotFound, Violations
from servicekit.ids import check_customer_id, check_id
from servicekit.llm import LlmClient, LlmUnavailable
from servicekit.tracing import current_trace_id
from services.outreach import drafting
from services.outreach.detection import Detector
from services.outreach.drafting import FindingFacts, Message, Recipient
from services.outreach.events import (
    MAX_ACCOUNTS_PER_CALL,
    MAX_FUTURE_SKEW,
    MAX_ID_CHARS,
    MISSING_EVENT,
    UNKNOWN_ACCOUNT,
    account_problems,
    rejection_reason,
)
from services.outreach.findings import RELEASE_CLUSTER
from services.outreach.knowledge import KnowledgeLookup, suggested_fix
from services.outreach.models import AccountRow, OutreachDraftRow, RiskFindingRow
from services.outreach.outbox import next_send_time
from services.outreach.replies import route_from_request
from services.outreach.settings import OutreachSettings
from services.outreach.store import OutreachStore, draft_to_proto, finding_to_proto

log = structlog.get_logger("services.outreach")
MAX_BODY_CHARS = 20_000


def _is_concrete(finding: RiskFindingRow) -> bool:
    """At least one piece of evidence measured a change (a before and an after that differ)."""
    return any(float(e.get("before", 0)) != float(e.get("after", 0)) and e.get("statement")
               for e in finding.evidence)


def _facts(finding: RiskFindingRow) -> FindingFacts:
    return FindingFacts(
        kind=finding.kind, cause=finding.cause, statements=[str(e["statement"]) for e in finding.evidence],
        feature=finding.feature, endpoint=finding.endpoint, error_code=finding.error_code, release=finding.release,
        fix=finding.suggested_fix,
        sources=[(str(p["title"]), str(p["url"]), str(p["text"])) for p in finding.sources],
    )


class OutreachServicer(outreach_pb2_grpc.OutreachServiceServicer):
    def __init__(
        self,
        store: OutreachStore,
        settings: OutreachSettings,
        *,
        detector: Detector,
        retrieval: retrieval_pb2_grpc.RetrievalServiceStub | None,
        llm: LlmClient,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._store = store
        self._settings = settings
        self._detector = detector
        self._retrieval = retrieval
        self._llm = llm
        self._batch_size = settings.usage_batch_size
        self._clock = clock

    async def RecordUsage(
        self,
        request_iterator: AsyncIterator[outreach_pb2.RecordUsageRequest],
        context: grpc.aio.ServicerContext[outreach_pb2.RecordUsageRequest, outreach_pb2.RecordUsageResponse],
    ) -> outreach_pb2.RecordUsageResponse:
        # Valid events are stored in batches as the stream arrives, so a long stream needs
        # bounded memory; a stream cut short keeps what was stored, and resending it is
        # safe because event ids already stored count as duplicates.
        response = outreach_pb2.RecordUsageResponse()
        seen: set[tuple[str, str]] = set()
        batch: list[outreach_pb2.UsageEvent] = []
        # One batch is written while the next one is read (the write runs in a thread).
        writing: asyncio.Task[None] | None = None

        async def write(events: list[outreach_pb2.UsageEvent]) -> None:
            result = await asyncio.to_thread(
                self._store.record_usage,
                events,
                self._clock(),
                register_unknown=self._settings.unknown_accounts == "accept",
                late_after=dt.timedelta(hours=self._settings.late_after_hours),
            )
            response.accepted += result.accepted
            response.duplicates += result.duplicates
            response.late += result.late
            for event_id in result.unknown_account:
                response.rejected.add(event_id=event_id, reason=UNKNOWN_ACCOUNT)

        async def flush() -> None:
            nonlocal writing, batch
            if writing is not None:
                await writing
            writing = asyncio.create_task(write(batch))
            batch = []

        try:
            async for request in request_iterator:
                events = [request.event] if request.HasField("event") else []
                events.extend(request.events)
                if not events:
                    response.rejected.add(event_id="", reason=MISSING_EVENT)
                    continue
                now = self._clock()
                for event in events:
                    reason = rejection_reason(event, now)
                    if reason is not None:
                        response.rejected.add(event_id=event.event_id[:MAX_ID_CHARS], reason=reason)
                        continue
                    key = (event.tenant_id, event.event_id)
                    if key in seen:
                        response.duplicates += 1
                        continue
                    seen.add(key)
                    batch.append(event)
                    if len(batch) >= self._batch_size:
                        await flush()
            if batch:
                await flush()
        finally:
            if writing is not None:
                # Whatever was handed to the store finishes (or fails) before the call ends.
                await writing
        log.info(
            "usage_recorded",
            accepted=response.accepted,
            duplicates=response.duplicates,
            rejected=len(response.rejected),
            late=response.late,
        )
        return response

    async def UpsertAccounts(
        self,
        request: outreach_pb2.UpsertAccountsRequest,
        context: grpc.aio.ServicerContext[outreach_pb2.UpsertAccountsRequest, outreach_pb2.UpsertAccountsResponse],
    ) -> outreach_pb2.UpsertAccountsResponse:
        problems = Violations()
        problems.check(0 < len(request.accounts) <= MAX_ACCOUNTS_PER_CALL, "accounts",
                       f"1 to {MAX_ACCOUNTS_PER_CALL} accounts per call")
        for index, account in enumerate(request.accounts):
            for name, problem in account_problems(account):
                problems.add(f"accounts[{index}].{name}", problem)
        problems.raise_if_any()
        created, updated = await asyncio.to_thread(self._store.upsert_accounts, request.accounts, self._clock())
        log.info("accounts_upserted", created=created, updated=updated)
        return outreach_pb2.UpsertAccountsResponse(created=created, updated=updated)

    async def DetectRisks(
        self,
        request: outreach_pb2.DetectRisksRequest,
        context: grpc.aio.ServicerContext[outreach_pb2.DetectRisksRequest, outreach_pb2.DetectRisksResponse],
    ) -> outreach_pb2.DetectRisksResponse:
        now = self._clock()
        problems = Violations()
        check_id(problems, request.tenant_id, "tenant_id")
        as_of = now
        if request.HasField("as_of"):
            try:
                as_of = request.as_of.ToDatetime(tzinfo=dt.UTC)
            except (ValueError, OverflowError):
                problems.add("as_of", "not a valid timestamp")
            else:
                problems.check(as_of <= now + MAX_FUTURE_SKEW, "as_of", "must not be in the future")
        problems.raise_if_any()
        started = time.perf_counter()
        findings = await asyncio.to_thread(self._detector.run, request.tenant_id, as_of)
        lookup = KnowledgeLookup(self._retrieval, self._settings.retrieval_top_k, self._settings.min_similarity)
        enriched = []
        for finding in findings:
            passages = await lookup.search(request.tenant_id, finding.query) if finding.query else []
            fix = suggested_fix(passages or [], [finding.error_code, finding.endpoint, finding.feature,
                                                 *finding.release.split(", ")])
            enriched.append((finding, [p.as_json() for p in passages or []], fix, passages is None))
        rows = await asyncio.to_thread(self._store.save_findings, request.tenant_id, enriched, as_of.date(), now)
        log.info(
            "risks_detected",
            findings=len(rows),
            knowledge_unavailable=lookup.unavailable,
            seconds=round(time.perf_counter() - started, 3),
        )
        return outreach_pb2.DetectRisksResponse(findings=[finding_to_proto(row) for row in rows])

    async def DraftOutreach(
        self,
        request: outreach_pb2.DraftOutreachRequest,
        context: grpc.aio.ServicerContext[outreach_pb2.DraftOutreachRequest, outreach_pb2.DraftOutreachResponse],
    ) -> outreach_pb2.DraftOutreachResponse:
        problems = Violations()
        check_id(problems, request.tenant_id, "tenant_id")
        problems.check(bool(request.finding_id.strip()), "finding_id", "required")
        problems.raise_if_any()
        finding = await asyncio.to_thread(self._store.get_finding, request.tenant_id, request.finding_id)
        if finding is None:
            raise NotFound(f"finding {request.finding_id!r} not found", reason="FINDING_NOT_FOUND")
        if not _is_concrete(finding):
            # "Are you okay?" is spam: no measured change, no message.
            raise FailedPrecondition("the finding has no concrete evidence to write about",
                                     reason="NO_CONCRETE_FINDING")
        existing = await asyncio.to_thread(self._store.drafts_for_finding, finding.finding_id)
        cluster = finding.kind == RELEASE_CLUSTER
        now = self._clock()
        pending_ids = [a for a in finding.account_ids if a not in existing]
        eligible, skipped = await self._eligible(request.tenant_id, pending_ids, now)
        facts = _facts(finding)
        drafts: list[OutreachDraftRow] = []
        if cluster:
            if "" in existing:
                drafts.append(existing[""])
                skipped = []
            elif eligible:
                message, model = await self._write(facts, None)
                drafts.append(await self._add(finding.tenant_id, finding.finding_id, "", message, model, finding,
                                              now, recipients=[a.account_id for a in eligible]))
        else:
            drafts += [existing[a] for a in finding.account_ids if a in existing]
            for account in eligible:
                recipient = Recipient(account.account_id, account.name, account.contact_name, account.csm_name)
                message, model = await self._write(facts, recipient)
                drafts.append(await self._add(finding.tenant_id, finding.finding_id, account.account_id, message,
                                              model, finding, now))
        log.info("outreach_drafted", drafts=len(drafts), skipped=len(skipped),
                 generators=",".join(sorted({d.generator for d in drafts})))
        return outreach_pb2.DraftOutreachResponse(
            drafts=[draft_to_proto(d) for d in drafts],
            skipped=[outreach_pb2.SkippedAccount(account_id=a, reason=r) for a, r in skipped],
        )

    async def _eligible(
        self, tenant_id: str, account_ids: list[str], now: dt.datetime
    ) -> tuple[list[AccountRow], list[tuple[str, str]]]:
        """Accounts that may get a message now, and (account, reason) for the others."""
        accounts = await asyncio.to_thread(self._store.accounts, tenant_id, account_ids)
        since = now - dt.timedelta(days=self._settings.frequency_cap_days)
        counts = await asyncio.to_thread(self._store.messages_since, tenant_id, account_ids, since)
        eligible, skipped = [], []
        for account_id in account_ids:
            account = accounts.get(account_id)
            if account is None or (account.churned_at is not None and account.churned_at <= now):
                reason = "churned" if account is not None else "unknown_account"
            elif account.opted_out:
                reason = "opted_out"
            elif not account.contact_email:
                reason = "no_contact"
            elif counts.get(account_id, 0) >= self._settings.frequency_cap_messages:
                reason = "frequency_cap"
            else:
                eligible.append(account)
                continue
            skipped.append((account_id, reason))
        return eligible, skipped

    async def _write(self, facts: FindingFacts, recipient: Recipient | None) -> tuple[Message, str]:
        """The LLM's paragraph if it passes the grounding check, else the template's."""
        try:
            completion = await self._llm.complete(
                drafting.prompt(facts), max_tokens=180, stop=["\n\n", "\nFacts:", "\nParagraph:"]
            )
        except LlmUnavailable as error:
            log.warning("outreach_llm_unavailable", error=str(error))
        else:
            paragraph = completion.text.strip()
            problems = drafting.grounding_problems(paragraph, facts)
            if problems == ["fix_missing"]:
                # A small model often states the finding well and stops: the retrieved fix
                # is added verbatim rather than throwing a good sentence away.
                paragraph = drafting.with_fix(paragraph, facts)
                problems = drafting.grounding_problems(paragraph, facts)
            if not problems:
                return drafting.compose(paragraph, facts, recipient, "llm"), completion.model
            log.info("outreach_llm_text_rejected", problems=",".join(problems[:3]))
        return drafting.compose(drafting.template_paragraph(facts), facts, recipient, "template"), ""

    async def _add(
        self, tenant_id: str, finding_id: str, account_id: str, message: Message, model: str,
        finding: RiskFindingRow, now: dt.datetime, recipients: list[str] | None = None,
    ) -> OutreachDraftRow:
        row = OutreachDraftRow(
            draft_id=str(uuid.uuid4()), tenant_id=tenant_id, account_id=account_id, finding_id=finding_id,
            subject=message.subject, body=message.body, original_body=message.body,
            state="DRAFT_STATE_PENDING_REVIEW", created_at=now, generator=message.generator, model=model,
            prompt_version=message.prompt_version, sources=finding.sources, trace_id=current_trace_id(),
            reviewer_id="", recipients=recipients or [],
        )
        return await asyncio.to_thread(self._store.add_draft, row)

    async def ReviewDraft(
        self,
        request: outreach_pb2.ReviewDraftRequest,
        context: grpc.aio.ServicerContext[outreach_pb2.ReviewDraftRequest, outreach_pb2.ReviewDraftResponse],
    ) -> outreach_pb2.ReviewDraftResponse:
        problems = Violations()
        check_id(problems, request.tenant_id, "tenant_id")
        problems.check(bool(request.draft_id.strip()), "draft_id", "required")
        problems.check(bool(request.reviewer_id.strip()), "reviewer_id", "required")
        problems.check(request.action != outreach_pb2.REVIEW_ACTION_UNSPECIFIED, "action", "required")
        if request.action == outreach_pb2.REVIEW_ACTION_EDIT:
            problems.check(bool(request.edited_body.strip()), "edited_body", "required to edit")
        problems.check(len(request.edited_body) <= MAX_BODY_CHARS, "edited_body",
                       f"at most {MAX_BODY_CHARS} characters")
        problems.raise_if_any()
        draft = await asyncio.to_thread(self._store.get_draft, request.tenant_id, request.draft_id)
        if draft is None:
            raise NotFound(f"draft {request.draft_id!r} not found", reason="DRAFT_NOT_FOUND")
        if draft.state != "DRAFT_STATE_PENDING_REVIEW":
            raise FailedPrecondition(f"the draft is {draft.state}, not pending review", reason="DRAFT_NOT_PENDING")
        now = self._clock()
        outbox: list[dict[str, object]] = []
        if request.action == outreach_pb2.REVIEW_ACTION_REJECT:
            state, final_body, action, edit_ratio = "DRAFT_STATE_REJECTED", draft.body, "reject", 1.0
        else:
            edited = request.action == outreach_pb2.REVIEW_ACTION_EDIT
            final_body = request.edited_body.strip() if edited else draft.body
            state, action = "DRAFT_STATE_APPROVED", "edit" if edited else "approve"
            edit_ratio = round(1 - difflib.SequenceMatcher(None, draft.body, final_body).ratio(), 4)
            # Opt-outs and caps are checked again: time passed since the draft was written.
            eligible, skipped = await self._eligible(draft.tenant_id, [draft.account_id] if draft.account_id
                                                     else list(draft.recipients), now)
            if not eligible:
                reasons = ",".join(sorted({reason for _, reason in skipped}))
                raise FailedPrecondition(f"no recipient may be messaged now ({reasons})",
                                         reason="NO_ELIGIBLE_RECIPIENT", metadata={"reasons": reasons})
            for account in eligible:
                outbox.append({
                    "draft_id": draft.draft_id, "tenant_id": draft.tenant_id, "account_id": account.account_id,
                    "to_address": account.contact_email, "subject": draft.subject,
                    "body": drafting.personalise(final_body, account.contact_name),
                    "not_before": next_send_time(now, account.timezone, self._settings.quiet_hours_start,
                                                 self._settings.quiet_hours_end),
                })
        reviewed = await asyncio.to_thread(
            self._store.review, draft, state=state, final_body=final_body, action=action,
            reviewer_id=request.reviewer_id, edit_ratio=edit_ratio, outbox=outbox, now=now,
        )
        if reviewed is None:
            raise Aborted("the draft was reviewed by someone else meanwhile", reason="DRAFT_REVIEWED_CONCURRENTLY")
        log.info("outreach_reviewed", action=action, edit_ratio=edit_ratio, messages=len(outbox))
        return outreach_pb2.ReviewDraftResponse(draft=draft_to_proto(reviewed))

    async def ListDrafts(
        self,
        request: outreach_pb2.ListDraftsRequest,
        context: grpc.aio.ServicerContext[outreach_pb2.ListDraftsRequest, outreach_pb2.ListDraftsResponse],
    ) -> outreach_pb2.ListDraftsResponse:
        problems = Violations()
        check_id(problems, request.tenant_id, "tenant_id")
        problems.check(request.state in outreach_pb2.DraftState.values(), "state", "unknown state")
        problems.raise_if_any()
        state = request.state or outreach_pb2.DRAFT_STATE_PENDING_REVIEW
        drafts = await asyncio.to_thread(self._store.list_drafts, request.tenant_id, state)
        return outreach_pb2.ListDraftsResponse(drafts=drafts)

    async def RecordReplyRoute(
        self,
        request: outreach_pb2.RecordReplyRouteRequest,
        context: grpc.aio.ServicerContext[outreach_pb2.RecordReplyRouteRequest, outreach_pb2.RecordReplyRouteResponse],
    ) -> outreach_pb2.RecordReplyRouteResponse:
        route = route_from_request(request)
        created, recorded = await asyncio.to_thread(self._store.record_reply_route, route, self._clock())
        if not recorded:
            # Another customer's conversation: the concierge refuses the mail itself.
            log.warning("reply_route_not_recorded", reason="other_customers_conversation")
        return outreach_pb2.RecordReplyRouteResponse(created=created, recorded=recorded)

    async def DeleteReplyRoutes(
        self,
        request: outreach_pb2.DeleteReplyRoutesRequest,
        context: grpc.aio.ServicerContext[
            outreach_pb2.DeleteReplyRoutesRequest, outreach_pb2.DeleteReplyRoutesResponse
        ],
    ) -> outreach_pb2.DeleteReplyRoutesResponse:
        problems = Violations()
        check_id(problems, request.customer.tenant_id, "customer.tenant_id")
        check_customer_id(problems, request.customer.customer_id, "customer.customer_id")
        problems.raise_if_any()
        deleted = await asyncio.to_thread(
            self._store.delete_reply_routes, request.customer.tenant_id, request.customer.customer_id)
        log.info("reply_routes_deleted", routes=deleted)
        return outreach_pb2.DeleteReplyRoutesResponse(deleted=deleted)
