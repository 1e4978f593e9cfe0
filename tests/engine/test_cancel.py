"""Deleting a running session stops its work at once (``Runner.cancel``): the sandboxed
command is killed, the workspace removed, and the worker is free for the next session
instead of waiting for the command (or the lease renewal) to end."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.testing import FakeModel, LiveServer, register_source
from tests.engine.agent_support import call, needs_bubblewrap
from tests.support import TERMINAL, make_repo, processes_with, wait_for_state

pytestmark = needs_bubblewrap

# A sleep nobody else runs, so the test can find its process.
SLEEP = "sleep 47.25"


@pytest.fixture
def agent_settings_overrides() -> dict[str, Any]:
    # One worker: the second session can only start once the first one's work stopped.
    # A long lease: the lease renewal (every lease/3) cannot be what stops the work.
    return {"workers": 1, "lease_seconds": 300.0}


def _sleepers() -> list[int]:
    """The sleep itself (not the shell that started it, whose command line names it too)."""
    return [pid for pid in processes_with(SLEEP) if pid not in processes_with("bash -c")]


def _wait(predicate: Any, *, seconds: float, what: str) -> float:
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > seconds:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        time.sleep(0.05)
    return time.monotonic() - began


def test_deleting_a_running_session_kills_its_command_and_frees_the_worker(
    agent_server: LiveServer, client: httpx.Client, fake_model: FakeModel, source: str
) -> None:
    fake_model.push(
        call("propose_plan", steps=[{"title": "Wait"}]),
        call("shell", command=f"touch started && {SLEEP}"),
        # The next session's script: it can only run once the first one let go.
        call("propose_plan", steps=[{"title": "Nothing"}]),
        call("finish", summary="Nothing to do.", commit_message="Nothing"),
    )
    context = {"source": source, "githubRepoContext": {"startingBranch": "main"}}
    first = client.post("/sessions", json={"prompt": "Wait", "sourceContext": context}).json()
    workspace = agent_server.settings.data_dir / "workspaces" / first["id"]
    _wait(lambda: bool(_sleepers()), seconds=30, what="the command starting")
    assert any(workspace.rglob("started"))

    assert client.delete(f"/sessions/{first['id']}").status_code == 200
    stopped_in = _wait(lambda: not _sleepers(), seconds=5, what="the command being killed")
    _wait(lambda: not workspace.exists(), seconds=5, what="the workspace being removed")

    second = client.post("/sessions", json={"prompt": "Next", "sourceContext": context}).json()
    session = wait_for_state(client, second["id"], set(TERMINAL), timeout=20)
    assert session["state"] == "COMPLETED"
    assert client.get(f"/sessions/{first['id']}").status_code == 404
    assert stopped_in < 5


def test_deleting_a_session_while_its_workspace_is_checked_out_leaves_no_workspace(
    agent_server: LiveServer, client: httpx.Client, fake_model: FakeModel, tmp_path: Path
) -> None:
    """The first session of a big source checks it out in full (seconds): a delete then
    lands mid-checkout, in a thread that cannot be interrupted; what it made is removed."""
    repo = make_repo(
        tmp_path / "big", {f"src/m{i // 100}/f{i}.py": f"x = {i}\n" for i in range(6000)}
    )
    name = f"big-{secrets.token_hex(3)}"
    source = register_source(agent_server.settings, location=str(repo), owner="acme", repo=name)
    context = {"source": source, "githubRepoContext": {"startingBranch": "main"}}
    sid = client.post("/sessions", json={"prompt": "Wait", "sourceContext": context}).json()["id"]
    workspace = agent_server.settings.data_dir / "workspaces" / sid
    _wait(workspace.exists, seconds=30, what="the checkout starting")
    assert client.get(f"/sessions/{sid}").json()["state"] == "QUEUED"  # still preparing

    assert client.delete(f"/sessions/{sid}").status_code == 200
    _wait(lambda: not workspace.exists(), seconds=30, what="the workspace being removed")
    time.sleep(1.0)  # nothing recreates it afterwards
    assert not workspace.exists()
    assert fake_model.requests == []  # the agent never started
