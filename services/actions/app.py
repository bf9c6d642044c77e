from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import structlog

from aftercare.actions.v1 import actions_pb2, actions_pb2_grpc
from servicekit.database import database_url, make_engine
from servicekit.server import Mount, mount, run_service
from services.actions.catalog import load_catalogs
from services.actions.connector import HttpConnector
from services.actions.engine import ActionsEngine
from services.actions.servicer import ActionsServicer
from services.actions.settings import ActionsSettings
from services.actions.store import ActionsStore

log = structlog.get_logger("services.actions")


@contextlib.asynccontextmanager
async def servicers(settings: ActionsSettings) -> AsyncIterator[Sequence[Mount]]:
    # A catalog that does not load (a bad schema, an expression with a typo, a host off the
    # allow-list) stops the boot: never a half-working catalog in front of customers.
    catalogs = load_catalogs(settings.catalog_dir)
    log.info("catalogs_loaded", tenants={t: c.version for t, c in catalogs.items()})
    engine = make_engine(database_url(settings.database_url, settings.data_dir, "actions"))
    connector = HttpConnector()
    reconciler: asyncio.Task[None] | None = None
    actions: ActionsEngine | None = None
    try:
        store = ActionsStore(engine)
        await asyncio.to_thread(store.migrate)
        actions = ActionsEngine(store, catalogs, connector, settings)
        # Its first pass settles what a crash left EXECUTING (once the leases run out).
        reconciler = asyncio.create_task(actions.reconcile_forever())
        yield [mount(ActionsServicer(actions), actions_pb2, actions_pb2_grpc)]
    finally:
        if reconciler is not None:
            reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconciler
        if actions is not None:
            await actions.drain(settings.shutdown_grace_s)
        await connector.aclose()
        engine.dispose()


def main() -> None:
    run_service("actions", ActionsSettings(), servicers)  # type: ignore[call-arg]
