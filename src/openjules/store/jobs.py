"""The jobs table: one row per session that has agent work to do (see engine/runner)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Update,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._types import State
from openjules.store import tables
from openjules.store.clock import now_us

if TYPE_CHECKING:
    from openjules.store.writer import Writer

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


async def enqueue(writer: Writer, *, session_id: str) -> None:
    """Make ``session_id`` runnable. A leased job keeps its lease but its generation moves,
    so the worker holding it runs the session again instead of marking it done."""
    now = now_us()
    # A finish() in flight commits first (FOR UPDATE); then this sees its state.
    existing = await writer.rows("jobs.lock_state", _lock_state, {"job": session_id})
    if not existing:
        await enqueue_new(writer, session_id=session_id)
        return
    if existing[0][0] == JobState.LEASED:
        await writer.run("jobs.next_generation", _next_generation, {"job": session_id})
        return
    await writer.run(
        "jobs.ready_again",
        _ready_again,
        {"job": session_id, "now": now, "ready": JobState.READY.value},
    )


# Parameters of these statements are not named after the jobs' columns: SQLAlchemy keeps
# those for an UPDATE's SET.
def _lock_state() -> Select[Any]:
    j = tables.jobs.c
    return select(j.state).where(j.session_id == bindparam("job")).with_for_update()


def _next_generation() -> Update:
    j = tables.jobs.c
    return (
        update(tables.jobs)
        .where(j.session_id == bindparam("job"))
        .values(generation=j.generation + 1)
    )


def _ready_again() -> Update:
    j = tables.jobs.c
    return (
        update(tables.jobs)
        .where(j.session_id == bindparam("job"))
        .values(
            generation=j.generation + 1,
            state=bindparam("ready"),
            available_time=bindparam("now"),
            attempts=0,
        )
    )


# Prebuilt (executed with parameters), so a create pays for no statement construction.
_INSERT = tables.jobs.insert()


async def enqueue_new(writer: Writer, *, session_id: str) -> None:
    """The job of a session created in this transaction (it can have none yet): the
    insert of ``enqueue`` without its look for an existing row."""
    now = now_us()
    await writer.run(
        "jobs.insert",
        lambda: _INSERT,
        {
            "session_id": session_id,
            "state": JobState.READY.value,
            "attempts": 0,
            "generation": 1,
            "available_time": now,
            "create_time": now,
        },
    )


async def withdraw(writer: Writer, *, session_id: str) -> None:
    """The session wants no more work (cancelled, paused). A job waiting to run is done
    now; a leased one is left to its worker, which notices the session's state and
    releases it, so no second worker can start on the session before the first let go."""
    await writer.run(
        "jobs.withdraw",
        _withdraw,
        {"job": session_id, "leased": JobState.LEASED.value, "done": JobState.DONE.value},
    )


def _withdraw() -> Update:
    j = tables.jobs.c
    return (
        update(tables.jobs)
        .where(j.session_id == bindparam("job"), j.state != bindparam("leased"))
        .values(state=bindparam("done"), lease_owner=None, lease_expire_time=None)
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


# The owner's sessions that count against user_max_concurrent_sessions: admitted by a
# runner and not ended. Stated exactly as the partial index ix_sessions_live_admitted is.
_LIVE_ADMITTED = text(tables.LIVE_ADMITTED_SQL)


def _candidates(*, now: int, user_limit: int, session_id: str | None = None) -> Select[Any]:
    """Claimable jobs (of ``session_id`` alone, if given), oldest first, with their
    session's owner and admission. With a per-user limit, a job whose owner is at the
    limit is skipped (not stopped at: other users' jobs behind it are still found) unless
    its session was already admitted, as a session woken again by a message, an approval
    or a resume is."""
    j, s = tables.jobs.c, tables.sessions.c
    query = (
        select(j.session_id, s.owner_id, s.admit_time)
        .select_from(tables.jobs.join(tables.sessions, s.id == j.session_id))
        .where(_runnable(now))
        .order_by(j.available_time, j.session_id)
    )
    if session_id is not None:
        query = query.where(j.session_id == session_id)
    if user_limit > 0:
        admitted = tables.sessions.alias("admitted")
        live = (
            select(func.count())
            .select_from(admitted)
            .where(admitted.c.owner_id == s.owner_id, _LIVE_ADMITTED)
            .scalar_subquery()
        )
        query = query.where(or_(s.admit_time.is_not(None), live < user_limit))
    return query


async def any_runnable(conn: AsyncConnection, *, user_limit: int = 0) -> bool:
    """Whether some job could be claimed now: a read, so that an idle runner polling does
    not take the write lock (on SQLite, one for the whole database) only to find nothing;
    nor does one whose only queued jobs are of users at their limit."""
    found = await conn.execute(_candidates(now=now_us(), user_limit=user_limit).limit(1))
    return found.first() is not None


async def _live_counts(conn: AsyncConnection, owners: Collection[int]) -> dict[int, int]:
    """How many sessions of each of ``owners`` count against their limit now. On
    PostgreSQL the owners' user rows are locked first (in id order: no deadlock), so two
    processes admitting for one user take turns and the second counts the first's
    admissions; SQLite has one writer at a time anyway. FOR NO KEY UPDATE does not wait
    for creates, whose insert takes only a KEY SHARE lock on the user."""
    ordered = sorted(owners)
    if conn.dialect.name == "postgresql":
        u = tables.users.c
        await conn.execute(
            select(u.id).where(u.id.in_(ordered)).order_by(u.id).with_for_update(key_share=True)
        )
    s = tables.sessions.c
    rows = await conn.execute(
        select(s.owner_id, func.count())
        .where(s.owner_id.in_(ordered), _LIVE_ADMITTED)
        .group_by(s.owner_id)
    )
    return {row[0]: int(row[1]) for row in rows}


async def claim_many(
    conn: AsyncConnection,
    *,
    owner: str,
    lease_us: int,
    limit: int,
    user_limit: int = 0,
    session_id: str | None = None,
) -> list[Lease]:
    """Take up to ``limit`` of the oldest claimable jobs in one transaction (a burst of
    creates costs one write per claim, not per session), admitting their sessions.

    PostgreSQL skips rows other workers hold (``FOR UPDATE SKIP LOCKED``); SQLite
    serializes writers (``BEGIN IMMEDIATE``), so a plain select-then-update is safe there.
    With ``user_limit``, the jobs found are admitted in order while their owner has room
    (counted again under a lock: the query's count is from before this claim). With
    ``session_id``, only that session's job is looked at (a runner that is told which
    session to run, such as a Temporal activity); under a user limit it is admitted only
    if it is its owner's oldest claimable session waiting for admission, so that a user's
    queued sessions start in creation order whichever is asked for first.
    """
    now = now_us()
    j, s = tables.jobs.c, tables.sessions.c
    candidates = _candidates(now=now, user_limit=user_limit, session_id=session_id).limit(limit)
    if conn.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True, of=tables.jobs)
    rows = (await conn.execute(candidates)).all()
    if session_id is not None and user_limit > 0 and rows and rows[0].admit_time is None:
        first = await _first_in_line(conn, owner_id=rows[0].owner_id, now=now)
        if first != session_id:
            return []  # an older session of the same owner starts first
    newcomers = {r.owner_id for r in rows if r.admit_time is None}
    if user_limit > 0 and newcomers:
        live = await _live_counts(conn, newcomers)
        picked = []
        for row in rows:
            if row.admit_time is None:
                if live.get(row.owner_id, 0) >= user_limit:
                    continue
                live[row.owner_id] = live.get(row.owner_id, 0) + 1
            picked.append(row)
        rows = picked
    if not rows:
        return []
    claimed = (
        await conn.execute(
            update(tables.jobs)
            .where(j.session_id.in_([r.session_id for r in rows]), _runnable(now))
            .values(
                state=JobState.LEASED,
                lease_owner=owner,
                lease_expire_time=now + lease_us,
                attempts=j.attempts + 1,
            )
            .returning(j.session_id, j.generation, j.attempts)
        )
    ).all()
    waiting = {r.session_id for r in rows if r.admit_time is None}
    fresh = [c.session_id for c in claimed if c.session_id in waiting]
    if fresh:
        await conn.execute(
            update(tables.sessions)
            .where(s.id.in_(fresh), s.admit_time.is_(None))
            .values(admit_time=now)
        )
    order = {r.session_id: i for i, r in enumerate(rows)}
    return sorted(
        (
            Lease(
                session_id=c.session_id, owner=owner, generation=c.generation, attempts=c.attempts
            )
            for c in claimed
        ),
        key=lambda lease: order[lease.session_id],
    )


async def overdue(conn: AsyncConnection, *, for_us: int, user_limit: int, limit: int) -> list[str]:
    """Sessions whose jobs have been claimable for at least ``for_us`` without being
    claimed (their wake-up was lost, e.g. while the runner's service was unreachable),
    oldest first; jobs of owners at their limit are not overdue, they wait their turn."""
    rows = await conn.execute(
        _candidates(now=now_us() - for_us, user_limit=user_limit).limit(limit)
    )
    return [row.session_id for row in rows]


@dataclass(frozen=True)
class JobView:
    """Where a session's job stands, for a runner that could not claim it."""

    state: JobState
    available_time: int
    lease_expire_time: int | None


async def look(conn: AsyncConnection, *, session_id: str) -> JobView | None:
    """The session's job as it stands (None: it never had one, or it was deleted)."""
    j = tables.jobs.c
    row = (
        await conn.execute(
            select(j.state, j.available_time, j.lease_expire_time).where(j.session_id == session_id)
        )
    ).first()
    if row is None:
        return None
    return JobView(
        state=JobState(row.state),
        available_time=row.available_time,
        lease_expire_time=row.lease_expire_time,
    )


async def _first_in_line(conn: AsyncConnection, *, owner_id: int, now: int) -> str | None:
    """The owner's oldest claimable session not admitted yet."""
    j, s = tables.jobs.c, tables.sessions.c
    return await conn.scalar(
        select(j.session_id)
        .select_from(tables.jobs.join(tables.sessions, s.id == j.session_id))
        .where(_runnable(now), s.owner_id == owner_id, s.admit_time.is_(None))
        .order_by(j.available_time, j.session_id)
        .limit(1)
    )


async def claim(conn: AsyncConnection, *, owner: str, lease_us: int) -> Lease | None:
    """Take the oldest runnable job (see ``claim_many``)."""
    leases = await claim_many(conn, owner=owner, lease_us=lease_us, limit=1)
    return leases[0] if leases else None


async def renew(
    conn: AsyncConnection, *, leases: Collection[Lease], lease_us: int
) -> dict[str, LeaseStatus]:
    """Extend every lease of a runner in one statement, and say for each session whether
    its work should go on: one write per renewal interval, however many sessions run."""
    if not leases:
        return {}
    j = tables.jobs.c
    ids = [lease.session_id for lease in leases]
    # A lease is (session, owner); owners differ per claim, and an owner is written only
    # to the jobs it claimed, so matching both lists matches exactly the pairs.
    held = await conn.execute(
        update(tables.jobs)
        .where(
            j.session_id.in_(ids),
            j.lease_owner.in_({lease.owner for lease in leases}),
            j.state == JobState.LEASED,
        )
        .values(lease_expire_time=now_us() + lease_us)
        .returning(j.session_id, j.lease_owner)
    )
    kept = {(r.session_id, r.lease_owner) for r in held}
    s = tables.sessions.c
    states = {r.id: r.state for r in await conn.execute(select(s.id, s.state).where(s.id.in_(ids)))}
    found: dict[str, LeaseStatus] = {}
    for lease in leases:
        state = states.get(lease.session_id)
        if state is None or State(state) not in RUNNABLE:
            # Deleted, cancelled, paused or waiting for a person: whoever holds the job
            # now, the work is not wanted.
            found[lease.session_id] = LeaseStatus.NOT_RUNNABLE
        elif (lease.session_id, lease.owner) not in kept:
            found[lease.session_id] = LeaseStatus.LOST
        else:
            found[lease.session_id] = LeaseStatus.HELD
    return found


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
