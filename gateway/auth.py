"""Who is calling, how often, and what they may reach.

Every /v1 request needs `Authorization: Bearer <API key>`. The middleware
verifies the key and applies its rate limit before anything else runs, so an
unauthenticated or throttled request costs no parsing and no backend call.
Each route then states the least role it needs; a key reaches only its own
tenant: a tenant in the path (or body) must be the key's tenant.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.keys import ApiKey, KeyStore, Role
from gateway.problems import problem

PROTECTED_PREFIX = "/v1/"

# Documents the scheme in OpenAPI; the middleware has already checked the key.
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer ak_...`.")


class Forbidden(StarletteHTTPException):
    """The key is valid but may not do this (role) or reach this tenant."""

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(403, detail)
        self.reason = reason


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per key: `rate` requests per second sustained, `burst` at once.

    In process memory: with N gateway replicas a key gets up to N times the
    rate, which is what per-replica limits mean; a shared store would put a
    network hop on every request."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key_id: str, now: float | None = None) -> float:
        """0 when the request may go; otherwise seconds until a token is back."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(tokens=float(self.burst), updated=now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


class AuthMiddleware:
    """Authenticates /v1 requests and applies the per-key rate limit."""

    def __init__(self, app: ASGIApp, keys: KeyStore, limiter: RateLimiter) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        scheme, _, presented = Headers(scope=scope).get("authorization", "").partition(" ")
        key = self.keys.verify(presented.strip()) if scheme.lower() == "bearer" else None
        if key is None:
            response = problem(
                401,
                "A valid API key is required: send `Authorization: Bearer <key>`.",
                "UNAUTHENTICATED",
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        wait_s = self.limiter.acquire(key.key_id)
        if wait_s > 0:
            retry_after = max(1, math.ceil(wait_s))
            response = problem(
                429,
                f"Rate limit of this API key reached; retry after {retry_after} s.",
                "RATE_LIMITED",
                headers={"Retry-After": str(retry_after)},
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = key
        await self.app(scope, receive, send)


def _require(least: Role):  # type: ignore[no-untyped-def]
    async def principal(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
    ) -> ApiKey:
        key: ApiKey = request.state.principal
        if key.role < least:
            raise Forbidden(f"This needs a {least.label} key; this key's role is {key.role.label}.", "ROLE_FORBIDDEN")
        tenant = request.path_params.get("tenant_id")
        if tenant is not None and tenant != key.tenant_id:
            raise Forbidden("This key belongs to another tenant.", "TENANT_FORBIDDEN")
        return key

    return principal


def check_tenant(key: ApiKey, tenant_id: str | None) -> None:
    """A tenant named in a body must be the key's own."""
    if tenant_id is not None and tenant_id != key.tenant_id:
        raise Forbidden("This key belongs to another tenant.", "TENANT_FORBIDDEN")


ChannelKey = Annotated[ApiKey, Depends(_require(Role.CHANNEL))]
AgentKey = Annotated[ApiKey, Depends(_require(Role.AGENT))]
AdminKey = Annotated[ApiKey, Depends(_require(Role.ADMIN))]
