"""HTTP calls to a company's system, as a catalog's connector declares them.

Before any socket opens: the host must be on the catalog's allow-list, and every
address it resolves to must be public unless the host is explicitly listed as
private (the demo back office on 127.0.0.1). The connection then goes to the
address that was checked (the Host header and TLS SNI keep the name), so a DNS
answer that changes between the check and the call cannot redirect it.
Redirects are never followed; each call has a timeout and a cap on the
response's size; the secret comes from the environment variable the catalog
names and is never logged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from opentelemetry import propagate

from servicekit import deadlines, pii
from services.actions.catalog import Connector, check_host_allowed, is_private_address

log = structlog.get_logger("services.actions.connector")

Resolver = Callable[[str, int], Awaitable[list[str]]]
_REPLAYED_HEADERS = ("idempotent-replayed", "idempotency-replayed")
_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class HttpCall:
    method: str
    # Already rendered and percent-encoded, below the connector's base path.
    path: str
    query: Mapping[str, str]
    body: Mapping[str, Any] | None
    timeout_s: float
    idempotency_key: str | None = None


@dataclass(frozen=True)
class HttpOutcome:
    status: int
    body: Any
    # The company's system answered from its idempotency store (a re-sent key).
    replayed: bool = False
    # A write answered 2xx with more than the cap: it happened, its answer is not kept.
    truncated: bool = False


class ConnectorError(Exception):
    """A call that did not give a usable answer.

    `transient`: trying again later may work (the system is down, slow, overloaded).
    `may_have_executed`: the request may have reached the system (a timeout after
    sending, a reset, a 5xx): a write must be re-sent with the same idempotency key,
    never assumed undone.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        transient: bool = False,
        may_have_executed: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.transient = transient
        self.may_have_executed = may_have_executed
        self.status = status


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _error_message(content: bytes) -> str:
    """The company system's own words for a refusal, masked and short."""
    text = content.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key in ("error", "detail", "message"):
            if isinstance(parsed.get(key), str):
                text = parsed[key]
                break
    elif isinstance(parsed, str):
        text = parsed
    return pii.mask(text)[:_MESSAGE_CHARS]


