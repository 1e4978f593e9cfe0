"""API keys on the wire: X-Goog-Api-Key in any case or ?key=, 401 envelopes, CORS."""

from __future__ import annotations

import secrets

import httpx
import pytest

from openjules.testing import LiveServer, provision_user


def _unauthenticated(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == 401
    assert error["status"] == "UNAUTHENTICATED"
    return str(error["message"])


@pytest.mark.parametrize("header", ["X-Goog-Api-Key", "x-goog-api-key", "X-GOOG-API-KEY"])
def test_key_header_in_any_case(server: LiveServer, api_key: str, header: str) -> None:
    with httpx.Client(base_url=server.api, headers={header: api_key}, timeout=30) as c:
        created = c.post("/sessions", json={"prompt": "header auth"})
        assert created.status_code == 200, created.text
        assert c.get(f"/sessions/{created.json()['id']}").status_code == 200


def test_key_query_parameter(server: LiveServer, api_key: str) -> None:
    created = httpx.post(
        f"{server.api}/sessions", params={"key": api_key}, json={"prompt": "query auth"}, timeout=30
    )
    assert created.status_code == 200, created.text
    sid = created.json()["id"]
    listed = httpx.get(f"{server.api}/sessions", params={"key": api_key}, timeout=30)
    assert [s["id"] for s in listed.json()["sessions"]] == [sid]
    got = httpx.get(f"{server.api}/sources", params={"key": api_key}, timeout=30)
    assert got.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sessions"),
        ("POST", "/sessions"),
        ("GET", "/sessions/1234567890123456789"),
        ("POST", "/sessions/1234567890123456789:sendMessage"),
        ("POST", "/sessions/1234567890123456789:approvePlan"),
        ("DELETE", "/sessions/1234567890123456789"),
        ("GET", "/sessions/1234567890123456789/activities"),
        ("GET", "/sources"),
        ("GET", "/sources/github/acme/app"),
    ],
)
def test_every_method_needs_a_key(server: LiveServer, method: str, path: str) -> None:
    """Without a key every method says 401, before any 404 or 400 could leak information."""
    response = httpx.request(method, f"{server.api}{path}", json={"prompt": "x"}, timeout=30)
    message = _unauthenticated(response)
    assert "X-Goog-Api-Key" in message, "the message tells how to authenticate"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Goog-Api-Key": "ojk_000000000000_not-a-real-key"},
        {"X-Goog-Api-Key": "AIzaSyD-some-google-key"},
        {"X-Goog-Api-Key": ""},
    ],
    ids=["forged", "google-key", "empty"],
)
def test_wrong_key_is_unauthenticated(server: LiveServer, headers: dict[str, str]) -> None:
    _unauthenticated(httpx.get(f"{server.api}/sessions", headers=headers, timeout=30))


def test_bearer_token_is_not_an_api_key(server: LiveServer, api_key: str) -> None:
    """Jules takes keys only in X-Goog-Api-Key (or ?key=), never as a bearer token."""
    response = httpx.get(
        f"{server.api}/sessions", headers={"Authorization": f"Bearer {api_key}"}, timeout=30
    )
    _unauthenticated(response)


def test_keys_of_one_user_share_sessions_others_see_nothing(server: LiveServer) -> None:
    name = f"team-{secrets.token_hex(4)}"
    first = provision_user(server.settings, name=name)
    second = provision_user(server.settings, name=name)
    stranger = provision_user(server.settings, name=f"other-{secrets.token_hex(4)}")
    assert first != second

    def get(key: str, path: str) -> httpx.Response:
        return httpx.get(f"{server.api}{path}", headers={"X-Goog-Api-Key": key}, timeout=30)

    created = httpx.post(
        f"{server.api}/sessions",
        headers={"X-Goog-Api-Key": first},
        json={"prompt": "mine"},
        timeout=30,
    ).json()
    sid = created["id"]
    assert get(second, f"/sessions/{sid}").json() == created
    assert [s["id"] for s in get(second, "/sessions").json()["sessions"]] == [sid]

    hidden = get(stranger, f"/sessions/{sid}")
    assert hidden.status_code == 404
    assert hidden.json()["error"]["status"] == "NOT_FOUND"
    assert get(stranger, "/sessions").json() == {}
    assert get(stranger, f"/sessions/{sid}/activities").status_code == 404
    for verb in ("sendMessage", "archive"):
        response = httpx.post(
            f"{server.api}/sessions/{sid}:{verb}",
            headers={"X-Goog-Api-Key": stranger},
            json={"prompt": "hijack"} if verb == "sendMessage" else {},
            timeout=30,
        )
        assert response.status_code == 404, (verb, response.text)
    deleted = httpx.delete(
        f"{server.api}/sessions/{sid}", headers={"X-Goog-Api-Key": stranger}, timeout=30
    )
    assert deleted.status_code == 404
    assert get(first, f"/sessions/{sid}").json() == created, "untouched by the stranger"


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/v1alpha/sessions", "POST"),
        ("/v1alpha/sessions/1234567890123456789:approvePlan", "POST"),
        ("/v1alpha/sessions/1234567890123456789", "DELETE"),
        ("/v1alpha/sources/github/acme/app", "GET"),
    ],
)
def test_cors_preflight_needs_no_key(server: LiveServer, path: str, method: str) -> None:
    response = httpx.options(
        f"{server.url}{path}",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "x-goog-api-key, content-type",
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    allowed_origin = response.headers["access-control-allow-origin"]
    assert allowed_origin in ("*", "https://app.example")
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert "x-goog-api-key" in allowed_headers
    assert "content-type" in allowed_headers
    assert method in response.headers["access-control-allow-methods"]


def test_browser_can_read_responses_and_errors(server: LiveServer, api_key: str) -> None:
    origin = {"Origin": "https://app.example"}
    ok = httpx.get(
        f"{server.api}/sessions", headers={**origin, "X-Goog-Api-Key": api_key}, timeout=30
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] in ("*", "https://app.example")
    denied = httpx.get(f"{server.api}/sessions", headers=origin, timeout=30)
    _unauthenticated(denied)
    assert denied.headers["access-control-allow-origin"] in ("*", "https://app.example")
