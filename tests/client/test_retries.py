"""When the SDK tries a call again, and when it does not: ``FlakyHTTP`` in front of a live
server fails on cue and counts the tries. Sync ``Client`` and ``AsyncClient``, on both
backends.

- 503 and 429 are tried again, for calls whose repeat changes nothing more (GETs,
  delete, archive, approvePlan...), honouring Retry-After, until ``max_retries``; then the
  last error is raised. A create or a message that met 503 is not sent again.
- A connection that could not be made is tried again for every call (nothing reached the
  server); a connection dropped after the request went out is tried again only for the
  calls that may be repeated.
- A stream refused with 503 is opened again (and streams: it does not fall back to
  polling).

Retry-After is honoured but capped by ``RetryPolicy.max_delay`` (four times it), which
these tests keep small so that no test sleeps a second; how long the SDK waited is not
asserted, only how often it tried.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from openjules.client import (
    APIError,
    Client,
    ConnectionFailed,
    ResourceExhausted,
    RetryPolicy,
    Unavailable,
)
from openjules.testing import FlakyHTTP, LiveServer, TcpProxy, TryOutcome, provision_user
from tests import driver
from tests.client.lifecycle_support import AsyncBridge, Flavour, connect, kind_of
from tests.support import api_client

FLAVOURS = pytest.mark.parametrize("flavour", list(Flavour), ids=str)
FAST = RetryPolicy(max_retries=3, initial_delay=0.01, max_delay=0.05)
NO_RETRY = RetryPolicy(max_retries=0)
PATCH = "--- a/README.md\n+++ b/README.md\n@@ -1 +1,2 @@\n # demo\n+Changed.\n"
FAILED, FORWARDED, DROPPED = TryOutcome.FAILED, TryOutcome.FORWARDED, TryOutcome.DROPPED


@pytest.fixture(scope="module")
def key(server: LiveServer) -> str:
    return provision_user(server.settings, name="retries")


@pytest.fixture
def front(server: LiveServer) -> Iterator[FlakyHTTP]:
    with FlakyHTTP(upstream=server.url) as flaky:
        yield flaky


@pytest.fixture
def session_id(server: LiveServer, key: str) -> str:
    """A new QUEUED session of the module's user, made without the front."""
    with api_client(server.api, key) as http:
        response = http.post("/sessions", json={"prompt": "Add a CHANGELOG"})
    assert response.status_code == 200, response.text
    sid: str = response.json()["id"]
    return sid


def outcomes(front: FlakyHTTP, *, method: str | None = None, path: str) -> list[TryOutcome]:
    return [
        r.outcome
        for r in front.requests
        if r.path == path and (method is None or r.method == method)
    ]


@FLAVOURS
def test_a_get_that_meets_503_twice_is_tried_again(
    flavour: Flavour, front: FlakyHTTP, key: str, session_id: str
) -> None:
    path = f"/v1alpha/sessions/{session_id}"
    front.fail(503, times=2, retry_after=1, path=path)
    jules = connect(flavour, base_url=front.url, api_key=key, retry=FAST)
    try:
        assert jules.get_session(session_id).id == session_id
    finally:
        jules.close()
    assert outcomes(front, path=path) == [FAILED, FAILED, FORWARDED]


@FLAVOURS
def test_a_list_that_meets_429_twice_is_tried_again(
    flavour: Flavour, front: FlakyHTTP, key: str, session_id: str
) -> None:
    front.fail(429, times=2, retry_after=1, path="/v1alpha/sessions")
    jules = connect(flavour, base_url=front.url, api_key=key, retry=FAST)
    try:
        assert session_id in [s.id for s in jules.list_sessions()]
    finally:
        jules.close()
    assert outcomes(front, path="/v1alpha/sessions") == [FAILED, FAILED, FORWARDED]


