"""The jobs table decides per-user admission (``jobs.claim_many`` with ``user_limit``),
so the limit holds across processes, on both backends: a claim takes other users' jobs
past a user at their limit, admits a user's sessions in creation order, never admits a
user's session beside ``user_limit`` others that have not ended, and two claims racing
for the same user's last place admit one session, not two."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from openjules._types import CreateSessionRequest
from openjules.settings import Settings
from openjules.store import jobs, sessions, tables, transitions, users
from openjules.store.database import Database
from openjules.store.transitions import Event
from openjules.store.writer import ConnectionWriter
from tests.jobs_support import database_without_jobs

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
LEASE_US = 60_000_000


@pytest.fixture
async def db(server_settings: Settings) -> AsyncIterator[Database]:
    async with database_without_jobs(server_settings) as database:
        yield database


async def _user_sessions(db: Database, count: int) -> list[str]:
    async with db.write() as conn:
        user = await users.get_or_create_user(conn, name=f"adm-{secrets.token_hex(4)}")
        return [
            (
                await sessions.create(
                    conn, owner_id=user.id, request=CreateSessionRequest(prompt=f"task {i}")
                )
            ).id
            for i in range(count)
        ]


async def _claim(db: Database, *, limit: int = 10, user_limit: int) -> list[str]:
    async with db.write() as conn:
        leases = await jobs.claim_many(
            conn, owner=secrets.token_hex(4), lease_us=LEASE_US, limit=limit, user_limit=user_limit
        )
    return [lease.session_id for lease in leases]


async def test_a_user_at_their_limit_is_skipped_and_their_queue_starts_in_order(
    db: Database,
) -> None:
    alice = await _user_sessions(db, 4)
    bob = await _user_sessions(db, 1)  # created after all of Alice's
    assert await _claim(db, user_limit=2) == [*alice[:2], bob[0]]
    # Alice's others wait; nothing is claimable, and a poll finds that with a read.
    assert await _claim(db, user_limit=2) == []
    async with db.read() as conn:
        assert not await jobs.any_runnable(conn, user_limit=2)
        assert await jobs.any_runnable(conn, user_limit=0)
    # One of Alice's ends: her next one, in creation order, takes its place.
    async with db.write() as conn:
        await transitions.apply(ConnectionWriter(conn), session_id=alice[0], event=Event.START_WORK)
        await transitions.apply(ConnectionWriter(conn), session_id=alice[0], event=Event.CANCELLED)
    assert await _claim(db, user_limit=2) == [alice[2]]
    assert await _claim(db, user_limit=2) == []


async def test_a_woken_session_of_a_user_at_their_limit_is_not_held_back(db: Database) -> None:
    alice = await _user_sessions(db, 3)
    async with db.write() as conn:
        leases = await jobs.claim_many(conn, owner="x", lease_us=LEASE_US, limit=9, user_limit=2)
    assert [lease.session_id for lease in leases] == alice[:2]
    # Its run ends while it waits for a person; a message wakes it again later.
    async with db.write() as conn:
        assert not await jobs.finish(conn, lease=leases[0])
        await jobs.enqueue(ConnectionWriter(conn), session_id=alice[0])
    assert await _claim(db, user_limit=2) == [alice[0]]


async def test_two_claims_racing_for_a_users_last_place_admit_one_session(
    db: Database,
) -> None:
    alice = await _user_sessions(db, 3)
    assert await _claim(db, limit=1, user_limit=2) == [alice[0]]

    # One claim holds its transaction open; the other (another process's) runs meanwhile.
    first = db.engine.connect()
    conn_a = await first.__aenter__()
    if db.is_sqlite:
        await conn_a.execution_options(sqlite_immediate=True)
    txn_a = await conn_a.begin()
    got_a = await jobs.claim_many(conn_a, owner="a", lease_us=LEASE_US, limit=1, user_limit=2)
    racing = asyncio.create_task(_claim(db, limit=1, user_limit=2))
    await asyncio.sleep(0.3)  # the second claim now waits for the first's transaction
    await txn_a.commit()
    await first.__aexit__(None, None, None)
    got_b = await asyncio.wait_for(racing, 10)

    assert [lease.session_id for lease in got_a] == [alice[1]]
    assert got_b == []
    async with db.read() as conn:
        admitted = (
            await conn.execute(
                tables.sessions.select().where(
                    tables.sessions.c.id.in_(alice), tables.sessions.c.admit_time.is_not(None)
                )
            )
        ).all()
    assert sorted(r.id for r in admitted) == sorted(alice[:2])
