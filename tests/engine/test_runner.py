"""LocalRunner: lease-claimed jobs run exactly once, re-run when enqueued again while
running, are reclaimed after a dead worker's lease expires, are retried after errors, and
stop when their session stops being runnable (``cancel``, or found by the lease renewal)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from openjules._types import CreateSessionRequest
from openjules.engine.journal import fail_session
from openjules.engine.local_runner import LocalRunner
from openjules.settings import Settings
from openjules.store import jobs, sessions, tables, users
from openjules.store.database import Database
from openjules.store.migrate import upgrade_to_head

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
async def db(server_settings: Settings) -> AsyncIterator[Database]:
    url = server_settings.resolved_database_url()
    await asyncio.to_thread(upgrade_to_head, url)
    database = Database(url)
    async with database.write() as conn:
        await conn.execute(tables.jobs.delete())
    yield database
    await database.dispose()


async def _new_sessions(db: Database, count: int) -> list[str]:
    async with db.write() as conn:
        user = await users.get_or_create_user(conn, name="runner-tests")
        created = [
            await sessions.create(
                conn,
                owner_id=user.id,
                request=CreateSessionRequest(prompt=f"task {i}"),
            )
            for i in range(count)
        ]
    return [s.id for s in created]


async def _wait_until(predicate: Callable[[], bool], *, limit_s: float = 20.0) -> None:
    async with asyncio.timeout(limit_s):
        while not predicate():  # noqa: ASYNC110 - polling state owned by another task
            await asyncio.sleep(0.02)


async def test_each_queued_session_runs_exactly_once_across_runners(db: Database) -> None:
    ids = await _new_sessions(db, 20)
    runs: Counter[str] = Counter()
    active: set[str] = set()
    overlaps: list[str] = []

    async def work(session_id: str) -> None:
        if session_id in active:
            overlaps.append(session_id)
        active.add(session_id)
        await asyncio.sleep(0.01)
        active.discard(session_id)
        runs[session_id] += 1

    runners = [LocalRunner(db=db, work=work, workers=3, poll_seconds=0.05) for _ in range(2)]
    for r in runners:
        await r.start()
    try:
        await _wait_until(lambda: sum(runs.values()) >= len(ids))
        await asyncio.sleep(0.3)  # anything extra would show up now
    finally:
        for r in runners:
            await r.stop()
    assert runs == Counter({i: 1 for i in ids})
    assert overlaps == []


async def test_enqueue_while_running_runs_the_session_again(db: Database) -> None:
    [session_id] = await _new_sessions(db, 1)
    started = asyncio.Event()
    release = asyncio.Event()
    runs = 0

    async def work(_sid: str) -> None:
        nonlocal runs
        runs += 1
        started.set()
        if runs == 1:
            await release.wait()

    runner = LocalRunner(db=db, work=work, workers=1, poll_seconds=0.05)
    await runner.start()
    try:
        await asyncio.wait_for(started.wait(), 10)
        async with db.write() as conn:  # e.g. a sendMessage arriving mid-run
            await jobs.enqueue(conn, session_id=session_id)
        release.set()
        await _wait_until(lambda: runs >= 2)
    finally:
        await runner.stop()
    assert runs == 2


async def test_a_dead_workers_job_is_reclaimed_after_its_lease_expires(db: Database) -> None:
    [session_id] = await _new_sessions(db, 1)
    first_started = asyncio.Event()

    async def hang(_sid: str) -> None:
        first_started.set()
        await asyncio.Event().wait()

    dead = LocalRunner(db=db, work=hang, workers=1, lease_seconds=0.6, poll_seconds=0.05)
    await dead.start()
    await asyncio.wait_for(first_started.wait(), 10)
    # Simulate a crash: the worker stops heartbeating without releasing its lease.
    dead._stopping = True
    for task in dead._tasks:
        task.cancel()

    finished: list[str] = []

    async def complete(sid: str) -> None:
        finished.append(sid)

    survivor = LocalRunner(db=db, work=complete, workers=1, lease_seconds=0.6, poll_seconds=0.05)
    await survivor.start()
    try:
        await _wait_until(lambda: finished == [session_id])
    finally:
        await survivor.stop()
        await dead.stop()


async def test_work_that_raises_is_retried_later(db: Database) -> None:
    [session_id] = await _new_sessions(db, 1)
    attempts = 0

    async def flaky(_sid: str) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("transient")

    runner = LocalRunner(db=db, work=flaky, workers=1, poll_seconds=0.05,
                         retry_delay_seconds=0.2)
    job_state = ""

    async def poll_job() -> None:
        nonlocal job_state
        async with db.read() as conn:
            row = (await conn.execute(
                tables.jobs.select().where(tables.jobs.c.session_id == session_id)
            )).first()
        job_state = row.state if row is not None else ""

    await runner.start()
    try:
        async with asyncio.timeout(20):
            while job_state != "done":
                await poll_job()
                await asyncio.sleep(0.05)
    finally:
        await runner.stop()
    assert attempts == 2


async def test_a_wake_up_racing_a_finishing_worker_is_not_lost(db: Database) -> None:
    """enqueue() while finish() is committing: the job must end up ready, never done."""
    [session_id] = await _new_sessions(db, 1)
    async with db.write() as conn:
        lease = await jobs.claim(conn, owner="worker-1", lease_us=60_000_000)
    assert lease is not None
    assert lease.session_id == session_id

    finishing = db.engine.connect()
    conn_a = await finishing.__aenter__()
    if db.is_sqlite:
        await conn_a.execution_options(sqlite_immediate=True)
    txn_a = await conn_a.begin()
    await jobs.finish(conn_a, lease=lease)  # done, but not yet committed

    async def wake() -> None:  # what approvePlan / sendMessage do
        async with db.write() as conn:
            await jobs.enqueue(conn, session_id=session_id)

    waking = asyncio.create_task(wake())
    await asyncio.sleep(0.3)  # the wake-up is now waiting on the finishing transaction
    await txn_a.commit()
    await finishing.__aexit__(None, None, None)
    await asyncio.wait_for(waking, 10)

    async with db.read() as conn:
        row = (await conn.execute(
            tables.jobs.select().where(tables.jobs.c.session_id == session_id)
        )).first()
    assert row is not None
    assert row.state == "ready"


async def _job_state(db: Database, session_id: str) -> str:
    async with db.read() as conn:
        row = (await conn.execute(
            tables.jobs.select().where(tables.jobs.c.session_id == session_id)
        )).first()
    return str(row.state) if row is not None else ""


class _Hanging:
    """Work that hangs until cancelled, recording what happened to each session."""

    def __init__(self) -> None:
        self.started: dict[str, asyncio.Event] = {}
        self.cancelled: list[str] = []
        self.finished: list[str] = []

    async def __call__(self, session_id: str) -> None:
        self.started.setdefault(session_id, asyncio.Event()).set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(session_id)
            raise

    async def wait_started(self, session_id: str) -> None:
        event = self.started.setdefault(session_id, asyncio.Event())
        await asyncio.wait_for(event.wait(), 10)


async def test_cancel_stops_running_work_at_once_and_releases_the_job(db: Database) -> None:
    first, second = await _new_sessions(db, 2)
    work = _Hanging()
    # A long lease: only cancel(), not a renewal, can stop the work within this test.
    runner = LocalRunner(db=db, work=work, workers=2, lease_seconds=60, poll_seconds=0.05)
    await runner.start()
    try:
        await work.wait_started(first)
        await work.wait_started(second)
        await runner.cancel(first)
        await _wait_until(lambda: work.cancelled == [first], limit_s=2)
        await _wait_until(lambda: runner._running.keys() == {second}, limit_s=2)
        assert await _job_state(db, first) == "done"  # not retried, not left leased
        assert await _job_state(db, second) == "leased"
        await runner.cancel("1234")  # a session not running here: nothing happens
        await asyncio.sleep(0.1)
        assert work.cancelled == [first]
    finally:
        await runner.stop()


async def test_renewal_stops_work_whose_session_another_process_ended(db: Database) -> None:
    """A session failed (or deleted) through another process: this runner never hears
    cancel(), and its next lease renewal stops the work."""
    failed, deleted, running = await _new_sessions(db, 3)
    work = _Hanging()
    runner = LocalRunner(db=db, work=work, workers=3, lease_seconds=0.6, poll_seconds=0.05)
    await runner.start()
    try:
        for sid in (failed, deleted, running):
            await work.wait_started(sid)
        async with db.write() as conn:
            await fail_session(conn, session_id=failed, reason="stopped by an operator")
            owner = (await conn.execute(
                tables.sessions.select().where(tables.sessions.c.id == deleted)
            )).one().owner_id
            await sessions.delete_session(conn, owner_id=owner, session_id=deleted)
        # Renewals come every lease/3 = 0.2 s.
        await _wait_until(lambda: sorted(work.cancelled) == sorted([failed, deleted]), limit_s=3)
        assert await _job_state(db, failed) == "done"
        await asyncio.sleep(0.5)  # two more renewals: the running session is left alone
        assert running not in work.cancelled
        assert await _job_state(db, running) == "leased"
    finally:
        await runner.stop()
