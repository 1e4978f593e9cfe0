"""What a write transaction's statements run on: SQLAlchemy's ``AsyncConnection`` or a
direct driver transaction (``store.direct_write``), behind one small interface.

Why: a write through SQLAlchemy's asyncio layer costs about a millisecond of CPU beyond
its statements (a pool checkout and a greenlet switch per statement, events, result
objects, the connection's release task), several times what SQLite or a pipelined
PostgreSQL exchange needs for the statements themselves. The hottest writes (creating a
session, the agent's step, a person's verbs, every state transition) therefore run on the
driver; the code that writes them stays one definition, written against ``Writer``, and
takes SQLAlchemy's connection (the rest of the store, tests) or the direct transaction
alike. Statements are SQLAlchemy Core built once per shape
(``key``), as ``store.direct`` does for reads, so the SQL is written once.

Here too: what the direct transactions of both drivers share (compiled statements,
announced changes) and the ``DirectWrites`` interface ``Database.transact`` runs them by.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import Insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.expression import Executable

from openjules.store import changes

if TYPE_CHECKING:
    from openjules.store.changes import Change

Build = Callable[[], Executable]
Params = Mapping[str, Any]
# Statements kept per writer (a handful of fixed shapes); past this many it starts over.
MAX_STATEMENTS = 256


class Writer(Protocol):
    """One open write transaction."""

    @property
    def dialect_name(self) -> str: ...

    async def rows(self, key: Hashable, build: Build, params: Params) -> list[tuple[Any, ...]]:
        """The rows of the statement ``build()`` returns (built once per ``key``)."""
        ...

    async def run(self, key: Hashable, build: Build, params: Params) -> None:
        """Run a statement whose result nobody reads (it may be sent later, with the next
        one that is read or with the commit; its error then surfaces there)."""
        ...

    async def run_many(self, key: Hashable, build: Build, rows: Sequence[Params]) -> None:
        """``run`` once per parameter set in ``rows`` (an insert of several rows)."""
        ...

    async def announce(self, *, owner_id: int, session_id: str) -> None:
        """``changes.announce``: published once the transaction has committed."""
        ...

    @property
    def memo(self) -> dict[Hashable, Any]:
        """What the transaction's statements learned and others can reuse (the session
        row it locked, the owner's webhooks), kept for this transaction only."""
        ...


class Statements:
    """The statements of one writer, built once per key (a dict look-up after that)."""

    def __init__(self) -> None:
        self._built: dict[Hashable, Executable] = {}

    def get(self, key: Hashable, build: Build) -> Executable:
        found = self._built.get(key)
        if found is None:
            if len(self._built) >= MAX_STATEMENTS:
                self._built.clear()
            found = self._built[key] = build()
        return found


# Shared by every ConnectionWriter: statements do not depend on the connection (keys of
# dialect-specific ones name their dialect).
_STATEMENTS = Statements()


# conn.info key of a ConnectionWriter's memo.
MEMO_KEY = "openjules_memo"


class ConnectionWriter:
    """``Writer`` over SQLAlchemy's connection, inside the caller's transaction."""

    __slots__ = ("conn",)

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @property
    def dialect_name(self) -> str:
        return self.conn.dialect.name

    @property
    def memo(self) -> dict[Hashable, Any]:
        # Kept on the connection with the transaction it belongs to (writers of one
        # transaction share it; a later transaction can never be mistaken for it).
        sync = self.conn.sync_connection
        transaction = sync.get_transaction() if sync is not None else None
        kept = self.conn.info.get(MEMO_KEY)
        if kept is None or kept[0] is not transaction:
            kept = self.conn.info[MEMO_KEY] = (transaction, {})
        memo: dict[Hashable, Any] = kept[1]
        return memo

    async def rows(self, key: Hashable, build: Build, params: Params) -> list[tuple[Any, ...]]:
        result = await self.conn.execute(_STATEMENTS.get(key, build), dict(params))
        return [tuple(row) for row in result.all()] if result.returns_rows else []

    async def run(self, key: Hashable, build: Build, params: Params) -> None:
        await self.conn.execute(_STATEMENTS.get(key, build), dict(params))

    async def run_many(self, key: Hashable, build: Build, rows: Sequence[Params]) -> None:
        if rows:
            await self.conn.execute(_STATEMENTS.get(key, build), [dict(r) for r in rows])

    async def announce(self, *, owner_id: int, session_id: str) -> None:
        await changes.announce(self.conn, owner_id=owner_id, session_id=session_id)


