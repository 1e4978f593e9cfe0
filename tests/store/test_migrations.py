"""Alembic migrations produce exactly the schema the code declares, on both backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from openjules.settings import Settings
from openjules.store.database import sync_url
from openjules.store.migrate import upgrade_to_head
from openjules.store.tables import metadata
from tests.conftest import drop_database, fresh_database


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


def test_processes_starting_together_on_an_empty_database_all_migrate_it(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Several API processes and workers started at once (machines booting, `docker
    compose up`) each bring the schema to head: one creates it, the others wait for it
    and find nothing to do, instead of failing on tables that already exist."""
    admin = request.getfixturevalue("postgres_admin") if backend == "postgresql" else None
    url, created = fresh_database(backend, tmp_path, admin)
    try:
        starts = [
            subprocess.Popen(
                [sys.executable, "-c", MIGRATE, url],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(4)
        ]
        outcomes = [p.communicate(timeout=120) for p in starts]
        assert [p.returncode for p in starts] == [0] * 4, outcomes
        engine = create_engine(sync_url(url))
        try:
            with engine.connect() as conn:
                assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        finally:
            engine.dispose()
    finally:
        if created and admin:
            drop_database(admin, created)


MIGRATE = (
    "import sys; from openjules.store.migrate import upgrade_to_head; "
    "upgrade_to_head(sys.argv[1])"
)
