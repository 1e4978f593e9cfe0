"""Workspaces: fast clones from a mirror, patches that apply, and host-side git that never
runs what the agent could have planted in the repository's .git."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from openjules.engine.workspace import (
    Workspace,
    apply_patch,
    create_empty,
    create_from_mirror,
    mirror_path,
    prepare_spare,
    spares_path,
    sync_mirror,
)
from tests.support import git, make_repo


def agent_git(workspace: Workspace, *args: str) -> str:
    """git as the agent runs it in the sandbox: the borrowed objects are where the sandbox
    mounts them, which host git is told through GIT_ALTERNATE_OBJECT_DIRECTORIES."""
    env = {"PATH": os.environ["PATH"], "HOME": str(workspace.root),
           "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(workspace.borrowed_objects)}
    return subprocess.run(["git", *args], cwd=workspace.tree, env=env, check=True,
                          capture_output=True, text=True).stdout

def _source_repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "source",
        {"app.py": "print('hello')\n", "old.txt": "to be deleted\n", ".gitignore": "build/\n"},
    )


def _workspace(tmp_path: Path) -> tuple[Path, Path, Workspace, str]:
    source = _source_repo(tmp_path)
    mirror = mirror_path(tmp_path / "data", owner="acme", repo="app")
    sync_mirror(url=str(source), mirror=mirror)
    workspace, base = create_from_mirror(mirror=mirror, root=tmp_path / "ws" / "123",
                                         branch="main")
    return source, mirror, workspace, base


def test_patch_applies_to_the_starting_branch_and_holds_every_change(tmp_path: Path) -> None:
    source, _mirror, workspace, base = _workspace(tmp_path)
    assert base == git("rev-parse", "main", cwd=source).strip()
    (workspace.tree / "app.py").write_text("print('hello, world')\n")
    (workspace.tree / "new" / "mod.py").parent.mkdir()
    (workspace.tree / "new" / "mod.py").write_text("VALUE = 1\n")
    (workspace.tree / "old.txt").unlink()
    (workspace.tree / "build").mkdir()
    (workspace.tree / "build" / "out.bin").write_bytes(b"\0\1")  # ignored by .gitignore

    patch = workspace.patch(base_commit=base)

    assert "+print('hello, world')" in patch
    assert "--- /dev/null\n+++ b/new/mod.py" in patch
    assert "+++ /dev/null" in patch  # old.txt deleted
    assert "build/out.bin" not in patch
    assert ".git/" not in patch
    check = tmp_path / "check"
    git("clone", "-q", "-b", "main", str(source), str(check), cwd=tmp_path)
    (tmp_path / "p.diff").write_text(patch)
    git("apply", str(tmp_path / "p.diff"), cwd=check)
    assert (check / "new" / "mod.py").read_text() == "VALUE = 1\n"
    assert not (check / "old.txt").exists()


def test_host_git_ignores_filters_fsmonitor_and_hooks_planted_in_the_repo(
    tmp_path: Path,
) -> None:
    _source, _mirror, workspace, base = _workspace(tmp_path)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.sh"
    evil.write_text(f"#!/bin/sh\ntouch {marker}\ncat\n")
    evil.chmod(0o755)
    repo_git = workspace.tree / ".git"
    with (repo_git / "config").open("a") as config:
        config.write(f"[core]\n\tfsmonitor = {evil}\n\thooksPath = {tmp_path}\n"
                     f"[filter \"x\"]\n\tclean = {evil}\n\tsmudge = {evil}\n"
                     f"[diff \"x\"]\n\ttextconv = {evil}\n\tcommand = {evil}\n")
    for hook in ("pre-commit", "post-commit", "post-checkout", "pre-auto-gc"):
        (repo_git / "hooks" / hook).write_text(evil.read_text())
        (repo_git / "hooks" / hook).chmod(0o755)
    (workspace.tree / ".gitattributes").write_text("* filter=x diff=x\n")
    (workspace.tree / "app.py").write_text("changed\n")

    patch = workspace.patch(base_commit=base)

    assert "+changed" in patch
    assert not marker.exists()


def test_repoless_workspace_patch_creates_files(tmp_path: Path) -> None:
    workspace, base = create_empty(root=tmp_path / "ws" / "1")
    (workspace.tree / "answer.md").write_text("# 42\n")
    patch = workspace.patch(base_commit=base)
    assert "--- /dev/null\n+++ b/answer.md" in patch
    assert "+# 42" in patch


def test_a_checkpointed_patch_restores_a_fresh_workspace(tmp_path: Path) -> None:
    _source, mirror, workspace, base = _workspace(tmp_path)
    (workspace.tree / "app.py").write_text("step one\n")
    (workspace.tree / "added.txt").write_text("new\n")
    checkpoint = workspace.patch(base_commit=base)
    workspace.remove()

    fresh, same_base = create_from_mirror(mirror=mirror, root=tmp_path / "ws" / "123",
                                          branch="main", base_commit=base)
    apply_patch(fresh, checkpoint)

    assert same_base == base
    assert (fresh.tree / "app.py").read_text() == "step one\n"
    assert fresh.patch(base_commit=base) == checkpoint


def test_mirror_sync_fetches_new_commits_and_keeps_session_bases(tmp_path: Path) -> None:
    source, mirror, _ws, base = _workspace(tmp_path)
    git("commit", "-q", "--allow-empty", "-m", "next", cwd=source)
    sync_mirror(url=str(source), mirror=mirror)
    head = git("rev-parse", "main", cwd=source).strip()
    assert git("rev-parse", "refs/heads/main", cwd=mirror).strip() == head
    # The base of the session stays reachable from the mirror even if main moves on.
    assert git("rev-parse", "refs/openjules/base/123", cwd=mirror).strip() == base


def test_workspace_preparation_borrows_objects_instead_of_copying(tmp_path: Path) -> None:
    _source, _mirror, workspace, _base = _workspace(tmp_path)
    alternates = workspace.tree / ".git" / "objects" / "info" / "alternates"
    assert alternates.exists()
    packs = list((workspace.tree / ".git" / "objects").rglob("*.pack"))
    assert packs == []
    assert agent_git(workspace, "status", "--porcelain") == ""


def test_a_spare_tree_is_used_once_and_brought_to_the_requested_commit(tmp_path: Path) -> None:
    source, mirror, first, _base = _workspace(tmp_path)
    assert prepare_spare(mirror=mirror)
    assert prepare_spare(mirror=mirror)  # one spare is enough
    assert len(list(spares_path(mirror).glob("ready-*"))) == 1
    # The source moves on after the spare was checked out.
    (source / "app.py").write_text("print('moved on')\n")
    (source / "new.txt").write_text("new\n")
    git("rm", "-q", "old.txt", cwd=source)
    git("add", ".", cwd=source)
    git("commit", "-q", "-m", "next", cwd=source)
    sync_mirror(url=str(source), mirror=mirror)

    adopted, head = create_from_mirror(mirror=mirror, root=tmp_path / "ws" / "456", branch="main")
    cold, same = create_from_mirror(mirror=mirror, root=tmp_path / "ws" / "789", branch="main")

    assert list(spares_path(mirror).glob("ready-*")) == []
    assert head == same == git("rev-parse", "main", cwd=source).strip()
    for workspace in (adopted, cold):
        names = sorted(p.name for p in workspace.tree.iterdir())
        assert names == [".git", ".gitignore", "app.py", "new.txt"]
        assert (workspace.tree / "app.py").read_text() == "print('moved on')\n"
        assert agent_git(workspace, "status", "--porcelain") == ""
        assert agent_git(workspace, "rev-parse", "HEAD").strip() == head
        assert sorted(p.name for p in workspace.root.iterdir()) == ["host.git", "tree"]
        assert workspace.patch(base_commit=head) == ""
    assert agent_git(adopted, "branch", "-a") == agent_git(cold, "branch", "-a")
    assert first.tree.exists()


def test_a_spare_serves_a_session_on_another_branch_and_base(tmp_path: Path) -> None:
    source, mirror, _ws, base = _workspace(tmp_path)
    git("checkout", "-q", "-b", "feature", cwd=source)
    (source / "feature.txt").write_text("feature\n")
    git("add", ".", cwd=source)
    git("commit", "-q", "-m", "feature", cwd=source)
    sync_mirror(url=str(source), mirror=mirror)
    prepare_spare(mirror=mirror)

    workspace, head = create_from_mirror(mirror=mirror, root=tmp_path / "ws" / "f",
                                         branch="feature")
    assert head == git("rev-parse", "feature", cwd=source).strip()
    assert (workspace.tree / "feature.txt").exists()
    assert agent_git(workspace, "status", "--porcelain") == ""
    assert agent_git(workspace, "rev-parse", "--abbrev-ref", "HEAD").strip() == "feature"

    prepare_spare(mirror=mirror)
    pinned, at = create_from_mirror(mirror=mirror, root=tmp_path / "ws" / "p", branch="main",
                                    base_commit=base)
    assert at == base
    assert sorted(p.name for p in pinned.tree.iterdir()) == [".git", ".gitignore", "app.py",
                                                              "old.txt"]
    assert agent_git(pinned, "status", "--porcelain") == ""


# --- staging a step's paths alone (see DatabaseJournal.index_current) -------------------


def _clock_moves_past(tree: Path, tmp_path: Path) -> None:
    """Until a file written now gets a later mtime than any file of ``tree`` (the kernel's
    file clock ticks coarsely)."""
    latest = max(p.lstat().st_mtime_ns for p in tree.rglob("*"))
    probe = tmp_path / "clock-probe"
    probe.touch()
    deadline = time.monotonic() + 5
    while probe.stat().st_mtime_ns <= latest:
        assert time.monotonic() < deadline, "the file clock never moved on"
        os.utime(probe)


def _edit(tree: Path, path: str, text: str) -> None:
    (tree / path).parent.mkdir(parents=True, exist_ok=True)
    (tree / path).write_text(text)


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("app.py", "print('hello, world')\n"),
        ("top.txt", "new\n"),
        ("new/deeper/mod.py", "VALUE = 1\n"),
    ],
    ids=["edited", "new file", "file in a new directory"],
)
def test_staging_only_the_changed_path_gives_the_whole_tree_patch(
    tmp_path: Path, path: str, text: str
) -> None:
    _source, _mirror, workspace, base = _workspace(tmp_path)
    _edit(workspace.tree, path, text)

    workspace.stage(only=[path])
    staged = workspace.staged_patch(base_commit=base)

    assert f"+{text.strip()}" in staged
    assert staged == workspace.patch(base_commit=base)  # a whole-tree add


def test_steps_staging_their_own_paths_add_up_to_the_whole_tree_patch(tmp_path: Path) -> None:
    _source, _mirror, workspace, base = _workspace(tmp_path)
    _edit(workspace.tree, "app.py", "print('step one')\n")
    workspace.stage(only=["app.py"])
    _edit(workspace.tree, "lib/util.py", "HELP = True\n")
    workspace.stage(only=["lib/util.py"])
    _edit(workspace.tree, "app.py", "print('step three')\n")
    workspace.stage(only=["app.py"])

    staged = workspace.staged_patch(base_commit=base)

    assert "+print('step three')" in staged
    assert "+HELP = True" in staged
    assert staged == workspace.patch(base_commit=base)


def test_staging_only_some_paths_leaves_the_others_unstaged(tmp_path: Path) -> None:
    """The caller vouches that the index holds every other change: nothing else is read."""
    _source, _mirror, workspace, base = _workspace(tmp_path)
    _edit(workspace.tree, "app.py", "print('named')\n")
    _edit(workspace.tree, "other.txt", "not named\n")

    workspace.stage(only=["app.py"])

    staged = workspace.staged_patch(base_commit=base)
    assert "+print('named')" in staged
    assert "other.txt" not in staged


def test_a_path_git_refuses_to_stage_falls_back_to_the_whole_tree(tmp_path: Path) -> None:
    _source, _mirror, workspace, base = _workspace(tmp_path)
    _edit(workspace.tree, "app.py", "print('changed by a command')\n")
    _edit(workspace.tree, "build/out.txt", "ignored by .gitignore\n")

    workspace.stage(only=["build/out.txt"])  # git add refuses an ignored path
    staged = workspace.staged_patch(base_commit=base)

    assert "+print('changed by a command')" in staged
    assert "build/out.txt" not in staged
    assert staged == workspace.patch(base_commit=base)


def test_the_index_checksum_changes_only_when_staging_changed_the_index(
    tmp_path: Path,
) -> None:
    _source, _mirror, workspace, _base = _workspace(tmp_path)
    _edit(workspace.tree, "app.py", "print('one')\n")
    # Files written in the index's own clock tick are "racily clean": git reads them again
    # at the next add. Past that tick, only git's own bookkeeping remains: the add after
    # it writes a new shared index (split index) marks the entries updated in it, once.
    _clock_moves_past(workspace.tree, tmp_path)
    workspace.stage()
    workspace.stage()
    settled = workspace.index_checksum()
    assert settled

    workspace.stage()  # nothing changed since
    assert workspace.index_checksum() == settled
    workspace.stage(only=["app.py"])
    assert workspace.index_checksum() == settled

    _edit(workspace.tree, "app.py", "print('two, then')\n")
    workspace.stage(only=["app.py"])
    assert workspace.index_checksum() != settled
