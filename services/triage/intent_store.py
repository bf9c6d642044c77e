"""Intent model versions per tenant, and which one serves, in the triage database
(servicekit.artifacts, kind "intent_model"): a SQLite file under data_dir by
default, PostgreSQL via DATABASE_URL, so every replica reads the same versions
and the same pointer.

A version is the model's files (model.json, arrays.npz) packed as an
uncompressed zip (the arrays are compressed already), stored with its bytes'
SHA-256 and metadata (encoder set, labels, validation) in a transaction of its
own before any pointer can name it. Changing which version serves is a
compare-and-set on the pointer's generation (`set_current`'s
`expected_generation`). Versions are never deleted by the service: rolling
back is switching the pointer to an older one.

Older releases kept models as folders, <data_dir>/triage/<tenant>/<version>/
with a `current` file; `prepare` imports those once (versions and, for a
tenant without a pointer in the database, which one served) and leaves the
folder as it is.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.engine import Engine

from servicekit.artifacts import ArtifactExists, ArtifactNotFound, ArtifactStore, ChangeWaiter, PointerConflict
from servicekit.database import database_url, make_engine
from servicekit.ids import from_file_name, is_id
from services.triage.intent_model import IntentModel

log = structlog.get_logger("services.triage.intent_store")

VERSION_PATTERN = re.compile(r"^v\d{8}T\d{6}Z-[0-9a-f]{6}$")
KIND = "intent_model"
# The files of a model directory (IntentModel.save), all a version's payload holds.
MODEL_FILES = ("model.json", "arrays.npz")
# Where releases before the database store kept models (under data_dir), and their pointer file.
LEGACY_FOLDER = "triage"
LEGACY_CURRENT = "current"

__all__ = ["KIND", "VERSION_PATTERN", "ModelStore", "Pointer", "PointerConflict", "new_version", "valid_tenant"]


def new_version() -> str:
    """Sortable by time, unique by a random suffix: v20261124T101500Z-3fa2c1."""
    return time.strftime("v%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def valid_tenant(tenant_id: str) -> bool:
    """Any tenant id of the shared grammar (servicekit.ids) can have models."""
    return is_id(tenant_id)


@dataclass(frozen=True)
class Pointer:
    version: str
    history: tuple[str, ...]
    # Incremented by every change of the pointer (servicekit.artifacts).
    generation: int = 0


def pack(directory: Path) -> bytes:
    """A saved model's files as one uncompressed zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in MODEL_FILES:
            archive.write(directory / name, name)
    return buffer.getvalue()


def unpack(payload: bytes, directory: Path) -> None:
    """Write a packed model's files into `directory` (only the names a model has)."""
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        for name in MODEL_FILES:
            (directory / name).write_bytes(archive.read(name))


def _metadata(directory: Path) -> dict[str, Any]:
    """What is worth knowing about a version without its bytes."""
    meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
    info = meta.get("info", {})
    return {
        "format": meta.get("format"),
        "encoder": meta["encoder"],
        "labels": meta["labels"],
        "validation": info.get("validation", {}),
        "examples": info.get("examples"),
    }