class HttpConnector:
    """Sends catalog calls; one httpx client (connection pool) for the process."""

    def __init__(
        self,
        *,
        client: httpx.AsyncClient | None = None,
        resolver: Resolver = system_resolver,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        # trust_env=False: no proxy from the environment may carry the call elsewhere.
        self._client = client or httpx.AsyncClient(follow_redirects=False, trust_env=False)
        self._resolver = resolver
        self._environ = os.environ if environ is None else environ

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _address(self, connector: Connector) -> str:
        """The address to connect to, after the allow-list and private-address checks."""
        problem = check_host_allowed(connector.host, connector)
        if problem:
            raise ConnectorError("CONNECTOR_HOST_NOT_ALLOWED", problem)
        try:
            addresses = [ipaddress.ip_address(connector.host)]
        except ValueError:
            try:
                resolved = await self._resolver(connector.host, connector.port)
            except OSError as error:
                raise ConnectorError(
                    "CONNECTOR_UNAVAILABLE", f"cannot resolve {connector.host}: {error}", transient=True
                ) from None
            addresses = [ipaddress.ip_address(address.split("%")[0]) for address in resolved]
        if not addresses:
            raise ConnectorError("CONNECTOR_UNAVAILABLE", f"{connector.host} resolves to nothing", transient=True)
        private = [str(a) for a in addresses if is_private_address(a)]
        if private and connector.host not in connector.allowed_private_hosts:
            raise ConnectorError(
                "CONNECTOR_ADDRESS_NOT_ALLOWED",
                f"{connector.host} resolves to a private address ({private[0]}) and is not an allowed private host",
            )
        chosen = addresses[0]
        return f"[{chosen}]" if chosen.version == 6 else str(chosen)

    def _headers(self, connector: Connector, call: HttpCall) -> dict[str, str]:
        default_port = 443 if connector.scheme == "https" else 80
        host = connector.host if connector.port == default_port else f"{connector.host}:{connector.port}"
        headers = {"Host": host, "Accept": "application/json", "User-Agent": "aftercare-actions/1"}
        if connector.auth is not None:
            secret = self._environ.get(connector.auth.secret_env, "")
            if not secret:
                raise ConnectorError(
                    "CONNECTOR_SECRET_MISSING", f"the secret {connector.auth.secret_env} is not set", transient=True
                )
            if connector.auth.scheme == "bearer":
                headers["Authorization"] = f"Bearer {secret}"
            else:
                headers[connector.auth.header] = secret
        if call.idempotency_key:
            headers["Idempotency-Key"] = call.idempotency_key
        # The company's system may join the trace (W3C traceparent); nothing personal is in it.
        propagate.inject(headers)
        return headers

    async def send(self, connector: Connector, call: HttpCall) -> HttpOutcome:
        address = await self._address(connector)
        headers = self._headers(connector, call)
        url = f"{connector.scheme}://{address}:{connector.port}{connector.base_path}{call.path}"
        timeout = call.timeout_s
        left = deadlines.remaining()
        if left is not None:
            timeout = max(0.05, min(timeout, left))
        extensions = {"sni_hostname": connector.host} if connector.scheme == "https" else {}
        sent = False
        try:
            async with asyncio.timeout(timeout):
                request = self._client.build_request(
                    call.method,
                    url,
                    params=dict(call.query),
                    json=dict(call.body) if call.body is not None else None,
                    headers=headers,
                    timeout=httpx.Timeout(timeout),
                    extensions=extensions,
                )
                response = await self._client.send(request, stream=True)
                sent = True
                try:
                    content, truncated = await _read_capped(response, connector.max_response_bytes)
                finally:
                    await response.aclose()
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            # Never reached the system: nothing can have happened there.
            raise ConnectorError(
                "CONNECTOR_UNAVAILABLE", f"cannot connect to {connector.host}: {type(error).__name__}", transient=True
            ) from None
        except (TimeoutError, httpx.TimeoutException) as error:
            raise ConnectorError(
                "CONNECTOR_TIMEOUT",
                f"{connector.host} did not answer within {timeout:.1f}s ({type(error).__name__})",
                transient=True,
                may_have_executed=True,
            ) from None
        except httpx.HTTPError as error:
            raise ConnectorError(
                "CONNECTOR_UNAVAILABLE",
                f"the connection to {connector.host} failed: {type(error).__name__}",
                transient=True,
                may_have_executed=sent or not isinstance(error, httpx.ConnectError),
            ) from None
        return _outcome(response, content, truncated, connector)


async def _read_capped(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            return b"", True
        chunks.append(chunk)
    return b"".join(chunks), False


def _outcome(response: httpx.Response, content: bytes, truncated: bool, connector: Connector) -> HttpOutcome:
    status = response.status_code
    replayed = any(response.headers.get(name, "").lower() == "true" for name in _REPLAYED_HEADERS)
    if 200 <= status < 300:
        if truncated:
            return HttpOutcome(status=status, body=None, replayed=replayed, truncated=True)
        if not content.strip():
            return HttpOutcome(status=status, body=None, replayed=replayed)
        try:
            return HttpOutcome(status=status, body=json.loads(content), replayed=replayed)
        except ValueError:
            raise ConnectorError(
                "CONNECTOR_BAD_RESPONSE", f"{connector.host} answered {status} without JSON", status=status
            ) from None
    message = "(response too large)" if truncated else _error_message(content)
    if 300 <= status < 400:
        raise ConnectorError(
            "CONNECTOR_REDIRECT", f"{connector.host} redirected ({status}); not followed", status=status
        )
    if status in (401, 403):
        # Our credentials are wrong: the request was refused before anything happened.
        raise ConnectorError(
            "CONNECTOR_UNAUTHORIZED", f"{connector.host} refused our credentials ({status})", transient=True,
            status=status,
        )
    if status == 404:
        raise ConnectorError("CONNECTOR_NOT_FOUND", message or "not found", status=status)
    if status == 429:
        raise ConnectorError("CONNECTOR_BUSY", f"{connector.host} is overloaded (429)", transient=True, status=status)
    if status == 408 or status >= 500:
        raise ConnectorError(
            "CONNECTOR_UNAVAILABLE",
            f"{connector.host} failed ({status}): {message}",
            transient=True,
            may_have_executed=True,
            status=status,
        )
    raise ConnectorError("CONNECTOR_REFUSED", message or f"refused ({status})", status=status)
