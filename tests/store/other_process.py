"""What another process does to the database under a test: holds SQLite's write lock, or
(an operator, a restart) ends every PostgreSQL connection to it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg


@asynccontextmanager
async def holding_sqlite_write_lock(url: str) -> AsyncIterator[None]:
    """SQLite's write lock on the database at ``url``, held by another connection (in a
    thread, as another process would) until the body ends."""
    path = Path(url.split(":///", 1)[1])
    release, held = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold, args=(path, release, held))
    holder.start()
    try:
        assert await asyncio.to_thread(held.wait, 5.0), "the lock was never taken"
        yield
    finally:
        release.set()
        await asyncio.to_thread(holder.join)


def _hold(path: Path, release: threading.Event, held: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        release.wait()
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def end_postgres_connections(*, postgres_admin: str, database_url: str) -> None:
    """End every server process connected to the database of ``database_url``."""
    database = database_url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_admin, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )
