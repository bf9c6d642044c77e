"""Releases: per tenant, one immutable, versioned snapshot of everything that decides
what a customer gets, and the one LIVE release that serves the tenant's conversations.

A release is made from the tenant's working copy: its persona files as merged
(persona.PersonaBook.raw), its confidence fit for the serving configuration, the LLM model
and prompt version the concierge runs, triage's intent model in service and the actions
service's catalog version, with an admin's overrides (thresholds, model, prompt version).
It keeps the persona and the fit as snapshots, so editing a persona file or refitting
changes the working copy only: what customers get changes when a release is promoted.

`ReleaseBook.serving` is what a turn asks: the ServingRelease of the tenant's live release,
of its running canary's release when the conversation is drawn into the canary (canary.py),
or of a named one, to evaluate a candidate. Releases never change, so each is built once
per process; the live pointer is re-read at most every second, so every replica follows a
promotion or a rollback within about a second. A tenant's first turn (or first release
operation) makes its working copy r1 and LIVE, recorded as by "system".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from sqlalchemy.engine import Engine

from aftercare.actions.v1 import actions_pb2, actions_pb2_grpc
from aftercare.concierge.v1 import releases_pb2
from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
from servicekit.errors import FailedPrecondition, InvalidArgument
from services.concierge import prompts
from services.concierge.canary import CanaryBook
from services.concierge.confidence import UNCALIBRATED, CalibrationError, Calibrator, Confidence, Configuration
from services.concierge.persona import Persona, PersonaBook, PersonaError, from_snapshot
from services.concierge.release_store import (
    SYSTEM_ACTOR,
    ReleaseStore,
    Snapshot,
    StoredRelease,
    release_not_found,
)
from services.concierge.settings import ConciergeSettings

log = structlog.get_logger(__name__)

# The name of a tenant's live release wherever a release id is asked for.
LIVE_ALIAS = "live"
# Prompt versions a release may name (prompts.py): the unit phraser's and the generative answerer's.
KNOWN_PROMPT_VERSIONS = (prompts.PHRASE_VERSION, prompts.GENERATIVE_VERSION)
# How long making a release waits for triage and actions to say their versions.
DEPENDENCY_TIMEOUT_S = 2.0
# How stale a replica's idea of a tenant's live release may be.
LIVE_REFRESH_S = 1.0
# Releases built per process before the oldest are dropped (each is rebuilt on demand).
MAX_CACHED_RELEASES = 2048
FIRST_RELEASE_DESCRIPTION = "The tenant's working copy when it was first served."


@dataclass(frozen=True)
class ServingRelease:
    """What a turn is served with: one release of one tenant, ready to use."""

    tenant_id: str
    release_id: str
    # The release's persona snapshot (threshold overrides applied).
    persona: Persona
    # The release's confidence fit; None: no fit, the gate stays closed.
    calibrator: Calibrator | None
    calibration_version: str
    llm_model: str
    prompt_version: str


def content_digest(value: object) -> str:
    """sha256 of a JSON value in canonical form (the versions of persona and routing policy)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def apply_threshold_overrides(persona: dict[str, Any], thresholds: dict[str, float]) -> dict[str, Any]:
    """The persona JSON with `thresholds` in place of its own (key "" is the default)."""
    changed = dict(persona)
    intents = dict(changed.get("intent_thresholds") or {})
    for intent, value in thresholds.items():
        if intent:
            intents[intent] = value
        else:
            changed["confidence_threshold"] = value
    changed["intent_thresholds"] = intents
    return changed


def serving_release(stored: StoredRelease) -> ServingRelease:
    release = stored.release
    try:
        persona = from_snapshot(stored.persona)
        calibrator = Calibrator.from_snapshot(stored.fit) if stored.fit is not None else None
    except (PersonaError, CalibrationError) as error:
        # Snapshots were checked when the release was made; this is a damaged row.
        log.error("release_invalid", tenant_id=release.tenant_id, release_id=release.release_id, error=str(error))
        raise FailedPrecondition(
            f"release {release.release_id!r} cannot serve: {error}", reason="RELEASE_INVALID"
        ) from error
    return ServingRelease(
        tenant_id=release.tenant_id,
        release_id=release.release_id,
        persona=persona,
        calibrator=calibrator,
        calibration_version=calibrator.version if calibrator is not None else UNCALIBRATED,
        llm_model=release.components.llm_model,
        prompt_version=release.components.prompt_version,
    )


