"""Engine setup and transactions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from openjules._errors import Unavailable
from openjules.timing import Part, span

SQLITE_BUSY_TIMEOUT_MS = 10_000


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached (or answered with a connection-class error): the
    API answers 503 UNAVAILABLE with Retry-After, never 500."""


class Database:
    """Two engines on one database: autocommit reads and transactional writes.

    Reads run in autocommit mode, each statement on its own snapshot, with no
    BEGIN/COMMIT/ROLLBACK round trips (through aiosqlite each costs a thread hand-off).
    ``write()`` takes SQLite's write lock up front (``BEGIN IMMEDIATE``): two deferred
    transactions that both upgrade to writers would otherwise fail with SQLITE_BUSY
    instead of waiting on the busy timeout.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        self.engine: AsyncEngine = _create_engine(
            url, echo=echo, is_sqlite=self.is_sqlite, autocommit=False
        )
        self.read_engine: AsyncEngine = _create_engine(
            url, echo=echo, is_sqlite=self.is_sqlite, autocommit=True
        )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        with span(Part.DATABASE):
            async with self.read_engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        with span(Part.DATABASE):
            async with self.engine.connect() as conn:
                if self.is_sqlite:
                    await conn.execution_options(sqlite_immediate=True)
                async with conn.begin():
                    yield conn

    async def ping(self) -> None:
        """Raise ``DatabaseUnavailable`` unless the database answers a trivial query."""
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        await self.read_engine.dispose()


def ensure_sqlite_directory(url: str) -> None:
    """SQLite creates the file but not its directory."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)


# Enough pooled connections for the server's concurrency: an overflow connection is
# closed on return, and reopening one (thread, file, pragmas) costs milliseconds.
POOL_SIZE = 20


def _create_engine(url: str, *, echo: bool, is_sqlite: bool, autocommit: bool) -> AsyncEngine:
    kwargs: dict[str, Any] = {"echo": echo, "pool_size": POOL_SIZE, "max_overflow": 20}
    if autocommit:
        kwargs.update(isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True)
    if is_sqlite:
        ensure_sqlite_directory(url)
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(url, **kwargs)
    if is_sqlite:
        _configure_sqlite(engine, autocommit=autocommit)
    return engine


def _configure_sqlite(engine: AsyncEngine, *, autocommit: bool) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    if autocommit:
        return

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("sqlite_immediate"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def sync_url(url: str) -> str:
    """The synchronous driver URL for the same database (Alembic runs synchronously)."""
    parsed = make_url(url)
    if parsed.drivername == "sqlite+aiosqlite":
        parsed = parsed.set(drivername="sqlite")
    elif parsed.drivername in ("postgresql+asyncpg", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)
