"""SQLite connections that run their statements in the event loop's own thread.

Why: aiosqlite runs every call (each statement, fetch, commit) in a thread of its own and
hands the result back to the loop: a write transaction of six statements costs a dozen
thread switches and GIL hand-offs, about 3 ms on a busy server, for work SQLite does in
tens of microseconds. ``Database`` serializes the process's writers anyway (one turn at a
time), a statement of a write transaction never waits on a lock once ``BEGIN IMMEDIATE``
holds SQLite's, and in WAL mode readers do not wait for writers; so running a statement
in place costs the loop only the statement itself. Waiting for another *process*'s write
lock is the one wait: a writer's busy timeout here is 0, and ``Database`` waits for that
lock asynchronously (``Database._sqlite_transaction``). What the loop's thread still
pays for: a long statement, and SQLite's automatic checkpoint when a commit fills the WAL.

These objects stand in for ``aiosqlite.Connection`` under SQLAlchemy's aiosqlite dialect
(``create_async_engine(..., async_creator=...)``), so SQLAlchemy, its pool and every caller
of ``Database.write()`` are unchanged. Only what that dialect uses is provided.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# How long a writer first waits for another process's SQLite lock before trying again
# (doubling up to the second value): about what SQLite's own busy handler does.
BUSY_FIRST_PAUSE_S = 0.001
BUSY_MAX_PAUSE_S = 0.05


class InlineCursor:
    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _InlineQueue:
    """aiosqlite's queue of calls for its thread: here each call runs as it is queued."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)


class InlineConnection:
    """An ``aiosqlite.Connection`` look-alike over a ``sqlite3`` connection used in place."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._connection: sqlite3.Connection | None = conn
        self._tx = _InlineQueue()

    @classmethod
    async def open(cls, path: Path) -> InlineConnection:
        return cls(sqlite3.connect(path, timeout=0, check_same_thread=False))

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor())

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        return InlineCursor(self._conn.execute(sql, parameters))

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is SQLite's "database is locked"."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, sqlite3.OperationalError):
            name = getattr(current, "sqlite_errorname", "")
            return name.startswith("SQLITE_BUSY") or str(current).lower().startswith(
                "database is locked"
            )
        current = getattr(current, "orig", None) or current.__cause__
    return False
