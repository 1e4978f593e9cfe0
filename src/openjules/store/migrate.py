"""Run Alembic migrations programmatically (no alembic.ini needed at run time)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

from openjules.store.database import ensure_sqlite_directory, sync_url

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


def upgrade_to_head(url: str) -> None:
    """Bring the database at ``url`` to the newest schema; safe to call on every start."""
    ensure_sqlite_directory(url)
    config = alembic_config(url)
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
