"""TemporalRunner on a real Temporal dev server: a session's work runs once per wake-up in
a workflow named after the session, which ends when the work does; a cancel from another
process reaches the running work through Temporal alone; a stopped worker gives its
sessions back at once and another continues them; wake-ups that never reached Temporal
are found in the jobs table; work that keeps failing is given up; a user's sessions
beyond their limit wait for one of theirs to end."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from openjules._types import CreateSessionRequest
from openjules.engine.journal import fail_session
from openjules.engine.temporal_runner import TemporalRunner
from openjules.engine.temporal_workflow import workflow_id
from openjules.settings import Settings
from openjules.store import jobs, sessions, tables, users
from openjules.store.database import Database
from openjules.store.writer import ConnectionWriter
from tests.engine.test_runner import _new_sessions, _wait_until
from tests.jobs_support import database_without_jobs

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def settings(server_settings: Settings, temporal_address: str) -> Settings:
    return server_settings.model_copy(
        update={
            "runner": "temporal",
            "temporal_address": temporal_address,
            "temporal_task_queue": f"openjules-runner-{secrets.token_hex(6)}",
            "temporal_heartbeat_timeout_seconds": 5.0,
        }
    )


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    async with database_without_jobs(settings) as database:
        yield database


@pytest.fixture
async def temporal(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_address)


class Work:
    """Session work that records its runs and, while ``hold`` is set, waits until it is
    released (or cancelled)."""

    def __init__(self, *, hold: bool = False) -> None:
        self.runs: Counter[str] = Counter()
        self.started: dict[str, asyncio.Event] = {}
        self.cancelled: list[str] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self, session_id: str) -> None:
        self.runs[session_id] += 1
        self.started.setdefault(session_id, asyncio.Event()).set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(session_id)
            raise

    async def wait_started(self, session_id: str) -> None:
        event = self.started.setdefault(session_id, asyncio.Event())
        await asyncio.wait_for(event.wait(), 20)


def runner(
    settings: Settings, db: Database, work: Callable[[str], object], **options: object
) -> TemporalRunner:
    return TemporalRunner(settings=settings, db=db, work=work, **options)  # type: ignore[arg-type]


async def _job(db: Database, session_id: str) -> tuple[str, int]:
    async with db.read() as conn:
        row = (
            await conn.execute(tables.jobs.select().where(tables.jobs.c.session_id == session_id))
        ).one()
    return str(row.state), int(row.attempts)


async def _job_reaches(db: Database, session_id: str, state: str) -> None:
    async with asyncio.timeout(20):
        while (await _job(db, session_id))[0] != state:  # noqa: ASYNC110 - another process's
            await asyncio.sleep(0.05)


async def _workflow_ends(temporal: Client, session_id: str) -> None:
    handle = temporal.get_workflow_handle(workflow_id(session_id))
    async with asyncio.timeout(20):
        while (await handle.describe()).status != WorkflowExecutionStatus.COMPLETED:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_a_session_runs_once_per_wake_up_in_a_workflow_named_after_it(
    settings: Settings, db: Database, temporal: Client
) -> None:
    [sid] = await _new_sessions(db, 1)
    work = Work()
    worker = runner(settings, db, work)
    await worker.start()
    try:
        await worker.submit(sid)
        await _job_reaches(db, sid, "done")
        await _workflow_ends(temporal, sid)
        # A wake-up with nothing enqueued starts the workflow again; it finds no work.
        await worker.submit(sid)
        await _workflow_ends(temporal, sid)
    finally:
        await worker.stop()
    assert work.runs == Counter({sid: 1})


async def test_a_session_enqueued_again_while_it_runs_runs_again(
    settings: Settings, db: Database
) -> None:
    [sid] = await _new_sessions(db, 1)
    work = Work(hold=True)
    worker = runner(settings, db, work)
    await worker.start()
    try:
        await worker.submit(sid)
        await work.wait_started(sid)
        async with db.write() as conn:
            await jobs.enqueue(ConnectionWriter(conn), session_id=sid)
        await worker.submit(sid)
        work.release.set()
        await _wait_until(lambda: work.runs[sid] == 2)
        await _job_reaches(db, sid, "done")
    finally:
        await worker.stop()
    assert work.runs == Counter({sid: 2})


async def test_a_cancel_from_another_process_reaches_the_running_work_through_temporal(
    settings: Settings, db: Database
) -> None:
    """The API's process only signals the workflow: no change to the session is written,
    so nothing but Temporal's cancellation (the heartbeat's answer) can stop the work."""
    [sid] = await _new_sessions(db, 1)
    work = Work(hold=True)
    worker = runner(settings, db, work)
    api_db = Database(settings.resolved_database_url())  # the API process's own
    api = runner(settings, api_db, Work(), max_sessions=0)
    await worker.start()
    await api.start()
    try:
        await api.submit(sid)
        await work.wait_started(sid)
        asked = time.monotonic()
        await api.cancel(sid)
        await _wait_until(lambda: work.cancelled == [sid], limit_s=5)
        took = time.monotonic() - asked
        # The session still wants its work (only Temporal was told): the job is ready
        # again at once, and the stopped attempt is not counted.
        assert await _job(db, sid) == ("ready", 0)
    finally:
        await api.stop()
        await worker.stop()
        await api_db.dispose()
    print(f"[cancel through Temporal alone] the work stopped {took * 1000:.0f} ms after the signal")
    assert took < 2.0


async def test_a_stopped_worker_gives_its_sessions_back_and_another_continues_them(
    settings: Settings, db: Database
) -> None:
    [sid] = await _new_sessions(db, 1)
    first = Work(hold=True)
    leaving = runner(settings, db, first)
    await leaving.start()
    await leaving.submit(sid)
    await first.wait_started(sid)
    await leaving.stop()
    assert first.cancelled == [sid]
    # Not left leased until the lease expires.
    assert await _job(db, sid) == ("ready", 0)

    second = Work()
    staying = runner(settings, db, second)
    await staying.start()
    try:
        await _job_reaches(db, sid, "done")
    finally:
        await staying.stop()
    assert second.runs == Counter({sid: 1})


async def test_sessions_whose_wake_up_never_reached_temporal_are_run(
    settings: Settings, db: Database
) -> None:
    """Sessions enqueued while no worker could be told (nobody called ``submit``)."""
    ids = await _new_sessions(db, 3)
    work = Work()
    worker = runner(settings, db, work)
    await worker.start()
    try:
        await _wait_until(lambda: set(work.runs) == set(ids))
        for sid in ids:
            await _job_reaches(db, sid, "done")
    finally:
        await worker.stop()
    assert work.runs == Counter(dict.fromkeys(ids, 1))


async def test_work_that_keeps_failing_is_retried_then_given_up(
    settings: Settings, db: Database
) -> None:
    [sid] = await _new_sessions(db, 1)
    attempts: list[str] = []
    given_up: list[tuple[str, str]] = []

    async def failing(session_id: str) -> None:
        attempts.append(session_id)
        raise RuntimeError("the sandbox broke")

    async def give_up(session_id: str, reason: str) -> None:
        given_up.append((session_id, reason))

    worker = runner(settings, db, failing, retry_delay_seconds=0.1, max_attempts=3, give_up=give_up)
    await worker.start()
    try:
        await worker.submit(sid)
        await _wait_until(lambda: bool(given_up))
        await _job_reaches(db, sid, "done")
    finally:
        await worker.stop()
    assert attempts == [sid] * 3
    assert given_up == [(sid, "RuntimeError: the sandbox broke")]


async def test_a_users_sessions_beyond_their_limit_start_in_creation_order(
    settings: Settings, db: Database
) -> None:
    """Woken newest first, a user's queued sessions still start oldest first, one at a
    time as each ends."""
    started: list[str] = []

    async def work_then_end(session_id: str) -> None:
        started.append(session_id)
        await asyncio.sleep(0.3)
        async with db.write() as conn:  # the session ends: it no longer counts
            await fail_session(ConnectionWriter(conn), session_id=session_id, reason="done")

    worker = runner(settings, db, work_then_end, user_max_sessions=1)
    await worker.start()  # first: its look for lost wake-ups at start finds none of these
    try:
        # An owner of their own: the module's other sessions are admitted and never end.
        async with db.write() as conn:
            owner = await users.get_or_create_user(conn, name=f"limited-{secrets.token_hex(4)}")
            request = CreateSessionRequest(prompt="queued")
            ids = [
                (await sessions.create(conn, owner_id=owner.id, request=request)).id
                for _ in range(3)
            ]
        for sid in reversed(ids):
            await worker.submit(sid)
        for sid in ids:
            await _job_reaches(db, sid, "done")
    finally:
        await worker.stop()
    assert started == ids
