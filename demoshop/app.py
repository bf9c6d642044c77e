"""The back office's HTTP API (see README.md): τ-bench retail tools as REST-ish JSON endpoints."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from demoshop import operations, records, tools
from demoshop.operations import ShopError
from demoshop.store import Shop, request_fingerprint

log = logging.getLogger("demoshop.app")

Id = Annotated[str, Field(min_length=1, max_length=64)]
Text = Annotated[str, Field(max_length=200)]
ItemIds = Annotated[list[Id], Field(max_length=100)]
# What anyone may read: liveness and the API's description.
OPEN_PATHS = frozenset({"/healthz", "/openapi.json"})
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AddressBody(_Body):
    address1: Text
    address2: Text = ""
    city: Text
    state: Text
    country: Text
    zip: Annotated[str, Field(max_length=20)]


class CancelBody(_Body):
    # "no longer needed" or "ordered by mistake"; anything else is refused as τ-bench does ("invalid reason").
    reason: Text


class ItemsBody(_Body):
    item_ids: ItemIds
    new_item_ids: ItemIds
    payment_method_id: Id


class PaymentBody(_Body):
    payment_method_id: Id


class ReturnBody(_Body):
    item_ids: ItemIds
    payment_method_id: Id


class Action(BaseModel):
    name: Annotated[str, Field(max_length=64)]
    kwargs: dict[str, Any] = {}


class ReplayBody(_Body):
    actions: Annotated[list[Action], Field(max_length=100)]


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "code": code, **extra}, status_code=status)


def order_key(raw: str) -> str:
    """Order ids start with '#', which a URL must send as %23; one sent without it is the same order."""
    return raw if raw.startswith("#") else f"#{raw}"


def create_app(shop: Shop, token: str) -> FastAPI:
    expected = token.encode()

    def authorized(authorization: str | None) -> bool:
        scheme, _, presented = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), expected)

    def read(operation: Callable[[Connection], Any]) -> JSONResponse:
        try:
            return JSONResponse(shop.read(operation))
        except ShopError as error:
            return JSONResponse(error.body(), status_code=error.status)

    def write(
        request: Request, body: BaseModel | None, key: str | None, operation: Callable[[Connection], Any], path: str
    ) -> JSONResponse:
        fingerprint = request_fingerprint(request.method, path, body.model_dump() if body else None)
        result = shop.write(operation, key, fingerprint)
        headers = {"Idempotent-Replayed": "true"} if result.replayed else None
        return JSONResponse(result.body, status_code=result.status, headers=headers)

    app = FastAPI(
        title="Demo shop back office",
        description="The demo company's order system (τ-bench retail): a stand-in, not part of aftercare.",
        docs_url=None,
        redoc_url=None,
    )
    api = APIRouter()

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        # Before anything else (body parsing included): without the token a caller learns nothing.
        if request.url.path not in OPEN_PATHS and not authorized(request.headers.get("authorization")):
            response: Response = _error(401, "unauthorized", "Error: missing or invalid bearer token")
            response.headers["WWW-Authenticate"] = "Bearer"
        else:
            response = await call_next(request)
        # The route's template, not the path: ids and e-mail addresses stay out of the log.
        route = getattr(request.scope.get("route"), "path", "-")
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info("%s %s %d %.1fms", request.method, route, response.status_code, elapsed_ms)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        # Where and what, never the input itself.
        details = [
            {"field": ".".join(str(part) for part in problem.get("loc", ())), "message": problem.get("msg", "")}
            for problem in error.errors()
        ]
        return _error(422, "invalid_request", "Error: invalid request", details=details)

    @app.exception_handler(OperationalError)
    async def busy(_request: Request, error: OperationalError) -> JSONResponse:
        log.warning("database error: %s", error.orig)
        return _error(503, "unavailable", "Error: the order system is busy, try again")

    @app.exception_handler(Exception)
    async def internal(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=error)
        return _error(500, "internal", "Error: internal error")

    @app.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        shop.read(records.product_types)  # the database answers
        return JSONResponse({"status": "ok"})

    # Reads.
    @api.get("/users", tags=["users"])
    def find_user_by_email(email: Annotated[str, Query(min_length=1, max_length=200)]) -> JSONResponse:
        return read(lambda conn: {"user_id": tools.find_user_id_by_email(conn, email)})

    @api.get("/users/lookup", tags=["users"])
    def find_user_by_name_zip(
        first_name: Annotated[str, Query(min_length=1, max_length=100)],
        last_name: Annotated[str, Query(min_length=1, max_length=100)],
        zip: Annotated[str, Query(min_length=1, max_length=20)],
    ) -> JSONResponse:
        return read(lambda conn: {"user_id": tools.find_user_id_by_name_zip(conn, first_name, last_name, zip)})

    @api.get("/users/{user_id}", tags=["users"])
    def get_user(user_id: str) -> JSONResponse:
        return read(lambda conn: {"user_id": user_id, **tools.get_user_details(conn, user_id)})

    @api.get("/orders/{order_id}", tags=["orders"])
    def get_order(order_id: str) -> JSONResponse:
        return read(lambda conn: tools.get_order_details(conn, order_key(order_id)))

    @api.get("/products/{product_id}", tags=["products"])
    def get_product(product_id: str) -> JSONResponse:
        return read(lambda conn: tools.get_product_details(conn, product_id))

    @api.get("/product-types", tags=["products"])
    def list_product_types() -> JSONResponse:
        return read(tools.list_all_product_types)

    # Writes: one transaction each, Idempotency-Key honoured.
    @api.post("/orders/{order_id}/cancel", tags=["orders"])
    def cancel_order(order_id: str, body: CancelBody, request: Request, key: IdempotencyKey = None) -> JSONResponse:
        oid = order_key(order_id)
        return write(
            request,
            body,
            key,
            lambda conn: operations.cancel_pending_order(conn, oid, body.reason),
            f"/orders/{oid}/cancel",
        )

    @api.post("/orders/{order_id}/address", tags=["orders"])
    def modify_order_address(
        order_id: str, body: AddressBody, request: Request, key: IdempotencyKey = None
    ) -> JSONResponse:
        oid = order_key(order_id)
        return write(
            request,
            body,
            key,
            lambda conn: operations.modify_pending_order_address(conn, oid, **body.model_dump()),
            f"/orders/{oid}/address",
        )

    @api.post("/orders/{order_id}/items", tags=["orders"])
    def modify_order_items(
        order_id: str, body: ItemsBody, request: Request, key: IdempotencyKey = None
    ) -> JSONResponse:
        oid = order_key(order_id)
        return write(
            request,
            body,
            key,
            lambda conn: operations.modify_pending_order_items(conn, oid, **body.model_dump()),
            f"/orders/{oid}/items",
        )

    @api.post("/orders/{order_id}/payment", tags=["orders"])
    def modify_order_payment(
        order_id: str, body: PaymentBody, request: Request, key: IdempotencyKey = None
    ) -> JSONResponse:
        oid = order_key(order_id)
        return write(
            request,
            body,
            key,
            lambda conn: operations.modify_pending_order_payment(conn, oid, body.payment_method_id),
            f"/orders/{oid}/payment",
        )

    @api.post("/orders/{order_id}/return", tags=["orders"])
    def return_items(order_id: str, body: ReturnBody, request: Request, key: IdempotencyKey = None) -> JSONResponse:
        oid = order_key(order_id)
        return write(
            request,
            body,
            key,
            lambda conn: operations.return_delivered_order_items(conn, oid, **body.model_dump()),
            f"/orders/{oid}/return",
        )

    @api.post("/orders/{order_id}/exchange", tags=["orders"])
    def exchange_items(order_id: str, body: ItemsBody, request: Request, key: IdempotencyKey = None) -> JSONResponse:
        oid = order_key(order_id)
        return write(
            request,
            body,
            key,
            lambda conn: operations.exchange_delivered_order_items(conn, oid, **body.model_dump()),
            f"/orders/{oid}/exchange",
        )

    @api.post("/users/{user_id}/address", tags=["users"])
    def modify_user_address(
        user_id: str, body: AddressBody, request: Request, key: IdempotencyKey = None
    ) -> JSONResponse:
        return write(
            request,
            body,
            key,
            lambda conn: {"user_id": user_id, **operations.modify_user_address(conn, user_id, **body.model_dump())},
            f"/users/{user_id}/address",
        )

    # For benchmarks and tests: the state to compare, a reset between tasks, the ground truth's end state.
    @api.get("/state/digest", tags=["state"])
    def state_digest() -> JSONResponse:
        state = shop.export()
        return JSONResponse(
            {"sha256": records.state_digest(state), "users": len(state["users"]), "orders": len(state["orders"])}
        )

    @api.get("/state/export", tags=["state"])
    def state_export() -> JSONResponse:
        return JSONResponse(shop.export())

    @api.post("/admin/reset", tags=["admin"])
    def reset() -> JSONResponse:
        return JSONResponse({"sha256": shop.reset()})

    @api.post("/admin/replay", tags=["admin"])
    def replay(body: Annotated[ReplayBody, Body()]) -> JSONResponse:
        result = shop.replay([action.model_dump() for action in body.actions])
        outcomes = [{key: value for key, value in outcome.items() if key != "output"} for outcome in result.results]
        return JSONResponse({"sha256": result.digest, "results": outcomes})

    app.include_router(api)
    return app