class ReleaseBook:
    """A concierge replica's view of the tenants' releases (module doc)."""

    def __init__(
        self,
        engine: Engine,
        settings: ConciergeSettings,
        *,
        personas: PersonaBook | None = None,
        confidence: Confidence | None = None,
        triage: triage_pb2_grpc.TriageServiceStub | None = None,
        actions: actions_pb2_grpc.ActionsServiceStub | None = None,
        canaries: CanaryBook | None = None,
        live_refresh_s: float = LIVE_REFRESH_S,
    ):
        self.store = ReleaseStore(engine)
        # Which conversations a running canary serves; None: no canaries, the live release serves all.
        self.canaries = canaries
        self._settings = settings
        self._personas = personas or PersonaBook(settings.persona_dir, settings.confidence_threshold)
        self._confidence = confidence or Confidence.load(
            settings.fits_dir, self._configuration(settings.llm_model, self.default_prompt_version),
            allow_uncalibrated=settings.allow_uncalibrated,
        )
        self._triage = triage
        self._actions = actions
        self._live_refresh_s = live_refresh_s
        self._releases: dict[tuple[str, str], ServingRelease] = {}
        # Per tenant: when the live pointer was read (monotonic seconds) and what it said.
        self._live: dict[str, tuple[float, str]] = {}
        # One first release per tenant at a time in this process (the store settles replicas).
        self._first_release_locks: dict[str, asyncio.Lock] = {}

    @property
    def default_prompt_version(self) -> str:
        """The prompt version the concierge serves with (prompts.version_for its answer mode)."""
        return prompts.version_for(self._settings.answer_mode)

    # --- serving -------------------------------------------------------------

    async def serving(self, tenant_id: str, release_id: str = "", *, conversation_id: str = "") -> ServingRelease:
        """The named release; else the release of the tenant's running canary when the
        conversation is drawn into it; else the tenant's live release ("" or "live"). NotFound
        (RELEASE_NOT_FOUND) for a release the tenant does not have."""
        if not release_id and conversation_id and self.canaries is not None:
            release_id = await self.canaries.assigned_release(tenant_id, conversation_id) or ""
        if release_id in ("", LIVE_ALIAS):
            release_id = await self.live_release_id(tenant_id)
        cached = self._releases.get((tenant_id, release_id))
        if cached is not None:
            return cached
        stored = await asyncio.to_thread(self.store.load, tenant_id, release_id)
        if stored is None:
            raise release_not_found(release_id)
        release = serving_release(stored)
        if len(self._releases) >= MAX_CACHED_RELEASES:
            self._releases.pop(next(iter(self._releases)))
        self._releases[(tenant_id, release_id)] = release
        return release

    async def live_release_id(self, tenant_id: str, *, fresh: bool = False) -> str:
        """The id of the tenant's live release, as read at most LIVE_REFRESH_S ago (`fresh`:
        now); a tenant without one gets its first release (module doc)."""
        cached = self._live.get(tenant_id)
        if cached is not None and not fresh and time.monotonic() - cached[0] < self._live_refresh_s:
            return cached[1]
        read_at = time.monotonic()
        live = await asyncio.to_thread(self.store.live_release_id, tenant_id)
        if live is None:
            live = (await self._first_release(tenant_id)).release.release_id
        self._live[tenant_id] = (read_at, live)
        return live

    def follow(self, tenant_id: str, release_id: str) -> None:
        """This replica changed the tenant's live release: serve the new one at once (a change
        of the live release ends the running canary, release_store.py)."""
        self._live[tenant_id] = (time.monotonic(), release_id)
        if self.canaries is not None:
            self.canaries.forget(tenant_id)

    async def _first_release(self, tenant_id: str) -> StoredRelease:
        lock = self._first_release_locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            snapshot = await self.working_copy(tenant_id)
            # Another replica may have been first: the store then returns its release.
            stored, created = await asyncio.to_thread(
                self.store.create, tenant_id, snapshot, description=FIRST_RELEASE_DESCRIPTION,
                created_by=SYSTEM_ACTOR, request_id=None, live=True,
            )
        if created:
            log.info("release_first", tenant_id=tenant_id, release_id=stored.release.release_id)
        return stored

    # --- making releases -----------------------------------------------------

    async def create(
        self,
        tenant_id: str,
        *,
        description: str,
        created_by: str,
        request_id: str,
        overrides: releases_pb2.ReleaseOverrides | None = None,
    ) -> StoredRelease:
        """A CANDIDATE from the working copy with `overrides`; the same one again for a
        request id seen before. A tenant without releases first gets r1, live, so that a
        candidate always has a live release to be compared with."""
        await self.live_release_id(tenant_id, fresh=True)
        snapshot = await self.working_copy(tenant_id, overrides)
        stored, created = await asyncio.to_thread(
            self.store.create, tenant_id, snapshot, description=description, created_by=created_by,
            request_id=request_id,
        )
        if created:
            log.info("release_created", tenant_id=tenant_id, release_id=stored.release.release_id, by=created_by)
        return stored

    async def working_copy(
        self, tenant_id: str, overrides: releases_pb2.ReleaseOverrides | None = None
    ) -> Snapshot:
        """The tenant's working copy with `overrides`, as a release would fix it."""
        overrides = overrides or releases_pb2.ReleaseOverrides()
        try:
            persona_json = self._personas.raw(tenant_id)
        except PersonaError as error:
            raise FailedPrecondition("the tenant's persona file is invalid", reason="PERSONA_INVALID") from error
        persona_json = apply_threshold_overrides(persona_json, dict(overrides.thresholds))
        try:
            persona = from_snapshot(persona_json)
        except PersonaError as error:
            raise InvalidArgument([("overrides.thresholds", str(error))]) from error
        if overrides.prompt_version and overrides.prompt_version not in KNOWN_PROMPT_VERSIONS:
            raise InvalidArgument([("overrides.prompt_version", f"unknown; known: {', '.join(KNOWN_PROMPT_VERSIONS)}")])
        llm_model = overrides.llm_model or self._settings.llm_model
        prompt_version = overrides.prompt_version or self.default_prompt_version
        fit = self._fit(tenant_id, self._configuration(llm_model, prompt_version))
        triage_version, catalog_version = await asyncio.gather(
            self._triage_model_version(tenant_id), self._action_catalog_version(tenant_id)
        )
        components = releases_pb2.ReleaseComponents(
            llm_model=llm_model,
            prompt_version=prompt_version,
            confidence_fit_version=fit.version if fit is not None else UNCALIBRATED,
            thresholds={"": persona.confidence_threshold, **persona.intent_thresholds},
            triage_model_version=triage_version,
            routing_policy_version=content_digest(persona_json.get("routing") or {})[:16],
            persona_version=f"{persona.version}+{content_digest(persona_json)[:16]}",
            action_catalog_version=catalog_version,
        )
        return Snapshot(components, persona_json, fit.snapshot() if fit is not None else None)

    def _configuration(self, llm_model: str, prompt_version: str) -> Configuration:
        return Configuration.serving(self._settings.answer_mode, self._settings.phrasing, llm_model, prompt_version)

    def _fit(self, tenant_id: str, configuration: Configuration) -> Calibrator | None:
        """The tenant's fit for `configuration`: the serving one's as loaded, another's from the
        fits directory (a model or prompt the LLM writes with changes which fit is valid)."""
        if configuration.id == self._confidence.configuration.id:
            return self._confidence.fit_for(tenant_id)
        try:
            other = Confidence.load(self._settings.fits_dir, configuration, allow_uncalibrated=True)
        except CalibrationError as error:
            raise FailedPrecondition(f"the confidence fit is invalid: {error}", reason="FIT_INVALID") from error
        return other.fit_for(tenant_id)

    async def _triage_model_version(self, tenant_id: str) -> str:
        """Triage's intent model in service for the tenant; "" when triage does not answer."""
        if self._triage is None:
            return ""
        try:
            response: triage_pb2.GetIntentModelResponse = await self._triage.GetIntentModel(
                triage_pb2.GetIntentModelRequest(tenant_id=tenant_id), timeout=DEPENDENCY_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            log.warning("release_triage_version_unknown", tenant_id=tenant_id, code=error.code().name)
            return ""
        return response.current_version or response.serving_version

    async def _action_catalog_version(self, tenant_id: str) -> str:
        """The tenant's action catalog version; "" without an actions service or its answer."""
        if self._actions is None:
            return ""
        try:
            response: actions_pb2.ListToolsResponse = await self._actions.ListTools(
                actions_pb2.ListToolsRequest(tenant_id=tenant_id), timeout=DEPENDENCY_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            log.warning("release_catalog_version_unknown", tenant_id=tenant_id, code=error.code().name)
            return ""
        return response.catalog_version
