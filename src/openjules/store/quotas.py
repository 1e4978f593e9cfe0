"""Per-user quotas on creating sessions (``settings.user_daily_sessions``).

A user may create so many sessions per UTC day; the next create is refused with 429
RESOURCE_EXHAUSTED, saying when the quota resets (and ``Retry-After``). The count is a row
per user and day (``user_session_days``), not a count of the sessions table: a deleted
session is gone from that table, yet it used the model (the cost the quota bounds), so
deleting sessions must not hand the quota back.

Race-free: the count is raised by one ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` in
the create's own transaction. On PostgreSQL two creates of one user at the limit take
turns on that row's lock (the second waits for the first to commit or roll back and then
reads its count), so they cannot both pass; SQLite has one writer at a time. A refused
create rolls back with its transaction, so refusals use no quota.
"""

from __future__ import annotations

import time

from sqlalchemy import and_, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._errors import ResourceExhausted
from openjules.store import tables
from openjules.store.clock import now_us

DAY_US = 86_400 * 1_000_000
_D = tables.user_session_days.c


def _in(seconds: int) -> str:
    """``3h 12m`` (minutes rounded up: never "in 0m")."""
    hours, minutes = divmod(-(-seconds // 60), 60)
    return f"{hours}h {minutes}m" if hours else f"{minutes}m"


def _exhausted(*, limit: int, now: int) -> ResourceExhausted:
    resets = (now // DAY_US + 1) * DAY_US
    wait_s = max(1, -(-(resets - now) // 1_000_000))
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(resets // 1_000_000))
    return ResourceExhausted(
        f"Daily session limit of {limit} reached; it resets at {at} (in {_in(wait_s)}).",
        retry_after_seconds=wait_s,
    )


async def _created_today_still_there(conn: AsyncConnection, *, owner_id: int, day: int) -> int:
    """The user's sessions of ``day`` that still exist: where the count starts when the
    quota was switched on during the day (deleted ones are not known any more)."""
    s = tables.sessions.c
    found = await conn.execute(
        select(func.count()).where(
            # archived spelled out: the owner's list index leads with (owner_id, archived).
            s.owner_id == owner_id,
            s.archived.in_([False, True]),
            s.create_time >= day * DAY_US,
        )
    )
    return int(found.scalar_one())


async def count_session_create(conn: AsyncConnection, *, owner_id: int, daily_limit: int) -> None:
    """Count a session ``owner_id`` is creating in this transaction against their daily
    quota; ``ResourceExhausted`` when it is used up (``daily_limit`` 0: no quota)."""
    if daily_limit <= 0:
        return
    now = now_us()
    day = now // DAY_US
    known = (
        await conn.execute(select(_D.created).where(and_(_D.user_id == owner_id, _D.day == day)))
    ).scalar()
    if known is not None and known >= daily_limit:
        raise _exhausted(limit=daily_limit, now=now)  # a read: refusals cost no write
    start = 0
    if known is None:  # the user's first create today: earlier days' rows go
        start = await _created_today_still_there(conn, owner_id=owner_id, day=day)
        await conn.execute(
            delete(tables.user_session_days).where(_D.user_id == owner_id, _D.day < day)
        )
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    counted = await conn.execute(
        insert(tables.user_session_days)
        .values(user_id=owner_id, day=day, created=start + 1)
        .on_conflict_do_update(
            index_elements=[_D.user_id, _D.day], set_={"created": _D.created + 1}
        )
        .returning(_D.created)
    )
    if counted.scalar_one() > daily_limit:
        raise _exhausted(limit=daily_limit, now=now)
