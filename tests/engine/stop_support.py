"""Shared pieces of the cancel and pause tests: the API alone (its sessions run by an
`openjules worker` process), reading a session's job, and watching a command's processes
in /proc."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Stopped:
    """How long after the verb's answer each part of a stop was seen (seconds)."""

    command: float  # no process of the command left in /proc
    workspace: float  # the session's workspace removed
    job: float  # the job done and leased by nobody
    total: float

    def report(self, what: str) -> str:
        ms = {k: round(v * 1000) for k, v in vars(self).items()}
        return (
            f"\n[{what}] command tree gone after {ms['command']} ms, workspace after "
            f"{ms['workspace']} ms, job done (not leased) after {ms['job']} ms "
            f"(all within {ms['total']} ms)"
        )


def wait_stopped(
    settings: Settings, session_id: str, *, marker: str, workspace: Path, seconds: float
) -> Stopped:
    """Wait for everything a cancel or pause must stop: the command's processes, the
    workspace, the job."""
    began = time.monotonic()
    command = wait(lambda: not command_processes(marker), seconds=seconds, what="the kill")
    removed = wait(lambda: not workspace.exists(), seconds=seconds, what="the removal")
    job = wait(
        lambda: job_of(settings, session_id) == ("done", None),
        seconds=seconds,
        what="the job being let go",
    )
    return Stopped(
        command=command, workspace=removed, job=job, total=time.monotonic() - began
    )
