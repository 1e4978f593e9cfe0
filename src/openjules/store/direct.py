"""Reads on the API's hot path, straight through the database driver.

Why: through SQLAlchemy's asyncio layer every read costs a pool checkout in a greenlet,
statement compilation and result processing, and on SQLite a hand-off to aiosqlite's
thread for each call (~0.8 ms a read on a busy server, mostly waiting for the GIL and
the thread switch), while the statement itself takes tens of microseconds. Here a
statement is compiled once per shape (SQLAlchemy Core stays the one definition of the
SQL) and run by the driver:

- SQLite: one ``sqlite3`` connection of the event loop's thread, autocommit and
  query-only. A statement runs and is fetched whole in place (nothing is awaited), so
  every read is its own snapshot, ends before the next task runs, and never holds the
  WAL back. It never waits on a lock in the loop: its busy timeout is 0, and the rare
  read that finds the file busy (a checkpoint truncating the WAL, another process
  recovering it) is run again in a thread with the configured busy timeout.
- PostgreSQL: a small pool of psycopg ``AsyncConnection``s in autocommit mode (psycopg's
  asyncio is native: no thread); statements run often are prepared server-side by
  psycopg. There is no ping before each use: a pooled connection that turns out to be
  dead is dropped and the read sent once more on a new one (a read is safe to repeat).

Connection-class failures raise ``DatabaseUnavailable`` (503), as ``Database.read()``'s
do; anything else propagates unchanged.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Hashable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import CompoundSelect, Select
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from openjules.store.inline_sqlite import is_busy
from openjules.store.postgres_connections import PoolOptions, PostgresConnections
from openjules.timing import Part, span

Row = dict[str, Any]
Statement = Select[Any] | CompoundSelect[Any]
# Turns connection-class failures into DatabaseUnavailable (``database.translated``).
Translate = Callable[[], AbstractContextManager[None]]
# Compiled statements kept per database: a few fixed shapes plus one per distinct list
# filter clients send; past this many the cache starts over.
MAX_COMPILED = 512


@dataclass(frozen=True)
class _Compiled:
    statement: Statement
    sql: str
    defaults: dict[str, Any]  # bind values baked into the statement (filter literals)
    columns: tuple[str, ...]


def _compile(statement: Statement, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    return _Compiled(
        statement=statement,
        sql=compiled.string,
        defaults={k: v for k, v in compiled.params.items() if v is not None},
        columns=tuple(str(c.key) for c in statement.selected_columns),
    )


class DirectReads:
    """``await reads.rows(key, build, params)``: the rows of the SELECT that ``build()``
    returns (called once per ``key``: the statement's shape), with its named
    ``bindparam``s taken from ``params``, as dicts by column key."""

    def __init__(self, dialect: Dialect, *, translated: Translate) -> None:
        self._dialect = dialect
        self._translated = translated
        self._compiled: dict[Hashable, _Compiled] = {}

    def _statement(self, key: Hashable, build: Callable[[], Statement]) -> _Compiled:
        found = self._compiled.get(key)
        if found is None:
            if len(self._compiled) >= MAX_COMPILED:
                self._compiled.clear()
            found = self._compiled[key] = _compile(build(), self._dialect)
        return found

    async def rows(
        self, key: Hashable, build: Callable[[], Statement], params: Mapping[str, Any]
    ) -> list[Row]:
        compiled = self._statement(key, build)
        columns = compiled.columns
        raw = await self._tuples(compiled, params)
        return [dict(zip(columns, row, strict=True)) for row in raw]

    async def tuples(
        self, key: Hashable, build: Callable[[], Statement], params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """``rows``, as tuples in the order of the statement's columns."""
        return await self._tuples(self._statement(key, build), params)

    async def _tuples(
        self, compiled: _Compiled, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        values = {**compiled.defaults, **params} if compiled.defaults else dict(params)
        with span(Part.DATABASE):
            return await self._run(compiled, values)

    async def first(
        self, key: Hashable, build: Callable[[], Statement], params: Mapping[str, Any]
    ) -> Row | None:
        found = await self.rows(key, build, params)
        return found[0] if found else None

    async def _run(self, compiled: _Compiled, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connections held (the object stays usable: it reconnects)."""


class _EngineReads(DirectReads):
    """Through the SQLAlchemy engine after all: for databases the direct drivers do not
    serve (an in-memory SQLite database is private to its connection)."""

    def __init__(self, engine: AsyncEngine, *, translated: Translate) -> None:
        super().__init__(engine.dialect, translated=translated)
        self._engine = engine

    async def _run(self, compiled: _Compiled, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self._translated():
            async with self._engine.connect() as conn:
                result = await conn.execute(compiled.statement, params)
                return [tuple(r) for r in result.all()]


class _SqliteReads(DirectReads):
    def __init__(self, path: Path, *, busy_timeout_seconds: float, translated: Translate) -> None:
        super().__init__(pysqlite.dialect(paramstyle="named"), translated=translated)
        self._path = path
        self._busy_timeout_seconds = busy_timeout_seconds
        self._conn: sqlite3.Connection | None = None

    def _connect(self, busy_timeout_seconds: float) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            timeout=busy_timeout_seconds,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=MAX_COMPILED,
        )
        conn.execute("PRAGMA query_only=1")
        return conn

    async def _run(self, compiled: _Compiled, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self._translated():
            try:
                if self._conn is None:
                    self._conn = self._connect(0.0)
                return self._conn.execute(compiled.sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
            return await asyncio.to_thread(self._run_waiting, compiled.sql, params)

    def _run_waiting(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        conn = self._connect(self._busy_timeout_seconds)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


_IDLE = psycopg.pq.TransactionStatus.IDLE
# Reads sent in one round trip at most (a burst beyond it goes out in several).
MAX_BATCH = 64


@dataclass(frozen=True)
class _Pending:
    sql: str
    params: dict[str, Any]
    future: asyncio.Future[list[tuple[Any, ...]]]


def _resolve(pending: _Pending, rows: list[tuple[Any, ...]]) -> None:
    if not pending.future.done():  # its request may have been cancelled meanwhile
        pending.future.set_result(rows)


def _unreachable(exc: BaseException) -> bool:
    """Whether no statement of a batch could have been answered: no connection (the
    statements' own errors carry a SQLSTATE)."""
    if isinstance(exc, psycopg.OperationalError):
        return exc.sqlstate is None or exc.sqlstate.startswith(("08", "53", "57P"))
    return isinstance(exc, psycopg.InterfaceError | OSError | TimeoutError)


def _fail(batch: list[_Pending], exc: BaseException) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)


class _PostgresReads(DirectReads):
    def __init__(self, conninfo: str, *, options: PoolOptions, translated: Translate) -> None:
        dialect = postgresql_psycopg.dialect()  # type: ignore[no-untyped-call]
        super().__init__(dialect, translated=translated)
        self._pool = PostgresConnections(conninfo, options=options, purpose="read")
        self._pending: list[_Pending] = []
        self._batches: set[asyncio.Future[None]] = set()

    async def _run(self, compiled: _Compiled, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self._translated():
            loop = asyncio.get_running_loop()
            pending = _Pending(compiled.sql, params, loop.create_future())
            self._pending.append(pending)
            if len(self._pending) == 1:
                # After the callbacks ready now: the reads of every request that arrived
                # in the same turn of the loop go out together.
                loop.call_soon(self._start_batch)
            return await pending.future

    def _start_batch(self) -> None:
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        if self._pending:
            asyncio.get_running_loop().call_soon(self._start_batch)
        task = asyncio.ensure_future(self._serve(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _serve(self, batch: list[_Pending]) -> None:
        try:
            await self._pool.acquire()
        except Exception as exc:
            _fail(batch, exc)
            return
        try:
            if len(batch) > 1:
                try:
                    results = await self._query_batch(batch)
                except Exception as exc:
                    if _unreachable(exc):
                        _fail(batch, exc)
                        return
                    # One statement failed: the rest succeed one at a time below, and
                    # the failing one gets its own error.
                else:
                    for pending, rows in zip(batch, results, strict=True):
                        _resolve(pending, rows)
                    return
            for pending in batch:
                if pending.future.done():
                    continue
                try:
                    rows = await self._query(pending.sql, pending.params)
                except Exception as exc:
                    _fail([pending], exc)
                else:
                    _resolve(pending, rows)
        finally:
            self._pool.release()

    async def _query(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        while self._pool.idle:
            conn = self._pool.idle.pop()
            if conn.closed or conn.broken:
                continue
            try:
                return await self._execute(conn, sql, params)
            except psycopg.OperationalError:
                if not conn.closed:
                    raise  # the statement failed, not the connection
                # The pooled connection died while idle (a restart, a cut network): the
                # read was not answered, so it is sent again on a fresh connection.
        return await self._execute(await self._pool.connect(), sql, params)

    async def _query_batch(self, batch: list[_Pending]) -> list[list[tuple[Any, ...]]]:
        """``_query`` of several statements in one round trip (psycopg's pipeline mode)."""
        while self._pool.idle:
            conn = self._pool.idle.pop()
            if conn.closed or conn.broken:
                continue
            try:
                return await self._pipeline(conn, batch)
            except psycopg.OperationalError:
                if not conn.closed:
                    raise
        return await self._pipeline(await self._pool.connect(), batch)

    async def _pipeline(
        self, conn: psycopg.AsyncConnection[Any], batch: list[_Pending]
    ) -> list[list[tuple[Any, ...]]]:
        try:
            async with conn.pipeline():
                cursors = [await conn.execute(p.sql, p.params) for p in batch]
            results = [await cursor.fetchall() for cursor in cursors]
        except BaseException:
            await self._after_failure(conn)
            raise
        self._pool.idle.append(conn)
        return results

    async def _after_failure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """A failed or interrupted exchange may leave the protocol mid-message: such a
        connection is closed; one that only saw its statement fail is pooled again."""
        if conn.broken or conn.info.transaction_status != _IDLE:
            await conn.close()
        else:
            self._pool.idle.append(conn)

    async def _execute(
        self, conn: psycopg.AsyncConnection[Any], sql: str, params: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Run on ``conn``, then pool it again (see ``_after_failure`` for when not)."""
        try:
            cursor = await conn.execute(sql, params)
            rows = await cursor.fetchall()
        except BaseException:
            await self._after_failure(conn)
            raise
        self._pool.idle.append(conn)
        return rows

    async def close(self) -> None:
        if self._batches:
            await asyncio.wait(self._batches)
        await self._pool.close()


def direct_reads(
    url: str,
    *,
    engine: AsyncEngine,
    busy_timeout_seconds: float,
    pool: PoolOptions,
    translated: Translate,
) -> DirectReads:
    """The direct reader for the database at ``url`` (``engine``: its autocommit engine,
    used where no direct driver applies)."""
    parsed = make_url(url)
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "sqlite":
        database = parsed.database
        # In memory (private to its connection) or with driver options: as configured.
        if database in (None, "", ":memory:") or parsed.query:
            return _EngineReads(engine, translated=translated)
        return _SqliteReads(
            Path(database or ""), busy_timeout_seconds=busy_timeout_seconds, translated=translated
        )
    if backend == "postgresql" and driver == "psycopg":
        conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        return _PostgresReads(conninfo, options=pool, translated=translated)
    return _EngineReads(engine, translated=translated)
