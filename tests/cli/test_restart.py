"""Stopping `openjules serve` (SIGTERM or SIGKILL) and starting it again loses nothing."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx

from openjules.settings import Settings
from openjules.testing import register_source
from tests.cli.support import ServeProcess, Target
from tests.support import ok_json, walk

SOURCE = "sources/github/acme/app"


def _get(client: httpx.Client, path: str) -> dict[str, Any]:
    return ok_json(client.get(path))


def _all(client: httpx.Client, path: str, key: str, **params: str) -> list[dict[str, Any]]:
    """Every item, two per page (so that every list is read over several pages)."""
    return walk(client, path, key, {"pageSize": "2", **params})


def _populate(client: httpx.Client) -> dict[str, str]:
    """Sessions in several shapes, with messages; two archived (one unarchived again), one
    deleted. Returns their ids by role."""

    def create(body: dict[str, Any]) -> str:
        response = client.post("/sessions", json=body)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    ids = {
        "with_source": create(
            {
                "prompt": "Add a changelog",
                "title": "Changelog",
                "sourceContext": {
                    "source": SOURCE,
                    "githubRepoContext": {"startingBranch": "develop"},
                },
                "requirePlanApproval": True,
                "automationMode": "AUTO_CREATE_PR",
            }
        ),
        "archived": create({"prompt": "Repoless question"}),
        "unarchived": create({"prompt": "Archived, then back"}),
        "deleted": create({"prompt": "Soon gone"}),
    }
    for sid, texts in (
        (ids["with_source"], ["first note", "second note"]),
        (ids["archived"], ["only note"]),
        (ids["unarchived"], ["a note"]),
    ):
        for text in texts:
            response = client.post(f"/sessions/{sid}:sendMessage", json={"prompt": text})
            assert response.status_code == 200, response.text
    for verb, sid in (
        ("archive", ids["archived"]),
        ("archive", ids["unarchived"]),
        ("unarchive", ids["unarchived"]),
    ):
        assert client.post(f"/sessions/{sid}:{verb}").status_code == 200
    assert client.delete(f"/sessions/{ids['deleted']}").status_code == 200
    return ids


def _snapshot(client: httpx.Client, ids: dict[str, str]) -> dict[str, Any]:
    """Everything a client can read back: full JSON of sessions, activities and sources."""
    kept = [v for k, v in ids.items() if k != "deleted"]
    return {
        "listed": _all(client, "/sessions", "sessions"),
        "listed_archived": _all(client, "/sessions", "sessions", filter="archived = true"),
        "sessions": {sid: _get(client, f"/sessions/{sid}") for sid in kept},
        "activities": {
            sid: _all(client, f"/sessions/{sid}/activities", "activities") for sid in kept
        },
        "activity_gets": {
            sid: [
                _get(client, f"/sessions/{sid}/activities/{a['id']}")
                for a in _all(client, f"/sessions/{sid}/activities", "activities")
            ]
            for sid in kept
        },
        "deleted_status": client.get(f"/sessions/{ids['deleted']}").status_code,
        "sources": _all(client, "/sources", "sources"),
    }


def _assert_meaningful(before: dict[str, Any], ids: dict[str, str]) -> None:
    """The snapshot is not trivially empty: it holds what _populate made."""
    sessions = before["sessions"]
    assert [s["id"] for s in before["listed"]] == [ids["unarchived"], ids["with_source"]]
    assert [s["id"] for s in before["listed_archived"]] == [ids["archived"]]
    assert sessions[ids["archived"]]["archived"] is True
    assert "archived" not in sessions[ids["unarchived"]]
    assert sessions[ids["with_source"]]["sourceContext"]["source"] == SOURCE
    assert [len(before["activities"][ids[k]]) for k in ("with_source", "archived")] == [2, 1]
    assert before["activity_gets"] == before["activities"]
    assert before["deleted_status"] == 404
    assert [s["name"] for s in before["sources"]] == [SOURCE]


def test_restart_after_sigterm_and_sigkill_loses_nothing(
    fresh_target: Target, git_repo: Path
) -> None:
    logs = fresh_target.home / "logs"
    with ServeProcess(fresh_target, log_dir=logs) as first:
        key = first.printed_key()
        assert key is not None, first.output()
        # Registered while the server runs (`openjules sources add` has tests of its own).
        settings = Settings(
            data_dir=fresh_target.data_dir, database_url=fresh_target.database_url or ""
        )
        register_source(settings, location=str(git_repo), owner="acme", repo="app")
        with first.client(key) as client:
            ids = _populate(client)
            before = _snapshot(client, ids)
        first.terminate_cleanly()
    _assert_meaningful(before, ids)

    # Same address as before: Session.url names it.
    with ServeProcess(fresh_target, log_dir=logs, port=first.port) as second:
        assert second.printed_key() is None, second.output()
        with second.client(key) as client:
            assert _snapshot(client, ids) == before

            # It carries on: a new message lands after the old ones, which are unchanged.
            sid = ids["with_source"]
            old = before["activities"][sid]
            sent = client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "after"})
            assert sent.json() == {}
            now = _all(client, f"/sessions/{sid}/activities", "activities")
            assert now[:-1] == old
            assert now[-1]["userMessaged"] == {"userMessage": "after"}
            assert now[-1]["id"] not in {a["id"] for a in old}
            assert now[-1]["createTime"] > old[-1]["createTime"]
            new = client.post("/sessions", json={"prompt": "after restart"}).json()
            assert new["id"] not in ids.values()
            assert client.post(f"/sessions/{ids['unarchived']}:archive").status_code == 200
            ids["late"] = new["id"]
            before_kill = _snapshot(client, ids)
        # No graceful shutdown at all: whatever was acknowledged must already be durable.
        assert second.stop(signal.SIGKILL) == -signal.SIGKILL

    assert before_kill != before
    assert [s["id"] for s in before_kill["listed"]] == [ids["late"], ids["with_source"]]
    with ServeProcess(fresh_target, log_dir=logs, port=first.port) as third:
        assert third.printed_key() is None, third.output()
        with third.client(key) as client:
            assert _snapshot(client, ids) == before_kill
        third.terminate_cleanly()
