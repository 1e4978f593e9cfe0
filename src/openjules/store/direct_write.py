"""Write transactions straight through the database driver (``Database.transact``).

Why: through SQLAlchemy's asyncio layer a write transaction costs about a millisecond of
CPU beyond its statements (pool checkout, execution options, BEGIN, a greenlet switch
and result objects per statement, COMMIT, the release task). Here the statements of a
``store.writer.Writer`` are compiled once per shape and run by the driver:

- SQLite: one ``sqlite3`` connection of the event loop's thread (the process's writers
  take turns anyway: ``Database`` holds its writer turn around this), statements run in
  place. It never waits on SQLite's lock in the loop: its busy timeout is 0, and while
  another process holds the lock ``BEGIN IMMEDIATE`` is tried again after asynchronous
  pauses, up to the busy timeout, as ``Database.write`` does.
- PostgreSQL: see ``store.direct_write_postgres``.

Connection-class failures become ``DatabaseUnavailable`` in ``Database.transact``;
anything else (an integrity error, a quota refused) propagates after a rollback, and
the changes the transaction announced are handed back only once it committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.engine import make_url

from openjules.store.changes import Change
from openjules.store.direct_write_postgres import PostgresWrites
from openjules.store.inline_sqlite import BUSY_FIRST_PAUSE_S, BUSY_MAX_PAUSE_S, is_busy
from openjules.store.postgres_connections import PoolOptions
from openjules.store.writer import (
    MAX_STATEMENTS,
    Build,
    DirectWrites,
    Params,
    T,
    Transaction,
    Work,
    WriteStatements,
)

# --- SQLite --------------------------------------------------------------------------


class _SqliteTransaction(Transaction):
    dialect_name = "sqlite"

    def __init__(self, conn: sqlite3.Connection, statements: WriteStatements, *, origin: str):
        super().__init__(statements, origin=origin)
        self._conn = conn

    async def rows(self, key: Hashable, build: Build, params: Params) -> list[tuple[Any, ...]]:
        compiled = self._statements.get(key, build, params)
        return self._conn.execute(compiled.sql, compiled.values(params)).fetchall()

    async def run(self, key: Hashable, build: Build, params: Params) -> None:
        compiled = self._statements.get(key, build, params)
        self._conn.execute(compiled.sql, compiled.values(params))

    async def run_many(self, key: Hashable, build: Build, rows: Sequence[Params]) -> None:
        if rows:
            compiled = self._statements.get(key, build, rows[0])
            self._conn.executemany(compiled.sql, [compiled.values(r) for r in rows])


class SqliteWrites(DirectWrites):
    """The caller holds the process's writer turn (``Database._sqlite_turn``)."""

    def __init__(self, path: Path, *, busy_timeout_seconds: float) -> None:
        self._path = path
        self._busy_timeout_seconds = busy_timeout_seconds
        self._statements = WriteStatements(pysqlite.dialect(paramstyle="named"))
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # As Database's write connections are set up (database._configure_sqlite).
            conn = sqlite3.connect(
                self._path,
                timeout=0,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=MAX_STATEMENTS,
            )
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    async def transact(self, work: Work[T], *, origin: str) -> tuple[T, set[Change]]:
        conn = await self._begin()
        transaction = _SqliteTransaction(conn, self._statements, origin=origin)
        try:
            result = await work(transaction)
            conn.execute("COMMIT")
        except BaseException:
            self._roll_back(conn)
            raise
        return result, transaction.announced

    async def _begin(self) -> sqlite3.Connection:
        """``BEGIN IMMEDIATE``, waiting asynchronously while another process writes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._busy_timeout_seconds
        pause = BUSY_FIRST_PAUSE_S
        while True:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                return conn
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or loop.time() >= deadline:
                    await self.close()  # e.g. the file went away: start afresh next time
                    raise
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(pause * 2, BUSY_MAX_PAUSE_S)

    def _roll_back(self, conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            # A connection that cannot even roll back is not used again.
            conn.close()
            if self._conn is conn:
                self._conn = None

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def direct_writes(
    url: str, *, busy_timeout_seconds: float, pool: PoolOptions
) -> DirectWrites | None:
    """The direct writer for the database at ``url``; None where only SQLAlchemy's
    applies (an in-memory SQLite database, a URL with driver options, another driver)."""
    parsed = make_url(url)
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "sqlite":
        database = parsed.database
        if database in (None, "", ":memory:") or parsed.query:
            return None
        return SqliteWrites(Path(database or ""), busy_timeout_seconds=busy_timeout_seconds)
    if backend == "postgresql" and driver == "psycopg":
        conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresWrites(conninfo, options=pool)
    return None
