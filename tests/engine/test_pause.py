"""Pausing a session stops its agent at once and holds nothing (no job leased, no sandbox
process, no workspace); resuming puts it back where it was, and it continues from its last
recorded step: the step the pause interrupted runs again, nothing else does, and the final
patch is the one an uninterrupted run makes. A message sent while paused reaches the model
after the resume. In the API's process and with an `openjules worker` in another one."""

from __future__ import annotations

import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.testing import FakeModel, LiveServer, Reply, register_source
from tests.conftest import backends_with_temporal
from tests.engine.agent_support import call, needs_bubblewrap
from tests.engine.stop_support import (
    command_marker,
    job_of,
    the_sleep,
    wait,
    wait_stopped,
)
from tests.engine.worker_support import Worker, scripted, turn_of
from tests.support import TERMINAL, kinds, list_activities, wait_for_state

pytestmark = needs_bubblewrap

backend = backends_with_temporal()
# The bound is 2 s; the tests wait longer only so a busy machine does not make them
# flaky, and print the figures.
DEADLINE_S = 10.0
SHELL_TURN = 2
MESSAGE = "Also keep the files short."
BY_USER = {"Paused by the user", "Resumed by the user"}


@pytest.fixture
def agent_settings_overrides() -> dict[str, Any]:
    # A long lease: its renewal (every lease/3) cannot be what stops the work.
    return {"lease_seconds": 300.0}


def script(sleep: str) -> list[Reply]:
    return [
        call("propose_plan", steps=[{"title": "Write two files"}]),
        call("write_file", path="first.txt", content="one\n"),
        call("shell", command=f"{sleep}; echo slept > slept.txt"),
        call("write_file", path="second.txt", content="two\n"),
        call("complete_step", title="Wrote the files"),
        call("finish", summary="Two files.", commit_message="Add two files"),
    ]


REFERENCE = script("sleep 0.1")


def long_command_once(marker: str) -> Any:
    """The script, whose command sleeps long the first time only: the pause lands in it,
    and the run after the resume does not wait for it again."""
    first, then = scripted(script(marker)), scripted(REFERENCE)
    asked = Counter[int]()

    def respond(request: dict[str, Any]) -> Reply:
        turn = turn_of(request)
        asked[turn] += 1
        reply: Reply = (first if turn == SHELL_TURN and asked[turn] == 1 else then)(request)
        return reply

    return respond


def patch_of(session: dict[str, Any]) -> str:
    patch: str = session["outputs"][-1]["changeSet"]["gitPatch"]["unidiffPatch"]
    return patch


def requests_of(model: FakeModel, prompt: str) -> list[dict[str, Any]]:
    return [r for r in model.requests if r["messages"][1]["content"] == prompt]


def without_pause(activities: list[dict[str, Any]]) -> list[str]:
    """The kinds of the activities, less what the pause, the message and the resume added."""
    kept = [
        a
        for a in activities
        if "userMessaged" not in a and a.get("progressUpdated", {}).get("title") not in BY_USER
    ]
    return kinds(kept)


def create(client: httpx.Client, source: str, prompt: str) -> str:
    body = {"prompt": prompt, "sourceContext": {"source": source}}
    sid: str = client.post("/sessions", json=body).json()["id"]
    return sid


def post_state(client: httpx.Client, path: str, **kwargs: Any) -> str:
    response = client.post(path, **kwargs)
    assert response.status_code == 200, response.text
    state: str = response.json()["state"]
    return state


@pytest.mark.parametrize("quick", [False, True], ids=["paused-a-while", "resumed-at-once"])
def test_a_paused_session_resumes_where_it_stopped(
    agent_server: LiveServer,
    client: httpx.Client,
    fake_model: FakeModel,
    source: str,
    backend: str,
    quick: bool,
) -> None:
    """In the API's process, with two workers: a resume right after the pause must not let
    the second worker start on the session while the first still runs it."""
    fake_model.respond_with(scripted(REFERENCE))
    reference = wait_for_state(client, create(client, source, "Reference"), TERMINAL, timeout=60)
    assert reference["state"] == "COMPLETED"
    expected_kinds = kinds(list_activities(client, reference["id"]))

    marker = command_marker()
    fake_model.respond_with(long_command_once(marker))
    prompt = f"Pause me {secrets.token_hex(3)}"
    sid = create(client, source, prompt)
    workspace = agent_server.settings.data_dir / "workspaces" / sid
    wait(lambda: the_sleep(marker), seconds=60, what="the command starting")

    assert post_state(client, f"/sessions/{sid}:pause") == "PAUSED"
    if not quick:
        stopped = wait_stopped(
            agent_server.settings, sid, marker=marker, workspace=workspace, seconds=DEADLINE_S
        )
        print(stopped.report(f"pause, in-process, {backend}"))
        assert client.get(f"/sessions/{sid}").json()["state"] == "PAUSED"
        # Kept for the model; the session stays paused.
        assert client.post(f"/sessions/{sid}:sendMessage", json={"prompt": MESSAGE}).json() == {}
        assert client.get(f"/sessions/{sid}").json()["state"] == "PAUSED"
    assert post_state(client, f"/sessions/{sid}:resume") == "IN_PROGRESS"
    session = wait_for_state(client, sid, TERMINAL, timeout=60)

    assert session["state"] == "COMPLETED"
    assert patch_of(session) == patch_of(reference)
    activities = list_activities(client, sid)
    assert without_pause(activities) == expected_kinds
    assert len({a["id"] for a in activities}) == len(activities)
    asked = Counter(turn_of(r) for r in requests_of(fake_model, prompt))
    # Every recorded step ran once; the interrupted one ran again (unless the resume came
    # before the pause had stopped it, when it simply went on).
    assert {turn: n for turn, n in asked.items() if turn != SHELL_TURN} == dict.fromkeys(
        (t for t in range(len(REFERENCE)) if t != SHELL_TURN), 1
    )
    if quick:
        assert 1 <= asked[SHELL_TURN] <= 2
    else:
        assert asked[SHELL_TURN] == 2
    if not quick:
        after_resume = requests_of(fake_model, prompt)[-1]["messages"]
        assert {"role": "user", "content": MESSAGE} in after_resume


