"""INSERT … ON CONFLICT DO UPDATE on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert, Table
from sqlalchemy.dialects import postgresql, sqlite

from openjules.store.writer import Writer


async def upsert_on(
    writer: Writer,
    table: Table,
    *,
    key: list[str],
    values: dict[str, Any],
    keep: tuple[str, ...] = (),
) -> None:
    """Insert ``values``, or update every column but ``key`` and ``keep`` on conflict."""
    columns = tuple(values)
    dialect = writer.dialect_name

    def build() -> Insert:
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
        # The update takes the row the insert proposed: the values are bound once.
        changing = {c: insert.excluded[c] for c in columns if c not in key and c not in keep}
        return insert.on_conflict_do_update(index_elements=key, set_=changing)

    shape = ("upsert", dialect, table.name, tuple(key), keep, columns)
    await writer.run(shape, build, values)
