"""The change feed (``store.changes``) on both backends: a listener hears of a committed
change to a session whoever wrote it (this process, or another one: LISTEN/NOTIFY on
PostgreSQL, the poll on SQLite, and at once from another process of the same server on
SQLite too), and never of a change that was rolled back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from openjules._types import CreateSessionRequest
from openjules.store import sessions, users
from openjules.store.change_peers import LocalPeers
from openjules.store.changes import Change, Everything
from openjules.store.database import Database
from openjules.store.writer import ConnectionWriter

WAIT_S = 10.0


@pytest.fixture
async def db(url: str) -> AsyncIterator[Database]:
    database = Database(url, change_poll_seconds=0.05)
    await database.changes.start()
    await asyncio.wait_for(database.changes.watching.wait(), WAIT_S)
    yield database
    await database.dispose()


class Heard:
    def __init__(self, db: Database) -> None:
        self.changes: list[Change | Everything] = []
        self.arrived = asyncio.Event()
        self.stop = db.changes.subscribe(self._hear)

    def _hear(self, change: Change | Everything) -> None:
        self.changes.append(change)
        self.arrived.set()

    async def until(self, change: Change) -> None:
        async with asyncio.timeout(WAIT_S):
            while change not in self.changes:
                self.arrived.clear()
                await self.arrived.wait()


async def new_session(db: Database, name: str) -> Change:
    async with db.write() as conn:
        user = await users.get_or_create_user(conn, name=name)
        record = await sessions.create(
            conn, owner_id=user.id, request=CreateSessionRequest(prompt="hello")
        )
    return Change(owner_id=user.id, session_id=record.id)


async def create_then_fail(db: Database) -> None:
    async with db.write() as conn:
        user = await users.get_or_create_user(conn, name="rollback")
        await sessions.create(conn, owner_id=user.id, request=CreateSessionRequest(prompt="never"))
        raise RuntimeError("roll back")


async def test_a_write_of_this_process_is_heard_once_committed(db: Database) -> None:
    heard = Heard(db)
    change = await new_session(db, "local")
    # Published right after the commit, before the write returns to its caller.
    assert change in heard.changes
    heard.stop()


async def test_a_rolled_back_write_is_never_heard(db: Database, url: str) -> None:
    other = Database(url)
    try:
        heard = Heard(db)
        with pytest.raises(RuntimeError):
            await create_then_fail(db)
        # A later committed change, from another process, is heard; the rolled back never.
        marker = await new_session(other, "after-rollback")
        await heard.until(marker)
        # Every session heard of exists: none is the one that was rolled back.
        for change in heard.changes:
            assert isinstance(change, Change)
            async with db.read() as conn:
                assert await sessions.find(conn, session_id=change.session_id) is not None
    finally:
        await other.dispose()


async def test_a_write_of_another_process_is_heard(db: Database, url: str) -> None:
    heard = Heard(db)
    other = Database(url)  # another process's Database: its own origin, its own pools
    try:
        change = await new_session(other, "elsewhere")
        await heard.until(change)
        # Forget it before the next write: its notification may arrive before the write
        # has returned here.
        heard.changes.clear()
        async with other.write() as conn:
            await sessions.set_archived(
                ConnectionWriter(conn),
                owner_id=change.owner_id,
                session_id=change.session_id,
                archived=True,
            )
        await heard.until(change)
    finally:
        await other.dispose()


async def test_the_processes_of_one_server_hear_each_others_writes_at_once(url: str) -> None:
    """As the HTTP processes of one ``serve`` are linked. The SQLite poll is an hour
    apart here, so only the link can carry the changes; a third process of the server
    that is not running (being replaced) costs the writers nothing."""
    group = LocalPeers.new_group()
    first, second = (
        Database(
            url,
            change_poll_seconds=3600,
            peers=LocalPeers(group=group, count=3, index=index),
        )
        for index in (0, 1)
    )
    try:
        for database in (first, second):
            await database.changes.start()
            await asyncio.wait_for(database.changes.watching.wait(), WAIT_S)
        heard_first, heard_second = Heard(first), Heard(second)
        change = await new_session(first, "linked-first")
        await heard_second.until(change)
        back = await new_session(second, "linked-second")
        await heard_first.until(back)
        # Heard from the other process, not published here (equal Changes may differ so).
        assert not any(c.made_here for c in heard_second.changes if c == change)
    finally:
        for database in (first, second):
            await database.dispose()


async def test_a_change_heard_from_another_process_of_the_server_is_not_heard_twice(
    url: str,
) -> None:
    """The poll (every 50 ms here) does not report again what the link delivered."""
    group = LocalPeers.new_group()
    first, second = (
        Database(url, change_poll_seconds=0.05, peers=LocalPeers(group=group, count=2, index=i))
        for i in (0, 1)
    )
    try:
        for database in (first, second):
            await database.changes.start()
            await asyncio.wait_for(database.changes.watching.wait(), WAIT_S)
        heard = Heard(second)
        change = await new_session(first, "heard-once")
        await heard.until(change)
        await asyncio.sleep(0.5)  # ten polls
        assert heard.changes.count(change) == 1
    finally:
        for database in (first, second):
            await database.dispose()


# A statement that runs for a second or two on either backend (long enough to be
# interrupted, short enough that SQLite's thread, which finishes it regardless, is soon free).
SLOW_SQLITE = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
    "SELECT count(*) FROM c"
)
SLOW_POSTGRES = "SELECT pg_sleep(2)"


async def test_a_write_cancelled_mid_statement_ends_cancelled(url: str) -> None:
    """Stopping a task in the middle of a write must stop it: the interrupted statement
    invalidates the connection, and the write's cleanup (publishing its changes) must not
    turn the cancellation into another error, which a retrying loop would catch and go on
    (``openjules worker`` then never exited after SIGTERM)."""
    db = Database(url)
    statement = text(SLOW_SQLITE if db.is_sqlite else SLOW_POSTGRES)

    async def slow_write() -> None:
        async with db.write() as conn:
            await conn.execute(statement)

    try:
        task = asyncio.create_task(slow_write())
        await asyncio.sleep(0.3)
        task.cancel()
        async with asyncio.timeout(WAIT_S * 3):
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        await db.dispose()
