"""Engine setup and transactions for SQLite (embedded default) and PostgreSQL.

Two promises to the callers of ``read()``, ``write()`` and ``transact()`` (a write
transaction straight through the driver, ``store.direct_write``):

- On SQLite, writes through one ``Database`` never fail with "database is locked" (a
  process has one: the API and the engine share it): they take turns on one fair,
  asynchronous lock (a queue in the event loop) before they open a
  transaction, so at most one connection of the process ever waits on SQLite's own lock.
  A writer of *another* process (an ``openjules worker`` or a second HTTP worker beside
  the server, the CLI) is waited for asynchronously, up to the busy timeout.
- A database that cannot be reached (a connection-class failure: refused, dropped,
  timed out, no pooled connection free) raises ``DatabaseUnavailable``, which the API
  answers with 503 UNAVAILABLE and Retry-After; anything else (an integrity or data
  error, a bug) propagates unchanged. Getting a connection is retried once, since
  nothing of the caller's work has been sent yet; a statement or a commit never is
  (except that a direct write on PostgreSQL does its work again, once, on a new
  connection when a pooled one turns out dead before its COMMIT went out).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from openjules._errors import Unavailable
from openjules.store.change_peers import LocalPeers
from openjules.store.changes import ORIGIN_KEY, ChangeFeed, take_announced
from openjules.store.direct import DirectReads, direct_reads
from openjules.store.direct_write import direct_writes
from openjules.store.inline_sqlite import (
    BUSY_FIRST_PAUSE_S,
    BUSY_MAX_PAUSE_S,
    InlineConnection,
    is_busy,
)
from openjules.store.postgres_connections import PoolOptions
from openjules.store.writer import ConnectionWriter, DirectWrites, Writer
from openjules.timing import Part, span

if TYPE_CHECKING:
    from openjules.settings import Settings

log = logging.getLogger("openjules.store")
T = TypeVar("T")

# How long a write waits for SQLite's lock held by another process before it fails.
DEFAULT_BUSY_TIMEOUT_S = 10.0
# A WAL file past this size is checkpointed and truncated after the write that grew it:
# readers that always overlap could otherwise keep the WAL from ever starting over.
SQLITE_WAL_LIMIT_BYTES = 64 * 1024 * 1024
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_POOL_TIMEOUT_S = 5.0
DEFAULT_CHANGE_POLL_S = 0.25
# How long ``dispose`` waits for connections still being returned to their pools.
CLOSE_WAIT_S = 5.0
# What a client of the API is told to wait before trying again during an outage.
RETRY_AFTER_S = 5
UNAVAILABLE_MESSAGE = "The database is unavailable. Try again later."
# A second attempt at a connection waits this long: a server that is restarting or a
# pooled connection that just died usually needs a moment, not a hammering.
RECONNECT_PAUSE_S = 0.2

# Enough pooled connections for the server's concurrency: an overflow connection is
# closed on return, and reopening one (thread, file, pragmas) costs milliseconds. Each of
# the two engines may open as many again as overflow. Several serving processes
# (`serve --http-workers N`) split this budget, so up to four of them together open no
# more connections to PostgreSQL (default max_connections: 100) than one process would;
# below MIN_POOL_SIZE a process would wait on its own pool instead.
POOL_SIZE = 20
MIN_POOL_SIZE = 5

# PostgreSQL connections of the API's direct reads (``store.direct``): reads that arrive
# together share one round trip, so a few connections carry a busy server, and every
# serving process holds its own (a server's max_connections is shared by all of them).
DIRECT_READ_CONNECTIONS = 4
# And of its direct write transactions (``transact``, ``store.direct_write``; two round
# trips each), at most half the pool size. They come out of the write engine's overflow,
# so a process opens no more connections than before they existed.
DIRECT_WRITE_CONNECTIONS = 8

# SQLite errors that say the file cannot be used right now, rather than that the
# statement is wrong (e.g. "no such table", "Expression tree is too large": bugs, 500).
_SQLITE_UNAVAILABLE = (
    "database is locked",
    "unable to open database file",
    "disk i/o error",
    "database or disk is full",
)
# SQLSTATE prefixes of PostgreSQL errors about the connection or the server's state
# (08 connection exception, 53 insufficient resources, 57P0x shutting down / starting
# up). A psycopg OperationalError without SQLSTATE was raised by the client: connection
# refused, lost or timed out.
_POSTGRES_UNAVAILABLE = ("08", "53", "57P")


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached (or answered with a connection-class error): the
    API answers 503 UNAVAILABLE with Retry-After, never 500."""


