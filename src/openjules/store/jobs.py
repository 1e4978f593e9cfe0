"""The jobs table: one row per session that has agent work to do (see engine/runner)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._types import State
from openjules.store import tables
from openjules.store.clock import now_us

# Session states in which the agent has work to do; any other state holds no worker.
RUNNABLE = frozenset({State.QUEUED, State.PLANNING, State.IN_PROGRESS})


class JobState(StrEnum):
    READY = "ready"
    LEASED = "leased"
    DONE = "done"


class LeaseStatus(StrEnum):
    """What a lease renewal found."""

    HELD = "held"  # renewed: keep working
    LOST = "lost"  # another worker took the job over: stop, and leave the job to it
    # Renewed, but the session no longer wants the work (deleted, failed or moved on by
    # someone else): stop now, and release the job.
    NOT_RUNNABLE = "not_runnable"


async def enqueue(conn: AsyncConnection, *, session_id: str) -> None:
    """Make ``session_id`` runnable. A leased job keeps its lease but its generation moves,
    so the worker holding it runs the session again instead of marking it done."""
    now = now_us()
    existing = (
        await conn.execute(
            select(tables.jobs.c.state)
            .where(tables.jobs.c.session_id == session_id)
            .with_for_update()  # a finish() in flight commits first; then we see its state
        )
    ).first()
    if existing is None:
        await conn.execute(
            tables.jobs.insert().values(
                session_id=session_id,
                state=JobState.READY,
                attempts=0,
                generation=1,
                available_time=now,
                create_time=now,
            )
        )
        return
    values: dict[str, object] = {"generation": tables.jobs.c.generation + 1}
    if existing.state != JobState.LEASED:
        values.update(state=JobState.READY, available_time=now, attempts=0)
    await conn.execute(
        update(tables.jobs).where(tables.jobs.c.session_id == session_id).values(**values)
    )


async def withdraw(conn: AsyncConnection, *, session_id: str) -> None:
    """The session wants no more work (cancelled, paused). A job waiting to run is done
    now; a leased one is left to its worker, which notices the session's state and
    releases it, so no second worker can start on the session before the first let go."""
    j = tables.jobs.c
    await conn.execute(
        update(tables.jobs)
        .where(j.session_id == session_id, j.state != JobState.LEASED)
        .values(state=JobState.DONE, lease_owner=None, lease_expire_time=None)
    )


@dataclass(frozen=True)
class Lease:
    session_id: str
    owner: str
    generation: int
    attempts: int


def _runnable(now: int) -> ColumnElement[bool]:
    """Ready and due, or leased with an expired lease (its worker died)."""
    j = tables.jobs.c
    return or_(
        and_(j.state == JobState.READY, j.available_time <= now),
        and_(j.state == JobState.LEASED, j.lease_expire_time < now),
    )


async def any_runnable(conn: AsyncConnection) -> bool:
    """Whether some job could be claimed now: a read, so that idle workers polling do not
    take the write lock (on SQLite, one for the whole database) only to find nothing."""
    found = await conn.execute(select(tables.jobs.c.session_id).where(_runnable(now_us())).limit(1))
    return found.first() is not None


async def claim(conn: AsyncConnection, *, owner: str, lease_us: int) -> Lease | None:
    """Take the oldest runnable job: ready and due, or leased with an expired lease.

    PostgreSQL skips rows other workers hold (``FOR UPDATE SKIP LOCKED``); SQLite
    serializes writers (``BEGIN IMMEDIATE``), so a plain select-then-update is safe there.
    """
    now = now_us()
    j = tables.jobs.c
    runnable = _runnable(now)
    candidate = select(j.session_id).where(runnable).order_by(j.available_time).limit(1)
    if conn.dialect.name == "postgresql":
        candidate = candidate.with_for_update(skip_locked=True)
    row = (await conn.execute(candidate)).first()
    if row is None:
        return None
    claimed = (
        await conn.execute(
            update(tables.jobs)
            .where(j.session_id == row.session_id, runnable)
            .values(
                state=JobState.LEASED,
                lease_owner=owner,
                lease_expire_time=now + lease_us,
                attempts=j.attempts + 1,
            )
            .returning(j.generation, j.attempts)
        )
    ).first()
    if claimed is None:
        return None
    return Lease(
        session_id=row.session_id,
        owner=owner,
        generation=claimed.generation,
        attempts=claimed.attempts,
    )


async def renew(conn: AsyncConnection, *, lease: Lease, lease_us: int) -> LeaseStatus:
    """Extend the lease, and say whether the work should go on."""
    j = tables.jobs.c
    result = await conn.execute(
        update(tables.jobs)
        .where(
            j.session_id == lease.session_id,
            j.lease_owner == lease.owner,
            j.state == JobState.LEASED,
        )
        .values(lease_expire_time=now_us() + lease_us)
    )
    state = (
        await conn.execute(
            select(tables.sessions.c.state).where(tables.sessions.c.id == lease.session_id)
        )
    ).scalar()
    if state is None or State(state) not in RUNNABLE:
        # Deleted, cancelled, paused or waiting for a person: whoever holds the job now,
        # the work is not wanted.
        return LeaseStatus.NOT_RUNNABLE
    if result.rowcount != 1:
        return LeaseStatus.LOST
    return LeaseStatus.HELD


async def unwanted(conn: AsyncConnection, *, session_ids: Collection[str]) -> set[str]:
    """Which of ``session_ids`` no longer want their work (deleted, paused, cancelled,
    waiting for a person, ended): one read, however many sessions a worker runs."""
    if not session_ids:
        return set()
    s = tables.sessions.c
    rows = await conn.execute(select(s.id, s.state).where(s.id.in_(list(session_ids))))
    wanted = {r.id for r in rows if State(r.state) in RUNNABLE}
    return set(session_ids) - wanted


async def finish(conn: AsyncConnection, *, lease: Lease) -> bool:
    """Release the job. Returns True if it must run again (it was enqueued meanwhile)."""
    j = tables.jobs.c
    mine = and_(j.session_id == lease.session_id, j.lease_owner == lease.owner)
    done = await conn.execute(
        update(tables.jobs)
        .where(mine, j.generation == lease.generation)
        .values(state=JobState.DONE, lease_owner=None, lease_expire_time=None)
    )
    if done.rowcount == 1:
        return False
    await conn.execute(
        update(tables.jobs)
        .where(mine)
        .values(
            state=JobState.READY,
            lease_owner=None,
            lease_expire_time=None,
            available_time=now_us(),
            attempts=0,
        )
    )
    return True


async def release_for_retry(
    conn: AsyncConnection, *, lease: Lease, delay_us: int, count_attempt: bool = True
) -> None:
    """Give the job back after a crash of the work itself, to be retried after a delay.
    ``count_attempt=False`` when the session is not to blame (the database was
    unreachable): the attempt taken by the claim is given back, so an outage never uses
    up the attempts after which the session is given up."""
    j = tables.jobs.c
    values: dict[str, object] = {
        "state": JobState.READY,
        "lease_owner": None,
        "lease_expire_time": None,
        "available_time": now_us() + delay_us,
    }
    if not count_attempt:
        values["attempts"] = j.attempts - 1
    await conn.execute(
        update(tables.jobs)
        .where(j.session_id == lease.session_id, j.lease_owner == lease.owner)
        .values(**values)
    )
