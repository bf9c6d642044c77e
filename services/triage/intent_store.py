"""Intent model versions on disk (files, not database tables), per tenant, and
which one serves.

    <data_dir>/triage/<tenant>/<version>/model.json, arrays.npz
    <data_dir>/triage/<tenant>/current     {"version": ..., "history": [older served versions]}

<tenant> is the tenant id made a safe directory name (servicekit.ids.file_name:
"acme:eu" -> "acme%3Aeu"; plain ids such as "demo" keep their name).

A version is written into a temporary directory beside its final place and
renamed into place (atomic on one file system), so a reader never sees half a
model; `current` is replaced atomically the same way (write, fsync, rename).
Versions are never deleted by the service: rolling back is switching the
pointer to an older one.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from servicekit.ids import file_name, is_id
from services.triage.intent_model import IntentModel

VERSION_PATTERN = re.compile(r"^v\d{8}T\d{6}Z-[0-9a-f]{6}$")
CURRENT = "current"


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


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _tenant_dir(self, tenant_id: str) -> Path:
        if not valid_tenant(tenant_id):
            raise ValueError(f"tenant id {tenant_id!r} cannot name a model directory")
        return self.root / file_name(tenant_id)

    def save(self, tenant_id: str, model: IntentModel) -> Path:
        tenant_dir = self._tenant_dir(tenant_id)
        tenant_dir.mkdir(parents=True, exist_ok=True)
        final = tenant_dir / model.version
        if final.exists():
            raise FileExistsError(f"model version {model.version} exists for tenant {tenant_id}")
        temporary = tenant_dir / f".tmp-{model.version}-{secrets.token_hex(4)}"
        try:
            model.save(temporary)
            for path in temporary.iterdir():
                _fsync(path)
            os.rename(temporary, final)
            _fsync(tenant_dir)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        return final

    def versions(self, tenant_id: str) -> list[str]:
        tenant_dir = self._tenant_dir(tenant_id)
        if not tenant_dir.is_dir():
            return []
        return sorted(p.name for p in tenant_dir.iterdir() if p.is_dir() and VERSION_PATTERN.match(p.name))

    def pointer(self, tenant_id: str) -> Pointer | None:
        if not valid_tenant(tenant_id):
            return None
        path = self._tenant_dir(tenant_id) / CURRENT
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return Pointer(version=str(data["version"]), history=tuple(data.get("history", [])))

    def set_current(self, tenant_id: str, version: str, history: tuple[str, ...]) -> None:
        tenant_dir = self._tenant_dir(tenant_id)
        if not (tenant_dir / version).is_dir():
            raise FileNotFoundError(f"no model version {version} for tenant {tenant_id}")
        temporary = tenant_dir / f".{CURRENT}.{secrets.token_hex(4)}"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump({"version": version, "history": list(history)}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, tenant_dir / CURRENT)
        _fsync(tenant_dir)

    def promote(self, tenant_id: str, version: str) -> None:
        """Make `version` serve; the one serving before goes on the history stack."""
        current = self.pointer(tenant_id)
        history = () if current is None else (*current.history, current.version)
        self.set_current(tenant_id, version, history)

    def load(self, tenant_id: str, version: str, *, encoder: str | None = None) -> IntentModel:
        """With `encoder`, a model trained with another encoder set raises EncoderMismatch."""
        return IntentModel.load(self._tenant_dir(tenant_id) / version, encoder=encoder)

    def trained_with(self, tenant_id: str, version: str) -> str:
        return IntentModel.trained_with(self._tenant_dir(tenant_id) / version)


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
