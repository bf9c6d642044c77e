"""Personas: who the assistant is for each tenant, and the tenant's answer policy.

One JSON file per tenant in the persona directory (`<tenant_id>.json`),
layered over `default.json`: name, product, tone, what it must never do, the
confidence threshold with per-intent overrides, which triage routes the AI
may not answer, and the fixed messages the customer sees. A tenant without a
file gets the default. Files are re-read when they change; a broken file
fails loudly at load and the previous version is kept. The files are the
tenant's working copy: a release (releases.py) snapshots the merged JSON
(`PersonaBook.raw`), and a customer gets the persona of the tenant's live
release (`from_snapshot`), so a change reaches customers once it is released.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from aftercare.triage.v1 import triage_pb2

log = structlog.get_logger(__name__)

DEFAULT_DIR = Path(__file__).resolve().parent / "personas"
_MESSAGE_KEYS = (
    "handoff", "dont_know", "unavailable", "human", "policy", "off_topic", "needs_detail",
    # How a handoff goes on: its reference, the expected wait, a delay; and the reply to "thanks".
    "handoff_reference", "handoff_wait", "handoff_no_wait", "handoff_delayed", "forward_delayed", "acknowledge",
)


class PersonaError(ValueError):
    """A persona file that cannot serve."""


@dataclass(frozen=True)
class Persona:
    version: str
    name: str
    product: str
    tone: str
    never_do: tuple[str, ...]
    confidence_threshold: float
    intent_thresholds: dict[str, float] = field(default_factory=dict)
    blocked_tiers: frozenset[int] = frozenset()
    blocked_reason_codes: frozenset[str] = frozenset()
    messages: dict[str, str] = field(default_factory=dict)

    def threshold_for(self, intent: str) -> float:
        """The confidence an answer needs: the intent's override, else the tenant's default."""
        return self.intent_thresholds.get(intent, self.confidence_threshold)

    def message(self, key: str, **values: str) -> str:
        """A fixed message with {product}, {name} and the given {placeholders} filled in."""
        text = self.messages[key].replace("{product}", self.product).replace("{name}", self.name)
        for name, value in values.items():
            text = text.replace("{" + name + "}", value)
        return text

    def ai_may_answer(self, route: triage_pb2.Route | None) -> tuple[bool, str]:
        """Whether the routing decision lets the AI answer; with the blocking reason when not."""
        if route is None:
            return True, ""
        if route.tier in self.blocked_tiers:
            return False, triage_pb2.Tier.Name(route.tier).lower()
        blocked = [code for code in route.reason_codes if code in self.blocked_reason_codes]
        return (False, blocked[0]) if blocked else (True, "")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def parse(raw: dict[str, Any]) -> Persona:
    """A Persona from a (merged) file; raises PersonaError naming what is wrong."""
    try:
        threshold = float(raw["confidence_threshold"])
        overrides = {str(k): float(v) for k, v in dict(raw.get("intent_thresholds") or {}).items()}
        routing = dict(raw.get("routing") or {})
        tiers = frozenset(triage_pb2.Tier.Value(name) for name in routing.get("blocked_tiers", []))
        messages = {str(k): str(v) for k, v in dict(raw["messages"]).items()}
        persona = Persona(
            version=str(raw["version"]),
            name=str(raw["name"]),
            product=str(raw.get("product") or "our product"),
            tone=str(raw["tone"]),
            never_do=tuple(str(item) for item in raw.get("never_do", [])),
            confidence_threshold=threshold,
            intent_thresholds=overrides,
            blocked_tiers=tiers,
            blocked_reason_codes=frozenset(str(c) for c in routing.get("blocked_reason_codes", [])),
            messages=messages,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise PersonaError(f"invalid persona: {type(error).__name__}: {error}") from error
    missing = [key for key in _MESSAGE_KEYS if key not in persona.messages]
    if missing:
        raise PersonaError(f"invalid persona: messages missing {missing}")
    for value in (threshold, *overrides.values()):
        if not 0.0 <= value <= 1.0:
            raise PersonaError("invalid persona: thresholds must be in [0, 1]")
    return persona


def from_snapshot(snapshot: dict[str, Any]) -> Persona:
    """The Persona a release serves with, from the merged JSON it snapshotted (PersonaBook.raw,
    overrides applied); raises PersonaError like a broken file."""
    return parse(copy.deepcopy(snapshot))


class PersonaBook:
    """Personas by tenant, from a directory of JSON files, reloaded when a file changes."""

    def __init__(self, directory: Path = DEFAULT_DIR, default_threshold: float | None = None):
        self._dir = directory
        self._default_threshold = default_threshold
        self._lock = threading.Lock()
        # Per tenant: the files' modification times, the persona and the merged JSON it was parsed from.
        self._cache: dict[str, tuple[tuple[float, float], Persona, dict[str, Any]]] = {}
        self.get("")  # a broken default fails the boot, not the first customer

    def _default_raw(self) -> dict[str, Any]:
        path = self._dir / "default.json"
        base: dict[str, Any] = json.loads((DEFAULT_DIR / "default.json").read_text())
        if path.exists() and path.resolve() != (DEFAULT_DIR / "default.json").resolve():
            base = _merge(base, json.loads(path.read_text()))
        if self._default_threshold is not None:
            base["confidence_threshold"] = self._default_threshold
        return base

    def get(self, tenant_id: str) -> Persona:
        return self._load(tenant_id)[0]

    def raw(self, tenant_id: str) -> dict[str, Any]:
        """The tenant's persona as merged from its files (default under the tenant's), the
        JSON a release snapshots: `from_snapshot` of it is what `get` returns. A copy."""
        return copy.deepcopy(self._load(tenant_id)[1])

    def _load(self, tenant_id: str) -> tuple[Persona, dict[str, Any]]:
        path = self._dir / f"{tenant_id}.json" if tenant_id and "/" not in tenant_id else None
        default_path = self._dir / "default.json"
        stamp = (
            path.stat().st_mtime if path is not None and path.exists() else 0.0,
            default_path.stat().st_mtime if default_path.exists() else 0.0,
        )
        with self._lock:
            cached = self._cache.get(tenant_id)
            if cached is not None and cached[0] == stamp:
                return cached[1], cached[2]
            try:
                raw = self._default_raw()
                if stamp[0]:
                    assert path is not None
                    raw = _merge(raw, json.loads(path.read_text()))
                persona = parse(raw)
            except (OSError, ValueError) as error:
                if cached is not None:
                    log.error("persona_reload_failed", tenant_id=tenant_id, error=str(error))
                    return cached[1], cached[2]
                raise PersonaError(f"persona of tenant {tenant_id!r}: {error}") from error
            self._cache[tenant_id] = (stamp, persona, raw)
            return persona, raw
