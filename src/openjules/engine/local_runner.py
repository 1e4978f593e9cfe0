"""``LocalRunner``: executes ``run_session(session_id)`` for queued jobs, at least once.

It is an admission limit, not a pool of workers: one dispatcher claims rows of the jobs
table with a lease while fewer than ``max_sessions`` run in this process, and starts one
task per lease; one renewal task extends all of this process's leases at once while the
work runs; the job is given back when the work ends. A session waiting on the model costs
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
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from openjules._cancellation import stop_tasks, within
from openjules._errors import FailedPrecondition, NotFound
from openjules.store import jobs
from openjules.store.changes import Change, Everything
from openjules.store.database import Database, is_connection_failure
from openjules.store.jobs import Lease, LeaseStatus

log = logging.getLogger("openjules.runner")

SessionWork = Callable[[str], Coroutine[Any, Any, None]]
# Called when work keeps raising: ends the session with a reason instead of retrying forever.
GiveUp = Callable[[str, str], Coroutine[Any, Any, None]]


# The longest a worker waits between attempts while the database is unreachable.
MAX_BACKOFF_S = 5.0


class OutageLog:
    """One warning when the database becomes unreachable and one when it answers again,
    however many workers, polls and heartbeats fail in between."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._since: float | None = None

    def failed(self, exc: BaseException, *, doing: str) -> None:
        if self._since is not None:
            return
        self._since = time.monotonic()
        cause = exc.__cause__ or exc
        first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        self._log.warning(
            "the database is unavailable (%s, while %s); the workers retry until it is back",
            first_line,
            doing,
        )

    def recovered(self) -> None:
        if self._since is None:
            return
        self._log.warning("the database is back after %.1f s", time.monotonic() - self._since)
        self._since = None


