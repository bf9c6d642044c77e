"""Dependencies every route uses: the backends, the settings, path parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from gateway.backends import Backends
from gateway.settings import GatewaySettings
from servicekit.ids import ID_PATTERN


# async on purpose: FastAPI runs a plain `def` dependency in a thread pool (a thread hop per request).
async def _backends(request: Request) -> Backends:
    backends: Backends = request.app.state.backends
    return backends


async def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


BackendsDep = Annotated[Backends, Depends(_backends)]
SettingsDep = Annotated[GatewaySettings, Depends(_settings)]
ConversationId = Annotated[str, Path(pattern=ID_PATTERN, description="Stable conversation id chosen by the channel.")]
TenantId = Annotated[str, Path(pattern=ID_PATTERN, description="Tenant; must be the API key's tenant.")]
HandoffId = Annotated[str, Path(pattern=ID_PATTERN, description="Handoff id from a message reply.")]
DocId = Annotated[str, Path(pattern=ID_PATTERN, description="Document id.")]
FindingId = Annotated[str, Path(pattern=ID_PATTERN, description="Risk finding id.")]
DraftId = Annotated[str, Path(pattern=ID_PATTERN, description="Outreach draft id.")]
