"""Limits on what a request may ask (issue 9, finding 1 and the filter half of finding 3).

The probe: a 100 MB ``POST /v1alpha/sessions`` was read into memory and stored (RSS grew
by 800 MB), a 10 MB prompt was echoed in every list, a filter of 1,000 ANDed terms was a
500 on SQLite ("Expression tree is too large") and one nested in 400 parentheses a 500
(RecursionError) on every list method. Each limit answers 400 INVALID_ARGUMENT naming it.
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openjules.settings import Settings
from openjules.testing import LiveServer
from tests.api.session_support import create_session, expect_error
from tests.support import ok_json, walk

MIB = 1024 * 1024
LIMIT = Settings().max_request_bytes
TOO_LARGE = f"Request payload size exceeds the limit: {LIMIT} bytes."
CHUNK = b"a" * MIB
# More than the server may keep of one body, by far: what it must not hold.
HUGE_BODY_MIB = 100
# What the test process (server thread included) may grow by while such a body is sent.
MAX_GROWTH_MIB = 40


def _memory_mib(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    assert match, field
    return int(match.group(1)) // 1024


def _reset_peak_memory() -> int:
    """Restart the peak-RSS count (VmHWM) at the current RSS, and return that."""
    Path("/proc/self/clear_refs").write_text("5")
    return _memory_mib("VmRSS")


def _huge_body() -> Iterator[bytes]:
    # One chunk object sent again and again: the client holds 1 MiB, not the body.
    yield b'{"prompt":"'
    for _ in range(HUGE_BODY_MIB):
        yield CHUNK
    yield b'"}'


def _assert_nothing_created(client: httpx.Client) -> None:
    assert ok_json(client.get("/sessions")) == {}


# --- request body ---------------------------------------------------------------------


def test_a_huge_chunked_body_is_refused_without_being_held_in_memory(
    client: httpx.Client,
) -> None:
    before = _reset_peak_memory()
    response = client.post("/sessions", content=_huge_body())  # no Content-Length: chunked
    growth = _memory_mib("VmHWM") - before
    error = expect_error(response, 400, "INVALID_ARGUMENT")
    assert error["message"] == TOO_LARGE
    # The rest of a chunked body has no known end: the client is not made to send it.
    assert response.headers["connection"] == "close"
    assert growth < MAX_GROWTH_MIB, f"peak RSS grew by {growth} MiB for a refused body"
    _assert_nothing_created(client)


def test_a_huge_declared_body_is_refused_before_it_is_read(client: httpx.Client) -> None:
    size = HUGE_BODY_MIB * MIB + len(b'{"prompt":""}')
    before = _reset_peak_memory()
    response = client.post("/sessions", content=_huge_body(), headers={"Content-Length": str(size)})
    growth = _memory_mib("VmHWM") - before
    assert expect_error(response, 400, "INVALID_ARGUMENT")["message"] == TOO_LARGE
    assert response.headers["connection"] == "close"
    assert growth < MAX_GROWTH_MIB, f"peak RSS grew by {growth} MiB for a refused body"
    _assert_nothing_created(client)


def test_every_path_refuses_an_oversized_body(client: httpx.Client) -> None:
    session = create_session(client)
    for path in (
        f"/sessions/{session['id']}:sendMessage",
        f"/sessions/{session['id']}:archive",
        "/no-such-method",
    ):
        response = client.post(path, content=b"x" * (LIMIT + 1))
        assert expect_error(response, 400, "INVALID_ARGUMENT")["message"] == TOO_LARGE
    assert ok_json(client.get(f"/sessions/{session['id']}")) == session


def test_a_body_a_little_over_the_limit_leaves_the_connection_usable(
    server: LiveServer, api_key: str
) -> None:
    url = httpx.URL(server.url)
    assert url.host
    assert url.port
    conn = http.client.HTTPConnection(url.host, url.port, timeout=30)
    headers = {"X-Goog-Api-Key": api_key, "Content-Type": "application/json"}
    try:
        conn.request("POST", "/v1alpha/sessions", body=b"x" * (2 * LIMIT), headers=headers)
        refused = conn.getresponse()
        assert refused.status == 400
        assert TOO_LARGE in refused.read().decode()
        assert refused.getheader("connection") is None
        sock = conn.sock
        assert sock is not None, "the server closed the connection"
        # The same connection serves the next request.
        conn.request("POST", "/v1alpha/sessions", body=b'{"prompt":"after"}', headers=headers)
        created = conn.getresponse()
        assert created.status == 200, created.read()
        created.read()
        assert conn.sock is sock
    finally:
        conn.close()


def test_a_body_within_the_limit_is_accepted(client: httpx.Client) -> None:
    prompt = "p" * Settings().max_prompt_chars
    assert len(prompt) < LIMIT
    assert create_session(client, prompt=prompt)["prompt"] == prompt


# --- text lengths ---------------------------------------------------------------------


def test_a_prompt_over_the_limit_is_refused_naming_the_field_and_the_limit(
    client: httpx.Client,
) -> None:
    limit = Settings().max_prompt_chars
    response = client.post("/sessions", json={"prompt": "p" * (limit + 1)})
    error = expect_error(response, 400, "INVALID_ARGUMENT")
    assert "session.prompt" in error["message"]
    assert str(limit) in error["message"]
    violations = error["details"][0]["fieldViolations"]
    assert [v["field"] for v in violations] == ["session.prompt"]
    _assert_nothing_created(client)


def test_a_message_over_the_limit_is_refused(client: httpx.Client) -> None:
    limit = Settings().max_prompt_chars
    session = create_session(client)
    response = client.post(
        f"/sessions/{session['id']}:sendMessage", json={"prompt": "m" * (limit + 1)}
    )
    error = expect_error(response, 400, "INVALID_ARGUMENT")
    assert error["details"][0]["fieldViolations"][0]["field"] == "prompt"
    assert str(limit) in error["message"]
    # Nothing changed: the session is as it was created.
    assert ok_json(client.get(f"/sessions/{session['id']}")) == session


def test_a_title_over_the_limit_is_refused(client: httpx.Client) -> None:
    limit = Settings().max_title_chars
    assert create_session(client, title="t" * limit)["title"] == "t" * limit
    response = client.post("/sessions", json={"prompt": "p", "title": "t" * (limit + 1)})
    error = expect_error(response, 400, "INVALID_ARGUMENT")
    assert error["details"][0]["fieldViolations"][0]["field"] == "session.title"
    assert str(limit) in error["message"]


# --- filters --------------------------------------------------------------------------

LIST_PATHS = ("/sessions", "/sessions/{id}/activities", "/sources")
# A comparison every list method accepts in its filter (each its own field).
TERM = {
    "/sessions": "archived=false",
    "/sessions/{id}/activities": 'create_time>="2020-01-01T00:00:00Z"',
    "/sources": 'name="sources/github/acme/demo"',
}


@pytest.fixture
def list_paths(client: httpx.Client) -> dict[str, str]:
    session_id = create_session(client)["id"]
    return {path: path.format(id=session_id) for path in LIST_PATHS}


def _filter_error(client: httpx.Client, path: str, text: str) -> str:
    error = expect_error(client.get(path, params={"filter": text}), 400, "INVALID_ARGUMENT")
    assert error["details"][0]["fieldViolations"][0]["field"] == "filter"
    message: str = error["message"]
    return message


@pytest.mark.parametrize("path", LIST_PATHS)
def test_a_deeply_nested_filter_is_refused_naming_the_depth_limit(
    client: httpx.Client, list_paths: dict[str, str], path: str
) -> None:
    text = "(" * 400 + TERM[path] + ")" * 400
    assert "16" in _filter_error(client, list_paths[path], text)
    # Nesting within the limit is fine.
    ok_json(client.get(list_paths[path], params={"filter": "(" * 16 + TERM[path] + ")" * 16}))


@pytest.mark.parametrize("path", LIST_PATHS)
def test_a_filter_of_many_terms_is_refused_naming_the_limit(
    client: httpx.Client, list_paths: dict[str, str], path: str
) -> None:
    # 1,000 ANDed terms (the probe's 500 on SQLite) are refused for their length...
    text = " AND ".join([TERM[path]] * 1000)
    assert "2048" in _filter_error(client, list_paths[path], text)
    # ...and fewer, shorter ones for their number.
    text = " ".join(["archived=true"] * 100)
    assert "64" in _filter_error(client, list_paths[path], text)
    ok_json(client.get(list_paths[path], params={"filter": " AND ".join([TERM[path]] * 10)}))


def test_a_filter_expanding_to_too_many_alternatives_is_refused(client: httpx.Client) -> None:
    text = " AND ".join(["(archived=true OR archived=false)"] * 7)  # 2**7 AND-groups
    assert "64" in _filter_error(client, "/sessions", text)


# --- page tokens ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "x" * 513,
        "garbage",
        "%%%",
        "czE6LTE6MTIzNDU2Nzg5MDEyMzQ1Njc4OQ==",  # s1:-1:1234567890123456789
        "99999999999999999999999",
        "github/acme/" + "d" * 600,
        "é" * 10,
    ],
)
@pytest.mark.parametrize("path", LIST_PATHS)
def test_garbage_page_tokens_are_invalid_arguments(
    client: httpx.Client, list_paths: dict[str, str], path: str, token: str
) -> None:
    response = client.get(list_paths[path], params={"pageToken": token})
    error = expect_error(response, 400, "INVALID_ARGUMENT")
    if len(token) > Settings().max_page_token_chars:
        assert "page_token" in error["message"]
        assert "512" in error["message"]


# --- what a list returns --------------------------------------------------------------


def test_a_list_page_stops_at_its_byte_budget_and_the_rest_follows(
    client: httpx.Client,
) -> None:
    # Twelve sessions of 400 KB each (a prompt of 100,000 four-byte characters): 4.8 MB,
    # more than one page may carry (4 MiB), though pageSize asks for all of them.
    prompt = "\U0001f41b" * Settings().max_prompt_chars
    created = [create_session(client, prompt=prompt)["id"] for _ in range(12)]
    first = client.get("/sessions", params={"pageSize": "100"})
    page = ok_json(first)
    assert len(first.content) <= 4 * MIB
    assert 1 <= len(page["sessions"]) < len(created)
    assert page["nextPageToken"]
    rest = walk(
        client, "/sessions", "sessions", {"pageSize": "100", "pageToken": page["nextPageToken"]}
    )
    listed = [s["id"] for s in page["sessions"] + rest]
    assert listed == created[::-1]
    assert all(s["prompt"] == prompt for s in rest)
