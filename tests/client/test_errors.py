"""Every error the SDK maps, raised from a real server where the server produces it: the
exception class, the server's own message (the same text a plain HTTP request gets in
Google's envelope) and that it is an ``APIError``. Sync ``Client`` and ``AsyncClient``, on
both backends.

==================  ===============================================================
Exception           Produced by
==================  ===============================================================
NotFound            an unknown session or source
InvalidArgument     an empty prompt; a filter on an unknown field; a broken filter
FailedPrecondition  approvePlan on a session without a plan
Unauthenticated     a key the server does not know
ResourceExhausted   the server's per-key rate limit (rate_limit_per_minute)
Unavailable         the server's PostgreSQL cut by a ``TcpProxy``; the server out of
                    connections (http_max_connections, held by an event stream)
PermissionDenied,   ``FlakyHTTP`` in front of the server, with Google's envelope
Internal,           (openjules itself answers none of these to the SDK's calls); and
AlreadyExists       answers without an envelope, told by their HTTP status
==================  ===============================================================

``Unsupported`` (an extension on a plain Jules server) is in test_plain_jules.py,
``WaitTimeout`` in test_lifecycle.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from openjules.client import (
    AlreadyExists,
    APIError,
    Client,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    RetryPolicy,
    Unauthenticated,
    Unavailable,
)
from openjules.settings import Settings
from openjules.testing import FlakyHTTP, LiveServer, TcpProxy, provision_user
from tests.client.lifecycle_support import Flavour, connect
from tests.conftest import drop_database, fresh_database
from tests.support import MISSING_SESSION_ID, api_client

FLAVOURS = pytest.mark.parametrize("flavour", list(Flavour), ids=str)
# Errors come out as they are: no second try hides or repeats one.
NO_RETRY = RetryPolicy(max_retries=0)
PER_MINUTE = 20
UNKNOWN_KEY = "ojk_000000000000_unknown"


@pytest.fixture(scope="module")
def key(server: LiveServer) -> str:
    """One user for the module: these tests read errors, they change nothing shared."""
    return provision_user(server.settings, name="errors")


@pytest.fixture(scope="module")
def strict(server_settings: Settings) -> Iterator[LiveServer]:
    """A second server on the module's database, with a per-key rate limit and room for
    one open connection."""
    settings = server_settings.model_copy(
        update={"rate_limit_per_minute": PER_MINUTE, "http_max_connections": 1}
    )
    with LiveServer(settings) as live:
        yield live


@pytest.fixture
def front(server: LiveServer) -> Iterator[FlakyHTTP]:
    with FlakyHTTP(upstream=server.url) as flaky:
        yield flaky


@pytest.fixture(scope="module")
def postgres_gone(
    postgres_admin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(URL, API key) of a live server whose PostgreSQL has gone away: it reaches its
    database through a ``TcpProxy``, cut once the key exists. (An SQLite database lives
    in the server's own process: it cannot go away while the server runs.)"""
    tmp = tmp_path_factory.mktemp("postgres-gone")
    url, name = fresh_database("postgresql", tmp, postgres_admin)
    assert name is not None
    direct = make_url(url)
    try:
        with TcpProxy(
            target_host=direct.host or "127.0.0.1", target_port=direct.port or 5432
        ) as proxy:
            proxied = direct.set(host=proxy.host, port=proxy.port)
            settings = Settings(
                data_dir=tmp,
                database_url=proxied.render_as_string(hide_password=False),
                auth_cache_seconds=0,
                workers=0,
            )
            with LiveServer(settings) as live:
                key = provision_user(live.settings, name="outage")
                proxy.cut()
                yield live.url, key
                # Back, so that the server stops as it would after an outage.
                proxy.restore()
    finally:
        drop_database(postgres_admin, name)


