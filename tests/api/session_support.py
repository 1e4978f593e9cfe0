"""API-specific helpers for the sessions/activities HTTP-surface tests (plain functions, no
fixtures): wire formats, Google's error envelope, the test source. Generic helpers (client,
pages, activities) are in tests/support.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from openjules.testing import LiveServer, register_source
from tests.support import OWNER, REPO, ok_json

# RFC 3339, UTC, exactly six fractional digits: what every timestamp on the wire looks like.
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
SESSION_ID = re.compile(r"^[1-9][0-9]{18}$")
HEX_ID = re.compile(r"^[0-9a-f]{32}$")
CANONICAL_STATUSES = frozenset(
    {
        "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
        "UNAVAILABLE", "DATA_LOSS",
    }
)


def add_source(server: LiveServer, git_repo: Path) -> str:
    """Register the test repository (branches main, develop, feature/x) as a source."""
    return register_source(server.settings, location=str(git_repo), owner=OWNER, repo=REPO)


def micros(timestamp: str) -> int:
    """Microseconds since the epoch of a wire timestamp (asserting its exact format)."""
    assert TIMESTAMP.match(timestamp), timestamp
    moment = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def create_session(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    """A new session (prompt "Add a CHANGELOG" unless ``fields`` say otherwise)."""
    return ok_json(client.post("/sessions", json={"prompt": "Add a CHANGELOG", **fields}))


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
