"""Workspaces kept while a session waits for a person: the run that ends with a plan to
approve (or a question) leaves its tree and a marker naming its checkpoint; the next run
adopts that very tree (same files, same inodes) when the marker names the checkpoint it
starts from, and rebuilds it otherwise; sessions that ended keep nothing. Then ``trim`` and
``take`` on real directories, without a server."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.engine import kept_workspaces
from openjules.engine.kept_workspaces import LOCK, MARKER
from openjules.engine.sandbox.disk import DiskMeter, TreeMeasure, filesystem_used, tree_bytes
from openjules.engine.workspace import EMPTY_TREE, Workspace, create_empty
from openjules.store.agent_state import Checkpoint
from openjules.testing import FakeModel, Fault, LiveServer
from tests.engine.agent_support import (
    call,
    job_state,
    needs_bubblewrap,
    patch_applies,
    start_session,
)
from tests.support import TERMINAL, git, list_activities, wait_for_state

INODE = "stat -c %i AGENTS.md"
WORK = [
    call("shell", command=INODE),
    call("edit_file", path="app.py", old_text="'hello'", new_text="'hello, world'"),
    call("complete_step", title="Greeted the world", description="Changed the greeting."),
    call("finish", summary="The app greets the world.", commit_message="Greet the world"),
]


# --- end to end ------------------------------------------------------------------------


def _wait_released(server: LiveServer, session_id: str) -> None:
    """Until the session's run has ended and its job is released (housekeeping over)."""
    deadline = time.monotonic() + 30
    while job_state(server, session_id) != "done":
        assert time.monotonic() < deadline, "the run's job was never released"
        time.sleep(0.02)


def _root(server: LiveServer, session_id: str) -> Path:
    return server.settings.data_dir / "workspaces" / session_id


@contextmanager
def _pinned(path: Path) -> Iterator[int]:
    """``path``'s inode, held open so a rebuilt tree cannot be given the same number."""
    fd = os.open(path, os.O_RDONLY)
    try:
        yield os.fstat(fd).st_ino
    finally:
        os.close(fd)


def _inodes_seen(client: httpx.Client, session_id: str) -> list[int]:
    """The inodes printed by the session's ``stat -c %i`` commands, in order."""
    seen = []
    for activity in list_activities(client, session_id):
        update = activity.get("progressUpdated", {})
        if update.get("title") == "Ran bash command" and "stat -c" in update["description"]:
            numbers = re.findall(r"^Output: (\d+)$", update["description"], re.MULTILINE)
            assert numbers, update["description"]
            seen.append(int(numbers[-1]))
    return seen


def _final_patch(session: dict[str, Any]) -> str:
    assert session["state"] == "COMPLETED", session
    patch: str = session["outputs"][0]["changeSet"]["gitPatch"]["unidiffPatch"]
    return patch


def _plan_kept(
    client: httpx.Client, agent_server: LiveServer, fake_model: FakeModel, source: str
) -> str:
    """A session waiting for its plan's approval, its planning run over; returns its id."""
    fake_model.push(
        call("read_file", path="app.py"),
        call("propose_plan", steps=[{"title": "Greet the world"}]),
        *WORK,
    )
    sid = start_session(
        client,
        prompt="Make the app greet the world",
        source=source,
        branch="main",
        require_plan_approval=True,
        until="AWAITING_PLAN_APPROVAL",
    )
    _wait_released(agent_server, sid)
    return sid


