"""LocalRunner: lease-claimed jobs run exactly once, re-run when enqueued again while
running, are reclaimed after a dead worker's lease expires, are retried after errors, and
stop when their session stops being runnable (``cancel``, a change heard from another
process, or found by the lease renewal)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from openjules._errors import FailedPrecondition
from openjules._types import CreateSessionRequest
from openjules.engine.journal import fail_session
from openjules.engine.local_runner import LocalRunner
from openjules.settings import Settings
from openjules.store import jobs, sessions, tables, transitions, users
from openjules.store.database import Database
from openjules.store.transitions import Event
from openjules.store.writer import ConnectionWriter
from tests.jobs_support import database_without_jobs

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
async def db(server_settings: Settings) -> AsyncIterator[Database]:
    async with database_without_jobs(server_settings) as database:
        yield database


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

    runners = [LocalRunner(db=db, work=work, max_sessions=3, poll_seconds=0.05) for _ in range(2)]
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

    runner = LocalRunner(db=db, work=work, max_sessions=1, poll_seconds=0.05)
    await runner.start()
    try:
        await asyncio.wait_for(started.wait(), 10)
        async with db.write() as conn:  # e.g. a sendMessage arriving mid-run
            await jobs.enqueue(ConnectionWriter(conn), session_id=session_id)
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

    dead = LocalRunner(db=db, work=hang, max_sessions=1, lease_seconds=0.6, poll_seconds=0.05)
    await dead.start()
    await asyncio.wait_for(first_started.wait(), 10)
    # Simulate a crash: the worker stops heartbeating without releasing its lease.
    dead._stopping = True
    for task in dead._tasks:
        task.cancel()

    finished: list[str] = []

    async def complete(sid: str) -> None:
        finished.append(sid)

    survivor = LocalRunner(
        db=db, work=complete, max_sessions=1, lease_seconds=0.6, poll_seconds=0.05
    )
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

    runner = LocalRunner(
        db=db, work=flaky, max_sessions=1, poll_seconds=0.05, retry_delay_seconds=0.2
    )
    job_state = ""

    async def poll_job() -> None:
        nonlocal job_state
        async with db.read() as conn:
            row = (
                await conn.execute(
                    tables.jobs.select().where(tables.jobs.c.session_id == session_id)
                )
            ).first()
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
            await jobs.enqueue(ConnectionWriter(conn), session_id=session_id)

    waking = asyncio.create_task(wake())
    await asyncio.sleep(0.3)  # the wake-up is now waiting on the finishing transaction
    await txn_a.commit()
    await finishing.__aexit__(None, None, None)
    await asyncio.wait_for(waking, 10)

    async with db.read() as conn:
        row = (
            await conn.execute(tables.jobs.select().where(tables.jobs.c.session_id == session_id))
        ).first()
    assert row is not None
    assert row.state == "ready"


async def _job_state(db: Database, session_id: str) -> str:
    async with db.read() as conn:
        row = (
            await conn.execute(tables.jobs.select().where(tables.jobs.c.session_id == session_id))
        ).first()
    return str(row.state) if row is not None else ""


async def _job_reaches(db: Database, session_id: str, state: str, *, limit_s: float = 10) -> None:
    """The work was seen to stop; the worker releases its job just after, in a write of
    its own (which waits its turn): wait for that, rather than race it."""
    async with asyncio.timeout(limit_s):
        while await _job_state(db, session_id) != state:  # noqa: ASYNC110 - a row, not an event
            await asyncio.sleep(0.02)


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
    runner = LocalRunner(db=db, work=work, max_sessions=2, lease_seconds=60, poll_seconds=0.05)
    await runner.start()
    try:
        await work.wait_started(first)
        await work.wait_started(second)
        await runner.cancel(first)
        await _wait_until(lambda: work.cancelled == [first], limit_s=2)
        await _wait_until(lambda: runner.running == {second}, limit_s=2)
        await _job_reaches(db, first, "done")  # not retried, not left leased
        assert await _job_state(db, second) == "leased"
        await runner.cancel("1234")  # a session not running here: nothing happens
        await asyncio.sleep(0.1)
        assert work.cancelled == [first]
    finally:
        await runner.stop()


async def test_renewal_stops_work_whose_session_another_process_ended(db: Database) -> None:
    """A session failed (or deleted) through another process: this runner never hears
    cancel(), nor (its change feed is not started) the change, and its next lease renewal
    stops the work."""
    failed, deleted, running = await _new_sessions(db, 3)
    work = _Hanging()
    runner = LocalRunner(db=db, work=work, max_sessions=3, lease_seconds=0.6, poll_seconds=0.05)
    elsewhere = Database(db.url)  # another process's: its writes are not published here
    await runner.start()
    try:
        for sid in (failed, deleted, running):
            await work.wait_started(sid)
        async with elsewhere.write() as conn:
            await fail_session(
                ConnectionWriter(conn), session_id=failed, reason="stopped by an operator"
            )
            owner = (
                (
                    await conn.execute(
                        tables.sessions.select().where(tables.sessions.c.id == deleted)
                    )
                )
                .one()
                .owner_id
            )
            await sessions.delete_session(
                ConnectionWriter(conn), owner_id=owner, session_id=deleted
            )
        # Renewals come every lease/3 = 0.2 s.
        await _wait_until(lambda: sorted(work.cancelled) == sorted([failed, deleted]), limit_s=3)
        await _job_reaches(db, failed, "done")
        await asyncio.sleep(0.5)  # two more renewals: the running session is left alone
        assert running not in work.cancelled
        assert await _job_state(db, running) == "leased"
    finally:
        await runner.stop()
        await elsewhere.dispose()


async def _apply(db: Database, session_id: str, event: Event) -> None:
    async with db.write() as conn:
        await transitions.apply(ConnectionWriter(conn), session_id=session_id, event=event)


async def test_a_change_made_in_another_process_stops_work_at_once(db: Database) -> None:
    """Paused, cancelled or deleted through another process (another Database: its writes
    reach this one through LISTEN/NOTIFY or the SQLite change poll): the work stops long
    before a renewal (60 s lease) would notice, and its job is let go. A change that leaves
    the session runnable leaves its work alone."""
    paused, cancelled, deleted, running = await _new_sessions(db, 4)
    work = _Hanging()
    runner = LocalRunner(db=db, work=work, max_sessions=4, lease_seconds=60, poll_seconds=0.05)
    elsewhere = Database(db.url)
    await db.changes.start()
    await asyncio.wait_for(db.changes.watching.wait(), 10)
    await runner.start()
    try:
        for sid in (paused, cancelled, deleted, running):
            await work.wait_started(sid)
            await _apply(elsewhere, sid, Event.START_WORK)  # QUEUED -> IN_PROGRESS
        await _apply(elsewhere, paused, Event.PAUSED)
        await _apply(elsewhere, cancelled, Event.CANCELLED)
        async with elsewhere.write() as conn:
            owner = (
                (
                    await conn.execute(
                        tables.sessions.select().where(tables.sessions.c.id == deleted)
                    )
                )
                .one()
                .owner_id
            )
            await sessions.delete_session(
                ConnectionWriter(conn), owner_id=owner, session_id=deleted
            )
        # The SQLite change poll reads update times, so it cannot see a row that is gone:
        # there a deletion by another process is found by the lease renewal.
        stopped = [paused, cancelled] if db.is_sqlite else [paused, cancelled, deleted]
        await _wait_until(lambda: sorted(work.cancelled) == sorted(stopped), limit_s=10)
        await _wait_until(
            lambda: runner.running == {running} | ({deleted} if db.is_sqlite else set()),
            limit_s=10,
        )
        await _job_reaches(db, paused, "done")
        await _job_reaches(db, cancelled, "done")
        assert await _job_state(db, running) == "leased"
    finally:
        await runner.stop()
        await elsewhere.dispose()


async def test_a_pause_and_an_immediate_resume_never_run_the_session_twice_at_once(
    db: Database,
) -> None:
    """The pause stops the work; the resume re-queues the job while the first run still
    holds it, so the second run (by any worker) starts only once the first let go."""
    [session_id] = await _new_sessions(db, 1)
    runs = 0
    active = 0
    overlaps = 0
    started = asyncio.Event()

    async def work(_sid: str) -> None:
        nonlocal runs, active, overlaps
        runs += 1
        active += 1
        overlaps += active > 1
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.2)  # tidying up after the cancel takes a while
            active -= 1

    runner = LocalRunner(db=db, work=work, max_sessions=3, lease_seconds=60, poll_seconds=0.05)
    await runner.start()
    try:
        await asyncio.wait_for(started.wait(), 10)
        await _apply(db, session_id, Event.START_WORK)
        await _apply(db, session_id, Event.PAUSED)  # heard in this process at once
        await _apply(db, session_id, Event.RESUMED)
        await runner.cancel(session_id)  # what the API does after :pause, late
        await _wait_until(lambda: runs == 2)
        await asyncio.sleep(0.3)  # nothing else starts it
        assert runs == 2
        assert overlaps == 0
        assert await _job_state(db, session_id) == "leased"
    finally:
        await runner.stop()


@pytest.mark.parametrize("moved_on", [True, False])
async def test_work_refused_by_the_state_machine_is_no_failed_attempt(
    db: Database, moved_on: bool
) -> None:
    """Work that raises FailedPrecondition because the session was paused meanwhile has
    not failed: the job is let go, not retried, and the session not given up. The same
    error while the session still wants the work is a failure like any other."""
    [session_id] = await _new_sessions(db, 1)
    attempts = 0
    given_up: list[str] = []

    async def refused(sid: str) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            if moved_on:
                await _apply(db, sid, Event.PAUSED)
            raise FailedPrecondition("refused")

    async def give_up(sid: str, _error: str) -> None:
        given_up.append(sid)

    runner = LocalRunner(
        db=db,
        work=refused,
        max_sessions=1,
        poll_seconds=0.05,
        retry_delay_seconds=0.1,
        max_attempts=1,
        give_up=give_up,
    )
    await runner.start()
    try:
        await _wait_until(lambda: attempts >= 1)
        async with asyncio.timeout(10):
            while await _job_state(db, session_id) != "done":  # noqa: ASYNC110 - a table
                await asyncio.sleep(0.05)
    finally:
        await runner.stop()
    assert attempts == 1
    assert given_up == ([] if moved_on else [session_id])