@dataclass(frozen=True)
class Compiled:
    """A statement as the driver runs it: its SQL, the values it carries itself, and for
    a positional paramstyle the names of its parameters in order."""

    sql: str
    defaults: dict[str, Any]
    positions: tuple[str, ...] = ()

    def values(self, params: Params) -> dict[str, Any]:
        return {**self.defaults, **params} if self.defaults else dict(params)

    def positional(self, params: Params) -> list[Any]:
        values = self.values(params)
        return [values[name] for name in self.positions]


def compile_statement(statement: Executable, *, dialect: Dialect, params: Params) -> Compiled:
    """``statement`` for ``dialect``'s driver. An INSERT names the columns ``params``
    gives, and those with a default, which is filled in as SQLAlchemy's execution would
    (a scalar one; a computed one is refused). A literal list for ``IN`` is not
    supported: SQLAlchemy expands it only when it executes the statement."""
    assert isinstance(statement, ClauseElement)  # every Core statement is one
    compiled = statement.compile(
        dialect=dialect, column_keys=list(params) if isinstance(statement, Insert) else None
    )
    assert isinstance(compiled, SQLCompiler)  # DML and SELECT compile to one
    defaults = {
        name: value for name, value in compiled.params.items() if not compiled.binds[name].required
    }
    if isinstance(statement, Insert):
        for column in statement.table.columns:
            if column.key not in compiled.params or column.key in params:
                continue
            default = column.default
            if default is None or not default.is_scalar:
                raise ValueError(f"no value for {column} in a direct write")
            defaults[column.key] = default.arg
    return Compiled(
        sql=compiled.string, defaults=defaults, positions=tuple(compiled.positiontup or ())
    )


T = TypeVar("T")
# What runs in a transaction: everything it writes goes through the Writer it is given.
Work = Callable[[Writer], Awaitable[T]]


class WriteStatements:
    """Compiled statements of one dialect, by (key, parameter names)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._compiled: dict[Hashable, Compiled] = {}

    def get(self, key: Hashable, build: Build, params: Params) -> Compiled:
        # The parameter names belong to the shape: an INSERT names the columns given.
        full = (key, tuple(params))
        found = self._compiled.get(full)
        if found is None:
            if len(self._compiled) >= MAX_STATEMENTS:
                self._compiled.clear()
            statement = build()
            found = compile_statement(statement, dialect=self.dialect, params=params)
            self._compiled[full] = found
        return found


class Transaction:
    """What both drivers' transactions share: the statements and the announced changes."""

    dialect_name = ""

    def __init__(self, statements: WriteStatements, *, origin: str) -> None:
        self._statements = statements
        self._origin = origin
        self.announced: set[Change] = set()
        self.memo: dict[Hashable, Any] = {}

    async def run(self, key: Hashable, build: Build, params: Params) -> None:
        raise NotImplementedError

    async def announce(self, *, owner_id: int, session_id: str) -> None:
        if changes.remember(self.announced, owner_id=owner_id, session_id=session_id):
            await self._notify(owner_id=owner_id, session_id=session_id)

    async def _notify(self, *, owner_id: int, session_id: str) -> None:
        """Tell other processes at commit (PostgreSQL; SQLite's are found by polling)."""


class DirectWrites:
    """``await writes.transact(work, origin=…)``: ``work(writer)`` in one transaction,
    committed; its result and the changes it announced."""

    async def transact(self, work: Work[T], *, origin: str) -> tuple[T, set[Change]]:
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connections held (the object stays usable: it reconnects)."""
