"""Backend calls that end when the client does.

A chat turn holds an LLM slot for seconds. When the customer closes the tab,
nobody is left to read the answer, so the gateway cancels the gRPC call: the
cancellation reaches the concierge, which stops generating and frees its slot
for a customer who is still there. Nothing acknowledged is lost: the turn was
never answered, and a retry with the same client_message_id runs it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import grpc
from fastapi import Request
from starlette.types import Receive

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before the backend answered (logged as 499)."""


async def _client_left(receive: Receive) -> None:
    # Called once the body is read: the server's receive() then waits until the
    # connection closes (or the response is complete) and says http.disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_client_leaves(request: Request, call: grpc.aio.Call, step: Awaitable[T] | None = None) -> T:
    """Await `step` (by default the unary `call` itself), cancelling `call` if the
    client disconnects first; then raises ClientGone."""
    # Without a step, `call` is a unary call (awaitable); grpc.aio.Call itself is not.
    work: asyncio.Future[Any] = asyncio.ensure_future(step if step is not None else call)  # type: ignore[arg-type]
    left = asyncio.ensure_future(_client_left(request.receive))
    try:
        await asyncio.wait({work, left}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        call.cancel()
        work.cancel()
        raise
    finally:
        left.cancel()
    if work.done():
        return work.result()  # type: ignore[no-any-return]
    call.cancel()
    work.cancel()
    raise ClientGone
