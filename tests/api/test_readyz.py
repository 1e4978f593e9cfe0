"""``/readyz`` reports the database; ``/healthz`` only that the process is up. While the
database cannot be reached the API answers 503 UNAVAILABLE with Retry-After (never 500),
and the connection stays usable.

The unreachable databases are real: a PostgreSQL URL whose port nothing listens on, and
a SQLite path that is a directory (neither can be opened). ``APIServer`` serves the real
app on them (``LiveServer`` cannot start there: it migrates first).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openjules.settings import Settings
from openjules.testing import LiveServer
from openjules.testing.api_server import APIServer
from tests.api.session_support import expect_error
from tests.support import API_KEY_HEADER, unused_port


def test_ready_when_the_database_answers(server: LiveServer) -> None:
    response = httpx.get(server.url + "/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


@pytest.fixture(params=["postgresql", "sqlite"])
def unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[APIServer]:
    if request.param == "postgresql":
        url = f"postgresql+psycopg://postgres@127.0.0.1:{unused_port()}/openjules"
    else:
        (tmp_path / "db-is-a-directory").mkdir()
        url = f"sqlite+aiosqlite:///{tmp_path / 'db-is-a-directory'}"
    with APIServer(Settings(data_dir=tmp_path, database_url=url)) as server:
        yield server


def test_not_ready_while_the_database_is_unreachable(unreachable: APIServer) -> None:
    with httpx.Client(base_url=unreachable.url, timeout=30) as client:
        response = client.get("/readyz")
        expect_error(response, 503, "UNAVAILABLE")
        assert int(response.headers["retry-after"]) > 0
        # Liveness does not depend on the database.
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1alpha/sessions"),
        ("POST", "/v1alpha/sessions"),
        ("GET", "/v1alpha/sessions/1234567890123456789"),
        ("GET", "/v1alpha/sources"),
    ],
)
def test_api_answers_unavailable_while_the_database_is_unreachable(
    unreachable: APIServer, method: str, path: str
) -> None:
    headers = {API_KEY_HEADER: "ojk_any_key"}
    with httpx.Client(base_url=unreachable.url, headers=headers, timeout=30) as client:
        response = client.request(method, path, json={"prompt": "hello"})
        expect_error(response, 503, "UNAVAILABLE")
        assert int(response.headers["retry-after"]) > 0
        assert response.headers.get("connection") != "close"
        # The same connection answers the next request.
        assert client.get("/healthz").status_code == 200
