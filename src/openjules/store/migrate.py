"""Run Alembic migrations programmatically (no alembic.ini needed at run time)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from openjules.store.database import ensure_sqlite_directory, sqlite_path, sync_url

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


# The PostgreSQL advisory lock migrations take (any 64-bit number no other lock uses).
MIGRATION_LOCK = 0x6F70656E6A0001


def upgrade_to_head(url: str) -> None:
    """Bring the database at ``url`` to the newest schema; safe to call on every start,
    and from processes starting at once: one migrates while the others wait, then find
    nothing to do. On PostgreSQL they wait for an advisory lock the migration's
    transaction holds; on SQLite (whose DDL Python's driver runs outside a transaction)
    for a lock on a file in the database's directory."""
    ensure_sqlite_directory(url)
    config = alembic_config(url)
    with _one_process_at_a_time(url):
        engine = create_engine(sync_url(url))
        try:
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                    )
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        finally:
            engine.dispose()


# Beside a SQLite database: whoever migrates a database in that directory holds it. One
# name per directory, not per database, so the file is not left behind for each database
# ever migrated there (a restore migrates a staging copy under a name of its own). Not the
# database file itself: closing another descriptor of it would drop SQLite's own locks.
SQLITE_MIGRATION_LOCK = ".openjules-migrate.lock"


@contextmanager
def _one_process_at_a_time(url: str) -> Iterator[None]:
    """On a SQLite file, hold an exclusive lock on ``SQLITE_MIGRATION_LOCK`` in its
    directory (released by the kernel if the process dies); nothing elsewhere."""
    file = sqlite_path(url)
    if file is None:
        yield
        return
    with file.with_name(SQLITE_MIGRATION_LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
