"""Bodies of the gateway's own health endpoints (/healthz, /readyz).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    backends: dict[str, Literal["SERVING", "NOT_SERVING", "UNAVAILABLE"]]
