"""The jobs table: one row per session that has agent work to do (see engine/runner)."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules.store import tables
from openjules.store.clock import now_us


class JobState(StrEnum):
    READY = "ready"
    LEASED = "leased"
    DONE = "done"


async def enqueue(conn: AsyncConnection, *, session_id: str) -> None:
    """Make ``session_id`` runnable. Idempotent; a leased job is re-armed to run again."""
    now = now_us()
    existing = (
        await conn.execute(
            select(tables.jobs.c.state).where(tables.jobs.c.session_id == session_id)
        )
    ).first()
    if existing is None:
        await conn.execute(
            tables.jobs.insert().values(
                session_id=session_id,
                state=JobState.READY,
                attempts=0,
                available_time=now,
                create_time=now,
            )
        )
        return
    if existing.state != JobState.LEASED:
        await conn.execute(
            update(tables.jobs)
            .where(tables.jobs.c.session_id == session_id)
            .values(state=JobState.READY, available_time=now, attempts=0)
        )
