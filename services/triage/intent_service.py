"""Serving, retraining and rolling back tenants' intent models.

Promotion rule: a new version serves only when it validated at least as well
as the version serving now, within small tolerances for the noise of a
held-out split: accuracy >= current - accuracy_tolerance and ECE <= current +
ece_tolerance, both as measured on each model's own stratified held-out split
before it was refitted. The first version of a tenant is promoted when it
validates at all. Rejected versions stay on disk (they can be inspected or
served later with RollbackModel naming them).

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
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from aftercare.triage.v1 import triage_pb2
from services.triage.intent_config import TrainConfig
from services.triage.intent_model import EncoderMismatch, IntentModel
from services.triage.intent_store import ModelStore, new_version
from services.triage.intent_training import train_intent_model

log = structlog.get_logger("services.triage.intent_service")

# The label a tenant gives messages that are not for customer care at all.
OFF_TOPIC_LABEL = "off_topic"


@dataclass(frozen=True)
class RetrainOutcome:
    version: str
    promoted: bool
    accuracy: float
    ece: float
    serving_version: str


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
        # tenant -> (serving version, model); reloaded when the pointer names another version.
        self._cache: dict[str, tuple[str | None, IntentModel | None]] = {}
        self._cache_lock = threading.Lock()
        self._tenant_locks: dict[str, asyncio.Lock] = {}
        # One training at a time per process: it takes every core it can get.
        self._training = asyncio.Semaphore(1)

    @property
    def encoder(self):  # type: ignore[no-untyped-def]
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = self._encoder_factory()
            return self._encoder

    def _encode(self, texts: list[str]):  # type: ignore[no-untyped-def]
        return self.encoder.encode(texts)  # type: ignore[attr-defined]

    @property
    def encoder_name(self) -> str:
        """The encoder set's name, as models trained by this engine record it."""
        return str(getattr(self.encoder, "name", "encoder"))

    # --- serving ------------------------------------------------------------------

    def current_model(self, tenant_id: str) -> IntentModel | None:
        pointer = self.store.pointer(tenant_id)
        version = pointer.version if pointer is not None else None
        with self._cache_lock:
            cached = self._cache.get(tenant_id)
            if cached is not None and cached[0] == version:
                return cached[1]
        model = None
        if version is not None:
            try:
                model = self.store.load(tenant_id, version, encoder=self.encoder_name)
            except EncoderMismatch as mismatch:
                # Cached as "no model" (contacts are still triaged and routed) until a retrain.
                log.warning("intent_model_unusable", tenant_id=tenant_id, error=str(mismatch))
        with self._cache_lock:
            self._cache[tenant_id] = (version, model)
        return model

    def encode(self, texts: list[str]):  # type: ignore[no-untyped-def]
        """Blocking; L2-normalised sentence embeddings from the shared encoders, side by side."""
        return self._encode(texts)

    def primary(self, vectors):  # type: ignore[no-untyped-def]
        """The first encoder's block of `encode`'s vectors (what the sentiment model reads)."""
        return self.encoder.primary(vectors)  # type: ignore[attr-defined]

    def encode_primary(self, texts: list[str]):  # type: ignore[no-untyped-def]
        """Blocking; the first encoder's vectors alone."""
        return self.encoder.encode_primary(texts)  # type: ignore[attr-defined]

    def predict(self, tenant_id: str, text: str, embedding=None) -> triage_pb2.IntentPrediction:  # type: ignore[no-untyped-def]
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

    def _train_and_store(self, tenant_id: str, texts: Sequence[str], labels: Sequence[str]) -> RetrainOutcome:
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
        )
        self.store.save(tenant_id, model)
        # None too when the serving model was trained with other encoders: it cannot serve.
        current = self.current_model(tenant_id)
        promoted = self._better_or_equal(model, current)
        if promoted:
            self.store.promote(tenant_id, version)
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

    async def retrain(self, tenant_id: str, texts: Sequence[str], labels: Sequence[str]) -> RetrainOutcome:
        async with self._lock_for(tenant_id), self._training:
            return await asyncio.to_thread(self._train_and_store, tenant_id, texts, labels)

    # --- rollback -----------------------------------------------------------------

    def _rollback(self, tenant_id: str, version: str) -> tuple[str, str]:
        pointer = self.store.pointer(tenant_id)
        if pointer is None:
            raise LookupError("no intent model serves for this tenant")
        if not version:
            if not pointer.history:
                raise LookupError("no earlier version has served for this tenant")
            self._check_encoders(tenant_id, pointer.history[-1])
            self.store.set_current(tenant_id, pointer.history[-1], pointer.history[:-1])
            return pointer.history[-1], pointer.version
        if version not in self.store.versions(tenant_id):
            raise FileNotFoundError(version)
        self._check_encoders(tenant_id, version)
        if version != pointer.version:
            self.store.set_current(tenant_id, version, (*pointer.history, pointer.version))
        return version, pointer.version

    def _check_encoders(self, tenant_id: str, version: str) -> None:
        trained_with = self.store.trained_with(tenant_id, version)
        if trained_with != self.encoder_name:
            raise EncoderMismatch(version, trained_with, self.encoder_name)

    async def rollback(self, tenant_id: str, version: str) -> tuple[str, str]:
        async with self._lock_for(tenant_id):
            return await asyncio.to_thread(self._rollback, tenant_id, version)


def model_root(data_dir: Path) -> Path:
    return data_dir / "triage"
