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
from collections.abc import Callable
from typing import Any

from sqlalchemy import Delete, Select, and_, bindparam, delete, false, func, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import ReturningInsert

from openjules._errors import ResourceExhausted
from openjules.store import tables
from openjules.store.clock import now_us
from openjules.store.writer import ConnectionWriter, Writer

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


def _known_statement() -> Select[Any]:
    return select(_D.created).where(
        and_(_D.user_id == bindparam("owner_id"), _D.day == bindparam("day"))
    )


def _still_there_statement() -> Select[Any]:
    """The user's sessions of a day that still exist: where the count starts when the
    quota was switched on during the day (deleted ones are not known any more)."""
    s = tables.sessions.c
    return select(func.count()).where(
        # archived spelled out: the owner's list index leads with (owner_id, archived).
        # (As SQL constants: a compiled statement of store.direct_write carries no list.)
        s.owner_id == bindparam("owner_id"),
        s.archived.in_([false(), true()]),
        s.create_time >= bindparam("since"),
    )


def _forget_statement() -> Delete:
    return delete(tables.user_session_days).where(
        _D.user_id == bindparam("owner_id"), _D.day < bindparam("day")
    )


def _count_statement(dialect_name: str) -> Callable[[], ReturningInsert[Any]]:
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert

    def build() -> ReturningInsert[Any]:
        return (
            insert(tables.user_session_days)
            .values(user_id=bindparam("owner_id"), day=bindparam("day"), created=bindparam("start"))
            .on_conflict_do_update(
                index_elements=[_D.user_id, _D.day], set_={"created": _D.created + 1}
            )
            .returning(_D.created)
        )

    return build


async def count_session_create(conn: AsyncConnection, *, owner_id: int, daily_limit: int) -> None:
    """``count_create`` in SQLAlchemy's transaction on ``conn``."""
    await count_create(ConnectionWriter(conn), owner_id=owner_id, daily_limit=daily_limit)


async def count_create(writer: Writer, *, owner_id: int, daily_limit: int) -> None:
    """Count a session ``owner_id`` is creating in this transaction against their daily
    quota; ``ResourceExhausted`` when it is used up (``daily_limit`` 0: no quota)."""
    if daily_limit <= 0:
        return
    now = now_us()
    day = now // DAY_US
    params = {"owner_id": owner_id, "day": day}
    found = await writer.rows("quotas.known", _known_statement, params)
    known = found[0][0] if found else None
    if known is not None and known >= daily_limit:
        raise _exhausted(limit=daily_limit, now=now)  # a read: refusals cost no write
    start = 0
    if known is None:  # the user's first create today: earlier days' rows go
        still = await writer.rows(
            "quotas.still_there", _still_there_statement, {**params, "since": day * DAY_US}
        )
        start = int(still[0][0])
        await writer.run("quotas.forget", _forget_statement, params)
    dialect = writer.dialect_name
    counted = await writer.rows(
        ("quotas.count", dialect), _count_statement(dialect), {**params, "start": start + 1}
    )
    if counted[0][0] > daily_limit:
        raise _exhausted(limit=daily_limit, now=now)
