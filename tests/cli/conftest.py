"""Fixtures for driving the ``openjules`` command on both database backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from openjules.testing import LiveServer
from tests.cli.support import Target
from tests.conftest import drop_database, fresh_database


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return home


@pytest.fixture
def fresh_target(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Target]:
    """An empty database of its own: a data dir for SQLite, a new PostgreSQL database."""
    data_dir = tmp_path / "data"
    admin = request.getfixturevalue("postgres_admin") if backend == "postgresql" else None
    url, created = fresh_database(backend, data_dir, admin)
    yield Target(
        backend=backend,
        home=_home(tmp_path),
        data_dir=data_dir,
        database_url=url if created else None,
    )
    if created and admin:
        drop_database(admin, created)


@pytest.fixture
def server_target(server: LiveServer, backend: str, tmp_path: Path) -> Target:
    """The database of the module's live server, as the command line names it."""
    settings = server.settings
    return Target(
        backend=backend,
        home=_home(tmp_path),
        data_dir=settings.data_dir,
        database_url=settings.database_url if backend == "postgresql" else None,
    )