@needs_bubblewrap
def test_the_planning_runs_tree_is_kept_and_adopted_after_approval(
    client: httpx.Client,
    agent_server: LiveServer,
    fake_model: FakeModel,
    source: str,
    repo: Path,
    tmp_path: Path,
) -> None:
    sid = _plan_kept(client, agent_server, fake_model, source)
    root = _root(agent_server, sid)
    marker = json.loads((root / MARKER).read_text())
    assert marker["base_commit"] == git("rev-parse", "main", cwd=repo).strip()
    assert marker["patch_sha256"] == hashlib.sha256(b"").hexdigest()  # planning changes nothing

    with _pinned(root / "tree" / "AGENTS.md") as before:
        assert client.post(f"/sessions/{sid}:approvePlan").status_code == 200
        session = wait_for_state(client, sid, TERMINAL)

    assert _inodes_seen(client, sid) == [before]  # the very tree, not a rebuilt one
    checked = patch_applies(repo, _final_patch(session), tmp_path)
    assert (checked / "app.py").read_text() == "print('hello, world')\n"


@needs_bubblewrap
def test_without_the_marker_the_tree_is_rebuilt_and_the_patch_is_the_same(
    client: httpx.Client,
    agent_server: LiveServer,
    fake_model: FakeModel,
    source: str,
    repo: Path,
    tmp_path: Path,
) -> None:
    sid = _plan_kept(client, agent_server, fake_model, source)
    root = _root(agent_server, sid)
    (root / MARKER).unlink()

    with _pinned(root / "tree" / "AGENTS.md") as before:
        assert client.post(f"/sessions/{sid}:approvePlan").status_code == 200
        session = wait_for_state(client, sid, TERMINAL)

    [after] = _inodes_seen(client, sid)
    assert after != before
    checked = patch_applies(repo, _final_patch(session), tmp_path)
    assert (checked / "app.py").read_text() == "print('hello, world')\n"


def _question_kept(
    client: httpx.Client, agent_server: LiveServer, fake_model: FakeModel, source: str
) -> str:
    """A session that changed app.py (one step done), then asked a question; its run is
    over."""
    fake_model.push(
        call("propose_plan", steps=[{"title": "Greet"}]),
        call("edit_file", path="app.py", old_text="'hello'", new_text="'bonjour'"),
        call("complete_step", title="Greeted in French", description="Bonjour."),
        call("ask_user", text="Shall I add a farewell too?"),
    )
    sid = start_session(
        client, prompt="Change the greeting", source=source, until="AWAITING_USER_FEEDBACK"
    )
    _wait_released(agent_server, sid)
    return sid


def _answer(client: httpx.Client, fake_model: FakeModel, sid: str) -> dict[str, Any]:
    fake_model.push(
        call("shell", command=INODE),
        call("write_file", path="farewell.py", content="print('au revoir')\n"),
        call("finish", summary="Bonjour and au revoir.", commit_message="Greet in French"),
    )
    assert client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "Yes"}).status_code == 200
    return wait_for_state(client, sid, TERMINAL)


def _check_both_changes(repo: Path, session: dict[str, Any], tmp_path: Path) -> None:
    checked = patch_applies(repo, _final_patch(session), tmp_path)
    assert (checked / "app.py").read_text() == "print('bonjour')\n"
    assert (checked / "farewell.py").read_text() == "print('au revoir')\n"


@needs_bubblewrap
def test_a_tree_with_changes_is_kept_for_the_answer_and_the_patch_holds_both_runs(
    client: httpx.Client,
    agent_server: LiveServer,
    fake_model: FakeModel,
    source: str,
    repo: Path,
    tmp_path: Path,
) -> None:
    sid = _question_kept(client, agent_server, fake_model, source)
    root = _root(agent_server, sid)
    step_patch = next(
        a["artifacts"][0]["changeSet"]["gitPatch"]["unidiffPatch"]
        for a in list_activities(client, sid)
        if a.get("artifacts")
    )
    marker = json.loads((root / MARKER).read_text())
    assert marker["patch_sha256"] == hashlib.sha256(step_patch.encode()).hexdigest()

    with _pinned(root / "tree" / "AGENTS.md") as before:
        session = _answer(client, fake_model, sid)

    assert _inodes_seen(client, sid) == [before]
    _check_both_changes(repo, session, tmp_path)