def server_error(url: str, key: str, method: str, path: str, **request: Any) -> dict[str, Any]:
    """The ``error`` of the envelope a plain HTTP request gets (what the SDK must pass on)."""
    with api_client(f"{url}/v1alpha", key) as http:
        response = http.request(method, path, **request)
    assert response.status_code >= 400, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def raised(
    flavour: Flavour, url: str, key: str, method: str, *args: Any, **kwargs: Any
) -> APIError:
    """The APIError the SDK raises for ``method(*args, **kwargs)``."""
    jules = connect(flavour, base_url=url, api_key=key, retry=NO_RETRY)
    try:
        with pytest.raises(APIError) as caught:
            _call(jules, method, *args, **kwargs)
    finally:
        jules.close()
    return caught.value


def _call(jules: Client, method: str, *args: Any, **kwargs: Any) -> None:
    result = getattr(jules, method)(*args, **kwargs)
    if isinstance(result, Iterator):
        list(result)  # a list method: its pages are read as they are iterated


def _spend_allowance(jules: Client) -> None:
    for _ in range(PER_MINUTE * 2):
        jules.list_sessions_page()


# --- from the server ---------------------------------------------------------------------


@FLAVOURS
def test_an_unknown_session_is_not_found(flavour: Flavour, server: LiveServer, key: str) -> None:
    error = raised(flavour, server.url, key, "get_session", MISSING_SESSION_ID)
    assert type(error) is NotFound
    expected = server_error(server.url, key, "GET", f"/sessions/{MISSING_SESSION_ID}")
    assert error.message == expected["message"] == "Requested entity was not found."


@FLAVOURS
def test_an_unknown_source_is_not_found(flavour: Flavour, server: LiveServer, key: str) -> None:
    error = raised(flavour, server.url, key, "get_source", "acme/missing")
    assert type(error) is NotFound
    expected = server_error(server.url, key, "GET", "/sources/github/acme/missing")
    assert error.message == expected["message"]


@FLAVOURS
def test_an_empty_prompt_is_an_invalid_argument(
    flavour: Flavour, server: LiveServer, key: str
) -> None:
    error = raised(flavour, server.url, key, "create_session", prompt="")
    assert type(error) is InvalidArgument
    expected = server_error(server.url, key, "POST", "/sessions", json={"prompt": ""})
    assert error.message == expected["message"] == "The prompt is required."
    # The envelope's details (BadRequest.fieldViolations) come along.
    assert error.extra_details == expected["details"]


@FLAVOURS
@pytest.mark.parametrize(
    ("bad_filter", "says"),
    [("bogus = 1", "unknown field 'bogus'"), ("state = ", "unexpected end of expression")],
    ids=["unknown-field", "broken"],
)
def test_a_bad_filter_is_an_invalid_argument(
    flavour: Flavour, bad_filter: str, says: str, server: LiveServer, key: str
) -> None:
    error = raised(flavour, server.url, key, "list_sessions", filter=bad_filter)
    assert type(error) is InvalidArgument
    expected = server_error(server.url, key, "GET", "/sessions", params={"filter": bad_filter})
    assert error.message == expected["message"]
    assert says in error.message


@FLAVOURS
def test_approving_without_a_plan_is_a_failed_precondition(
    flavour: Flavour, server: LiveServer, key: str
) -> None:
    with api_client(server.api, key) as http:
        session_id = http.post("/sessions", json={"prompt": "Add a CHANGELOG"}).json()["id"]
    error = raised(flavour, server.url, key, "approve_plan", session_id)
    assert type(error) is FailedPrecondition
    expected = server_error(server.url, key, "POST", f"/sessions/{session_id}:approvePlan")
    assert error.message == expected["message"]
    assert "no plan awaiting approval" in error.message


@FLAVOURS
def test_an_unknown_key_is_unauthenticated(flavour: Flavour, server: LiveServer) -> None:
    error = raised(flavour, server.url, UNKNOWN_KEY, "list_sessions")
    assert type(error) is Unauthenticated
    expected = server_error(server.url, UNKNOWN_KEY, "GET", "/sessions")
    assert error.message == expected["message"] == "API key not valid. Please pass a valid API key."


