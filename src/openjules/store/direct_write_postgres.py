"""PostgreSQL's direct write transactions (``store.direct_write``, ``Database.transact``).

A few psycopg ``AsyncConnection``s (native asyncio, no thread), each transaction a
queue of statements bound on the client (psycopg's ``ClientCursor`` quoting) that goes
out as one simple query (several statements, one message) when a result is read and at
the commit. A create is two round trips ("BEGIN; INSERT …; INSERT …; SELECT webhooks"
and "COMMIT; SELECT pg_notify(…)") where SQLAlchemy made eight; psycopg's pipeline mode
would still pay a socket write and a selector registration per statement.

- Statements run as ``EXECUTE`` of statements prepared once per connection, so the
  server parses and plans them once, as psycopg's automatic preparing did before.
- Change notifications go right after the COMMIT, in the same message (see
  ``_PostgresTransaction.commit``).
- Instead of a ping per use, an idle pooled connection is checked for a server that hung
  up on it (a restart, a cut proxy) by looking, without waiting, for anything to read;
  one that dies unnoticed before the COMMIT was sent has its work done again, once, on a
  new connection (nothing of it can have committed).
"""

from __future__ import annotations

import logging
import select
import weakref
from collections.abc import Hashable, Sequence
from typing import Any

import psycopg
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg

from openjules.store import changes
from openjules.store.changes import Change
from openjules.store.postgres_connections import PoolOptions, PostgresConnections
from openjules.store.writer import (
    Build,
    Compiled,
    DirectWrites,
    Params,
    T,
    Transaction,
    Work,
    WriteStatements,
)

log = logging.getLogger("openjules.store")


_IDLE = psycopg.pq.TransactionStatus.IDLE
_INTRANS = (psycopg.pq.TransactionStatus.INTRANS, psycopg.pq.TransactionStatus.INERROR)


class _PostgresTransaction(Transaction):
    """Statements are bound on the client and queued; the queue goes out as one message
    (several statements in one simple query) when a result is read and at the commit."""

    dialect_name = "postgresql"

    def __init__(
        self,
        cursor: psycopg.AsyncClientCursor[Any],
        statements: WriteStatements,
        *,
        origin: str,
        prepared: _Prepared,
    ) -> None:
        super().__init__(statements, origin=origin)
        self._cursor = cursor
        self._prepared = prepared
        # PREPAREs in the batch not yet sent: a failed batch leaves unknown which ran.
        self.preparing: list[str] = []
        # Positional parameters (``%s``): the queue's statements and values simply follow
        # one another, and psycopg binds the whole batch at once.
        self._queued: list[str] = ["BEGIN"]
        self._values: list[Any] = []
        self._notices: list[dict[str, str]] = []  # sent after the COMMIT (see commit)
        self.committing = False

    def _queue(self, key: Hashable, build: Build, params: Params) -> None:
        """Queue the statement as ``EXECUTE`` of a statement prepared on the connection
        (``PREPARE`` queued before it the first time): the server parses and plans each
        statement once per connection, not on every create."""
        compiled = self._statements.get(key, build, params)
        name, execute = self._prepared.names(compiled)
        if name not in self._prepared.done and name not in self.preparing:
            # $n parameters; a literal % of the SQL kept from psycopg's own placeholders.
            self._queued.append(f"PREPARE {name} AS {compiled.sql.replace('%', '%%')}")
            self.preparing.append(name)
        self._queued.append(execute)
        self._values.extend(compiled.positional(params))

    async def _send(self) -> None:
        """Everything queued, in one round trip; the cursor is left on the last result."""
        batch, values = "; ".join(self._queued), self._values
        self._queued, self._values = [], []
        await self._cursor.execute(batch, values)
        self._prepared.done.update(self.preparing)
        self.preparing = []
        while self._cursor.nextset():
            pass

    async def rows(self, key: Hashable, build: Build, params: Params) -> list[tuple[Any, ...]]:
        self._queue(key, build, params)
        await self._send()
        if self._cursor.description is None:  # a statement that returns no rows
            return []
        return await self._cursor.fetchall()

    async def run(self, key: Hashable, build: Build, params: Params) -> None:
        self._queue(key, build, params)

    async def run_many(self, key: Hashable, build: Build, rows: Sequence[Params]) -> None:
        for row in rows:
            self._queue(key, build, row)

    async def commit(self) -> None:
        """COMMIT, then the change notifications, in one round trip. Sent after the
        COMMIT (each in a transaction of its own, which writes nothing), a notification
        reaches other processes as one sent inside would, at the commit; but the commit
        does not hold PostgreSQL's one lock for notifying transactions while its WAL is
        flushed, which would make every create of every process commit one at a time."""
        self.committing = True  # from here, a failure leaves the outcome unknown
        self._queued.append("COMMIT")
        notices, self._notices = self._notices, []
        for params in notices:
            self._queue("changes.notify", lambda: changes.NOTIFY, params)
        try:
            await self._send()
        except psycopg.Error as exc:
            if not notices or not _failed_after_commit(self._cursor.connection, exc):
                raise
            # Committed: other processes miss this change until they look again.
            log.warning("a change notification could not be sent after a commit: %s", exc)

    async def _notify(self, *, owner_id: int, session_id: str) -> None:
        self._notices.append(
            changes.notify_params(origin=self._origin, owner_id=owner_id, session_id=session_id)
        )


