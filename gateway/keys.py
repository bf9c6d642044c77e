"""API keys: each scoped to one tenant and one role, stored only as hashes.

A key reads `ak_<key_id>_<secret>`. The store keeps the key id, tenant, role,
a display name and the SHA-256 of the secret: the secret is 256 random bits,
so a fast hash is enough (nothing to brute-force), and a leaked store gives
no usable key. The full key is shown once, when it is created.

    python -m gateway.keys create --tenant acme --role agent --name alice
    python -m gateway.keys list
    python -m gateway.keys revoke KEY_ID

The store is a JSON file (`API_KEYS_FILE`, default
`<DATA_DIR>/gateway/api_keys.json`), replaced atomically on every change; a
running gateway re-reads it when it changes, so new keys work at once.
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, cast

import structlog

from servicekit.ids import ID_RULE, MAX_ID_CHARS, is_id

log = structlog.get_logger("gateway.keys")

KEY_PREFIX = "ak_"
_KEY = re.compile(r"ak_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
# How often a running gateway looks at the file's modification time, at most.
_RELOAD_CHECK_S = 1.0


RoleLabel = Literal["channel", "agent", "admin"]


class Role(enum.IntEnum):
    """What a key may do; each role may do everything the ones below it may."""

    CHANNEL = 1  # customer-facing channels: chat, email intake, Tier-0, usage events, KB search
    AGENT = 2  # support agents and leads: handoffs, insights, outreach review
    ADMIN = 3  # tenant administration: KB uploads and deletes, feedback export, outreach detection

    @property
    def label(self) -> RoleLabel:
        return cast(RoleLabel, self.name.lower())

    @classmethod
    def parse(cls, label: str) -> Role:
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"unknown role {label!r}; one of {', '.join(r.label for r in cls)}") from None


@dataclass(frozen=True)
class ApiKey:
    """One stored key (never the secret itself)."""

    key_id: str
    tenant_id: str
    role: Role
    name: str
    secret_sha256: str
    created_at: str

    def to_json(self) -> dict[str, str]:
        return asdict(self) | {"role": self.role.label}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> ApiKey:
        return cls(
            key_id=data["key_id"],
            tenant_id=data["tenant_id"],
            role=Role.parse(data["role"]),
            name=data.get("name") or data["key_id"],
            secret_sha256=data["secret_sha256"],
            created_at=data.get("created_at", ""),
        )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_keys(document: str) -> dict[str, ApiKey]:
    """Key id -> key, from the store's JSON; raises ValueError when malformed."""
    try:
        data = json.loads(document) if document.strip() else {"keys": []}
        keys = [ApiKey.from_json(item) for item in data["keys"]]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"malformed API key store: {type(error).__name__}") from None
    return {key.key_id: key for key in keys}


class KeyStore:
    """Verifies presented keys against the stored hashes.

    Built from a file (re-read when its modification time changes) or from an
    inline JSON document (fixed for the process's life)."""

    def __init__(self, *, path: Path | None = None, document: str | None = None) -> None:
        self._path = path
        self._keys = parse_keys(document) if document is not None else {}
        self._version: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        if path is not None:
            self._reload()

    def _reload(self) -> None:
        assert self._path is not None
        try:
            info = self._path.stat()
        except FileNotFoundError:
            self._keys, self._version = {}, None
            return
        # Writers replace the file (new inode); the mtime covers editors that write in place.
        version = (info.st_ino, info.st_mtime_ns, info.st_size)
        if version == self._version:
            return
        try:
            self._keys = parse_keys(self._path.read_text())
        except ValueError:
            if self._version is None:
                raise  # at start-up a broken store stops the boot
            # A running gateway keeps the keys it has rather than refuse everyone.
            log.error("api_key_store_unreadable", path=str(self._path))
        self._version = version

    def _maybe_reload(self, key_id: str) -> None:
        if self._path is None:
            return
        now = time.monotonic()
        with self._lock:
            # An unknown key id may be one created a moment ago: look at once (a stat is cheap).
            if key_id not in self._keys or now - self._checked >= _RELOAD_CHECK_S:
                self._checked = now
                self._reload()

    def verify(self, presented: str) -> ApiKey | None:
        """The key a presented secret belongs to, or None."""
        match = _KEY.fullmatch(presented)
        if match is None:
            return None
        self._maybe_reload(match.group(1))
        key = self._keys.get(match.group(1))
        if key is None or not hmac.compare_digest(key.secret_sha256, _digest(match.group(2))):
            return None
        return key

    def __len__(self) -> int:
        return len(self._keys)


# --- writing the store (CLI, devstack) -------------------------------------


def _read(path: Path) -> dict[str, ApiKey]:
    return parse_keys(path.read_text()) if path.exists() else {}


def _write(path: Path, keys: dict[str, ApiKey]) -> None:
    """Replace the file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = json.dumps({"keys": [key.to_json() for key in keys.values()]}, indent=2) + "\n"
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".api_keys.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(document)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def create_key(path: Path, tenant_id: str, role: Role, name: str = "") -> tuple[str, ApiKey]:
    """Store a new key and return (the full key, shown only now; its record)."""
    if not is_id(tenant_id):
        raise ValueError(f"tenant must be 1-{MAX_ID_CHARS} characters: {ID_RULE}")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    record = ApiKey(
        key_id=key_id,
        tenant_id=tenant_id,
        role=role,
        name=name or key_id,
        secret_sha256=_digest(secret),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    keys = _read(path)
    keys[key_id] = record
    _write(path, keys)
    return f"{KEY_PREFIX}{key_id}_{secret}", record


def revoke_key(path: Path, key_id: str) -> bool:
    keys = _read(path)
    if keys.pop(key_id, None) is None:
        return False
    _write(path, keys)
    return True


def issue_demo_keys(path: Path, tenant_id: str) -> dict[str, str]:
    """Fresh keys for the local demo stack, one per role (role -> key); the
    previous demo keys are revoked, since their secrets are gone."""
    for key in _read(path).values():
        if key.name.startswith("devstack-"):
            revoke_key(path, key.key_id)
    return {role.label: create_key(path, tenant_id, role, f"devstack-{role.label}")[0] for role in Role}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.keys", description="Manage the gateway's API keys.")
    parser.add_argument(
        "--file", type=Path, help="key store (default: API_KEYS_FILE or <DATA_DIR>/gateway/api_keys.json)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--role", required=True, choices=[role.label for role in Role])
    create.add_argument("--name", default="", help="who holds it (shown as agent/reviewer id)")
    commands.add_parser("list", help="list keys (never their secrets)")
    revoke = commands.add_parser("revoke", help="delete a key")
    revoke.add_argument("key_id")
    args = parser.parse_args(argv)

    # The same default as the gateway's settings (GatewaySettings.keys_path).
    default = Path(os.environ.get("DATA_DIR", "var")) / "gateway" / "api_keys.json"
    path: Path = args.file or Path(os.environ.get("API_KEYS_FILE") or default)
    try:
        if args.command == "create":
            key, record = create_key(path, args.tenant, Role.parse(args.role), args.name)
            print(key)
            print(f"key id {record.key_id}, tenant {record.tenant_id}, role {record.role.label}; "
                  f"stored hashed in {path}: this is the only time the key is shown", file=sys.stderr)
        elif args.command == "list":
            for record in _read(path).values():
                print(f"{record.key_id}  {record.tenant_id}  {record.role.label:<7}  {record.name}  "
                      f"{record.created_at}")
        elif not revoke_key(path, args.key_id):
            print(f"no key {args.key_id} in {path}", file=sys.stderr)
            return 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