@FLAVOURS
def test_the_rate_limit_is_resource_exhausted(flavour: Flavour, strict: LiveServer) -> None:
    key = provision_user(strict.settings, name=f"busy-{flavour}")
    jules = connect(flavour, base_url=strict.url, api_key=key, retry=NO_RETRY)
    try:
        with pytest.raises(APIError) as caught:
            _spend_allowance(jules)
    finally:
        jules.close()
    error = caught.value
    assert type(error) is ResourceExhausted
    assert error.message.startswith(
        f"Quota exceeded: this API key may make {PER_MINUTE} requests per minute"
    )
    # Retry-After was read, and says what the message says.
    assert error.retry_after_seconds is not None
    assert error.retry_after_seconds >= 1
    assert error.message.endswith(f"Retry in {error.retry_after_seconds} s.")


@FLAVOURS
def test_a_server_without_its_database_is_unavailable(
    flavour: Flavour, postgres_gone: tuple[str, str]
) -> None:
    url, key = postgres_gone
    error = raised(flavour, url, key, "list_sessions")
    assert type(error) is Unavailable
    expected = server_error(url, key, "GET", "/sessions")
    assert error.message == expected["message"]
    assert "database" in error.message
    assert error.retry_after_seconds is not None
    assert error.retry_after_seconds > 0


@FLAVOURS
def test_a_server_out_of_connections_is_unavailable(flavour: Flavour, strict: LiveServer) -> None:
    key = provision_user(strict.settings, name=f"crowd-{flavour}")
    with api_client(strict.api, key) as http:
        session_id = http.post("/sessions", json={"prompt": "Add a CHANGELOG"}).json()["id"]
    # An event stream holds the server's one connection (its first event read: it is open).
    with (
        api_client(strict.api, key) as http,
        http.stream("GET", f"/sessions/{session_id}", params={"alt": "sse"}) as stream,
    ):
        assert stream.status_code == 200
        # Held in a name: an iterator thrown away would close the stream's connection.
        lines = stream.iter_lines()
        assert next(lines) == "event: session"
        error = raised(flavour, strict.url, key, "get_session", session_id)
        # The stream was not what gave way.
        assert next(lines).startswith("data: ")
    assert type(error) is Unavailable
    assert error.message == "The server has too many open connections; try again shortly."
    assert error.retry_after_seconds == 1


# --- from a front in front of the server -----------------------------------------------


@FLAVOURS
@pytest.mark.parametrize(
    ("status", "google_status", "expected_class"),
    [
        (403, "PERMISSION_DENIED", PermissionDenied),
        (500, "INTERNAL", Internal),
        (409, "ALREADY_EXISTS", AlreadyExists),
    ],
    ids=["permission-denied", "internal", "already-exists"],
)
def test_errors_only_a_front_answers(
    flavour: Flavour,
    status: int,
    google_status: str,
    expected_class: type[APIError],
    front: FlakyHTTP,
    key: str,
) -> None:
    message = f"{google_status.lower()} said by the front"
    front.fail(status, google_status=google_status, message=message)
    error = raised(flavour, front.url, key, "list_sessions")
    assert type(error) is expected_class
    assert error.message == message
    assert front.tries() == 1  # none of these is worth a second try


@FLAVOURS
@pytest.mark.parametrize(
    ("status", "expected_class"),
    [(403, PermissionDenied), (404, NotFound), (502, Unavailable), (500, Internal)],
    ids=["403", "404", "502", "500"],
)
def test_answers_without_an_envelope_are_told_by_their_status(
    flavour: Flavour, status: int, expected_class: type[APIError], front: FlakyHTTP, key: str
) -> None:
    front.fail(status, envelope=False, message="from the load balancer")
    error = raised(flavour, front.url, key, "get_session", MISSING_SESSION_ID)
    assert type(error) is expected_class
    assert error.message == f"HTTP {status} without a Google error envelope"
