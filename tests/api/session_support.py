"""Helpers shared by the sessions/activities HTTP-surface tests (plain functions, no fixtures)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from openjules.testing import LiveServer, register_source

# RFC 3339, UTC, exactly six fractional digits: what every timestamp on the wire looks like.
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
SESSION_ID = re.compile(r"^[1-9][0-9]{18}$")
HEX_ID = re.compile(r"^[0-9a-f]{32}$")
ACTIVITY_KINDS = frozenset(
    {
        "agentMessaged",
        "userMessaged",
        "planGenerated",
        "planApproved",
        "progressUpdated",
        "sessionCompleted",
        "sessionFailed",
    }
)
CANONICAL_STATUSES = frozenset(
    {
        "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
        "UNAVAILABLE", "DATA_LOSS",
    }
)
OWNER = "acme"
REPO = "demo"
SOURCE_NAME = f"sources/github/{OWNER}/{REPO}"


def add_source(server: LiveServer, git_repo: Path) -> str:
    """Register the test repository (branches main, develop, feature/x) as a source."""
    return register_source(server.settings, location=str(git_repo), owner=OWNER, repo=REPO)


def api_client(server: LiveServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.api, headers={"X-Goog-Api-Key": key}, timeout=30)


def micros(timestamp: str) -> int:
    """Microseconds since the epoch of a wire timestamp (asserting its exact format)."""
    assert TIMESTAMP.match(timestamp), timestamp
    moment = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def create_session(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": "Add a CHANGELOG", **fields}
    response = client.post("/sessions", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def ok_json(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def expect_error(response: httpx.Response, code: int, status: str | None = None) -> dict[str, Any]:
    """Assert Google's error envelope with ``code`` (and ``status``); return ``error``."""
    assert response.status_code == code, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["status"] in CANONICAL_STATUSES
    if status is not None:
        assert error["status"] == status, error
    return error


def field_violations(error: dict[str, Any]) -> list[str]:
    """The ``field`` of every BadRequest field violation in an error."""
    fields: list[str] = []
    for detail in error.get("details", []):
        if detail.get("@type") == "type.googleapis.com/google.rpc.BadRequest":
            fields.extend(v["field"] for v in detail["fieldViolations"])
    return fields


def list_activities(client: httpx.Client, session_id: str, **params: str) -> list[dict[str, Any]]:
    """All activities of a session (following nextPageToken)."""
    return walk(client, f"/sessions/{session_id}/activities", "activities", params)


def walk(
    client: httpx.Client, path: str, key: str, params: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every item of a list method, page by page, until no nextPageToken is returned."""
    items: list[dict[str, Any]] = []
    query = dict(params or {})
    for _ in range(1000):
        page = ok_json(client.get(path, params=query))
        items.extend(page.get(key, []))
        token = page.get("nextPageToken")
        if not token:
            return items
        query["pageToken"] = token
    raise AssertionError("pagination did not end")
