"""Errors keep the connection usable and carry the right google.rpc status name."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openjules.settings import Settings
from openjules.testing import LiveServer
from openjules.testing.api_server import CRASH_PATH, APIServer
from tests.api.session_support import expect_error


def _local_port(response: httpx.Response) -> int:
    """The client-side port of the connection that carried ``response``."""
    sock: socket.socket = response.extensions["network_stream"].get_extra_info("socket")
    port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def crashing(tmp_path: Path) -> Iterator[APIServer]:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'oj.db'}")
    with APIServer(settings, crash_route=True) as server:
        yield server


def test_a_500_keeps_the_connection_usable(crashing: APIServer) -> None:
    with httpx.Client(base_url=crashing.url, timeout=10) as client:
        crashed = client.get(CRASH_PATH)
        error = expect_error(crashed, 500, "INTERNAL")
        assert "Crash" not in error["message"]  # details stay in the server log
        assert crashed.headers.get("connection") != "close"
        after = client.get("/healthz")
        assert after.status_code == 200
        # The same connection carried both requests.
        assert _local_port(after) == _local_port(crashed)


def test_an_unexpected_error_is_logged_once_with_its_traceback(
    crashing: APIServer, caplog: pytest.LogCaptureFixture
) -> None:
    # uvicorn's own loggers do not propagate to the root logger; listen to them too.
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.ERROR):
            expect_error(httpx.get(crashing.url + CRASH_PATH, timeout=10), 500, "INTERNAL")
    finally:
        uvicorn_logger.removeHandler(caplog.handler)
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert logged[0].exc_info is not None
    assert CRASH_PATH in logged[0].getMessage()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"prompt": "x"', id="truncated-json"),
        pytest.param(b'{"prompt": "\xff\xfe"}', id="malformed-utf8"),
        pytest.param(b"\xff", id="not-utf8-at-all"),
    ],
)
def test_malformed_bodies_are_invalid_argument(client: httpx.Client, body: bytes) -> None:
    response = client.post("/sessions", content=body)
    error = expect_error(response, 400, "INVALID_ARGUMENT")
    assert error["message"].startswith("Invalid JSON payload received.")
    # Nothing was created, and the connection goes on.
    assert client.get("/sessions").json() == {}


@pytest.mark.parametrize(
    "path", ["/sessions/123:approvePlan", "/sessions/123:sendMessage", "/sessions"]
)
def test_options_answers_like_a_cors_aware_server(client: httpx.Client, path: str) -> None:
    response = client.options(path)
    assert response.status_code == 204, response.text
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"POST", "OPTIONS"} <= allowed
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]


def test_options_on_a_verb_names_only_the_verb(client: httpx.Client) -> None:
    allowed = client.options("/sessions/123:archive").headers["allow"]
    assert {m.strip() for m in allowed.split(",")} == {"POST", "OPTIONS"}


def test_options_on_an_unknown_path_is_not_found(server: LiveServer) -> None:
    expect_error(httpx.options(server.url + "/v1alpha/nothing-here"), 404, "NOT_FOUND")


def test_method_not_allowed_lists_options_too(client: httpx.Client) -> None:
    response = client.put("/sessions/123")
    expect_error(response, 405, "UNIMPLEMENTED")
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert allowed == {"GET", "DELETE", "OPTIONS"}
