"""``LocalRunner``: executes ``run_session(session_id)`` for queued jobs, at least once.

It is an admission limit, not a pool of workers: one dispatcher claims rows of the jobs
table with a lease while fewer than ``max_sessions`` run in this process, and starts one
task per lease; ``LeasedRuns`` runs each, extends all of this process's leases at once
while the work runs, and gives the job back when the work ends. A session waiting on the model costs
a task; one waiting for a person, nothing (its job is done). A process that dies stops
renewing; once its leases expire another process claims the jobs and, because the work
is resumable, continues where it stopped. Per-user limits are the database's to decide
(``store.jobs.claim_many``), so they hold across processes.

Work the session no longer wants (deleted, cancelled, paused, or moved on by someone else)
stops at once: ``cancel`` for a change made in this process, and, for one made in any
other process, the database's change feed (``store.changes``): a change to a session
running here makes the runner read its state and stop the work if it is no longer
runnable. The lease renewal finds the same when a notification was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from openjules._cancellation import stop_tasks, within
from openjules.engine.leased_runs import (
    GiveUp,
    LeasedRuns,
    RunEnd,
    SessionWork,
    asked_to_stop,
    worker_identity,
)
from openjules.store import jobs
from openjules.store.database import Database
from openjules.store.jobs import Lease

log = logging.getLogger("openjules.runner")


# The longest a worker waits between attempts while the database is unreachable.
MAX_BACKOFF_S = 5.0
# Most jobs one claim takes: a burst of creates is claimed in a few writes, and a runner
# with room for hundreds does not lock hundreds of rows at once.
CLAIM_BATCH = 32
# Changes heard from other processes wake the dispatcher at most this often.
NUDGE_GAP_S = 0.025


class LocalRunner:
    """An admission limit: one dispatcher claims jobs while fewer than ``max_sessions``
    run here and starts one task per lease; one renewal task extends all of this
    process's leases in one write per interval. An idle runner costs a sleeping task and
    a read per poll interval; a running session, its own task (and its work's)."""

    def __init__(
        self,
        *,
        db: Database,
        work: SessionWork,
        max_sessions: int = 200,
        user_max_sessions: int = 0,
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.5,
        retry_delay_seconds: float = 5.0,
        max_attempts: int = 5,
        give_up: GiveUp | None = None,
        identity: str | None = None,
    ) -> None:
        self.db = db
        self.max_sessions = max_sessions
        # A user's sessions beyond it stay queued (0: no limit); the database decides.
        self.user_max_sessions = user_max_sessions
        self.poll_seconds = poll_seconds
        self.identity = identity or worker_identity()
        # Set by ``submit``, when a run ends (a slot is free) and by changes heard from
        # other processes: the dispatcher looks now.
        self._wake = asyncio.Event()
        self._leased = LeasedRuns(
            db=db,
            work=work,
            lease_seconds=lease_seconds,
            retry_delay_seconds=retry_delay_seconds,
            max_attempts=max_attempts,
            give_up=give_up,
            heard_elsewhere=self._wake.set,
        )
        self._submissions = 0
        self._looked_at = 0.0  # when the dispatcher last looked for jobs (monotonic)
        self._stopping = False
        self._dispatcher: asyncio.Task[None] | None = None
        # One task per lease held here (each awaits its session's work).
        self._runs: set[asyncio.Task[None]] = set()
        # Claims so far: each claim's lease owner is this runner's identity and its number,
        # so a lease taken over from this very process is told apart from the old one.
        self._claims = 0

    @property
    def _tasks(self) -> list[asyncio.Task[None]]:
        """The dispatcher and the runs (each awaits its session's work)."""
        own = [self._dispatcher] if self._dispatcher is not None else []
        return [*own, *self._runs]

    @property
    def running(self) -> frozenset[str]:
        """The sessions whose work runs in this process now."""
        return self._leased.running

    @property
    def lease_us(self) -> int:
        return self._leased.lease_us

    async def start(self) -> None:
        self._stopping = False
        # Changes made elsewhere stop work here, or wake the dispatcher.
        self._leased.start(renew=self.max_sessions > 0)
        if self.max_sessions <= 0:
            return  # takes submit/cancel only: other processes run the sessions
        self._dispatcher = asyncio.create_task(self._dispatch(), name="openjules-dispatcher")

    async def stop(self) -> None:
        """Stop claiming and cancel running work; unfinished jobs are reclaimed later."""
        self._stopping = True
        self._wake.set()
        await self._leased.stop()
        await stop_tasks(self._tasks)
        self._dispatcher = None
        self._runs.clear()

    async def submit(self, session_id: str) -> None:
        self._submissions += 1
        self._wake.set()

    async def cancel(self, session_id: str) -> None:
        self._leased.cancel(session_id)

    async def _dispatch(self) -> None:
        """Claim jobs while there is room and start a run for each; otherwise wait for a
        submission, a run that ends, or the poll interval (work submitted elsewhere)."""
        failures = 0
        while not self._stopping:
            room = self.max_sessions - len(self._runs)
            if room <= 0:
                self._wake.clear()
                if len(self._runs) >= self.max_sessions:
                    await self._wake.wait()  # a run ends (or stop)
                continue
            submissions = self._submissions
            try:
                leases = await self._claim(room)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if asked_to_stop():
                    raise asyncio.CancelledError from exc
                failures += 1
                self._leased.report(exc, "claiming a job")
                # Not a tight loop while the database is away: 0.5 s, 1 s, 2 s, … 5 s.
                await asyncio.sleep(min(self.poll_seconds * 2 ** (failures - 1), MAX_BACKOFF_S))
                continue
            failures = 0
            self._leased.outage.recovered()
            for lease in leases:
                run = asyncio.create_task(
                    self._run_guarded(lease), name=f"openjules-session-{lease.session_id}"
                )
                self._runs.add(run)
                run.add_done_callback(self._run_ended)
            if leases:
                continue  # there may be more
            self._wake.clear()
            if self._submissions == submissions:  # nothing submitted while claiming
                with contextlib.suppress(TimeoutError):
                    await within(self._wake.wait(), seconds=self.poll_seconds)
                if self._submissions == submissions:
                    # Woken by a change made elsewhere (or a run that ended): a stream of
                    # them, e.g. the steps of another process's sessions, costs one look
                    # per NUDGE_GAP_S, not one per change.
                    await asyncio.sleep(self._looked_at + NUDGE_GAP_S - time.monotonic())

    def _run_ended(self, run: asyncio.Task[None]) -> None:
        self._runs.discard(run)
        self._wake.set()  # room for one more, and the owner's next session may start

    async def _claim(self, room: int) -> list[Lease]:
        """Claim up to ``room`` jobs, taking the write lock only when there are some: an
        idle runner polls with one read, and a burst of creates is claimed in batches."""
        self._looked_at = time.monotonic()
        async with self.db.read() as conn:
            if not await jobs.any_runnable(conn, user_limit=self.user_max_sessions):
                return []
        self._claims += 1
        async with self.db.write() as conn:
            return await jobs.claim_many(
                conn,
                owner=f"{self.identity}/{self._claims}",
                lease_us=self.lease_us,
                limit=min(room, CLAIM_BATCH),
                user_limit=self.user_max_sessions,
            )

    async def _run_guarded(self, lease: Lease) -> None:
        try:
            end = await self._leased.run(lease)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if asked_to_stop():
                raise asyncio.CancelledError from exc
            # E.g. the database was unreachable while releasing the job: the lease
            # expires and the job is reclaimed; the runner keeps going.
            self._leased.report(exc, f"releasing the job of session {lease.session_id}")
            return
        if end is RunEnd.AGAIN:
            await self.submit(lease.session_id)
