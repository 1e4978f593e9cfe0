"""Deleting or cancelling a running session stops its work at once: the sandboxed
command's whole process tree is killed, the workspace removed, the job let go, and the
worker is free for the next session instead of waiting for the command (or the lease
renewal) to end. In the API's process ``Runner.cancel`` does it; an `openjules worker` in
another process hears of the cancel through the database's change feed."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.testing import FakeModel, LiveServer, register_source
from tests.conftest import backends_with_temporal
from tests.engine.agent_support import call, needs_bubblewrap
from tests.engine.stop_support import (
    command_marker,
    the_sleep,
    wait,
    wait_stopped,
)
from tests.engine.worker_support import Worker
from tests.support import (
    TERMINAL,
    kinds,
    list_activities,
    make_repo,
    processes_with,
    wait_for_state,
)

pytestmark = needs_bubblewrap
CANCELLED = {"reason": "Cancelled by the user."}
# A cancel must stop everything within 2 s (the bound); the test waits longer only
# so that a slow, shared machine does not make it flaky. The figures are printed.
DEADLINE_S = 10.0

backend = backends_with_temporal()
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
    lands mid-checkout, in a thread that cannot be interrupted, while the agent's first
    tool waits for the tree; what the checkout made is removed."""
    repo = make_repo(
        tmp_path / "big", {f"src/m{i // 100}/f{i}.py": f"x = {i}\n" for i in range(6000)}
    )
    fake_model.push(call("list_files", path="."))
    name = f"big-{secrets.token_hex(3)}"
    source = register_source(agent_server.settings, location=str(repo), owner="acme", repo=name)
    context = {"source": source, "githubRepoContext": {"startingBranch": "main"}}
    sid = client.post("/sessions", json={"prompt": "Wait", "sourceContext": context}).json()["id"]
    workspace = agent_server.settings.data_dir / "workspaces" / sid
    _wait(workspace.exists, seconds=30, what="the checkout starting")
    # Still checking out (the first turn may have been asked meanwhile).
    assert client.get(f"/sessions/{sid}").json()["state"] in ("QUEUED", "PLANNING")

    assert client.delete(f"/sessions/{sid}").status_code == 200
    _wait(lambda: not workspace.exists(), seconds=30, what="the workspace being removed")
    time.sleep(1.0)  # nothing recreates it afterwards
    assert not workspace.exists()
    assert len(fake_model.requests) <= 1  # the first turn at most: its tool never ran


def test_cancelling_mid_command_kills_it_and_fails_the_session(
    agent_server: LiveServer,
    client: httpx.Client,
    fake_model: FakeModel,
    source: str,
    backend: str,
) -> None:
    marker = command_marker()
    fake_model.push(
        call("propose_plan", steps=[{"title": "Wait"}]),
        call("shell", command=f"touch started && {marker}"),
    )
    context = {"source": source, "githubRepoContext": {"startingBranch": "main"}}
    sid = client.post("/sessions", json={"prompt": "Wait", "sourceContext": context}).json()["id"]
    workspace = agent_server.settings.data_dir / "workspaces" / sid
    wait(lambda: the_sleep(marker), seconds=30, what="the command starting")
    assert any(workspace.rglob("started"))

    began = time.monotonic()
    answer = client.post(f"/sessions/{sid}:cancel")
    answered = time.monotonic() - began
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "FAILED"
    stopped = wait_stopped(
        agent_server.settings, sid, marker=marker, workspace=workspace, seconds=DEADLINE_S
    )
    print(stopped.report(f"cancel, in-process, {backend}, answered in {answered * 1000:.0f} ms"))
    last = list_activities(client, sid)[-1]
    assert (last["sessionFailed"], last["originator"]) == (CANCELLED, "user")
    assert client.get(f"/sessions/{sid}").json()["state"] == "FAILED"

    # Cancelling again, like cancelling a session that completed, is refused.
    refused = client.post(f"/sessions/{sid}:cancel")
    assert (refused.status_code, refused.json()["error"]["status"]) == (400, "FAILED_PRECONDITION")

    # A message wakes it like any failed session: the workspace is rebuilt and the agent
    # reads the message.
    fake_model.push(call("finish", summary="Stopped waiting.", commit_message="Nothing"))
    woken = client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "Never mind, finish."})
    assert woken.status_code == 200
    session = wait_for_state(client, sid, set(TERMINAL), timeout=30)
    assert session["state"] == "COMPLETED"
    assert {"role": "user", "content": "Never mind, finish."} in fake_model.requests[-1]["messages"]
    assert kinds(list_activities(client, sid))[-3:] == [
        "sessionFailed",
        "userMessaged",
        "sessionCompleted",
    ]


def test_cancelling_a_session_a_worker_process_runs_kills_its_command(
    api: LiveServer, user: httpx.Client, repo: Path, tmp_path: Path, backend: str
) -> None:
    """The API (no workers) and the worker share only the database: the worker hears of
    the cancel through LISTEN/NOTIFY (PostgreSQL) or its change poll (SQLite), well before
    its lease renewal, which a 300 s lease puts 100 s away."""
    source = register_source(
        api.settings, location=str(repo), owner="acme", repo=f"far-{secrets.token_hex(3)}"
    )
    marker = command_marker()
    script = [
        call("propose_plan", steps=[{"title": "Wait"}]),
        call("shell", command=f"touch started && {marker}"),
    ]
    home = tmp_path / "worker"
    with FakeModel(script) as model:
        worker = Worker(
            settings=api.settings,
            model=model,
            home=home,
            extra_env={"OPENJULES_LEASE_SECONDS": "300"},
        )
        try:
            sid = user.post(
                "/sessions", json={"prompt": "Wait", "sourceContext": {"source": source}}
            ).json()["id"]
            workspace = home / "data" / "workspaces" / sid
            wait(lambda: the_sleep(marker), seconds=60, what="the command starting")
            assert any(workspace.rglob("started"))

            answer = user.post(f"/sessions/{sid}:cancel", content=b"")
            assert answer.json()["state"] == "FAILED"
            stopped = wait_stopped(
                api.settings, sid, marker=marker, workspace=workspace, seconds=DEADLINE_S
            )
        finally:
            worker.stop()
    print(stopped.report(f"cancel, worker process, {backend}"))
    last = list_activities(user, sid)[-1]
    assert (last["sessionFailed"], last["originator"]) == (CANCELLED, "user")
    # Stopped because it was no longer wanted: neither a failure to retry nor one to give
    # up on (the runner's log lines for those).
    log = worker.log.read_text()
    assert "failed in the runner" not in log
    assert "giving up" not in log