def asked_to_stop() -> bool:
    """Whether the current task has been cancelled, even if what it awaited ended with
    another error (cleanup that fails while a cancellation unwinds replaces it): a loop
    that retries after errors must end instead, or whoever stops it waits forever."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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
        self.work = work
        self.max_sessions = max_sessions
        # A user's sessions beyond it stay queued (0: no limit); the database decides.
        self.user_max_sessions = user_max_sessions
        self.lease_us = int(lease_seconds * 1_000_000)
        self.heartbeat_seconds = lease_seconds / 3
        self.poll_seconds = poll_seconds
        self.retry_delay_us = int(retry_delay_seconds * 1_000_000)
        self.max_attempts = max_attempts
        self.give_up = give_up
        self.identity = identity or worker_identity()
        # Set by ``submit``, when a run ends (a slot is free) and by changes heard from
        # other processes: the dispatcher looks now.
        self._wake = asyncio.Event()
        self._submissions = 0
        self._looked_at = 0.0  # when the dispatcher last looked for jobs (monotonic)
        self._stopping = False
        self._dispatcher: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        # One task per lease held here (each awaits its session's work).
        self._runs: set[asyncio.Task[None]] = set()
        # Claims so far: each claim's lease owner is this runner's identity and its number,
        # so a lease taken over from this very process is told apart from the old one.
        self._claims = 0
        # The work running in this process and its lease, by session, and which of it was
        # cancelled because the session no longer wants it (as opposed to a lost lease or
        # a stop).
        self._running: dict[str, asyncio.Task[None]] = {}
        self._leases: dict[str, Lease] = {}
        self._unwanted: set[str] = set()
        self._outage = OutageLog(log)
        # Sessions running here that changed and whose state is to be read (one read for
        # all of them, by one task at a time), and how to stop hearing of changes.
        self._changed: set[str] = set()
        self._checking: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def _tasks(self) -> list[asyncio.Task[None]]:
        """Every task of this runner: the dispatcher, the renewal and the runs."""
        own = [t for t in (self._dispatcher, self._renewer) if t is not None]
        return [*own, *self._runs]

    async def start(self) -> None:
        self._stopping = False
        if self._unsubscribe is None:
            self._unsubscribe = self.db.changes.subscribe(self._heard)
        if self.max_sessions <= 0:
            return  # takes submit/cancel only: other processes run the sessions
        self._dispatcher = asyncio.create_task(self._dispatch(), name="openjules-dispatcher")
        self._renewer = asyncio.create_task(self._renew_leases(), name="openjules-leases")

    async def stop(self) -> None:
        """Stop claiming and cancel running work; unfinished jobs are reclaimed later."""
        self._stopping = True
        self._wake.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        checking, self._checking = self._checking, None
        await stop_tasks([*self._tasks, *([checking] if checking else [])])
        self._dispatcher = self._renewer = None
        self._runs.clear()

    async def submit(self, session_id: str) -> None:
        self._submissions += 1
        self._wake.set()

    async def cancel(self, session_id: str) -> None:
        self._stop_unwanted(session_id, self._running.get(session_id))

    def _stop_unwanted(self, session_id: str, work: asyncio.Task[None] | None) -> None:
        """Stop ``work`` if it is still the session's work here (not a later run of it),
        once: the API's ``cancel`` and the change feed both ask for the same change."""
        if work is None or work.done() or self._running.get(session_id) is not work:
            return
        if session_id not in self._unwanted:
            self._unwanted.add(session_id)
            work.cancel()

    def _heard(self, change: Change | Everything) -> None:
        """The change feed's listener (runs in the event loop; must not block)."""
        if isinstance(change, Change):
            if not change.made_here and change.session_id not in self._running:
                # Perhaps work enqueued by another process (a create or a wake-up in an
                # HTTP process that runs no sessions): look now, not at the next poll.
                self._wake.set()
            if change.made_here or change.session_id not in self._running:
                # A change made in this process is its work's own step (which ends the
                # work by itself) or the API's, which calls ``cancel``; and nearly every
                # change is to a session this process does not run.
                return
            self._changed.add(change.session_id)
        else:
            self._wake.set()
            self._changed.update(self._running)  # notifications may have been missed
        if self._changed and (self._checking is None or self._checking.done()):
            self._checking = asyncio.create_task(self._check(), name="openjules-runner-check")

    async def _check(self) -> None:
        """Read the state of the sessions that changed and stop the work of those that no
        longer want it. Changes heard meanwhile are read in the next round: however many
        steps the sessions here record, one read at a time."""
        while self._changed:
            changed, self._changed = self._changed, set()
            # The work as of now: a run that ends meanwhile and a new run of the same
            # session that starts (it was resumed) must not be stopped for the old state.
            running = {sid: self._running.get(sid) for sid in changed}
            try:
                async with self.db.read() as conn:
                    unwanted = await jobs.unwanted(conn, session_ids=changed)
            except Exception as exc:  # the lease renewal is the fallback
                self._report(exc, "reading the state of changed sessions")
                return
            for sid in unwanted:
                if running[sid] is not None:
                    log.info("session %s is no longer runnable; stopping its work", sid)
                self._stop_unwanted(sid, running[sid])

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
                self._report(exc, "claiming a job")
                # Not a tight loop while the database is away: 0.5 s, 1 s, 2 s, … 5 s.
                await asyncio.sleep(min(self.poll_seconds * 2 ** (failures - 1), MAX_BACKOFF_S))
                continue
            failures = 0
            self._outage.recovered()
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

    def _report(self, exc: Exception, doing: str) -> None:
        """Log a failure: once per outage if the database is unreachable, else in full."""
        if is_connection_failure(exc):
            self._outage.failed(exc, doing=doing)
        else:
            log.error("%s failed", doing, exc_info=exc)

    async def _run_guarded(self, lease: Lease) -> None:
        try:
            await self._run(lease)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if asked_to_stop():
                raise asyncio.CancelledError from exc
            # E.g. the database was unreachable while releasing the job: the lease
            # expires and the job is reclaimed; the runner keeps going.
            self._report(exc, f"releasing the job of session {lease.session_id}")

    async def _run(self, lease: Lease) -> None:
        sid = lease.session_id
        earlier = self._running.get(sid)
        if earlier is not None and not earlier.done():
            # This process took the session again: the earlier run's lease expired (its
            # renewals failed, say, while the database was away). That run holds nothing
            # any more, and never works beside this one.
            earlier.cancel()
            await asyncio.wait([earlier])
        work = asyncio.create_task(self.work(sid), name=f"openjules-work-{sid}")
        self._running[sid] = work
        self._leases[sid] = lease
        try:
            await work
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._stopping or (current is not None and current.cancelling()):
                raise
            if sid not in self._unwanted:
                log.warning("lease on session %s was lost; work stopped", sid)
                return
            log.info("session %s is no longer runnable; work stopped", sid)
        except Exception as exc:
            if is_connection_failure(exc):
                await self._outage_stopped(lease, exc)
                return
            if not await self._moved_on(sid, exc):
                await self._failed(lease, exc)
                return
            # E.g. paused between reading the session and starting on it: not a failure.
            log.info("session %s moved on while its work started (%s); work stopped", sid, exc)
        finally:
            if self._running.get(sid) is work:
                del self._running[sid]
                self._unwanted.discard(sid)
            if self._leases.get(sid) is lease:
                del self._leases[sid]
        async with self.db.write() as conn:
            # If the session was enqueued again meanwhile (e.g. resumed), the job is ready
            # again and the next claim (by any runner) runs it.
            again = await jobs.finish(conn, lease=lease)
        if again:
            await self.submit(sid)

    async def _moved_on(self, session_id: str, exc: Exception) -> bool:
        """Whether ``exc`` is the transition table refusing because the session no longer
        wants the work (then it is no failed attempt, and nothing to retry)."""
        if not isinstance(exc, FailedPrecondition | NotFound):
            return False
        async with self.db.read() as conn:
            return bool(await jobs.unwanted(conn, session_ids=[session_id]))

    async def _outage_stopped(self, lease: Lease, exc: Exception) -> None:
        """The work stopped because the database went away: not the session's fault, so
        the attempt does not count. If the job cannot be given back either, its lease
        expires and it is claimed again once the database is back."""
        self._outage.failed(exc, doing=f"running session {lease.session_id}")
        async with self.db.write() as conn:
            await jobs.release_for_retry(
                conn, lease=lease, delay_us=self.retry_delay_us, count_attempt=False
            )

    async def _failed(self, lease: Lease, exc: Exception) -> None:
        """The work raised: retry later, or give the session up after too many attempts."""
        if self.give_up is not None and lease.attempts >= self.max_attempts:
            log.exception("session %s failed %d times; giving up", lease.session_id, lease.attempts)
            await self.give_up(lease.session_id, f"{type(exc).__name__}: {exc}")
            async with self.db.write() as conn:
                await jobs.finish(conn, lease=lease)
            return
        log.exception("session %s failed in the runner; will retry", lease.session_id)
        async with self.db.write() as conn:
            await jobs.release_for_retry(conn, lease=lease, delay_us=self.retry_delay_us)

    async def _renew_leases(self) -> None:
        """Extend every lease held here, in one write per interval, and stop the work of
        sessions whose lease was lost or that no longer want it (e.g. a change the feed
        missed)."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            leases = list(self._leases.values())
            if not leases:
                continue
            try:
                async with self.db.write() as conn:
                    found = await jobs.renew(conn, leases=leases, lease_us=self.lease_us)
            except Exception as exc:
                if asked_to_stop():
                    raise asyncio.CancelledError from exc
                self._report(exc, f"renewing the leases of {len(leases)} session(s)")
                continue
            for lease in leases:
                sid = lease.session_id
                work = self._running.get(sid)
                if self._leases.get(sid) is not lease or work is None:
                    continue  # ended (or taken again) meanwhile
                status = found[sid]
                if status is LeaseStatus.NOT_RUNNABLE:
                    self._stop_unwanted(sid, work)
                elif status is LeaseStatus.LOST and not work.cancelling():
                    work.cancel()  # once: its cleanup must not be cut short again
