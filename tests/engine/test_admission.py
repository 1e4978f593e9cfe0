"""Admission limits, seen from outside on a live server running the agent (fake model,
real sandbox), both backends:

- ``max_concurrent_sessions``: with 2, a third session stays QUEUED while two run, and
  starts when one of them ends.
- ``user_max_concurrent_sessions``: with 3, a user's 4th and 5th sessions stay QUEUED
  while 3 of theirs are started and not ended (waiting for plan approval counts), start
  in creation order as theirs end (completed, or deleted); a session of theirs that is
  woken again (approved) is never held back, and other users' sessions are never held
  back by one user's queue.
- ``max_concurrent_commands``: with 1, two sessions' commands never run at the same time.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.settings import Settings
from openjules.testing import FakeModel, LiveServer, register_source
from tests.agent_fixtures import model, scripts
from tests.agent_kit import HOLD, Scripts, agent_settings, held, new_key, release, start, wait_until
from tests.conftest import backends_with_temporal
from tests.engine.agent_support import call, needs_bubblewrap
from tests.support import api_client, ok_json, wait_for_state

__all__ = ["model", "scripts"]  # module fixtures

pytestmark = needs_bubblewrap
backend = backends_with_temporal()

# How long a queued session is watched to see that it is not started: many poll
# intervals (0.5 s) of the runner, which would start it at once if it could.
SETTLE_S = 1.5
WAITING = {"AWAITING_PLAN_APPROVAL"}
SHELL_TURN = 1


@pytest.fixture
def live(
    request: pytest.FixtureRequest, server_settings: Settings, model: FakeModel, tmp_path: Path
) -> Iterator[LiveServer]:
    """A server running the agent with the limits the test names (``indirect``); the
    deprecated ``workers`` alias unset, so max_concurrent_sessions applies."""
    overrides: dict[str, Any] = {"workers": None, "max_concurrent_commands": 8, **request.param}
    settings = agent_settings(server_settings, data_dir=tmp_path / "data", model=model, **overrides)
    with LiveServer(settings) as server:
        yield server


def _client(live: LiveServer, name: str) -> httpx.Client:
    return api_client(live.api, new_key(live, name))


def _state(client: httpx.Client, sid: str) -> str:
    state: str = ok_json(client.get(f"/sessions/{sid}"))["state"]
    return state


def _tree(live: LiveServer, sid: str) -> Path:
    return live.settings.data_dir / "workspaces" / sid / "tree"


def _wait_holding(live: LiveServer, sid: str) -> None:
    """Until the session's ``held`` command runs (and waits for ``release``)."""
    hold = _tree(live, sid) / HOLD
    wait_until(hold.exists, what=f"session {sid}'s command")


def _delete_all(client: httpx.Client, ids: list[str]) -> None:
    """Leave nothing runnable behind for the next test on this database."""
    for sid in ids:
        client.delete(f"/sessions/{sid}")


def _source(live: LiveServer, repo: Path) -> str:
    return register_source(
        live.settings, location=str(repo), owner="acme", repo=f"adm-{secrets.token_hex(3)}"
    )


@pytest.mark.parametrize("live", [{"max_concurrent_sessions": 2}], indirect=True)
def test_a_session_beyond_the_process_limit_waits_queued_until_one_ends(
    live: LiveServer, scripts: Scripts, repo: Path
) -> None:
    source = _source(live, repo)

    def holding(text: str) -> str:
        return scripts.prompt(
            text,
            [
                call("propose_plan", steps=[{"title": "Run the app"}]),
                call("shell", command=held("echo ran > ran.txt")),
                call("finish", summary="Ran.", commit_message="Run"),
            ],
        )

    quick = scripts.prompt(
        "Write a file",
        [
            call("propose_plan", steps=[{"title": "Write"}]),
            call("write_file", path="quick.txt", content="quick\n"),
            call("finish", summary="Wrote.", commit_message="Write"),
        ],
    )
    with _client(live, "global") as client:
        first = start(client, holding("First"), source=source)
        second = start(client, holding("Second"), source=source)
        third = start(client, quick, source=source)
        ids = [first, second, third]
        try:
            for sid in (first, second):
                _wait_holding(live, sid)
            time.sleep(SETTLE_S)
            assert _state(client, third) == "QUEUED"

            release(live, first)
            assert wait_for_state(client, first, {"COMPLETED", "FAILED"})["state"] == "COMPLETED"
            # The freed slot goes to the third, while the second still holds the other.
            done = wait_for_state(client, third, {"COMPLETED", "FAILED"})
            assert done["state"] == "COMPLETED"
            assert _state(client, second) == "IN_PROGRESS"

            release(live, second)
            assert wait_for_state(client, second, {"COMPLETED", "FAILED"})["state"] == "COMPLETED"
        finally:
            _delete_all(client, ids)