@needs_bubblewrap
def test_a_marker_naming_another_checkpoint_gets_the_tree_rebuilt(
    client: httpx.Client,
    agent_server: LiveServer,
    fake_model: FakeModel,
    source: str,
    repo: Path,
    tmp_path: Path,
) -> None:
    sid = _question_kept(client, agent_server, fake_model, source)
    root = _root(agent_server, sid)
    marker = json.loads((root / MARKER).read_text())
    marker["patch_sha256"] = hashlib.sha256(b"another checkpoint").hexdigest()
    (root / MARKER).write_text(json.dumps(marker))
    # What the tree holds beyond the checkpoint must not reach the patch.
    (root / "tree" / "stray.txt").write_text("not in any checkpoint\n")

    with _pinned(root / "tree" / "AGENTS.md") as before:
        session = _answer(client, fake_model, sid)

    [after] = _inodes_seen(client, sid)
    assert after != before
    assert "stray.txt" not in _final_patch(session)
    _check_both_changes(repo, session, tmp_path)


@needs_bubblewrap
def test_a_completed_session_keeps_no_workspace(
    client: httpx.Client, agent_server: LiveServer, fake_model: FakeModel, source: str
) -> None:
    fake_model.push(
        call("propose_plan", steps=[{"title": "Look"}]),
        call("read_file", path="app.py"),
        call("finish", summary="Nothing to change.", commit_message="Nothing"),
    )
    sid = start_session(client, prompt="Look at the app", source=source, until="COMPLETED")
    _wait_released(agent_server, sid)
    assert not _root(agent_server, sid).exists()


@needs_bubblewrap
def test_a_failed_session_keeps_no_workspace(
    client: httpx.Client, agent_server: LiveServer, fake_model: FakeModel, source: str
) -> None:
    fake_model.push(
        call("propose_plan", steps=[{"title": "Look"}]),
        call("read_file", path="app.py"),
        Fault(400, body='{"error": {"message": "model refused", "code": 400}}'),
    )
    sid = start_session(client, prompt="Look at the app", source=source, until="FAILED")
    _wait_released(agent_server, sid)
    assert not _root(agent_server, sid).exists()


# --- trim and take on real directories ---------------------------------------------------


def _kept(workspaces: Path, name: str, *, age: float = 0.0, patch: str = "") -> Workspace:
    """A repoless workspace kept at (EMPTY_TREE, ``patch``), its marker ``age`` s old."""
    workspace, base = create_empty(root=workspaces / name)
    kept_workspaces.keep(
        workspace, checkpoint=Checkpoint(base_commit=base, patch=patch), index_current=True
    )
    then = time.time() - age
    os.utime(workspace.root / MARKER, (then, then))
    return workspace


def _checkpoint(patch: str = "") -> Checkpoint:
    return Checkpoint(base_commit=EMPTY_TREE, patch=patch)


def test_take_adopts_a_workspace_at_its_checkpoint_once(tmp_path: Path) -> None:
    workspace = _kept(tmp_path, "1", patch="some patch\n")
    tree = workspace.tree.stat()

    kept = kept_workspaces.take(workspace.root, checkpoint=_checkpoint("some patch\n"))

    assert kept is not None
    assert kept.index_current is True
    assert kept.owner == (tree.st_uid, tree.st_gid)
    assert not (workspace.root / MARKER).exists()
    assert kept_workspaces.take(workspace.root, checkpoint=_checkpoint()) is None


