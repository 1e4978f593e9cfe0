"""INSERT … ON CONFLICT DO UPDATE on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


async def upsert(
    conn: AsyncConnection,
    table: Table,
    *,
    key: list[str],
    values: dict[str, Any],
    keep: tuple[str, ...] = (),
) -> None:
    """Insert ``values``, or update every column but ``key`` and ``keep`` on conflict."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    changing = {k: v for k, v in values.items() if k not in key and k not in keep}
    statement = (
        insert(table).values(**values).on_conflict_do_update(index_elements=key, set_=changing)
    )
    await conn.execute(statement)