@pytest.mark.parametrize("live", [{"user_max_concurrent_sessions": 3}], indirect=True)
def test_a_users_sessions_beyond_their_limit_wait_in_order_and_hold_no_one_else_back(
    live: LiveServer, scripts: Scripts, repo: Path
) -> None:
    source = _source(live, repo)

    def planned(text: str) -> str:
        return scripts.prompt(
            text,
            [
                call("propose_plan", steps=[{"title": "Write the file"}]),
                call("write_file", path="done.txt", content=f"{text}\n"),
                call("finish", summary="Done.", commit_message="Write the file"),
            ],
        )

    with _client(live, "limited") as alice, _client(live, "other") as bob:
        mine = [
            start(alice, planned(f"Task {i}"), source=source, require_plan_approval=True)
            for i in range(1, 6)
        ]
        theirs: list[str] = []
        try:
            for sid in mine[:3]:
                wait_for_state(alice, sid, WAITING)
            # Bob's session, created after Alice's 4th and 5th, starts at once: the claim
            # that took it skipped Alice's queued ones.
            theirs.append(start(bob, planned("Bob 1"), source=source, require_plan_approval=True))
            wait_for_state(bob, theirs[0], WAITING)
            assert [_state(alice, sid) for sid in mine[3:]] == ["QUEUED", "QUEUED"]

            # Alice is at her limit, yet her approved session runs on (it was admitted).
            ok_json(alice.post(f"/sessions/{mine[0]}:approvePlan", json={}))
            assert wait_for_state(alice, mine[0], {"COMPLETED", "FAILED"})["state"] == "COMPLETED"
            # It ended: the 4th starts, not the 5th.
            wait_for_state(alice, mine[3], WAITING)
            theirs.append(start(bob, planned("Bob 2"), source=source, require_plan_approval=True))
            wait_for_state(bob, theirs[1], WAITING)
            assert _state(alice, mine[4]) == "QUEUED"

            # A deleted session frees its place too.
            assert alice.delete(f"/sessions/{mine[1]}").status_code == 200
            wait_for_state(alice, mine[4], WAITING)
            assert _state(alice, mine[2]) == "AWAITING_PLAN_APPROVAL"
        finally:
            _delete_all(alice, mine)
            _delete_all(bob, theirs)


def _stamps(session: dict[str, Any], name: str) -> tuple[int, int]:
    """(start, end) in ns that the session's command wrote to NAME.start / NAME.end."""
    patch: str = session["outputs"][-1]["changeSet"]["gitPatch"]["unidiffPatch"]
    lines = patch.splitlines()

    def added_to(path: str) -> int:
        at = lines.index(f"+++ b/{path}")
        return int(
            next(line for line in lines[at:] if line.startswith("+") and line[1:].isdigit())[1:]
        )

    return added_to(f"{name}.start"), added_to(f"{name}.end")


@pytest.mark.parametrize("live", [{"max_concurrent_commands": 1}], indirect=True)
def test_with_one_command_slot_two_sessions_commands_never_overlap(
    live: LiveServer, scripts: Scripts, repo: Path
) -> None:
    """The first session's command holds the only slot until the test lets it go; the
    second's command, handed out by the model meanwhile, starts only after it ended."""
    source = _source(live, repo)

    def timed(name: str, *, hold: bool) -> str:
        body = f"date +%s%N > {name}.end"
        return scripts.prompt(
            f"Time a command {name}",
            [
                call("propose_plan", steps=[{"title": "Time it"}]),
                call(
                    "shell",
                    command=f"date +%s%N > {name}.start; " + (held(body) if hold else body),
                ),
                call("finish", summary="Timed.", commit_message="Time"),
            ],
        )

    held_prompt, other_prompt = timed("a", hold=True), timed("b", hold=False)
    with _client(live, "commands") as client:
        first = start(client, held_prompt, source=source)
        ids = [first]
        try:
            _wait_holding(live, first)
            second = start(client, other_prompt, source=source)
            ids.append(second)
            wait_until(
                lambda: scripts.asked(other_prompt, SHELL_TURN) > 0,
                what="the second session's command handed out",
            )
            time.sleep(SETTLE_S)  # it would have run by now if it had a slot
            release(live, first)
            sessions = [wait_for_state(client, sid, {"COMPLETED", "FAILED"}) for sid in ids]
        finally:
            _delete_all(client, ids)
    assert [s["state"] for s in sessions] == ["COMPLETED", "COMPLETED"]
    a_start, a_end = _stamps(sessions[0], "a")
    b_start, b_end = _stamps(sessions[1], "b")
    assert a_start <= a_end <= b_start <= b_end
