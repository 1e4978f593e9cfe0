"""A database for tests of who claims which job: migrated, with no job left queued by an
earlier test of the module (the module's backend database is shared)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from openjules.settings import Settings
from openjules.store import tables
from openjules.store.database import Database
from openjules.store.migrate import upgrade_to_head


@asynccontextmanager
async def database_without_jobs(settings: Settings) -> AsyncIterator[Database]:
    url = settings.resolved_database_url()
    await asyncio.to_thread(upgrade_to_head, url)
    database = Database(url)
    try:
        async with database.write() as conn:
            await conn.execute(tables.jobs.delete())
        yield database
    finally:
        await database.dispose()