def test_the_last_runs_measure_of_the_tree_comes_back_and_spares_the_first_walk(
    tmp_path: Path,
) -> None:
    workspace, base = create_empty(root=tmp_path / "1")
    (workspace.tree / "data.txt").write_text("x" * 100_000)
    # Deliberately not the tree's real size: a walk would find the real one.
    known = TreeMeasure(used_bytes=12_345, filesystem_used=filesystem_used(workspace.tree))
    kept_workspaces.keep(
        workspace,
        checkpoint=Checkpoint(base_commit=base, patch=""),
        index_current=True,
        measured=known,
    )
    kept = kept_workspaces.take(workspace.root, checkpoint=_checkpoint())
    assert kept is not None
    assert kept.measured == known

    meter = DiskMeter()
    meter.adopt(workspace.tree, known)
    budget = meter.budget(workspace.tree, limit_bytes=1 << 30, file_cap=1 << 20)
    # The known bytes plus at most the file system's growth since: no walk of the tree.
    assert budget.start.used < tree_bytes(workspace.tree)
    assert budget.start.used >= known.used_bytes
    budget.finish()


def test_take_refuses_a_workspace_at_another_checkpoint_and_forgets_it(tmp_path: Path) -> None:
    workspace = _kept(tmp_path, "1", patch="some patch\n")
    assert kept_workspaces.take(workspace.root, checkpoint=_checkpoint("other\n")) is None
    assert not (workspace.root / MARKER).exists()
    # Nor is it adopted afterwards with the checkpoint it did hold.
    again = kept_workspaces.take(workspace.root, checkpoint=_checkpoint("some patch\n"))
    assert again is None


def test_trim_removes_the_oldest_beyond_keep_most(tmp_path: Path) -> None:
    oldest = _kept(tmp_path, "1", age=30)
    middle = _kept(tmp_path, "2", age=20)
    newest = _kept(tmp_path, "3", age=10)

    assert kept_workspaces.trim(tmp_path, keep_most=2, keep_seconds=3600) == 1

    assert not oldest.root.exists()
    assert (middle.root / MARKER).exists()
    assert (newest.root / MARKER).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2", "3"]  # no trash left behind
    assert kept_workspaces.take(oldest.root, checkpoint=_checkpoint()) is None
    assert kept_workspaces.take(middle.root, checkpoint=_checkpoint()) is not None


def test_trim_removes_workspaces_kept_longer_than_keep_seconds(tmp_path: Path) -> None:
    old = _kept(tmp_path, "1", age=120)
    recent = _kept(tmp_path, "2", age=1)

    assert kept_workspaces.trim(tmp_path, keep_most=16, keep_seconds=60) == 1

    assert not old.root.exists()
    assert kept_workspaces.take(recent.root, checkpoint=_checkpoint()) is not None


def test_trim_leaves_workspaces_without_a_marker_alone(tmp_path: Path) -> None:
    """A running session's workspace (no marker) is never trimmed, however old."""
    running, _base = create_empty(root=tmp_path / "1")
    long_ago = time.time() - 86_400
    os.utime(running.root, (long_ago, long_ago))
    assert kept_workspaces.trim(tmp_path, keep_most=0, keep_seconds=0) == 0
    assert running.tree.is_dir()


def test_trim_skips_a_workspace_being_taken(tmp_path: Path) -> None:
    workspace = _kept(tmp_path, "1", age=120)
    # A run adopting it holds its lock (``take``, from another process as well).
    with open(workspace.root / LOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert kept_workspaces.trim(tmp_path, keep_most=0, keep_seconds=0) == 0
        assert (workspace.root / MARKER).exists()
    # Let go, it is trimmed, and then no run adopts it.
    assert kept_workspaces.trim(tmp_path, keep_most=0, keep_seconds=0) == 1
    assert not workspace.root.exists()
    assert kept_workspaces.take(workspace.root, checkpoint=_checkpoint()) is None


@pytest.mark.parametrize("bad", ["not json", "[]", '{"base_commit": 1}'])
def test_take_treats_a_damaged_marker_as_no_kept_workspace(tmp_path: Path, bad: str) -> None:
    workspace = _kept(tmp_path, "1")
    (workspace.root / MARKER).write_text(bad)
    assert kept_workspaces.take(workspace.root, checkpoint=_checkpoint()) is None
