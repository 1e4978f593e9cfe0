"""Every non-2xx answer is Google's JSON error envelope; authentication errors are 401."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from openjules.testing import LiveServer, provision_user
from tests.api.session_support import create_session, expect_error
from tests.support import MISSING_SESSION_ID, api_client, ok_json


@pytest.fixture(scope="module")
def shared(server: LiveServer) -> Iterator[httpx.Client]:
    """One user for the whole module, for tests that only look at errors."""
    with api_client(server.api, provision_user(server.settings, name="errors-shared")) as c:
        yield c


@pytest.mark.parametrize(
    ("method", "path", "code", "status"),
    [
        ("GET", "/v1alpha/nothing-here", 404, "NOT_FOUND"),
        ("GET", "/nothing-here", 404, "NOT_FOUND"),
        ("GET", "/v1/sessions", 404, "NOT_FOUND"),
        ("GET", "/v1alpha/sessions/{id}/activities/a/b", 404, "NOT_FOUND"),
        ("GET", "/v1alpha/sessions/{id}:archive", 404, "NOT_FOUND"),
        ("GET", f"/v1alpha/sessions/{MISSING_SESSION_ID}", 404, "NOT_FOUND"),
        ("POST", "/v1alpha/sessions/{id}:nope", 404, "NOT_FOUND"),
        ("POST", "/v1alpha/sessions/{id}/approvePlan", 404, "NOT_FOUND"),
        ("POST", "/v1alpha/sessions/{id}:approvePlan", 400, "FAILED_PRECONDITION"),
        ("POST", "/v1alpha/sessions/{id}:sendMessage", 400, "INVALID_ARGUMENT"),
        ("GET", "/v1alpha/sessions?pageSize=-1", 400, "INVALID_ARGUMENT"),
        ("PUT", "/v1alpha/sessions", 405, None),
        ("PATCH", "/v1alpha/sessions/{id}", 405, None),
        ("DELETE", "/v1alpha/sessions", 405, None),
        ("POST", "/v1alpha/sessions/{id}/activities", 405, None),
        ("DELETE", "/v1alpha/sessions/{id}/activities", 405, None),
    ],
)
def test_errors_use_the_google_envelope(
    shared: httpx.Client,
    server: LiveServer,
    method: str,
    path: str,
    code: int,
    status: str | None,
) -> None:
    sid = create_session(shared)["id"]
    response = shared.request(method, server.url + path.format(id=sid))
    error = expect_error(response, code, status)
    assert response.headers["content-length"] == str(len(response.content))
    assert set(error) <= {"code", "message", "status", "details"}


def test_method_not_allowed_names_the_allowed_methods(client: httpx.Client) -> None:
    response = client.put("/sessions", json={"prompt": "x"})
    expect_error(response, 405)
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    # Nothing was created.
    assert ok_json(client.get("/sessions")) == {}


def test_not_found_message_matches_google(client: httpx.Client) -> None:
    error = expect_error(client.get(f"/sessions/{MISSING_SESSION_ID}"), 404, "NOT_FOUND")
    assert error["message"] == "Requested entity was not found."


# --- authentication -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sessions"),
        ("POST", "/sessions"),
        ("GET", f"/sessions/{MISSING_SESSION_ID}"),
        ("DELETE", f"/sessions/{MISSING_SESSION_ID}"),
        ("POST", f"/sessions/{MISSING_SESSION_ID}:sendMessage"),
        ("POST", f"/sessions/{MISSING_SESSION_ID}:approvePlan"),
        ("GET", f"/sessions/{MISSING_SESSION_ID}/activities"),
    ],
)
def test_missing_or_wrong_key_is_unauthenticated(
    server: LiveServer, method: str, path: str
) -> None:
    with httpx.Client(base_url=server.api) as anonymous:
        response = anonymous.request(method, path, json={"prompt": "x"})
        expect_error(response, 401, "UNAUTHENTICATED")
        response = anonymous.request(
            method, path, json={"prompt": "x"}, headers={"X-Goog-Api-Key": "not-a-key"}
        )
        expect_error(response, 401, "UNAUTHENTICATED")
        response = anonymous.request(method, path, params={"key": "not-a-key"})
        expect_error(response, 401, "UNAUTHENTICATED")


def test_a_rejected_request_changes_nothing(client: httpx.Client, server: LiveServer) -> None:
    sid = create_session(client)["id"]
    with httpx.Client(base_url=server.api) as anonymous:
        expect_error(anonymous.delete(f"/sessions/{sid}"), 401, "UNAUTHENTICATED")
        expect_error(
            anonymous.post(f"/sessions/{sid}:sendMessage", json={"prompt": "x"}),
            401,
            "UNAUTHENTICATED",
        )
    assert ok_json(client.get(f"/sessions/{sid}"))["id"] == sid
    assert ok_json(client.get(f"/sessions/{sid}/activities")) == {}


def test_key_query_parameter_works(server: LiveServer, api_key: str) -> None:
    with httpx.Client(base_url=server.api) as c:
        created = ok_json(c.post("/sessions", params={"key": api_key}, json={"prompt": "x"}))
        listed = ok_json(c.get("/sessions", params={"key": api_key}))
    assert [s["id"] for s in listed["sessions"]] == [created["id"]]


@pytest.mark.parametrize("header", ["X-Goog-Api-Key", "x-goog-api-key", "X-GOOG-API-KEY"])
def test_key_header_name_is_case_insensitive(
    server: LiveServer, api_key: str, header: str
) -> None:
    with httpx.Client(base_url=server.api, headers={header: api_key}) as c:
        raw = [k for k, _ in c.build_request("GET", "/sessions").headers.raw]
        assert header.encode() in raw
        session = ok_json(c.post("/sessions", json={"prompt": "x"}))
        assert ok_json(c.get(f"/sessions/{session['id']}"))["id"] == session["id"]
