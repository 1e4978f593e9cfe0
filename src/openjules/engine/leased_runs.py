"""``LeasedRuns``: the runs of one process that hold a job's lease, whoever claimed it (the
local runner's dispatcher, or a Temporal activity for its one session).

It runs a lease's work to the end and gives the job back the way the end calls for
(done, run again, retry later, or left to whoever took the lease over); renews every
lease of the process in one write per interval; and stops work the session no longer
wants (deleted, cancelled, paused, or moved on by someone else): ``cancel`` for a change
made in this process, the database's change feed (``store.changes``) for one made in any
other, and the lease renewal for a notification that was missed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from enum import Enum
from typing import Any

from openjules._cancellation import stop_tasks
from openjules._errors import FailedPrecondition, NotFound
from openjules.store import jobs
from openjules.store.changes import Change, Everything
from openjules.store.database import Database, is_connection_failure
from openjules.store.jobs import Lease, LeaseStatus

log = logging.getLogger("openjules.runner")

SessionWork = Callable[[str], Coroutine[Any, Any, None]]
# Called when work keeps raising: ends the session with a reason instead of retrying forever.
GiveUp = Callable[[str, str], Coroutine[Any, Any, None]]


class RunEnd(Enum):
    """How a leased run ended, for whoever claimed it."""

    DONE = "done"  # the job is released: nothing more to do (or the session gave up)
    AGAIN = "again"  # enqueued again while it ran: the job is ready to run now
    # The work raised or the database went away: the job was given back to be tried
    # again after ``retry_delay_seconds`` (or, if even that failed, once its lease expires).
    RETRY = "retry"
    LOST = "lost"  # another claim took the lease over: the job is theirs


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
    """Who a process is in leases, logs and Temporal: its host, its process id, and a part
    of its own (a restarted process with a reused pid is still told apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeasedRuns:
    """The leased runs of this process. ``start`` before the first ``run`` and ``stop``
    after the last; ``heard_elsewhere`` is called (in the event loop) for a change made by
    another process to a session not running here, e.g. work enqueued there."""

    def __init__(
        self,
        *,
        db: Database,
        work: SessionWork,
        lease_seconds: float = 30.0,
        retry_delay_seconds: float = 5.0,
        max_attempts: int = 5,
        give_up: GiveUp | None = None,
        heard_elsewhere: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.work = work
        self.lease_us = int(lease_seconds * 1_000_000)
        self.heartbeat_seconds = lease_seconds / 3
        self.retry_delay_us = int(retry_delay_seconds * 1_000_000)
        self.max_attempts = max_attempts
        self.give_up = give_up
        self._heard_elsewhere = heard_elsewhere
        self.outage = OutageLog(log)
        self._stopping = False
        # The work running in this process and its lease, by session, and which of it was
        # cancelled because the session no longer wants it (as opposed to a lost lease or
        # a stop).
        self._running: dict[str, asyncio.Task[None]] = {}
        self._leases: dict[str, Lease] = {}
        self._unwanted: set[str] = set()
        # Sessions running here that changed and whose state is to be read (one read for
        # all of them, by one task at a time), and how to stop hearing of changes.
        self._changed: set[str] = set()
        self._checking: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def running(self) -> frozenset[str]:
        """The sessions whose work runs here now."""
        return frozenset(self._running)

    def start(self, *, renew: bool = True) -> None:
        """Hear of changes; with ``renew``, also renew the leases of the runs."""
        self._stopping = False
        if self._unsubscribe is None:
            self._unsubscribe = self.db.changes.subscribe(self._heard)
        if renew and self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_leases(), name="openjules-leases")

    async def stop(self) -> None:
        """Stop hearing of changes and renewing leases. Work still running is its
        claimer's to stop; its job is reclaimed once the lease expires."""
        self._stopping = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        own = [t for t in (self._checking, self._renewer) if t is not None]
        self._checking = self._renewer = None
        await stop_tasks(own)

    def cancel(self, session_id: str) -> None:
        """``session_id`` no longer wants its work: stop it if it runs here."""
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
            elsewhere = not change.made_here and change.session_id not in self._running
            if elsewhere and self._heard_elsewhere is not None:
                # Perhaps work enqueued by another process (a create or a wake-up in an
                # HTTP process that runs no sessions).
                self._heard_elsewhere()
            if change.made_here or change.session_id not in self._running:
                # A change made in this process is its work's own step (which ends the
                # work by itself) or the API's, which calls ``cancel``; and nearly every
                # change is to a session this process does not run.
                return
            self._changed.add(change.session_id)
        else:
            if self._heard_elsewhere is not None:
                self._heard_elsewhere()
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
                self.report(exc, "reading the state of changed sessions")
                return
            for sid in unwanted:
                if running[sid] is not None:
                    log.info("session %s is no longer runnable; stopping its work", sid)
                self._stop_unwanted(sid, running[sid])

    def report(self, exc: Exception, doing: str) -> None:
        """Log a failure: once per outage if the database is unreachable, else in full."""
        if is_connection_failure(exc):
            self.outage.failed(exc, doing=doing)
        else:
            log.error("%s failed", doing, exc_info=exc)

    async def run(self, lease: Lease) -> RunEnd:
        """Run the lease's work to its end and give the job back accordingly. A
        cancellation of the caller (a stop) propagates once the work has stopped, with
        the job left leased: it is reclaimed when the lease expires."""
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
                return RunEnd.LOST
            log.info("session %s is no longer runnable; work stopped", sid)
        except Exception as exc:
            if is_connection_failure(exc):
                await self._outage_stopped(lease, exc)
                return RunEnd.RETRY
            if not await self._moved_on(sid, exc):
                return await self._failed(lease, exc)
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
        return RunEnd.AGAIN if again else RunEnd.DONE

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
        self.outage.failed(exc, doing=f"running session {lease.session_id}")
        async with self.db.write() as conn:
            await jobs.release_for_retry(
                conn, lease=lease, delay_us=self.retry_delay_us, count_attempt=False
            )

    async def _failed(self, lease: Lease, exc: Exception) -> RunEnd:
        """The work raised: retry later, or give the session up after too many attempts."""
        if self.give_up is not None and lease.attempts >= self.max_attempts:
            log.exception("session %s failed %d times; giving up", lease.session_id, lease.attempts)
            await self.give_up(lease.session_id, f"{type(exc).__name__}: {exc}")
            async with self.db.write() as conn:
                await jobs.finish(conn, lease=lease)
            return RunEnd.DONE
        log.exception("session %s failed in the runner; will retry", lease.session_id)
        async with self.db.write() as conn:
            await jobs.release_for_retry(conn, lease=lease, delay_us=self.retry_delay_us)
        return RunEnd.RETRY

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
                self.report(exc, f"renewing the leases of {len(leases)} session(s)")
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
