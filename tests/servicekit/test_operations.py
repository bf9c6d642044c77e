"""Long-running operations on SQLite and PostgreSQL: one not-done operation per tenant
and kind, claims that never hand one operation to two replicas, fenced heartbeats and
results, takeover of abandoned operations, cancel, paging, the runner end to end and
OperationsService over a real gRPC server."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message
from sqlalchemy.engine import Engine

from aftercare.operations.v1 import operations_pb2, operations_pb2_grpc
from servicekit.errors import details_from_rpc_error
from servicekit.operation_runner import OperationContext, OperationRunner
from servicekit.operations import (
    AlreadyRunning,
    OperationCancelled,
    OperationFailed,
    OperationRecord,
    OperationsServicer,
    OperationStore,
    State,
    Takeover,
    operation_name,
    parse_name,
)
from servicekit.server import mount, start_server
from servicekit.settings import ServiceSettings

KIND = "test_job"
REPLICA_A = "host-a/100-aaaa"
REPLICA_B = "host-b/200-bbbb"


def takeover(
    host: str = "host-b/", restart_after: float = 5.0, stale_after: float = 30.0, attempts: int = 5
) -> Takeover:
    return Takeover(
        host_prefix=host,
        restart_after=dt.timedelta(seconds=restart_after),
        stale_after=dt.timedelta(seconds=stale_after),
        max_attempts=attempts,
    )


@pytest.fixture
def store(engine: Engine) -> OperationStore:
    made = OperationStore(engine)
    made.migrate()
    return made


def describe(record: OperationRecord) -> Message:
    return wrappers_pb2.StringValue(value=f"{record.state.value} {record.progress_percent} {record.step}")


def test_names_round_trip_and_malformed_ones_are_refused() -> None:
    assert parse_name(operation_name("acme:eu", "0f3a")) == ("acme:eu", "0f3a")
    for bad in (
        "",
        "tenants/acme/operations/",
        "tenants/a b/operations/x",
        "tenants/acme/operations/x/y",
        "operations/x",
        "tenants/acme/operations/x:cancel",
    ):
        assert parse_name(bad) is None, bad


def test_one_operation_of_a_kind_per_tenant_at_a_time(store: OperationStore) -> None:
    first = store.create("acme", KIND, b"request", b"")
    assert first.state is State.QUEUED and not first.done and first.attempts == 0
    with pytest.raises(AlreadyRunning) as refused:
        store.create("acme", KIND, b"again", b"")
    assert refused.value.running == first.name
    assert refused.value.code == grpc.StatusCode.ALREADY_EXISTS
    # Another tenant, or another kind, is not held up.
    store.create("globex", KIND, b"request", b"")
    store.create("acme", "other_kind", b"request", b"")
    # Once the first is done, the tenant may start another.
    claimed = store.claim(REPLICA_A, [KIND], takeover())
    assert claimed is not None and claimed.id == first.id  # oldest first
    with pytest.raises(AlreadyRunning):
        store.create("acme", KIND, b"again", b"")
    assert store.finish(claimed, State.SUCCEEDED, response=wrappers_pb2.StringValue(value="ok"))
    assert store.create("acme", KIND, b"next", b"").state is State.QUEUED


def test_replicas_racing_for_an_operation_never_both_get_it(store: OperationStore) -> None:
    store.create("acme", KIND, b"request", b"")
    won: list[OperationRecord] = []
    start = threading.Barrier(6)

    def race(replica: str) -> None:
        start.wait()
        claimed = store.claim(replica, [KIND], takeover(host=replica.split("/")[0] + "/"))
        if claimed is not None:
            won.append(claimed)

    threads = [threading.Thread(target=race, args=(f"host-{n}/{n}-x",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert won[0].state is State.RUNNING and won[0].attempts == 1 and won[0].owner == won[0].owner


def test_a_runner_that_lost_its_operation_can_record_nothing(store: OperationStore) -> None:
    store.create("acme", KIND, b"request", b"")
    mine = store.claim(REPLICA_A, [KIND], takeover())
    assert mine is not None
    assert store.heartbeat(mine, (40, "halfway")).owned
    # Still alive: nobody else may take it.
    assert store.claim(REPLICA_B, [KIND], takeover()) is None
    # Its heartbeat is older than the staleness bound: replica B takes it over.
    theirs = store.claim(REPLICA_B, [KIND], takeover(stale_after=-1))
    assert theirs is not None and theirs.id == mine.id and theirs.attempts == 2 and theirs.owner == REPLICA_B
    beat = store.heartbeat(mine, (50, "still going"))
    assert not beat.owned
    assert not store.finish(mine, State.SUCCEEDED, response=wrappers_pb2.StringValue(value="stale"))
    assert store.finish(theirs, State.SUCCEEDED, response=wrappers_pb2.StringValue(value="fresh"))
    done = store.get("acme", mine.id)
    assert done is not None and done.state is State.SUCCEEDED and done.progress_percent == 100
    assert done.response is not None and b"fresh" in done.response


def test_a_restarted_replica_takes_its_own_operation_back_before_others_may(store: OperationStore) -> None:
    store.create("acme", KIND, b"request", b"")
    before = store.claim("host-a/100-aaaa", [KIND], takeover())
    assert before is not None
    # Another host waits for the staleness bound (30 s) ...
    assert store.claim(REPLICA_B, [KIND], takeover(restart_after=0)) is None
    # ... the same host (a new process) only for the restart bound.
    after = store.claim("host-a/101-cccc", [KIND], takeover(host="host-a/", restart_after=-1))
    assert after is not None and after.id == before.id and after.attempts == 2


def test_progress_moves_update_time_but_a_bare_heartbeat_does_not(store: OperationStore) -> None:
    store.create("acme", KIND, b"request", b"")
    running = store.claim(REPLICA_A, [KIND], takeover())
    assert running is not None
    store.heartbeat(running, None)
    quiet = store.get("acme", running.id)
    assert quiet is not None and quiet.updated_at == running.updated_at and quiet.heartbeat_at >= running.heartbeat_at  # type: ignore[operator]
    store.heartbeat(running, (120, "x" * 500))
    moved = store.get("acme", running.id)
    assert moved is not None and moved.progress_percent == 100 and len(moved.step) == 200
    assert moved.updated_at > running.updated_at


def test_cancel_ends_a_queued_operation_and_flags_a_running_one(store: OperationStore) -> None:
    queued = store.create("acme", KIND, b"request", b"")
    cancelled = store.request_cancel("acme", queued.id)
    assert cancelled is not None and cancelled.state is State.CANCELLED and cancelled.error_code == 1
    store.create("acme", KIND, b"request", b"")
    running = store.claim(REPLICA_A, [KIND], takeover())
    assert running is not None
    flagged = store.request_cancel("acme", running.id)
    assert flagged is not None and flagged.state is State.RUNNING and flagged.cancel_requested
    assert store.heartbeat(running, None).cancel_requested
    # Its runner died before it stopped: the next claim ends it as cancelled instead of running it again.
    assert store.claim(REPLICA_B, [KIND], takeover(stale_after=-1)) is None
    ended = store.get("acme", running.id)
    assert ended is not None and ended.state is State.CANCELLED
    # A done operation stays as it is.
    assert store.request_cancel("acme", running.id) == ended


def test_an_operation_that_keeps_killing_its_runners_is_reported_failed(store: OperationStore) -> None:
    created = store.create("acme", KIND, b"request", b"")
    for attempt in range(1, 4):
        claimed = store.claim(f"host-{attempt}/1-x", [KIND], takeover(stale_after=-1, attempts=3))
        assert claimed is not None and claimed.attempts == attempt
    assert store.claim("host-9/1-x", [KIND], takeover(stale_after=-1, attempts=3)) is None
    failed = store.get("acme", created.id)
    assert failed is not None and failed.state is State.FAILED and failed.error_code == grpc.StatusCode.ABORTED.value[0]
    assert "abandoned after 3 attempts" in (failed.error_message or "")


def test_a_released_operation_is_queued_again_for_any_replica(store: OperationStore) -> None:
    store.create("acme", KIND, b"request", b"")
    claimed = store.claim(REPLICA_A, [KIND], takeover())
    assert claimed is not None and store.release(claimed)
    again = store.claim(REPLICA_B, [KIND], takeover())
    assert again is not None and again.id == claimed.id and again.attempts == 2


def test_pages_are_newest_first_and_only_running_filters(store: OperationStore) -> None:
    made = []
    for n in range(5):
        made.append(store.create(f"t{n}", KIND, b"r", b""))
    # One tenant, five operations: end each before starting the next.
    ids = []
    for _ in range(5):
        record = store.create("acme", KIND, b"r", b"")
        ids.append(record.id)
        if len(ids) < 5:
            store.request_cancel("acme", record.id)
    page, cursor = store.list("acme", [KIND], page_size=2)
    assert [r.id for r in page] == ids[::-1][:2] and cursor is not None
    rest, end = store.list("acme", [KIND], page_size=10, after=cursor)
    assert [r.id for r in rest] == ids[::-1][2:] and end is None
    running, _ = store.list("acme", [KIND], only_running=True)
    assert [r.id for r in running] == [ids[-1]]
    assert store.list("acme", ["another_kind"])[0] == []


# --- the runner -----------------------------------------------------------------


class Work:
    """The work of a test operation: reports progress every 10 ms, checks for cancel, can be held or fail."""

    def __init__(self, steps: int = 30, fail: Exception | None = None) -> None:
        self.steps = steps
        self.fail = fail
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()

    def blocking(self, context: OperationContext) -> Message:
        self.started.set()
        for step in range(self.steps):
            self.release.wait(10)
            if context.cancelled():
                raise OperationCancelled()
            context.progress(int(100 * step / self.steps), f"step {step}/{self.steps}")
            threading.Event().wait(0.01)
        if self.fail is not None:
            raise self.fail
        return wrappers_pb2.StringValue(value=context.record.request.decode())

    async def __call__(self, context: OperationContext) -> Message:
        return await asyncio.to_thread(self.blocking, context)


def runner(
    store: OperationStore, work: Callable[[OperationContext], object], replica: str = REPLICA_A, **options: float
) -> OperationRunner:
    settings: dict[str, float] = {"poll_interval": 0.05, "progress_interval": 0.05} | options
    return OperationRunner(store, {KIND: work}, replica=replica, **settings)  # type: ignore[dict-item,arg-type]


async def until(
    store: OperationStore, record: OperationRecord, ok: Callable[[OperationRecord], bool], within: float = 20.0
) -> OperationRecord:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        current = await asyncio.to_thread(store.get, record.tenant_id, record.id)
        assert current is not None
        if ok(current):
            return current
        assert asyncio.get_running_loop().time() < deadline, f"stuck: {current}"
        await asyncio.sleep(0.02)


@pytest.fixture
def sqlite_store(tmp_path) -> OperationStore:  # type: ignore[no-untyped-def]
    from servicekit.database import database_url, make_engine

    made = OperationStore(make_engine(database_url("", tmp_path, "ops")))
    made.migrate()
    return made


async def test_the_runner_records_progress_and_the_response(store: OperationStore) -> None:
    work = Work(steps=40)
    started = runner(store, work)
    started.start()
    try:
        record = store.create("acme", KIND, b"hello", b"")
        started.wake()
        steps: set[str] = set()

        def seen(current: OperationRecord) -> bool:
            steps.add(current.step)
            return current.done

        done = await until(store, record, seen)
    finally:
        await started.stop()
    assert done.state is State.SUCCEEDED and done.attempts == 1 and done.owner == REPLICA_A
    assert done.response is not None and b"hello" in done.response
    # Progress reached the store while it ran (throttled: fewer writes than the 40 steps).
    assert len({s for s in steps if s.startswith("step ")}) >= 2


async def test_a_cancelled_operation_stops_at_its_next_checkpoint(store: OperationStore) -> None:
    work = Work(steps=10_000)
    started = runner(store, work)
    started.start()
    try:
        record = store.create("acme", KIND, b"x", b"")
        await until(store, record, lambda r: r.step.startswith("step "))
        store.request_cancel("acme", record.id)
        done = await until(store, record, lambda r: r.done, within=10)
    finally:
        await started.stop()
    assert done.state is State.CANCELLED and done.error_code == grpc.StatusCode.CANCELLED.value[0]


async def test_failures_are_recorded_with_their_code_and_bugs_without_details(store: OperationStore) -> None:
    started = runner(store, Work(steps=2, fail=OperationFailed(grpc.StatusCode.INVALID_ARGUMENT, "bad labels")))
    started.start()
    try:
        failed = await until(store, store.create("acme", KIND, b"x", b""), lambda r: r.done)
    finally:
        await started.stop()
    assert failed.state is State.FAILED and failed.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert failed.error_message == "bad labels"

    started = runner(store, Work(steps=2, fail=ZeroDivisionError("secret internals")))
    started.start()
    try:
        crashed = await until(store, store.create("acme", KIND, b"x", b""), lambda r: r.done)
    finally:
        await started.stop()
    assert crashed.state is State.FAILED and crashed.error_code == grpc.StatusCode.INTERNAL.value[0]
    assert "secret" not in (crashed.error_message or "") and REPLICA_A in (crashed.error_message or "")


async def test_a_stopping_replica_hands_its_operation_to_another(sqlite_store: OperationStore) -> None:
    store = sqlite_store
    held = Work(steps=20)
    held.release.clear()
    first = runner(store, held)
    first.start()
    record = store.create("acme", KIND, b"handed over", b"")
    await asyncio.to_thread(held.started.wait, 10)
    stopping = asyncio.create_task(first.stop())
    await until(store, record, lambda r: r.state is State.QUEUED)
    held.release.set()
    await stopping
    second = runner(store, Work(steps=3), replica=REPLICA_B)
    second.start()
    try:
        done = await until(store, record, lambda r: r.done)
    finally:
        await second.stop()
    assert done.state is State.SUCCEEDED and done.attempts == 2 and done.owner == REPLICA_B


async def test_a_dead_replicas_operation_is_taken_over_after_the_staleness_bound(sqlite_store: OperationStore) -> None:
    store = sqlite_store
    record = store.create("acme", KIND, b"orphan", b"")
    # A replica claimed it and died (no runner heartbeats for it).
    assert store.claim(REPLICA_A, [KIND], takeover()) is not None
    survivor = runner(store, Work(steps=3), replica=REPLICA_B, stale_after=0.5)
    survivor.start()
    try:
        done = await until(store, record, lambda r: r.done)
    finally:
        await survivor.stop()
    assert done.state is State.SUCCEEDED and done.attempts == 2 and done.owner == REPLICA_B


# --- OperationsService ----------------------------------------------------------------


@pytest.fixture
async def operations(sqlite_store: OperationStore) -> AsyncIterator[operations_pb2_grpc.OperationsServiceStub]:
    servicer = OperationsServicer(sqlite_store, {KIND: describe})
    server = await start_server(ServiceSettings(port=0), [mount(servicer, operations_pb2, operations_pb2_grpc)])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield operations_pb2_grpc.OperationsServiceStub(channel)
    finally:
        await server.stop(0)


async def test_operations_service_reads_lists_and_cancels(
    operations: operations_pb2_grpc.OperationsServiceStub, sqlite_store: OperationStore
) -> None:
    store = sqlite_store
    first = store.create("acme", KIND, b"one", b"")
    got = (await operations.GetOperation(operations_pb2.GetOperationRequest(name=first.name))).operation
    assert got.name == first.name and not got.done and got.WhichOneof("result") is None
    metadata = wrappers_pb2.StringValue()
    assert got.metadata.Unpack(metadata) and metadata.value.startswith("queued 0")
    assert got.create_time.ToDatetime(tzinfo=dt.UTC) == first.created_at

    cancelled = (await operations.CancelOperation(operations_pb2.CancelOperationRequest(name=first.name))).operation
    assert cancelled.done and cancelled.error.code == grpc.StatusCode.CANCELLED.value[0]
    second = store.create("acme", KIND, b"two", b"")
    claimed = store.claim(REPLICA_A, [KIND], takeover())
    assert claimed is not None
    store.finish(claimed, State.SUCCEEDED, response=wrappers_pb2.StringValue(value="result"))
    done = (await operations.GetOperation(operations_pb2.GetOperationRequest(name=second.name))).operation
    answer = wrappers_pb2.StringValue()
    assert done.done and done.response.Unpack(answer) and answer.value == "result"

    page = await operations.ListOperations(operations_pb2.ListOperationsRequest(tenant_id="acme", page_size=1))
    assert [o.name for o in page.operations] == [second.name] and page.next_page_token
    rest = await operations.ListOperations(
        operations_pb2.ListOperationsRequest(tenant_id="acme", page_size=1, page_token=page.next_page_token)
    )
    assert [o.name for o in rest.operations] == [first.name] and not rest.next_page_token
    running = await operations.ListOperations(operations_pb2.ListOperationsRequest(tenant_id="acme", only_running=True))
    assert list(running.operations) == []


@pytest.mark.parametrize(
    ("call", "code", "field"),
    [
        (lambda s: s.GetOperation(operations_pb2.GetOperationRequest(name="acme/1")), "INVALID_ARGUMENT", "name"),
        (
            lambda s: s.GetOperation(operations_pb2.GetOperationRequest(name="tenants/acme/operations/0a")),
            "NOT_FOUND",
            "",
        ),
        (
            lambda s: s.CancelOperation(operations_pb2.CancelOperationRequest(name="tenants/a b/operations/1")),
            "INVALID_ARGUMENT",
            "name",
        ),
        (
            lambda s: s.ListOperations(operations_pb2.ListOperationsRequest(tenant_id="")),
            "INVALID_ARGUMENT",
            "tenant_id",
        ),
        (
            lambda s: s.ListOperations(operations_pb2.ListOperationsRequest(tenant_id="acme", page_token="nope")),
            "INVALID_ARGUMENT",
            "page_token",
        ),
        (
            lambda s: s.ListOperations(operations_pb2.ListOperationsRequest(tenant_id="acme", page_size=-1)),
            "INVALID_ARGUMENT",
            "page_size",
        ),
    ],
)
async def test_operations_service_refuses_what_it_cannot_find_or_read(
    operations: operations_pb2_grpc.OperationsServiceStub,
    call,
    code: str,
    field: str,  # type: ignore[no-untyped-def]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call(operations)
    details = details_from_rpc_error(failed.value)
    assert details.code.name == code
    if field:
        assert [name for name, _ in details.field_violations] == [field]


async def test_another_tenants_operation_is_not_found_under_this_tenants_name(
    operations: operations_pb2_grpc.OperationsServiceStub, sqlite_store: OperationStore
) -> None:
    theirs = sqlite_store.create("globex", KIND, b"x", b"")
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await operations.GetOperation(operations_pb2.GetOperationRequest(name=operation_name("acme", theirs.id)))
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND
