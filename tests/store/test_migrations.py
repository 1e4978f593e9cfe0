"""Alembic migrations produce exactly the schema the code declares, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from openjules.settings import Settings
from openjules.store.database import sync_url
from openjules.store.migrate import upgrade_to_head
from openjules.store.tables import metadata


def test_migrated_schema_matches_the_declared_tables(server_settings: Settings) -> None:
    url = server_settings.resolved_database_url()
    upgrade_to_head(url)
    upgrade_to_head(url)  # idempotent: a second start changes nothing
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert diff == []