class ModelStore:
    """Blocking: the engine calls it through asyncio.to_thread."""

    def __init__(self, database: Engine, *, legacy_root: Path | None = None) -> None:
        """`legacy_root`: the <data_dir>/triage folder an older release may have left models in."""
        self.artifacts = ArtifactStore(database)
        self.legacy_root = legacy_root
        self._prepared = False
        self._prepare_lock = threading.Lock()

    @classmethod
    def open(cls, database_url_setting: str, data_dir: Path) -> ModelStore:
        """The store on the service's database (DATABASE_URL, or <data_dir>/triage.db)."""
        engine = make_engine(database_url(database_url_setting, data_dir, "triage"))
        return cls(engine, legacy_root=data_dir / LEGACY_FOLDER)

    def prepare(self) -> None:
        """Migrate the tables and import an older release's model folders, once per process."""
        with self._prepare_lock:
            if self._prepared:
                return
            self.artifacts.migrate()
            if self.legacy_root is not None and self.legacy_root.is_dir():
                self._import_legacy(self.legacy_root)
            self._prepared = True

    def _check(self, tenant_id: str) -> None:
        if not valid_tenant(tenant_id):
            raise ValueError(f"tenant id {tenant_id!r} cannot have intent models")
        self.prepare()

    # --- versions -----------------------------------------------------------------------

    def save(self, tenant_id: str, model: IntentModel) -> str:
        """Store a new version (its own transaction); FileExistsError when the version exists."""
        self._check(tenant_id)
        with tempfile.TemporaryDirectory(prefix="intent-model-") as folder:
            directory = Path(folder) / "model"
            model.save(directory)
            self._put(tenant_id, model.version, directory)
        return model.version

    def _put(self, tenant_id: str, version: str, directory: Path) -> None:
        try:
            self.artifacts.put(tenant_id, KIND, version, pack(directory), _metadata(directory))
        except ArtifactExists:
            raise FileExistsError(f"model version {version} exists for tenant {tenant_id}") from None

    def versions(self, tenant_id: str) -> list[str]:
        """The tenant's stored versions, oldest first (their names sort by time)."""
        if not valid_tenant(tenant_id):
            return []
        self.prepare()
        return sorted(v.version for v in self.artifacts.versions(tenant_id, KIND))

    def load(self, tenant_id: str, version: str, *, encoder: str | None = None) -> IntentModel:
        """With `encoder`, a model trained with another encoder set raises EncoderMismatch;
        FileNotFoundError for a version that is not stored."""
        self._check(tenant_id)
        try:
            payload = self.artifacts.payload(tenant_id, KIND, version)
        except ArtifactNotFound:
            raise FileNotFoundError(f"no model version {version} for tenant {tenant_id}") from None
        with tempfile.TemporaryDirectory(prefix="intent-model-") as folder:
            unpack(payload, Path(folder))
            return IntentModel.load(Path(folder), encoder=encoder)

    def trained_with(self, tenant_id: str, version: str) -> str:
        """The encoder set a stored version was trained with, without reading its bytes."""
        self._check(tenant_id)
        stored = self.artifacts.version(tenant_id, KIND, version)
        if stored is None:
            raise FileNotFoundError(f"no model version {version} for tenant {tenant_id}")
        return str(stored.metadata["encoder"])

    # --- which version serves -----------------------------------------------------------

    def pointer(self, tenant_id: str) -> Pointer | None:
        if not valid_tenant(tenant_id):
            return None
        self.prepare()
        stored = self.artifacts.pointer(tenant_id, KIND)
        return None if stored is None else Pointer(stored.version, stored.history, stored.generation)

    def pointers(self) -> dict[str, Pointer]:
        """Every tenant's pointer (what a follower polls)."""
        self.prepare()
        return {p.tenant_id: Pointer(p.version, p.history, p.generation) for p in self.artifacts.pointers(KIND)}

    def set_current(
        self, tenant_id: str, version: str, history: tuple[str, ...], *, expected_generation: int | None = None
    ) -> Pointer:
        """Make `version` serve with `history` behind it. With `expected_generation` (0: no
        pointer yet) only if the pointer is still there, else PointerConflict; without, whatever
        it is now. FileNotFoundError for a version that is not stored."""
        self._check(tenant_id)
        try:
            if expected_generation is None:
                stored = self.artifacts.update_pointer(tenant_id, KIND, lambda _: (version, history))
            else:
                stored = self.artifacts.set_pointer(
                    tenant_id, KIND, version, history, expected_generation=expected_generation
                )
        except ArtifactNotFound:
            raise FileNotFoundError(f"no model version {version} for tenant {tenant_id}") from None
        return Pointer(stored.version, stored.history, stored.generation)

    def promote(self, tenant_id: str, version: str, *, expected_generation: int | None = None) -> Pointer:
        """Make `version` serve; the one serving before goes on the history stack."""
        self._check(tenant_id)
        if expected_generation is None:
            try:
                stored = self.artifacts.promote(tenant_id, KIND, version)
            except ArtifactNotFound:
                raise FileNotFoundError(f"no model version {version} for tenant {tenant_id}") from None
            return Pointer(stored.version, stored.history, stored.generation)
        current = self.pointer(tenant_id)
        if (0 if current is None else current.generation) != expected_generation:
            raise PointerConflict(f"intent model pointer of tenant {tenant_id} moved on")
        history = () if current is None else (*current.history, current.version)
        return self.set_current(tenant_id, version, history, expected_generation=expected_generation)

    def waiter(self) -> ChangeWaiter:
        """Blocks in .wait(timeout) until a pointer may have changed."""
        return self.artifacts.waiter(KIND)

    def close(self) -> None:
        self.artifacts.close()

    # --- models an older release left on disk ------------------------------------------

    def _import_legacy(self, root: Path) -> None:
        for tenant_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            tenant_id = from_file_name(tenant_dir.name)
            if not valid_tenant(tenant_id):
                continue
            stored = {v.version for v in self.artifacts.versions(tenant_id, KIND)}
            imported = []
            for version_dir in sorted(tenant_dir.iterdir()):
                version = version_dir.name
                if version in stored or not VERSION_PATTERN.match(version) or not version_dir.is_dir():
                    continue
                if not all((version_dir / name).is_file() for name in MODEL_FILES):
                    continue
                try:
                    self._put(tenant_id, version, version_dir)
                except FileExistsError:
                    pass  # another replica imported it at the same moment
                except (OSError, ValueError, KeyError) as error:
                    log.warning("intent_model_import_failed", tenant_id=tenant_id, version=version, error=str(error))
                    continue
                imported.append(version)
            self._import_legacy_pointer(tenant_id, tenant_dir / LEGACY_CURRENT)
            if imported:
                log.info("intent_models_imported", tenant_id=tenant_id, versions=imported, folder=str(tenant_dir))

    def _import_legacy_pointer(self, tenant_id: str, current_file: Path) -> None:
        """Which version served, for a tenant the database has no pointer for yet."""
        if self.artifacts.pointer(tenant_id, KIND) is not None:
            return
        try:
            data = json.loads(current_file.read_text(encoding="utf-8"))
            version = str(data["version"])
        except (OSError, ValueError, KeyError):
            return
        stored = {v.version for v in self.artifacts.versions(tenant_id, KIND)}
        if version not in stored:
            return
        history = tuple(str(v) for v in data.get("history", []) if str(v) in stored)
        try:
            self.artifacts.set_pointer(tenant_id, KIND, version, history, expected_generation=0)
        except PointerConflict:
            return  # another replica set it first
        log.info("intent_model_pointer_imported", tenant_id=tenant_id, version=version)
