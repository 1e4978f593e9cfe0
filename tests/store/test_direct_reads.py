"""The API's hot reads (``store.direct``) on both backends: they see every committed
write at once (read-after-write), many at once each get their own answer, and on
PostgreSQL a pooled connection that died while idle costs the next read nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from openjules._errors import NotFound
from openjules._types import CreateSessionRequest
from openjules.store import sessions, users
from openjules.store.database import Database, DatabaseUnavailable
from openjules.store.query import Filter
from openjules.store.writer import ConnectionWriter
from tests.store.other_process import end_postgres_connections, holding_sqlite_write_lock

READS_AT_ONCE = 50


async def _create(db: Database, *, user_name: str, prompt: str) -> tuple[int, str]:
    async with db.write() as conn:
        user = await users.get_or_create_user(conn, name=user_name)
        record = await sessions.create(
            conn, owner_id=user.id, request=CreateSessionRequest(prompt=prompt)
        )
    return user.id, record.id


async def test_a_read_sees_the_write_committed_just_before(db: Database) -> None:
    owner, session_id = await _create(db, user_name="raw", prompt="first")
    assert (await sessions.read(db.reads, owner_id=owner, session_id=session_id)).prompt == "first"
    async with db.write() as conn:
        await sessions.set_archived(
            ConnectionWriter(conn), owner_id=owner, session_id=session_id, archived=True
        )
    record = await sessions.read(db.reads, owner_id=owner, session_id=session_id)
    assert record.archived
    with pytest.raises(NotFound):
        await sessions.read(db.reads, owner_id=owner + 1000, session_id=session_id)


async def test_many_reads_at_once_each_get_their_own_answer(db: Database) -> None:
    created = [await _create(db, user_name="many", prompt=f"p{n}") for n in range(5)]
    owner = created[0][0]
    wanted = [created[n % len(created)][1] for n in range(READS_AT_ONCE)]
    found = await asyncio.gather(
        *(sessions.read(db.reads, owner_id=owner, session_id=sid) for sid in wanted),
        sessions.read(db.reads, owner_id=owner, session_id="1"),  # not found, alone
        return_exceptions=True,
    )
    assert [r.id for r in found[:-1] if isinstance(r, sessions.SessionRecord)] == wanted
    assert isinstance(found[-1], NotFound)
    rows, _ = await sessions.list_rows(
        db.reads, owner_id=owner, flt=Filter(), page_size=100, page_token=None
    )
    assert len(rows) >= len(created)


async def test_a_dead_pooled_postgres_connection_costs_the_next_read_nothing(
    db: Database, backend: str, postgres_admin: str
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL's server-side connections")
    owner, session_id = await _create(db, user_name="dead", prompt="still here")
    await sessions.read(db.reads, owner_id=owner, session_id=session_id)  # pools one
    end_postgres_connections(postgres_admin=postgres_admin, database_url=db.url)
    record = await sessions.read(db.reads, owner_id=owner, session_id=session_id)
    assert record.prompt == "still here"


async def test_a_sqlite_write_waits_for_another_writer_without_stopping_reads(
    url: str, backend: str, tmp_path: Path
) -> None:
    """Writes run in the event loop's thread; waiting for a lock held elsewhere must not
    stop the loop: reads go on, and the write commits once the lock is free."""
    if backend != "sqlite":
        pytest.skip("SQLite's file lock")
    db = Database(url, busy_timeout_seconds=10.0)
    try:
        owner, session_id = await _create(db, user_name="lock", prompt="locked")
        async with holding_sqlite_write_lock(url):
            write = asyncio.create_task(_create(db, user_name="lock", prompt="after"))
            for _ in range(5):
                await asyncio.sleep(0.05)
                await sessions.read(db.reads, owner_id=owner, session_id=session_id)
            assert not write.done()
        _, created = await asyncio.wait_for(write, 10.0)
        assert (await sessions.read(db.reads, owner_id=owner, session_id=created)).prompt == (
            "after"
        )
    finally:
        await db.dispose()


async def test_a_sqlite_write_locked_out_past_the_busy_timeout_is_unavailable(
    url: str, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite's file lock")
    db = Database(url, busy_timeout_seconds=0.2)
    try:
        async with holding_sqlite_write_lock(url):
            with pytest.raises(DatabaseUnavailable):
                await _create(db, user_name="lockout", prompt="never")
    finally:
        await db.dispose()
