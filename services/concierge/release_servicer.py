"""ReleaseService: a tenant's releases over gRPC (create from the working copy, get, list,
compare, record a suite run, promote behind the suite, roll back, events; run one in
shadow (shadow.py), as a canary (canary.py); refit the confidence (refit.py)). The admin
API in the gateway is its only caller; the gateway checks the admin role and names the
actor. What each RPC accepts is checked here, every refusal naming its field."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable

import grpc

from aftercare.concierge.v1 import releases_pb2, releases_pb2_grpc
from servicekit.errors import FailedPrecondition, InvalidArgument, Violations
from servicekit.ids import check_id
from services.concierge.canary import CanaryBook
from services.concierge.refit import Refitter
from services.concierge.release_store import release_not_found
from services.concierge.releases import LIVE_ALIAS, ReleaseBook
from services.concierge.shadow import ShadowBook

RELEASE_ID = re.compile(r"r[1-9][0-9]{0,8}")
MAX_REASON_CHARS = 500
MAX_ACTOR_CHARS = 200
MAX_SUITE_DIGEST_CHARS = 128
MAX_SCENARIOS = 2000
MAX_FAILURES = 50
MAX_FAILURE_CHARS = 1000
MAX_SCENARIO_NAME_CHARS = 200
MAX_MODEL_CHARS = 200
DEFAULT_RELEASES_PAGE, MAX_RELEASES_PAGE = 20, 100
DEFAULT_EVENTS_PAGE, MAX_EVENTS_PAGE = 50, 200
DEFAULT_DISAGREEMENTS, MAX_DISAGREEMENTS = 20, 100
MIN_CANARY_PERCENT, MAX_CANARY_PERCENT = 1, 50
# Bounds on a canary policy's minimum observations per arm (a larger one would never compare).
MAX_MIN_JUDGED, MAX_MIN_TURNS = 100_000, 1_000_000
DEFAULT_TARGET_ACCURACY = 0.9

Context = grpc.aio.ServicerContext


# --- validation ---------------------------------------------------------------


def _check_text(violations: Violations, value: str, field_path: str, max_chars: int) -> None:
    violations.check(bool(value.strip()), field_path, "required")
    violations.check(len(value) <= max_chars, field_path, f"at most {max_chars} characters")
    violations.check(value.isprintable() or not value.strip(), field_path, "no control characters")


def _check_release_id(violations: Violations, value: str, field_path: str, *, live: bool = False) -> None:
    if live and value == LIVE_ALIAS:
        return
    expected = '"r<number>" or "live"' if live else '"r<number>"'
    violations.check(bool(RELEASE_ID.fullmatch(value)), field_path, f"must be {expected}")


def _check_page_size(violations: Violations, page_size: int) -> None:
    # Too large a page is coerced to the maximum rather than refused (AIP-158).
    violations.check(page_size >= 0, "page_size", "must not be negative")


def validate_create(request: releases_pb2.CreateReleaseRequest) -> None:
    violations = Violations()
    check_id(violations, request.tenant_id, "tenant_id")
    _check_text(violations, request.description, "description", MAX_REASON_CHARS)
    _check_text(violations, request.created_by, "created_by", MAX_ACTOR_CHARS)
    check_id(violations, request.request_id, "request_id")
    overrides = request.overrides
    for intent, value in overrides.thresholds.items():
        field_path = f"overrides.thresholds[{intent!r}]"
        if intent:
            check_id(violations, intent, field_path)
        violations.check(0.0 <= value <= 1.0, field_path, "must be in [0, 1]")
    violations.check(len(overrides.llm_model) <= MAX_MODEL_CHARS, "overrides.llm_model",
                     f"at most {MAX_MODEL_CHARS} characters")
    violations.check(overrides.llm_model.isprintable() and overrides.llm_model == overrides.llm_model.strip(),
                     "overrides.llm_model", "no spaces around it, no control characters")
    violations.raise_if_any()


def validate_suite_run(request: releases_pb2.RecordSuiteRunRequest) -> None:
    violations = Violations()
    check_id(violations, request.tenant_id, "tenant_id")
    run = request.run
    _check_release_id(violations, run.release_id, "run.release_id")
    _check_text(violations, run.suite_digest, "run.suite_digest", MAX_SUITE_DIGEST_CHARS)
    _check_text(violations, run.run_by, "run.run_by", MAX_ACTOR_CHARS)
    violations.check(not run.run_id, "run.run_id", "is assigned by the service; leave it empty")
    violations.check(1 <= run.total <= MAX_SCENARIOS, "run.total", f"must be 1 to {MAX_SCENARIOS}")
    # The gate trusts passed == total: the counts must be those of the results sent.
    violations.check(len(run.results) == run.total, "run.results", "must hold one result per scenario run (total)")
    violations.check(run.passed == sum(1 for r in run.results if r.passed), "run.passed",
                     "must be the number of passed results")
    for index, result in enumerate(run.results[:MAX_SCENARIOS]):
        _check_text(violations, result.name, f"run.results[{index}].name", MAX_SCENARIO_NAME_CHARS)
        violations.check(len(result.failures) <= MAX_FAILURES, f"run.results[{index}].failures",
                         f"at most {MAX_FAILURES}")
        violations.check(not (result.passed and result.failures), f"run.results[{index}].failures",
                         "a passed scenario has none")
        violations.check(all(len(f) <= MAX_FAILURE_CHARS and "\x00" not in f for f in result.failures),
                         f"run.results[{index}].failures", f"each at most {MAX_FAILURE_CHARS} characters, no NUL")
    if run.HasField("started_at") and run.HasField("finished_at"):
        violations.check(run.started_at.ToDatetime() <= run.finished_at.ToDatetime(), "run.finished_at",
                         "must not be before started_at")
    violations.raise_if_any()


def validate_start_shadow(request: releases_pb2.StartShadowRequest) -> None:
    violations = Violations()
    check_id(violations, request.tenant_id, "tenant_id")
    _check_release_id(violations, request.release_id, "release_id")
    violations.check(0.0 <= request.sample_rate <= 1.0, "sample_rate", "must be in [0, 1]; 0 means 1")
    _check_text(violations, request.actor, "actor", MAX_ACTOR_CHARS)
    violations.raise_if_any()


def validate_start_canary(request: releases_pb2.StartCanaryRequest) -> None:
    violations = Violations()
    check_id(violations, request.tenant_id, "tenant_id")
    _check_release_id(violations, request.release_id, "release_id")
    violations.check(MIN_CANARY_PERCENT <= request.percent <= MAX_CANARY_PERCENT, "percent",
                     f"must be {MIN_CANARY_PERCENT} to {MAX_CANARY_PERCENT}")
    policy = request.policy
    for margin in ("accuracy_margin", "escalation_margin"):
        violations.check(0.0 <= getattr(policy, margin) < 1.0, f"policy.{margin}",
                         "must be in [0, 1); 0 takes the default")
    violations.check(0 <= policy.min_judged <= MAX_MIN_JUDGED, "policy.min_judged",
                     f"must be 0 to {MAX_MIN_JUDGED}; 0 takes the default")
    violations.check(0 <= policy.min_turns <= MAX_MIN_TURNS, "policy.min_turns",
                     f"must be 0 to {MAX_MIN_TURNS}; 0 takes the default")
    violations.check(policy.confidence == 0.0 or 0.5 < policy.confidence < 1.0, "policy.confidence",
                     "must be in (0.5, 1); 0 takes the default")
    _check_text(violations, request.actor, "actor", MAX_ACTOR_CHARS)
    if request.override_reason:
        _check_text(violations, request.override_reason, "override_reason", MAX_REASON_CHARS)
    violations.raise_if_any()


def validate_refit(request: releases_pb2.RefitConfidenceRequest) -> None:
    violations = Violations()
    check_id(violations, request.tenant_id, "tenant_id")
    _check_text(violations, request.actor, "actor", MAX_ACTOR_CHARS)
    check_id(violations, request.request_id, "request_id")
    violations.check(request.target_accuracy == 0.0 or 0.5 < request.target_accuracy < 1.0, "target_accuracy",
                     f"must be in (0.5, 1); 0 means {DEFAULT_TARGET_ACCURACY}")
    violations.raise_if_any()


def _not_served(what: str) -> FailedPrecondition:
    """This concierge was built without the part an RPC needs (app.py always wires them)."""
    return FailedPrecondition(f"this concierge runs no {what}", reason="NOT_SERVED")


# --- page tokens (keyset cursors tied to the tenant) ----------------------------


def _fingerprint(tenant_id: str, listing: str) -> str:
    return hashlib.sha256(json.dumps([listing, tenant_id]).encode()).hexdigest()[:16]


def encode_page_token(position: int, tenant_id: str, listing: str) -> str:
    payload = {"p": position, "q": _fingerprint(tenant_id, listing)}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode_page_token(token: str, tenant_id: str, listing: str) -> int:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
        if payload["q"] != _fingerprint(tenant_id, listing):
            raise ValueError("token from another query")
        position = payload["p"]
        if not isinstance(position, int) or isinstance(position, bool) or position < 1:
            raise ValueError("bad position")
        return position
    except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise InvalidArgument([("page_token", "invalid, or from another tenant's listing")]) from error


# --- comparing ------------------------------------------------------------------


def _threshold_text(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def component_changes(
    base: releases_pb2.ReleaseComponents, other: releases_pb2.ReleaseComponents
) -> Iterable[releases_pb2.ComponentChange]:
    """The components two releases differ in, in ReleaseComponents' order; a threshold per
    intent ("thresholds.<intent>", the default as "thresholds")."""
    for field in releases_pb2.ReleaseComponents.DESCRIPTOR.fields:
        if field.name == "thresholds":
            for intent in sorted(set(base.thresholds) | set(other.thresholds)):
                before, after = base.thresholds.get(intent), other.thresholds.get(intent)
                if before != after:
                    yield releases_pb2.ComponentChange(
                        component=f"thresholds.{intent}" if intent else "thresholds",
                        base=_threshold_text(before), other=_threshold_text(after),
                    )
            continue
        before_value, after_value = getattr(base, field.name), getattr(other, field.name)
        if before_value != after_value:
            yield releases_pb2.ComponentChange(component=field.name, base=before_value, other=after_value)


# --- the service ------------------------------------------------------------------


class ReleaseServicer(releases_pb2_grpc.ReleaseServiceServicer):
    def __init__(self, book: ReleaseBook, *, shadows: ShadowBook | None = None, refitter: Refitter | None = None):
        # Canaries are the book's (book.canaries): serving asks them for each conversation's draw.
        self._book = book
        self._shadows = shadows
        self._refitter = refitter

    @property
    def _shadow_book(self) -> ShadowBook:
        if self._shadows is None:
            raise _not_served("shadows")
        return self._shadows

    @property
    def _canary_book(self) -> CanaryBook:
        if self._book.canaries is None:
            raise _not_served("canaries")
        return self._book.canaries

    @property
    def _refit(self) -> Refitter:
        if self._refitter is None:
            raise _not_served("confidence refits")
        return self._refitter

    async def _resolve(self, tenant_id: str, release_id: str) -> str:
        """A release id, "live" read now (a tenant without releases gets its first)."""
        return await self._book.live_release_id(tenant_id, fresh=True) if release_id == LIVE_ALIAS else release_id

    async def _release(self, tenant_id: str, release_id: str) -> releases_pb2.Release:
        release_id = await self._resolve(tenant_id, release_id)
        stored = await asyncio.to_thread(self._book.store.load, tenant_id, release_id)
        if stored is None:
            raise release_not_found(release_id)
        return stored.release

    async def CreateRelease(
        self,
        request: releases_pb2.CreateReleaseRequest,
        context: Context[releases_pb2.CreateReleaseRequest, releases_pb2.CreateReleaseResponse],
    ) -> releases_pb2.CreateReleaseResponse:
        validate_create(request)
        stored = await self._book.create(
            request.tenant_id, description=request.description, created_by=request.created_by,
            request_id=request.request_id, overrides=request.overrides,
        )
        return releases_pb2.CreateReleaseResponse(release=stored.release)

    async def GetRelease(
        self,
        request: releases_pb2.GetReleaseRequest,
        context: Context[releases_pb2.GetReleaseRequest, releases_pb2.GetReleaseResponse],
    ) -> releases_pb2.GetReleaseResponse:
        violations = Violations()
        check_id(violations, request.tenant_id, "tenant_id")
        _check_release_id(violations, request.release_id, "release_id", live=True)
        violations.raise_if_any()
        return releases_pb2.GetReleaseResponse(release=await self._release(request.tenant_id, request.release_id))

    async def ListReleases(
        self,
        request: releases_pb2.ListReleasesRequest,
        context: Context[releases_pb2.ListReleasesRequest, releases_pb2.ListReleasesResponse],
    ) -> releases_pb2.ListReleasesResponse:
        violations = Violations()
        check_id(violations, request.tenant_id, "tenant_id")
        _check_page_size(violations, request.page_size)
        violations.raise_if_any()
        page_size = min(request.page_size or DEFAULT_RELEASES_PAGE, MAX_RELEASES_PAGE)
        before = decode_page_token(request.page_token, request.tenant_id, "releases") if request.page_token else None
        releases, next_before = await asyncio.to_thread(
            self._book.store.list_page, request.tenant_id, page_size, before
        )
        return releases_pb2.ListReleasesResponse(
            releases=releases,
            next_page_token=encode_page_token(next_before, request.tenant_id, "releases") if next_before else "",
        )

    async def CompareReleases(
        self,
        request: releases_pb2.CompareReleasesRequest,
        context: Context[releases_pb2.CompareReleasesRequest, releases_pb2.CompareReleasesResponse],
    ) -> releases_pb2.CompareReleasesResponse:
        violations = Violations()
        check_id(violations, request.tenant_id, "tenant_id")
        _check_release_id(violations, request.base_release_id, "base_release_id", live=True)
        _check_release_id(violations, request.other_release_id, "other_release_id", live=True)
        violations.raise_if_any()
        base = await self._release(request.tenant_id, request.base_release_id)
        other = await self._release(request.tenant_id, request.other_release_id)
        return releases_pb2.CompareReleasesResponse(
            base=base, other=other, changes=component_changes(base.components, other.components)
        )

    async def RecordSuiteRun(
        self,
        request: releases_pb2.RecordSuiteRunRequest,
        context: Context[releases_pb2.RecordSuiteRunRequest, releases_pb2.RecordSuiteRunResponse],
    ) -> releases_pb2.RecordSuiteRunResponse:
        validate_suite_run(request)
        run = await asyncio.to_thread(self._book.store.record_suite_run, request.tenant_id, request.run)
        return releases_pb2.RecordSuiteRunResponse(run=run)

    async def PromoteRelease(
        self,
        request: releases_pb2.PromoteReleaseRequest,
        context: Context[releases_pb2.PromoteReleaseRequest, releases_pb2.PromoteReleaseResponse],
    ) -> releases_pb2.PromoteReleaseResponse:
        violations = Violations()
        check_id(violations, request.tenant_id, "tenant_id")
        _check_release_id(violations, request.release_id, "release_id")
        _check_text(violations, request.actor, "actor", MAX_ACTOR_CHARS)
        if request.override_reason:
            _check_text(violations, request.override_reason, "override_reason", MAX_REASON_CHARS)
        violations.raise_if_any()
        release, event = await asyncio.to_thread(
            self._book.store.promote, request.tenant_id, request.release_id, request.actor, request.override_reason
        )
        self._book.follow(request.tenant_id, release.release_id)
        return releases_pb2.PromoteReleaseResponse(release=release, event=event)

    async def RollbackRelease(
        self,
        request: releases_pb2.RollbackReleaseRequest,
        context: Context[releases_pb2.RollbackReleaseRequest, releases_pb2.RollbackReleaseResponse],
    ) -> releases_pb2.RollbackReleaseResponse:
        violations = Violations()
        check_id(violations, request.tenant_id, "tenant_id")
        if request.to_release_id:
            _check_release_id(violations, request.to_release_id, "to_release_id")
        _check_text(violations, request.actor, "actor", MAX_ACTOR_CHARS)
        _check_text(violations, request.reason, "reason", MAX_REASON_CHARS)
        violations.raise_if_any()
        release, event = await asyncio.to_thread(
            self._book.store.rollback, request.tenant_id, request.to_release_id, request.actor, request.reason
        )
        self._book.follow(request.tenant_id, release.release_id)
        return releases_pb2.RollbackReleaseResponse(release=release, event=event)

    async def ListReleaseEvents(
        self,
        request: releases_pb2.ListReleaseEventsRequest,
        context: Context[releases_pb2.ListReleaseEventsRequest, releases_pb2.ListReleaseEventsResponse],
    ) -> releases_pb2.ListReleaseEventsResponse:
        violations = Violations()
        check_id(violations, request.tenant_id, "tenant_id")
        _check_page_size(violations, request.page_size)
        violations.raise_if_any()
        page_size = min(request.page_size or DEFAULT_EVENTS_PAGE, MAX_EVENTS_PAGE)
        before = decode_page_token(request.page_token, request.tenant_id, "events") if request.page_token else None
        events, next_before = await asyncio.to_thread(
            self._book.store.events_page, request.tenant_id, page_size, before
        )
        return releases_pb2.ListReleaseEventsResponse(
            events=events,
            next_page_token=encode_page_token(next_before, request.tenant_id, "events") if next_before else "",
        )

    # --- shadow, canary, refit --------------------------------------------------------

    async def StartShadow(
        self,
        request: releases_pb2.StartShadowRequest,
        context: Context[releases_pb2.StartShadowRequest, releases_pb2.StartShadowResponse],
    ) -> releases_pb2.StartShadowResponse:
        validate_start_shadow(request)
        shadow, event = await self._shadow_book.start(
            request.tenant_id, request.release_id, request.sample_rate or 1.0, request.actor
        )
        return releases_pb2.StartShadowResponse(shadow=shadow, event=event)

    async def StopShadow(
        self,
        request: releases_pb2.StopShadowRequest,
        context: Context[releases_pb2.StopShadowRequest, releases_pb2.StopShadowResponse],
    ) -> releases_pb2.StopShadowResponse:
        violations = Violations()
        check_id(violations, request.tenant_id, "tenant_id")
        _check_text(violations, request.actor, "actor", MAX_ACTOR_CHARS)
        violations.raise_if_any()
        return releases_pb2.StopShadowResponse(shadow=await self._shadow_book.stop(request.tenant_id, request.actor))

    async def GetShadowReport(
        self,
        request: releases_pb2.GetShadowReportRequest,
        context: Context[releases_pb2.GetShadowReportRequest, releases_pb2.GetShadowReportResponse],
    ) -> releases_pb2.GetShadowReportResponse:
        violations = Violations()
        check_id(violations, request.tenant_id, "tenant_id")
        if request.shadow_id:
            check_id(violations, request.shadow_id, "shadow_id")
        violations.check(0 <= request.max_disagreements <= MAX_DISAGREEMENTS, "max_disagreements",
                         f"must be 0 to {MAX_DISAGREEMENTS}; 0 means {DEFAULT_DISAGREEMENTS}")
        violations.raise_if_any()
        return await self._shadow_book.report(
            request.tenant_id, request.shadow_id, request.max_disagreements or DEFAULT_DISAGREEMENTS
        )

    async def StartCanary(
        self,
        request: releases_pb2.StartCanaryRequest,
        context: Context[releases_pb2.StartCanaryRequest, releases_pb2.StartCanaryResponse],
    ) -> releases_pb2.StartCanaryResponse:
        validate_start_canary(request)
        canary, event = await self._canary_book.start(
            request.tenant_id, request.release_id, request.percent, request.policy, request.actor,
            request.override_reason,
        )
        return releases_pb2.StartCanaryResponse(canary=canary, event=event)

    async def StopCanary(
        self,
        request: releases_pb2.StopCanaryRequest,
        context: Context[releases_pb2.StopCanaryRequest, releases_pb2.StopCanaryResponse],
    ) -> releases_pb2.StopCanaryResponse:
        violations = Violations()
        check_id(violations, request.tenant_id, "tenant_id")
        _check_text(violations, request.actor, "actor", MAX_ACTOR_CHARS)
        _check_text(violations, request.reason, "reason", MAX_REASON_CHARS)
        violations.raise_if_any()
        canary = await self._canary_book.stop(request.tenant_id, request.actor, request.reason)
        return releases_pb2.StopCanaryResponse(canary=canary)

    async def GetCanary(
        self,
        request: releases_pb2.GetCanaryRequest,
        context: Context[releases_pb2.GetCanaryRequest, releases_pb2.GetCanaryResponse],
    ) -> releases_pb2.GetCanaryResponse:
        violations = Violations()
        check_id(violations, request.tenant_id, "tenant_id")
        violations.raise_if_any()
        return releases_pb2.GetCanaryResponse(canary=await self._canary_book.get(request.tenant_id))

    async def RefitConfidence(
        self,
        request: releases_pb2.RefitConfidenceRequest,
        context: Context[releases_pb2.RefitConfidenceRequest, releases_pb2.RefitConfidenceResponse],
    ) -> releases_pb2.RefitConfidenceResponse:
        validate_refit(request)
        return await self._refit.refit(
            request.tenant_id, request.actor, request.request_id, request.target_accuracy or DEFAULT_TARGET_ACCURACY
        )