@FLAVOURS
@pytest.mark.parametrize(
    ("status", "expected_class"),
    [(503, Unavailable), (429, ResourceExhausted)],
    ids=["503", "429"],
)
def test_retries_give_up_after_max_retries_with_the_last_error(
    flavour: Flavour,
    status: int,
    expected_class: type[APIError],
    front: FlakyHTTP,
    key: str,
    session_id: str,
) -> None:
    path = f"/v1alpha/sessions/{session_id}"
    for attempt in range(1, 5):
        front.fail(status, message=f"busy (try {attempt})", retry_after=1, path=path)
    policy = RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.05)
    jules = connect(flavour, base_url=front.url, api_key=key, retry=policy)
    try:
        with pytest.raises(expected_class) as caught:
            jules.get_session(session_id)
    finally:
        jules.close()
    assert caught.value.message == "busy (try 3)"
    assert caught.value.retry_after_seconds == 1
    assert outcomes(front, path=path) == [FAILED, FAILED, FAILED]


def _get(jules: Client, sid: str) -> None:
    assert jules.get_session(sid).id == sid


def _list_activities(jules: Client, sid: str) -> None:
    assert list(jules.list_activities(sid)) == []


def _archive(jules: Client, sid: str) -> None:
    jules.archive_session(sid)
    assert jules.get_session(sid).archived


def _delete(jules: Client, sid: str) -> None:
    jules.delete_session(sid)


def _send_message(jules: Client, sid: str) -> None:
    jules.send_message(sid, "Mention the release date")


def _create(jules: Client, _sid: str) -> None:
    jules.create_session(prompt="Add a CHANGELOG")


# (call, its HTTP method, its path after /v1alpha/sessions/ID, whether a 503 is tried again)
CALLS_AFTER_503: list[tuple[Any, str, str | None, bool]] = [
    (_get, "GET", "", True),
    (_list_activities, "GET", "/activities", True),
    (_archive, "POST", ":archive", True),
    (_delete, "DELETE", "", True),
    (_send_message, "POST", ":sendMessage", False),
    (_create, "POST", None, False),
]


@FLAVOURS
@pytest.mark.parametrize(
    ("call", "method", "suffix", "tried_again"),
    CALLS_AFTER_503,
    ids=["get", "list-activities", "archive", "delete", "send-message", "create"],
)
def test_which_calls_are_tried_again_after_503(
    flavour: Flavour,
    call: Any,
    method: str,
    suffix: str | None,
    tried_again: bool,
    front: FlakyHTTP,
    key: str,
    session_id: str,
) -> None:
    path = "/v1alpha/sessions" if suffix is None else f"/v1alpha/sessions/{session_id}{suffix}"
    front.fail(503, method=method, path=path)
    jules = connect(flavour, base_url=front.url, api_key=key, retry=FAST)
    try:
        if tried_again:
            call(jules, session_id)
        else:
            with pytest.raises(Unavailable):
                call(jules, session_id)
    finally:
        jules.close()
    expected = [FAILED, FORWARDED] if tried_again else [FAILED]
    assert outcomes(front, method=method, path=path) == expected


@FLAVOURS
def test_approve_plan_is_tried_again_after_503(
    flavour: Flavour, server: LiveServer, front: FlakyHTTP, key: str, session_id: str
) -> None:
    driver.propose_plan(server.settings, session_id, steps=["Write it"], require_approval=True)
    path = f"/v1alpha/sessions/{session_id}:approvePlan"
    front.fail(503, path=path)
    jules = connect(flavour, base_url=front.url, api_key=key, retry=FAST)
    try:
        jules.approve_plan(session_id)
        assert "planApproved" in [kind_of(a) for a in jules.list_activities(session_id)]
    finally:
        jules.close()
    assert outcomes(front, path=path) == [FAILED, FORWARDED]


@FLAVOURS
def test_a_get_whose_connection_drops_is_tried_again(
    flavour: Flavour, front: FlakyHTTP, key: str, session_id: str
) -> None:
    path = f"/v1alpha/sessions/{session_id}"
    front.drop(path=path)
    jules = connect(flavour, base_url=front.url, api_key=key, retry=FAST)
    try:
        assert jules.get_session(session_id).id == session_id
    finally:
        jules.close()
    assert outcomes(front, path=path) == [DROPPED, FORWARDED]


