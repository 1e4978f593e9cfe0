"""Shared pieces of the cancel and pause tests: the API alone (its sessions run by an
`openjules worker` process), reading a session's job, and watching a command's processes
in /proc."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable

from sqlalchemy import select

from openjules.settings import Settings
from openjules.store import tables
from openjules.store.database import Database
from tests.support import processes_with


def job_of(settings: Settings, session_id: str) -> tuple[str, str | None] | None:
    """The session's job as (state, lease owner), read from the jobs table."""

    async def read() -> tuple[str, str | None] | None:
        db = Database(settings.resolved_database_url())
        try:
            async with db.read() as conn:
                j = tables.jobs.c
                row = (
                    await conn.execute(
                        select(j.state, j.lease_owner).where(j.session_id == session_id)
                    )
                ).first()
        finally:
            await db.dispose()
        return None if row is None else (row.state, row.lease_owner)

    return asyncio.run(read())


def command_marker() -> str:
    """A sleep of a length nobody else uses, so its processes can be found in /proc."""
    return f"sleep {30 + secrets.randbelow(10**6) / 10**6:.6f}"


def command_processes(marker: str) -> list[int]:
    """Every process of the command: prlimit, bwrap, the shell and the sleep itself."""
    return processes_with(marker)


def the_sleep(marker: str) -> list[int]:
    """The sleep itself (not the wrappers whose command lines name it too)."""
    return [pid for pid in processes_with(marker) if pid not in processes_with("bash -c")]


def wait(predicate: Callable[[], object], *, seconds: float, what: str) -> float:
    """Wait until ``predicate()`` holds; return how long it took."""
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > seconds:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        time.sleep(0.01)
    return time.monotonic() - began
