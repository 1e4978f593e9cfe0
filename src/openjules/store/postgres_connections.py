"""The PostgreSQL connections of the direct paths (``store.direct``'s reads and
``store.direct_write_postgres``'s writes): psycopg connections of their own, outside
SQLAlchemy's pools, opened and bounded alike."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from openjules._cancellation import within


@dataclass(frozen=True, kw_only=True)
class PoolOptions:
    size: int
    connect_timeout_seconds: float
    pool_timeout_seconds: float
    reconnect_pause_seconds: float
    connect_args: Mapping[str, Any]


class PostgresConnections:
    """The PostgreSQL connections of one direct path (reads, or writes): at most
    ``options.size`` in use at once, waited for up to ``options.pool_timeout_seconds``;
    the idle ones pooled, most recently used last."""

    def __init__(self, conninfo: str, *, options: PoolOptions, purpose: str) -> None:
        self.options = options
        self.idle: list[psycopg.AsyncConnection[Any]] = []
        self._conninfo = conninfo
        self._purpose = purpose
        self._slots = asyncio.Semaphore(options.size)

    async def acquire(self) -> None:
        """A place for one more connection in use (``release`` it after)."""
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            await within(self._slots.acquire(), seconds=self.options.pool_timeout_seconds)
        except TimeoutError:
            raise TimeoutError(
                f"no PostgreSQL connection came free for a {self._purpose}"
            ) from None

    def release(self) -> None:
        self._slots.release()

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        """A new autocommit connection; one more try after a pause when the first fails
        (nothing was sent yet), as ``Database`` does."""
        try:
            return await self._connect_once()
        except (psycopg.OperationalError, OSError, TimeoutError):
            await asyncio.sleep(self.options.reconnect_pause_seconds)
            return await self._connect_once()

    async def _connect_once(self) -> psycopg.AsyncConnection[Any]:
        # libpq's connect_timeout bounds each attempt; this bounds the whole of it.
        async with asyncio.timeout(self.options.connect_timeout_seconds + 1):
            return await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, **self.options.connect_args
            )

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            await conn.close()