def test_a_paused_queued_session_waits_for_its_resume(
    api: LiveServer, user: httpx.Client, repo: Path, tmp_path: Path
) -> None:
    """Paused before any worker took it: no worker runs it until it is resumed."""
    source = register_source(
        api.settings, location=str(repo), owner="acme", repo=f"held-{secrets.token_hex(3)}"
    )
    held = create(user, source, "Held")
    assert post_state(user, f"/sessions/{held}:pause") == "PAUSED"
    assert job_of(api.settings, held) == ("done", None)
    with FakeModel(scripted(REFERENCE)) as model:
        worker = Worker(settings=api.settings, model=model, home=tmp_path / "w")
        try:
            # A session created after it completes while it stays paused, untouched.
            later = wait_for_state(user, create(user, source, "Later"), TERMINAL, timeout=90)
            assert later["state"] == "COMPLETED"
            assert user.get(f"/sessions/{held}").json()["state"] == "PAUSED"
            assert requests_of(model, "Held") == []

            assert post_state(user, f"/sessions/{held}:resume") == "QUEUED"
            session = wait_for_state(user, held, TERMINAL, timeout=90)
        finally:
            worker.stop()
    assert session["state"] == "COMPLETED", worker.log.read_text()
    assert patch_of(session) == patch_of(later)
    assert kinds(list_activities(user, held))[:2] == ["progressUpdated", "progressUpdated"]


def test_pausing_a_session_a_worker_process_runs(
    api: LiveServer, user: httpx.Client, repo: Path, tmp_path: Path, backend: str
) -> None:
    """The worker hears of the pause through the change feed (its lease renewal is 100 s
    away) and lets everything go; after the resume it finishes the work."""
    source = register_source(
        api.settings, location=str(repo), owner="acme", repo=f"far-{secrets.token_hex(3)}"
    )
    marker = command_marker()
    home = tmp_path / "w"
    with FakeModel(long_command_once(marker)) as model:
        worker = Worker(
            settings=api.settings,
            model=model,
            home=home,
            extra_env={"OPENJULES_LEASE_SECONDS": "300"},
        )
        try:
            sid = create(user, source, "Far away")
            workspace = home / "data" / "workspaces" / sid
            wait(lambda: the_sleep(marker), seconds=60, what="the command starting")

            assert post_state(user, f"/sessions/{sid}:pause") == "PAUSED"
            stopped = wait_stopped(
                api.settings, sid, marker=marker, workspace=workspace, seconds=DEADLINE_S
            )
            assert user.post(f"/sessions/{sid}:sendMessage", json={"prompt": MESSAGE}).json() == {}
            assert post_state(user, f"/sessions/{sid}:resume") == "IN_PROGRESS"
            session = wait_for_state(user, sid, TERMINAL, timeout=90)
        finally:
            worker.stop()
        asked = Counter(turn_of(r) for r in requests_of(model, "Far away"))
        last_request = requests_of(model, "Far away")[-1]["messages"]
    print(stopped.report(f"pause, worker process, {backend}"))
    assert session["state"] == "COMPLETED", worker.log.read_text()
    assert asked == Counter({t: 2 if t == SHELL_TURN else 1 for t in range(len(REFERENCE))})
    assert {"role": "user", "content": MESSAGE} in last_request
    patch = patch_of(session)
    assert all(f"+++ b/{name}" in patch for name in ("first.txt", "slept.txt", "second.txt"))
    # Stopped because it was no longer wanted: neither a failure to retry nor one to give
    # up on (the runner's log lines for those).
    log = worker.log.read_text()
    assert "failed in the runner" not in log
    assert "giving up" not in log
