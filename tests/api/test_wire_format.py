"""Byte-level response shape: headers, timestamps, omitted defaults (jules-api.md §1, §16)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.testing import LiveServer
from tests import driver
from tests.api.session_support import TIMESTAMP, add_source, create_session
from tests.support import list_activities, ok_json

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def source(server: LiveServer, git_repo: Path) -> str:
    return add_source(server, git_repo)


def assert_plain_json(response: httpx.Response) -> Any:
    """application/json with an exact Content-Length (no chunking), parseable strictly."""
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.content))
    assert "transfer-encoding" not in response.headers
    return json.loads(response.content)


def timestamps(value: Any, *, key: str = "") -> list[str]:
    """Every value under a key ending in 'Time', anywhere in a JSON document."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in timestamps(v, key=k)]
    if isinstance(value, list):
        return [t for v in value for t in timestamps(v, key=key)]
    return [value] if key.endswith("Time") else []


def test_every_response_has_json_content_type_and_length(
    client: httpx.Client, server: LiveServer, source: str
) -> None:
    session = create_session(client, sourceContext={"source": source})
    sid = session["id"]
    driver.propose_plan(server.settings, sid, steps=["a", "b"], require_approval=True)
    activity = list_activities(client, sid)[0]
    responses = [
        client.post("/sessions", json={"prompt": "x"}),
        client.get("/sessions"),
        client.get(f"/sessions/{sid}"),
        client.get(f"/sessions/{sid}/activities"),
        client.get(f"/{activity['name']}"),
        client.post(f"/sessions/{sid}:approvePlan"),
        client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "y"}),
        client.post(f"/sessions/{sid}:archive"),
        client.post(f"/sessions/{sid}:unarchive"),
        client.delete(f"/sessions/{sid}"),
        client.get(f"/sessions/{sid}"),
    ]
    assert [r.status_code for r in responses] == [200] * 10 + [404]
    for response in responses:
        assert_plain_json(response)


def test_empty_bodies_are_an_empty_json_object(client: httpx.Client) -> None:
    sid = create_session(client)["id"]
    for response in (
        client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "y"}),
        client.delete(f"/sessions/{sid}"),
        client.get("/sessions"),
    ):
        assert response.status_code == 200
        assert response.content == b"{}"
        assert response.headers["content-length"] == "2"


def test_gets_with_a_json_content_type_are_accepted(client: httpx.Client) -> None:
    # The TS SDK, jules-api, junes and jules-cli send Content-Type on GETs and DELETEs too.
    sid = create_session(client)["id"]
    assert ok_json(client.get(f"/sessions/{sid}", headers=JSON))["id"] == sid
    assert ok_json(client.get("/sessions", headers=JSON))["sessions"][0]["id"] == sid
    assert ok_json(client.get(f"/sessions/{sid}/activities", headers=JSON)) == {}
    assert ok_json(client.delete(f"/sessions/{sid}", headers=JSON)) == {}


def test_every_timestamp_has_six_fractional_digits_in_utc(
    client: httpx.Client, server: LiveServer
) -> None:
    sid = create_session(client)["id"]
    driver.propose_plan(server.settings, sid, steps=["a"], require_approval=False)
    driver.add_progress(server.settings, sid, titles=[f"t{i}" for i in range(30)])
    driver.complete(server.settings, sid, patch="", base_commit="b" * 40)
    documents = [
        ok_json(client.get(f"/sessions/{sid}")),
        ok_json(client.get("/sessions")),
        ok_json(client.get(f"/sessions/{sid}/activities")),
    ]
    found = [t for doc in documents for t in timestamps(doc)]
    # Session create+update twice, 33 activities, and the plan's createTime.
    assert len(found) >= 4 + 33 + 1
    for stamp in found:
        assert TIMESTAMP.match(stamp), stamp


def test_defaults_and_empty_fields_are_omitted(client: httpx.Client, server: LiveServer) -> None:
    session = create_session(client)
    for key in ("outputs", "archived", "sourceContext", "requirePlanApproval", "automationMode"):
        assert key not in session
    sid = session["id"]
    ok_json(client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "hello"}))
    message = list_activities(client, sid)[0]
    # No artifacts, no description: the keys are absent, not empty.
    assert set(message) == {"name", "id", "createTime", "originator", "userMessaged"}
    assert ok_json(client.get("/sessions", params={"filter": "archived = true"})) == {}


def test_text_round_trips_exactly(client: httpx.Client) -> None:
    prompt = "Fix «emoji» 🐛 handling\n\tand \"quotes\" \\ and </script> & \u2028 too"
    session = create_session(client, prompt=prompt, title="Titel mit Ümlaut 🐛")
    assert session["prompt"] == prompt
    assert session["title"] == "Titel mit Ümlaut 🐛"
    fetched = client.get(f"/sessions/{session['id']}")
    assert assert_plain_json(fetched)["prompt"] == prompt