def _failed_after_commit(conn: psycopg.AsyncConnection[Any], exc: psycopg.Error) -> bool:
    """Whether the error of a ``COMMIT; notifications`` exchange came from a notification:
    the connection is fine and out of the transaction (a statement that failed inside it
    would have left it aborted, not ended) and the error is none a COMMIT raises (an
    integrity or serialization failure, a connection-class one)."""
    state = exc.sqlstate or ""
    return (
        not conn.broken
        and conn.info.transaction_status == _IDLE
        and bool(state)
        and not state.startswith(("08", "23", "40", "53", "57"))
    )


class _Names:
    """The name each statement is prepared under (the same on every connection) and the
    ``EXECUTE`` that runs it with its parameters bound by psycopg."""

    def __init__(self) -> None:
        self._by_sql: dict[str, tuple[str, str]] = {}

    def get(self, compiled: Compiled) -> tuple[str, str]:
        found = self._by_sql.get(compiled.sql)
        if found is None:
            name = f"openjules_{len(self._by_sql) + 1}"
            arguments = ", ".join(["%s"] * len(compiled.positions))
            found = (name, f"EXECUTE {name}({arguments})" if arguments else f"EXECUTE {name}")
            self._by_sql[compiled.sql] = found
        return found


class _Prepared:
    """What is prepared on one connection (a prepared statement outlives a rollback)."""

    def __init__(self, names: _Names) -> None:
        self.names = names.get
        self.done: set[str] = set()


class PostgresWrites(DirectWrites):
    def __init__(self, conninfo: str, *, options: PoolOptions) -> None:
        # $n parameters: the SQL of a PREPARE.
        dialect = postgresql_psycopg.dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
        self._statements = WriteStatements(dialect)
        self._names = _Names()
        self._prepared: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], _Prepared] = (
            weakref.WeakKeyDictionary()
        )
        self._pool = PostgresConnections(conninfo, options=options, purpose="write")

    async def transact(self, work: Work[T], *, origin: str) -> tuple[T, set[Change]]:
        await self._pool.acquire()
        try:
            conn, pooled = await self._checkout()
            try:
                return await self._attempt(conn, work, origin=origin)
            except _Unsent as unsent:
                if not pooled:
                    raise unsent.error from None
            # A pooled connection that died unnoticed, before anything could commit (the
            # COMMIT was not sent yet): the work is done again, once, on a new one.
            try:
                return await self._attempt(await self._pool.connect(), work, origin=origin)
            except _Unsent as unsent:
                raise unsent.error from None
        finally:
            self._pool.release()

    async def _attempt(
        self, conn: psycopg.AsyncConnection[Any], work: Work[T], *, origin: str
    ) -> tuple[T, set[Change]]:
        prepared = self._prepared.get(conn)
        if prepared is None:
            prepared = self._prepared[conn] = _Prepared(self._names)
        transaction = _PostgresTransaction(
            psycopg.AsyncClientCursor(conn), self._statements, origin=origin, prepared=prepared
        )
        try:
            result = await work(transaction)
            await transaction.commit()
        except Exception as exc:
            if transaction.preparing:  # which of its PREPAREs ran is unknown
                await conn.close()
            await self._after_failure(conn)
            if _unreachable(exc) and not transaction.committing:
                raise _Unsent(exc) from exc
            raise
        except BaseException:
            await self._after_failure(conn)
            raise
        self._pool.idle.append(conn)
        return result, transaction.announced

    async def _checkout(self) -> tuple[psycopg.AsyncConnection[Any], bool]:
        """A connection, and whether it was pooled (rather than opened now)."""
        while self._pool.idle:
            conn = self._pool.idle.pop()
            if _alive(conn):
                return conn, True
            await conn.close()
        return await self._pool.connect(), False

    async def _after_failure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Roll back what the failed transaction left open and pool the connection again;
        one interrupted mid-exchange (or that cannot roll back) is closed instead."""
        status = conn.info.transaction_status
        if not conn.broken and status in _INTRANS:
            try:
                await conn.execute("ROLLBACK")
            except psycopg.Error:
                pass
            else:
                status = conn.info.transaction_status
        if conn.broken or status != _IDLE:
            await conn.close()
        else:
            self._pool.idle.append(conn)

    async def close(self) -> None:
        await self._pool.close()


def _alive(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle connection looks usable: not closed, and nothing arrived on it
    while it was idle. A server that hung up (a restart, a terminated backend, a cut
    proxy) leaves its last words or the end of the stream to read; one look at the
    socket, without waiting, finds that out where SQLAlchemy's pre-ping sends a query.
    (Anything else arriving unasked is rare; such a connection is just replaced.)"""
    if conn.closed or conn.broken:
        return False
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN)
    return not poller.poll(0)


class _Unsent(Exception):
    """The connection failed before the COMMIT was sent: nothing was committed."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection failed (the statements' own errors carry a
    SQLSTATE of their class)."""
    if isinstance(exc, psycopg.OperationalError):
        return exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P"))
    return isinstance(exc, psycopg.InterfaceError | OSError)
