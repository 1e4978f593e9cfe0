"""The store tests' database: the module's backend (tests/conftest.py), migrated once per
module, and a ``Database`` on it per test (a module may define its own ``db``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from openjules.settings import Settings
from openjules.store.database import Database
from openjules.store.migrate import upgrade_to_head


@pytest.fixture(scope="module")
def url(server_settings: Settings) -> str:
    database_url = server_settings.resolved_database_url()
    upgrade_to_head(database_url)
    return database_url


@pytest.fixture
async def db(url: str) -> AsyncIterator[Database]:
    database = Database(url)
    yield database
    await database.dispose()
