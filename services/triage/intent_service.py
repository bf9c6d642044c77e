"""Serving, retraining and rolling back tenants' intent models.

Promotion rule: a new version serves only when it validated at least as well
as the version serving now, within small tolerances for the noise of a
held-out split: accuracy >= current - accuracy_tolerance and ECE <= current +
ece_tolerance, both as measured on each model's own stratified held-out split
before it was refitted. The first version of a tenant is promoted when it
validates at all. Rejected versions stay stored (they can be inspected or
served later with RollbackModel naming them).

Replicas: the versions and the pointer saying which one serves live in the
shared store (services/triage/intent_store.py, the triage database). Each
replica keeps the model its pointer names loaded in memory: `load_current`
loads every tenant's before the replica reports SERVING, and a follower
(`start_following`) polls the pointers' generations every
TRIAGE_MODEL_FOLLOW_SECONDS (on PostgreSQL also woken at once by LISTEN/NOTIFY)
and, when one changed, loads the new version in its own thread and swaps it in
atomically: requests never wait for a load, they keep the old version until
the new one is ready. A promotion or rollback made through this replica
serves here before its RPC returns. Pointer changes are compare-and-set on
the generation, so two replicas promoting at once cannot interleave.

Encoders: a model records the encoder set it was trained with; the engine
refuses (EncoderMismatch) to load one trained with another set than the one it
runs (TRIAGE_INTENT_ENCODERS): TriageContact then answers as for a tenant
without a model (empty intent, route reason "no_intent_model", a warning in the
log), RollbackModel to such a version fails (FAILED_PRECONDITION,
INTENT_ENCODER_MISMATCH), and a retrain promotes the new version whatever the
old one validated at (it cannot serve anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol, cast

import structlog
from numpy.typing import NDArray

from aftercare.triage.v1 import triage_pb2
from servicekit.errors import Aborted
from services.triage.intent_config import TrainConfig
from services.triage.intent_model import EncoderMismatch, IntentModel
from services.triage.intent_store import ModelStore, Pointer, PointerConflict, new_version
from services.triage.intent_training import train_intent_model

log = structlog.get_logger("services.triage.intent_service")

# The label a tenant gives messages that are not for customer care at all.
OFF_TOPIC_LABEL = "off_topic"


# Compare-and-set attempts when other replicas keep changing a tenant's pointer meanwhile.
POINTER_ATTEMPTS = 5


@dataclass(frozen=True)
class RetrainOutcome:
    version: str
    promoted: bool
    accuracy: float
    ece: float
    serving_version: str


class ServingInfo(NamedTuple):
    """What GetIntentModel reports: "" where a version is absent."""

    serving_version: str
    current_version: str
    versions: list[str]
    replica: str
    loaded_at: dt.datetime | None


@dataclass(frozen=True)
class _Served:
    """What this replica serves for a tenant: the version its pointer named at `generation`
    (model None: that version cannot serve here, e.g. trained with other encoders)."""

    version: str
    model: IntentModel | None
    generation: int
    loaded_at: dt.datetime


class Encoders(Protocol):
    """What the engine needs of services.triage.encoder's Encoder or EncoderSet."""

    def encode(self, texts: list[str]) -> NDArray[Any]: ...

    def primary(self, vectors: NDArray[Any]) -> NDArray[Any]: ...

    def encode_primary(self, texts: list[str]) -> NDArray[Any]: ...


def replica_id() -> str:
    """Host and process: the pod name in Kubernetes, and two processes on one host differ."""
    return f"{socket.gethostname()}/{os.getpid()}"


