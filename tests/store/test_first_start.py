"""The first start on an empty database creates the default user and one API key once,
however many API processes start at the same time."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from openjules.settings import Settings
from openjules.store import users
from openjules.store.database import Database
from openjules.store.migrate import upgrade_to_head
from openjules.store.tables import api_keys
from openjules.store.tables import users as users_table


async def test_api_processes_starting_together_create_the_first_user_once(
    server_settings: Settings, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite runs one write transaction at a time (BEGIN IMMEDIATE)")
    url = server_settings.resolved_database_url()
    await asyncio.to_thread(upgrade_to_head, url)
    # A database each, as separate processes have: their transactions really overlap.
    databases = [Database(url) for _ in range(4)]
    try:
        async with databases[0].write() as conn:
            await conn.execute(api_keys.delete())
            await conn.execute(users_table.delete())

        # Every start has its transaction open before any looks for users.
        all_begun = asyncio.Barrier(len(databases))

        async def first_start(db: Database) -> str | None:
            async with db.write() as conn:
                await conn.execute(select(1))
                await all_begun.wait()
                key = await users.create_first_user(conn, name="default", max_live_keys=3)
            return key.secret if key is not None else None

        secrets = await asyncio.gather(*(first_start(db) for db in databases))
        async with databases[0].read() as conn:
            assert await users.count_users(conn) == 1
    finally:
        for db in databases:
            await db.dispose()
    assert len([s for s in secrets if s is not None]) == 1