def is_connection_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the database cannot be reached or used
    right now, so that trying again later can succeed."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DatabaseUnavailable):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sa_exc.TimeoutError):  # no pooled connection came free
            return True
        if isinstance(current, psycopg.InterfaceError):  # "the connection is closed"
            return True
        if isinstance(current, psycopg.OperationalError):
            state = current.sqlstate
            return state is None or state.startswith(_POSTGRES_UNAVAILABLE)
        if isinstance(current, sqlite3.OperationalError):
            return str(current).lower().startswith(_SQLITE_UNAVAILABLE)
        if isinstance(current, ConnectionError | TimeoutError):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.orig is not None:
            current = current.orig
            continue
        current = current.__cause__
    return False


def unavailable(cause: BaseException | None = None) -> DatabaseUnavailable:
    error = DatabaseUnavailable(UNAVAILABLE_MESSAGE, retry_after_seconds=RETRY_AFTER_S)
    error.__cause__ = cause
    return error


def as_unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """``exc`` as the 503 it means when it is a connection-class failure, else None."""
    if isinstance(exc, DatabaseUnavailable):
        return exc
    return unavailable(exc) if is_connection_failure(exc) else None


class Database:
    """Two engines on one database: autocommit reads and transactional writes.

    Reads run in autocommit mode, each statement on its own snapshot, with no
    BEGIN/COMMIT/ROLLBACK round trips. On a SQLite file both engines' connections run
    in the event loop's thread (``store.inline_sqlite``: no thread hand-off per call),
    and the API's hottest reads bypass SQLAlchemy altogether (``reads``,
    ``store.direct``).
    On SQLite that also keeps every read snapshot as short as one statement (results are
    fetched whole), so readers never hold the WAL back for long.

    ``write()`` on SQLite first waits its turn on the process's writer lock, then takes
    SQLite's write lock up front (``BEGIN IMMEDIATE``): two deferred transactions that
    both upgrade to writers would fail with SQLITE_BUSY instead of waiting. One Database
    serves a whole server process (the API and the engine share it); a second one in
    the same process (the test kit's one-shot writes) meets it on SQLite's lock, as
    another process would.
    """

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_S,
        pool_timeout_seconds: float = DEFAULT_POOL_TIMEOUT_S,
        busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_S,
        change_poll_seconds: float = DEFAULT_CHANGE_POLL_S,
        pool_size: int = POOL_SIZE,
        peers: LocalPeers | None = None,
    ) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        direct_writers = max(1, min(DIRECT_WRITE_CONNECTIONS, pool_size // 2))
        options = _EngineOptions(
            echo=echo,
            is_sqlite=self.is_sqlite,
            connect_timeout_seconds=connect_timeout_seconds,
            pool_timeout_seconds=pool_timeout_seconds,
            busy_timeout_seconds=busy_timeout_seconds,
            pool_size=pool_size,
            overflow=pool_size,
        )
        self._busy_timeout_seconds = busy_timeout_seconds
        file = sqlite_path(url)
        # Connections run in the loop's thread where a file is used (see
        # store.inline_sqlite); an in-memory database keeps aiosqlite's one connection.
        # (So does a URL with driver options: they are aiosqlite's to interpret.)
        self._inline_writes = file is not None and not parsed.query
        self.engine: AsyncEngine = _create_engine(
            url,
            options=(
                options
                if self.is_sqlite
                else dataclasses.replace(options, overflow=max(0, pool_size - direct_writers))
            ),
            autocommit=False,
            inline_file=file if self._inline_writes else None,
        )
        self.read_engine: AsyncEngine = _create_engine(
            url,
            options=options,
            autocommit=True,
            inline_file=file if self._inline_writes else None,
        )
        # FIFO: a writer that waits is served before any writer that comes later.
        self._write_turn = asyncio.Lock()
        self._writer: asyncio.Task[Any] | None = None
        self._wal_path = Path(f"{file}-wal") if file else None
        pool = PoolOptions(
            size=DIRECT_READ_CONNECTIONS,
            connect_timeout_seconds=connect_timeout_seconds,
            pool_timeout_seconds=pool_timeout_seconds,
            reconnect_pause_seconds=RECONNECT_PAUSE_S,
            connect_args=_postgres_connect_args(connect_timeout_seconds),
        )
        # The API's hot reads and writes, straight through the driver (``store.direct``,
        # ``store.direct_write``; writes: None where only SQLAlchemy serves the URL).
        self.reads: DirectReads = direct_reads(
            url,
            engine=self.read_engine,
            busy_timeout_seconds=busy_timeout_seconds,
            pool=pool,
            translated=translated,
        )
        self._direct_writes: DirectWrites | None = direct_writes(
            url,
            busy_timeout_seconds=busy_timeout_seconds,
            pool=dataclasses.replace(pool, size=direct_writers),
        )
        # Who hears about changed sessions in this process (started by whoever needs it).
        self.changes = ChangeFeed(database=self, poll_seconds=change_poll_seconds, peers=peers)
        # Connections being returned to their pool (see ``_connected``).
        self._closing: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, settings: Settings, *, peers: LocalPeers | None = None) -> Database:
        """``peers``: the other processes of this server (``store.change_peers``)."""
        return cls(
            settings.resolved_database_url(),
            echo=settings.database_echo,
            connect_timeout_seconds=settings.database_connect_timeout_seconds,
            pool_timeout_seconds=settings.database_pool_timeout_seconds,
            busy_timeout_seconds=settings.database_busy_timeout_seconds,
            change_poll_seconds=settings.change_poll_seconds,
            # http_workers is the resolved count in each process `serve` starts.
            pool_size=max(MIN_POOL_SIZE, POOL_SIZE // max(1, settings.http_workers)),
            peers=peers,
        )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        with span(Part.DATABASE), translated():
            async with _connected(self.read_engine, self._closing) as conn:
                yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction. The session changes it announced (``store.changes``) are
        published to this process's listeners once it has committed."""
        with span(Part.DATABASE), translated():
            if not self.is_sqlite:
                async with _connected(self.engine, self._closing) as conn:
                    async with self._announcing(conn), conn.begin():
                        yield conn
                    self.changes.publish(take_announced(conn))
                return
            async with self._sqlite_turn():
                async with self._sqlite_transaction() as conn:
                    yield conn
                await self._bound_wal()

    async def transact(self, work: Callable[[Writer], Awaitable[T]]) -> T:
        """``work(writer)`` in one write transaction, as ``write()`` runs one (the same
        promises; changes published after the commit), straight through the driver where
        ``store.direct_write`` serves the database. ``work`` may run a second time (on
        PostgreSQL, after a pooled connection died before the COMMIT was sent): what it
        changes outside the database must not depend on the attempt that failed."""
        direct = self._direct_writes
        if direct is None:
            async with self.write() as conn:
                return await work(ConnectionWriter(conn))
        origin = self.changes.origin
        with span(Part.DATABASE), translated():
            if not self.is_sqlite:
                result, announced = await direct.transact(work, origin=origin)
                self.changes.publish(announced)
                return result
            async with self._sqlite_turn():
                result, announced = await direct.transact(work, origin=origin)
                self.changes.publish(announced)
                await self._bound_wal()
            return result

    @asynccontextmanager
    async def _sqlite_transaction(self) -> AsyncIterator[AsyncConnection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``. The write connections run in the event
        loop's thread (``store.inline_sqlite``) and never wait on SQLite's lock there: while
        another process holds it, this waits asynchronously and tries again, up to the busy
        timeout, then fails as SQLite's own busy timeout would ("database is locked")."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._busy_timeout_seconds
        pause = BUSY_FIRST_PAUSE_S
        while True:
            async with _connected(self.engine, self._closing) as conn:
                await conn.execution_options(sqlite_immediate=True)
                try:
                    transaction = await conn.begin()
                except sa_exc.OperationalError as exc:
                    if not self._inline_writes or not is_busy(exc) or loop.time() >= deadline:
                        raise
                else:
                    try:
                        async with self._announcing(conn):
                            yield conn
                    except BaseException:
                        await transaction.rollback()
                        raise
                    await transaction.commit()
                    self.changes.publish(take_announced(conn))
                    return
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(pause * 2, BUSY_MAX_PAUSE_S)

    @asynccontextmanager
    async def _announcing(self, conn: AsyncConnection) -> AsyncIterator[None]:
        """Mark the transaction as this process's; a rolled-back one announced nothing."""
        take_announced(conn)  # whatever an earlier user of the pooled connection left
        conn.info[ORIGIN_KEY] = self.changes.origin
        try:
            yield
        except BaseException:
            take_announced(conn)
            raise

    @asynccontextmanager
    async def _sqlite_turn(self) -> AsyncIterator[None]:
        current = asyncio.current_task()
        if self._writer is not None and self._writer is current:
            # It would wait for itself forever: a bug to surface at once.
            raise RuntimeError("a write transaction was opened inside another one")
        async with self._write_turn:
            self._writer = current
            try:
                yield
            finally:
                self._writer = None

    async def _bound_wal(self) -> None:
        """Checkpoint and truncate an oversized WAL, between transactions and still in
        this writer's turn (so no writer of the process waits behind it longer than one
        checkpoint). Readers in flight are waited for, up to the busy timeout."""
        if self._wal_path is None:
            return
        try:
            size = self._wal_path.stat().st_size
        except OSError:
            return
        if size <= SQLITE_WAL_LIMIT_BYTES:
            return
        database = self._wal_path.with_name(self._wal_path.name.removesuffix("-wal"))
        try:
            # In a thread, on a connection of its own: it waits for readers in flight,
            # which the loop's thread (where the pooled connections run) must not do.
            busy = await asyncio.to_thread(
                _checkpoint, database, busy_timeout_seconds=self._busy_timeout_seconds
            )
        except sqlite3.Error as exc:
            log.warning("checkpointing the WAL (%d bytes) failed: %s", size, exc)
            return
        if busy:
            log.info("the WAL (%d bytes) could not be truncated yet: readers in flight", size)

    async def ping(self) -> None:
        """Raise ``DatabaseUnavailable`` unless the database answers a trivial query."""
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.changes.stop()
        if self._closing:  # releases that outlived a cancelled caller end first
            await asyncio.wait(self._closing, timeout=CLOSE_WAIT_S)
        await self.reads.close()
        if self._direct_writes is not None:
            await self._direct_writes.close()
        await self.engine.dispose()
        await self.read_engine.dispose()


def _checkpoint(database: Path, *, busy_timeout_seconds: float) -> bool:
    """Checkpoint and truncate the WAL of ``database``; whether readers kept it from it."""
    conn = sqlite3.connect(database, timeout=busy_timeout_seconds, isolation_level=None)
    try:
        row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    return bool(row and row[0])


@contextmanager
def translated() -> Iterator[None]:
    """Connection-class failures become ``DatabaseUnavailable``; the rest propagate."""
    try:
        yield
    except Exception as exc:
        outage = as_unavailable(exc)
        if outage is None or outage is exc:
            raise
        raise outage from exc


@asynccontextmanager
async def _connected(
    engine: AsyncEngine, closing: set[asyncio.Task[None]]
) -> AsyncIterator[AsyncConnection]:
    """A connection, a second time on a fresh one if the first attempt cannot connect
    (nothing has been sent yet, so trying again is safe for a write too)."""
    try:
        conn = await engine.connect()
    except Exception as exc:
        if not is_connection_failure(exc):
            raise
        await asyncio.sleep(RECONNECT_PAUSE_S)
        conn = await engine.connect()
    try:
        yield conn
    finally:
        # Returned to the pool in full even when the caller is cancelled meanwhile (a
        # session cancelled or paused mid-write): a reset cut short leaves the pooled
        # connection half-used, and the next task that checks it out fails. ``closing``
        # holds the release until it ends, so ``dispose`` waits for it: one left running
        # when the process stops could leave aiosqlite's (non-daemon) thread behind.
        release = asyncio.ensure_future(conn.close())
        closing.add(release)
        release.add_done_callback(closing.discard)
        await asyncio.shield(release)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite database URL; None for other databases and in-memory ones."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database or "")


def ensure_sqlite_directory(url: str) -> None:
    """SQLite creates the file but not its directory."""
    if file := sqlite_path(url):
        file.parent.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True, kw_only=True)
class _EngineOptions:
    echo: bool
    is_sqlite: bool
    connect_timeout_seconds: float
    pool_timeout_seconds: float
    busy_timeout_seconds: float
    pool_size: int
    overflow: int  # connections opened beyond the pool when it is busy (closed on return)


def _create_engine(
    url: str, *, options: _EngineOptions, autocommit: bool, inline_file: Path | None = None
) -> AsyncEngine:
    kwargs: dict[str, Any] = {
        "echo": options.echo,
        "pool_size": options.pool_size,
        "max_overflow": options.overflow,
        # A request waits this long for a pooled connection, not SQLAlchemy's 30 s.
        "pool_timeout": options.pool_timeout_seconds,
    }
    if autocommit:
        kwargs.update(isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True)
    if options.is_sqlite:
        ensure_sqlite_directory(url)
        if inline_file is not None:
            path = inline_file
            kwargs["async_creator"] = lambda: InlineConnection.open(path)
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = _postgres_connect_args(options.connect_timeout_seconds)
    engine = create_async_engine(url, **kwargs)
    if options.is_sqlite:
        busy_ms = max(1, round(options.busy_timeout_seconds * 1000))
        if inline_file and not autocommit:
            # Inline writers never wait in the loop's thread (Database waits instead).
            # Readers keep the busy timeout: in WAL mode they wait only while SQLite
            # recovers a WAL (after a crash), which is rare and short.
            busy_ms = 0
        _configure_sqlite(engine, autocommit=autocommit, busy_timeout_ms=busy_ms)
    return engine


def _postgres_connect_args(connect_timeout_seconds: float) -> dict[str, Any]:
    return {
        # libpq counts whole seconds; an unreachable server fails fast, not after the
        # operating system's TCP timeout of minutes.
        "connect_timeout": max(1, round(connect_timeout_seconds)),
        # A server that vanished without closing the connection is noticed within
        # about 10 + 3 * 5 seconds instead of never.
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }


def _configure_sqlite(engine: AsyncEngine, *, autocommit: bool, busy_timeout_ms: int) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # The busy timeout first: setting the journal mode may itself wait for a lock.
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA journal_mode=WAL")
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
