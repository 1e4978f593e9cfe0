"""The ``Runner`` port: how the API and the command line hand sessions to whatever runs
them. The database is the truth (a job row, a session state); these calls are wake-ups so
that work starts or stops now instead of at the next poll or lease renewal.

This is the only part of ``engine`` the API may import.
"""

from __future__ import annotations

from typing import Protocol


class RunnerUnavailable(RuntimeError):
    """The runner cannot start: what it needs is missing or unreachable (the message says
    which, and what to do). Commands print it as one line instead of a traceback."""


class Runner(Protocol):
    # Who this runner is in logs and leases (host, process, instance).
    identity: str

    async def start(self) -> None:
        """Begin running queued sessions, as many at once as it admits (a runner that
        admits none only takes submit and cancel)."""

    async def stop(self) -> None:
        """Stop; unfinished sessions are resumed later, here or by another process."""

    async def submit(self, session_id: str) -> None:
        """``session_id`` was enqueued: run it soon."""

    async def cancel(self, session_id: str) -> None:
        """``session_id`` is no longer runnable (deleted, cancelled, paused, or moved on by
        a person): stop its running work in this process now, killing a running command's
        whole process tree. Work running in another process hears of the change through
        the database's change feed, or at the latest at its next lease renewal."""