class IntentEngine:
    def __init__(
        self,
        store: ModelStore,
        encoder_factory: Callable[[], object],
        *,
        config: TrainConfig | None = None,
        accuracy_tolerance: float = 0.01,
        ece_tolerance: float = 0.01,
    ) -> None:
        self.store = store
        self._encoder_factory = encoder_factory
        self._encoder: object | None = None
        self._encoder_lock = threading.Lock()
        self.config = config or TrainConfig()
        self.accuracy_tolerance = accuracy_tolerance
        self.ece_tolerance = ece_tolerance
        self.replica = replica_id()
        # tenant -> what serves here; replaced whole (never mutated) under the lock.
        self._served: dict[str, _Served] = {}
        self._served_lock = threading.Lock()
        self._loaded_all = False
        self._load_all_lock = threading.Lock()
        # (tenant, generation) whose load failed and was logged: retried quietly after that.
        self._failed_loads: set[tuple[str, int]] = set()
        self._store_down = False
        self._follower: asyncio.Task[None] | None = None
        self._follower_thread: ThreadPoolExecutor | None = None
        self._tenant_locks: dict[str, asyncio.Lock] = {}
        # One training at a time per process: it takes every core it can get.
        self._training = asyncio.Semaphore(1)

    @property
    def encoder(self) -> Encoders:
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = self._encoder_factory()
            return cast(Encoders, self._encoder)

    def _encode(self, texts: list[str]) -> NDArray[Any]:
        return self.encoder.encode(texts)

    @property
    def encoder_name(self) -> str:
        """The encoder set's name, as models trained by this engine record it."""
        return str(getattr(self.encoder, "name", "encoder"))

    # --- what serves here -------------------------------------------------------------

    async def load_current(self) -> None:
        """Every tenant's current version, loaded before the replica reports SERVING; the encoders
        too, so the first model another replica promotes serves here within the follow bound."""
        await asyncio.to_thread(self._load_all)
        await asyncio.to_thread(lambda: self.encoder)

    def _load_all(self) -> None:
        with self._load_all_lock:
            if self._loaded_all:
                return
            pointers = self.store.pointers()  # the store down at start-up: fail, do not serve blind
            for tenant_id, pointer in pointers.items():
                self._refresh_logged(tenant_id, pointer, "startup")
            self._loaded_all = True
            log.info("intent_models_loaded", tenants=len(pointers), replica=self.replica)

    def current_model(self, tenant_id: str) -> IntentModel | None:
        """The model this replica serves for the tenant (never waits for a load, once loaded)."""
        if not self._loaded_all:
            # Embedded use without load_current (the offline CLI, benchmarks): load on first use.
            self._load_all()
        with self._served_lock:
            served = self._served.get(tenant_id)
        return None if served is None else served.model

    def _load(self, tenant_id: str, version: str) -> IntentModel | None:
        """Blocking; None (logged) for a version trained with another encoder set."""
        try:
            return self.store.load(tenant_id, version, encoder=self.encoder_name)
        except EncoderMismatch as mismatch:
            # Served as "no model" (contacts are still triaged and routed) until a retrain.
            log.warning("intent_model_unusable", tenant_id=tenant_id, error=str(mismatch))
            return None

    def _install(self, tenant_id: str, served: _Served, source: str) -> bool:
        """Serve `served` unless what serves came from the same or a newer pointer generation
        (a slow load of an older version never replaces a newer one)."""
        with self._served_lock:
            before = self._served.get(tenant_id)
            if before is not None and before.generation >= served.generation:
                return False
            self._served[tenant_id] = served
        if before is None or before.version != served.version:
            log.info(
                "intent_model_serving",
                tenant_id=tenant_id,
                version=served.version,
                usable=served.model is not None,
                previous=None if before is None else before.version,
                generation=served.generation,
                source=source,
                replica=self.replica,
            )
        return True

    def _refresh(self, tenant_id: str, pointer: Pointer, source: str) -> None:
        """Blocking; serve what `pointer` names if it is newer than what serves here."""
        with self._served_lock:
            served = self._served.get(tenant_id)
        if served is not None and served.generation >= pointer.generation:
            return
        if served is not None and served.version == pointer.version:
            self._install(tenant_id, replace(served, generation=pointer.generation), source)
            return
        model = self._load(tenant_id, pointer.version)
        self._install(tenant_id, _Served(pointer.version, model, pointer.generation, _now()), source)

    def _refresh_logged(self, tenant_id: str, pointer: Pointer, source: str) -> None:
        """_refresh; a version that fails to load leaves the old one serving, logged once, retried
        on the next poll (one tenant's broken model never stops a replica)."""
        try:
            self._refresh(tenant_id, pointer, source)
        except Exception as error:  # any load failure: keep serving, say so once
            if (tenant_id, pointer.generation) not in self._failed_loads:
                self._failed_loads.add((tenant_id, pointer.generation))
                log.error(
                    "intent_model_load_failed",
                    tenant_id=tenant_id,
                    version=pointer.version,
                    error=f"{type(error).__name__}: {error}",
                )

    def follow_once(self) -> None:
        """Blocking; one poll of every pointer: load what changed (the follower's step)."""
        try:
            pointers = self.store.pointers()
        except Exception as error:  # the database is down: keep serving, retry
            if not self._store_down:
                log.warning("intent_model_store_unreachable", error=type(error).__name__)
            self._store_down = True
            return
        if self._store_down:
            log.info("intent_model_store_reachable")
            self._store_down = False
        for tenant_id, pointer in pointers.items():
            self._refresh_logged(tenant_id, pointer, "follow")

    def start_following(self, interval_s: float = 1.0) -> None:
        """Poll the shared pointers every `interval_s` in the background (idempotent)."""
        if self._follower is not None:
            return
        # A thread of its own: waiting for a change and loading never take a request's thread.
        self._follower_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intent-follower")
        self._follower = asyncio.get_running_loop().create_task(self._follow(interval_s, self._follower_thread))

    async def _follow(self, interval_s: float, thread: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        waiter = self.store.waiter()
        try:
            while True:
                await loop.run_in_executor(thread, waiter.wait, interval_s)
                await loop.run_in_executor(thread, self.follow_once)
        finally:
            waiter.close()

    async def stop_following(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        thread, self._follower_thread = self._follower_thread, None
        if thread is not None:
            # A wait in progress ends by itself within one interval.
            thread.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        """Stop following and release the store's connections."""
        await self.stop_following()
        await asyncio.to_thread(self.store.close)

    async def serving_info(self, tenant_id: str) -> ServingInfo:
        """What this replica serves for the tenant, and what the shared store says."""
        return await asyncio.to_thread(self._serving_info, tenant_id)

    def _serving_info(self, tenant_id: str) -> ServingInfo:
        pointer = self.store.pointer(tenant_id)
        versions = self.store.versions(tenant_id)
        with self._served_lock:
            served = self._served.get(tenant_id)
        usable = served is not None and served.model is not None
        return ServingInfo(
            serving_version=served.version if served is not None and usable else "",
            current_version=pointer.version if pointer is not None else "",
            versions=versions,
            replica=self.replica,
            loaded_at=served.loaded_at if served is not None and usable else None,
        )

    def encode(self, texts: list[str]) -> NDArray[Any]:
        """Blocking; L2-normalised sentence embeddings from the shared encoders, side by side."""
        return self._encode(texts)

    def primary(self, vectors: NDArray[Any]) -> NDArray[Any]:
        """The first encoder's block of `encode`'s vectors (what the sentiment model reads)."""
        return self.encoder.primary(vectors)

    def encode_primary(self, texts: list[str]) -> NDArray[Any]:
        """Blocking; the first encoder's vectors alone."""
        return self.encoder.encode_primary(texts)

    def predict(self, tenant_id: str, text: str, embedding: NDArray[Any] | None = None) -> triage_pb2.IntentPrediction:
        """Blocking; an empty prediction when the tenant has no model. `embedding` (1 x dim) of
        the text when the caller has it already."""
        model = self.current_model(tenant_id)
        if model is None:
            return triage_pb2.IntentPrediction()
        (prediction,) = model.predict(self._encode([text]) if embedding is None else embedding, [text])
        return triage_pb2.IntentPrediction(
            label=prediction.label,
            confidence=round(prediction.confidence, 6),
            alternatives=[
                triage_pb2.IntentCandidate(label=label, confidence=round(conf, 6))
                for label, conf in prediction.alternatives
            ],
            # A tenant may label what customer care does not handle ("write me a poem") as a
            # class of its own: predicting it is the same verdict as falling outside every class.
            out_of_scope=prediction.out_of_scope or prediction.label == OFF_TOPIC_LABEL,
            model_version=model.version,
        )

    # --- retraining ---------------------------------------------------------------

    def _lock_for(self, tenant_id: str) -> asyncio.Lock:
        return self._tenant_locks.setdefault(tenant_id, asyncio.Lock())

    def _better_or_equal(self, new: IntentModel, current: IntentModel | None) -> bool:
        if current is None:
            return True
        fresh, serving = new.validation, current.validation
        return (
            fresh.accuracy >= serving.accuracy - self.accuracy_tolerance
            and fresh.ece <= serving.ece + self.ece_tolerance
        )

    def _model_named(self, tenant_id: str, pointer: Pointer | None) -> IntentModel | None:
        """The model the shared pointer names (None: none, or it cannot serve here)."""
        if pointer is None:
            return None
        with self._served_lock:
            served = self._served.get(tenant_id)
        if served is not None and served.version == pointer.version:
            return served.model
        return self._load(tenant_id, pointer.version)

    def _train_and_store(
        self,
        tenant_id: str,
        texts: Sequence[str],
        labels: Sequence[str],
        progress: Callable[[int, str], None] | None,
        cancelled: Callable[[], bool] | None,
    ) -> RetrainOutcome:
        version = new_version()
        model = train_intent_model(
            texts,
            labels,
            self._encode,
            version=version,
            encoder_name=self.encoder_name,
            dimensions=tuple(getattr(self.encoder, "dimensions", ())),
            config=self.config,
            log=lambda message: log.info("intent_training", tenant_id=tenant_id, version=version, step=message),
            progress=progress,
            cancelled=cancelled,
        )
        # Its bytes are committed before any pointer can name them.
        self.store.save(tenant_id, model)
        # Served as every replica reads it back (stored arrays are float16 in part), not as trained.
        stored = self.store.load(tenant_id, version)
        for _ in range(POINTER_ATTEMPTS):
            pointer = self.store.pointer(tenant_id)
            # None too when the serving model was trained with other encoders: it cannot serve.
            current = self._model_named(tenant_id, pointer)
            promoted = self._better_or_equal(model, current)
            if not promoted:
                break
            try:
                moved = self.store.promote(
                    tenant_id, version, expected_generation=0 if pointer is None else pointer.generation
                )
            except PointerConflict:
                continue  # another replica changed it meanwhile: judge against what serves now
            self._install(tenant_id, _Served(version, stored, moved.generation, _now()), "retrain")
            break
        else:
            raise Aborted(
                f"intent model {version} is stored but the tenant's serving version kept changing; "
                "promote it with RollbackModel naming it",
                reason="MODEL_POINTER_CONFLICT",
            )
        serving = version if promoted else (current.version if current else "")
        validation = model.validation
        log.info(
            "intent_model_trained",
            tenant_id=tenant_id,
            version=version,
            promoted=promoted,
            serving=serving,
            accuracy=round(validation.accuracy, 4),
            ece=round(validation.ece, 4),
            current_accuracy=round(current.validation.accuracy, 4) if current else None,
            current_ece=round(current.validation.ece, 4) if current else None,
            examples=len(texts),
            train_seconds=model.info.get("train_seconds"),
        )
        return RetrainOutcome(version, promoted, validation.accuracy, validation.ece, serving)

    async def retrain(
        self,
        tenant_id: str,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        progress: Callable[[int, str], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> RetrainOutcome:
        """`progress(percent, step)` and `cancelled()` go to train_intent_model (called from the
        training thread); TrainingCancelled propagates, with nothing stored or promoted."""
        async with self._lock_for(tenant_id), self._training:
            return await asyncio.to_thread(self._train_and_store, tenant_id, texts, labels, progress, cancelled)

    # --- rollback -----------------------------------------------------------------

    def _rollback(self, tenant_id: str, version: str) -> tuple[str, str]:
        for _ in range(POINTER_ATTEMPTS):
            pointer = self.store.pointer(tenant_id)
            if pointer is None:
                raise LookupError("no intent model serves for this tenant")
            if not version:
                if not pointer.history:
                    raise LookupError("no earlier version has served for this tenant")
                target, history = pointer.history[-1], pointer.history[:-1]
            else:
                if version not in self.store.versions(tenant_id):
                    raise FileNotFoundError(version)
                target, history = version, (*pointer.history, pointer.version)
            self._check_encoders(tenant_id, target)
            if target == pointer.version:
                self._refresh(tenant_id, pointer, "rollback")
                return target, pointer.version
            # Loaded before the pointer moves: a version that cannot load is never made current.
            model = self._load(tenant_id, target)
            try:
                moved = self.store.set_current(tenant_id, target, history, expected_generation=pointer.generation)
            except PointerConflict:
                continue
            self._install(tenant_id, _Served(target, model, moved.generation, _now()), "rollback")
            return target, pointer.version
        raise Aborted(
            "the tenant's serving intent model version kept changing; retry", reason="MODEL_POINTER_CONFLICT"
        )

    def _check_encoders(self, tenant_id: str, version: str) -> None:
        trained_with = self.store.trained_with(tenant_id, version)
        if trained_with != self.encoder_name:
            raise EncoderMismatch(version, trained_with, self.encoder_name)

    async def rollback(self, tenant_id: str, version: str) -> tuple[str, str]:
        async with self._lock_for(tenant_id):
            return await asyncio.to_thread(self._rollback, tenant_id, version)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def model_root(data_dir: Path) -> Path:
    """Where releases before the database store kept intent models (imported once at start)."""
    return data_dir / "triage"