@FLAVOURS
def test_a_create_whose_connection_drops_is_not_tried_again(
    flavour: Flavour, front: FlakyHTTP, key: str
) -> None:
    front.drop(method="POST", path="/v1alpha/sessions")
    jules = connect(flavour, base_url=front.url, api_key=key, retry=FAST)
    try:
        # The request went out: the SDK cannot know whether a session was made, so it
        # does not make a second one; the caller hears of the broken connection.
        with pytest.raises(ConnectionFailed, match="may have reached it"):
            jules.create_session(prompt="Add a CHANGELOG")
    finally:
        jules.close()
    assert outcomes(front, method="POST", path="/v1alpha/sessions") == [DROPPED]


@FLAVOURS
def test_a_create_refused_before_reaching_the_server_is_tried_again(
    flavour: Flavour, server: LiveServer, api_key: str
) -> None:
    with TcpProxy(target_port=server.settings.port) as proxy:
        proxy.cut()  # nothing listens on the proxy's port: connecting is refused
        url = f"http://127.0.0.1:{proxy.port}"
        jules = connect(flavour, base_url=url, api_key=api_key, retry=NO_RETRY)
        try:
            with pytest.raises(ConnectionFailed, match="cannot reach the server") as refused:
                jules.create_session(prompt="Add a CHANGELOG")
            assert isinstance(refused.value.__cause__, httpx.ConnectError)
            assert "may have reached" not in refused.value.message
        finally:
            jules.close()

        # The SDK's HTTP client says when it sends: the second try finds the server back.
        tries: list[str] = []

        def restore_on_second_try(request: httpx.Request) -> None:
            tries.append(request.method)
            if len(tries) == 2:
                proxy.restore()

        http, close_http = _http_client(flavour, on_request=restore_on_second_try)
        jules = connect(flavour, base_url=url, api_key=api_key, retry=FAST, http_client=http)
        try:
            created = jules.create_session(prompt="Add a CHANGELOG")
        finally:
            close_http(jules)
            jules.close()
    assert tries == ["POST", "POST"]
    # Exactly one session: the refused try never reached the server.
    with api_client(server.api, api_key) as direct:
        listed = direct.get("/sessions").json()["sessions"]
    assert [s["id"] for s in listed] == [created.id]


def _http_client(
    flavour: Flavour, *, on_request: Any
) -> tuple[httpx.Client | httpx.AsyncClient, Any]:
    """An HTTP client for the SDK in ``flavour`` that calls ``on_request`` before each
    request it sends, and how to close it."""
    if flavour is Flavour.SYNC:
        sync_http = httpx.Client(event_hooks={"request": [on_request]})

        def close_sync(_jules: Client) -> None:
            sync_http.close()

        return sync_http, close_sync

    async def hook(request: httpx.Request) -> None:
        on_request(request)

    async_http = httpx.AsyncClient(event_hooks={"request": [hook]})

    def close_async(jules: Client) -> None:
        assert isinstance(jules, AsyncBridge)
        jules.run(async_http.aclose())

    return async_http, close_async


@FLAVOURS
def test_a_stream_refused_with_503_is_opened_again(
    flavour: Flavour, server: LiveServer, front: FlakyHTTP, key: str, session_id: str
) -> None:
    driver.propose_plan(server.settings, session_id, steps=["Write it"], require_approval=False)
    driver.complete(server.settings, session_id, patch=PATCH, base_commit="0" * 40)
    path = f"/v1alpha/sessions/{session_id}/activities"
    front.fail(503, retry_after=1, path=path)
    jules = connect(flavour, base_url=front.url, api_key=key, retry=FAST)
    try:
        streamed = list(jules.stream_activities(session_id))
        listed = list(jules.list_activities(session_id))
    finally:
        jules.close()
    assert [a.id for a in streamed] == [a.id for a in listed]
    assert kind_of(streamed[-1]) == "sessionCompleted"
    tried = [(r.outcome, r.params.get("alt")) for r in front.requests if r.path == path]
    assert tried[:2] == [(FAILED, ["sse"]), (FORWARDED, ["sse"])]
