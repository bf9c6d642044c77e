"""Service-to-service authentication: signed, short-lived tokens.

With `MESH_SECRET` set (the prod overlay sets it from a Secret), every call a
mesh client makes carries `authorization: Mesh <token>`, where the token names
the calling service and an expiry and is signed with HMAC-SHA256 under the
shared secret; every server refuses a call without a valid one with
UNAUTHENTICATED. Health checks and reflection stay open (kubelet probes and
grpcurl carry no token). Without the secret (the embedded default on one
machine, bound to 127.0.0.1) calls are not signed and not checked.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SCHEME = "Mesh"
HEADER = "authorization"
# A token is valid this long; clients mint a fresh one well before it ends.
TOKEN_TTL_S = 300
_REFRESH_AFTER_S = 60
# Clocks of two pods may disagree a little.
_CLOCK_SKEW_S = 30
OPEN_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class MeshAuthSettings(BaseSettings):
    """The mesh secret and this process's name, from the environment."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    mesh_secret: SecretStr = Field(default=SecretStr(""), alias="MESH_SECRET")
    service_name: str = Field(default="unknown", alias="OTEL_SERVICE_NAME")


def _sign(secret: bytes, payload: str) -> str:
    return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()


def mint(secret: bytes, caller: str, now: float | None = None) -> str:
    expires = int((now if now is not None else time.time()) + TOKEN_TTL_S)
    payload = f"v1.{caller}.{expires}"
    return f"{payload}.{_sign(secret, payload)}"


def verify(secret: bytes, header: str | None, now: float | None = None) -> str | None:
    """The calling service's name if `header` holds a valid token, else None."""
    if not header or not header.startswith(f"{SCHEME} "):
        return None
    token = header[len(SCHEME) + 1 :].strip()
    payload, _, signature = token.rpartition(".")
    version, _, rest = payload.partition(".")
    caller, _, expires = rest.rpartition(".")
    if version != "v1" or not caller or not expires.isdigit():
        return None
    if not hmac.compare_digest(signature, _sign(secret, payload)):
        return None
    now = now if now is not None else time.time()
    if not now - _CLOCK_SKEW_S <= int(expires) <= now + TOKEN_TTL_S + _CLOCK_SKEW_S:
        return None
    return caller


class TokenSource:
    """Mints this process's token, re-minting it once it is a minute old."""

    def __init__(self, secret: bytes, caller: str) -> None:
        self._secret = secret
        self._caller = caller
        self._token = ""
        self._minted = 0.0

    def header(self) -> tuple[str, str]:
        now = time.time()
        if now - self._minted > _REFRESH_AFTER_S:
            self._token, self._minted = mint(self._secret, self._caller, now), now
        return HEADER, f"{SCHEME} {self._token}"


def token_source() -> TokenSource | None:
    """This process's token source, or None when the mesh is not authenticated."""
    settings = MeshAuthSettings()
    secret = settings.mesh_secret.get_secret_value()
    return TokenSource(secret.encode(), settings.service_name) if secret else None
