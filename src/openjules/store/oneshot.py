"""Run one write transaction from synchronous code (the CLI, scripts, test kits)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from openjules.store.database import Database
from openjules.store.migrate import upgrade_to_head

T = TypeVar("T")


def run_write(url: str, action: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Migrate the database at ``url`` to head, then run ``action`` in one transaction."""

    async def main() -> T:
        await asyncio.to_thread(upgrade_to_head, url)
        db = Database(url)
        try:
            async with db.write() as conn:
                return await action(conn)
        finally:
            await db.dispose()

    return asyncio.run(main())
