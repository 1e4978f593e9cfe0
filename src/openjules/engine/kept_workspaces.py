"""Workspaces kept while their session waits for a person.

A session that proposes a plan and waits for its approval (or asks a question) ends its
run; the next run, when the person answers, would rebuild the workspace from the base
commit and the checkpoint and hand it to the sandbox uid again: about as long as the
rest of the wait for the agent's next step. So a run that ends with its session waiting
for a person, and with the tree exactly at the checkpoint it recorded, keeps the
workspace and leaves a marker naming that checkpoint; the next run of the session adopts
the tree when the marker names the checkpoint it starts from, and rebuilds it otherwise.

A marker is written only at the end of a run that ended well, after every file change is
in a committed checkpoint, and the next run removes it before it touches the tree: a run
that dies leaves no marker, so its successor rebuilds. Nothing of the sandbox can write
the marker (commands see the tree only, and the marker sits beside it).

Kept trees cost disk, so at most ``KEEP_MOST`` are kept, none longer than
``KEEP_SECONDS``; older ones (and those of deleted sessions) are removed by ``trim``,
which every run's end calls. A per-workspace lock makes a trim and a run adopting the
same tree exclude each other, in one process or several.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from openjules.engine.sandbox.disk import TreeMeasure
from openjules.engine.workspace import Workspace
from openjules.store.agent_state import Checkpoint

MARKER = "kept.json"
LOCK = "kept.lock"
KEEP_SECONDS = 15 * 60.0
KEEP_MOST = 16


@dataclass(frozen=True)
class Kept:
    # Whether the private index holds every change of the tree (see DatabaseJournal).
    index_current: bool
    # The (uid, gid) that owns every file of the tree: the last run's sandbox uid (its
    # commands cannot make files of another owner; the file tools adopt the directory's).
    owner: tuple[int, int]
    # The last run's measure of the tree's disk use (None: it took none).
    measured: TreeMeasure | None = None


def _fingerprint(checkpoint: Checkpoint) -> dict[str, str]:
    return {
        "base_commit": checkpoint.base_commit,
        "patch_sha256": hashlib.sha256(checkpoint.patch.encode()).hexdigest(),
    }


def keep(
    workspace: Workspace,
    *,
    checkpoint: Checkpoint,
    index_current: bool,
    measured: TreeMeasure | None = None,
) -> None:
    """Leave ``workspace`` for the session's next run; its tree is at ``checkpoint``.

    Blocking (a look at every file's stat data): run it in a thread."""
    # The tree was handed to the sandbox uid after the private index was written: record
    # the new stat data now, while the person reads, not in the next run's first patch.
    workspace.refresh_index()
    tree = workspace.tree.stat()
    body = json.dumps(
        {
            **_fingerprint(checkpoint),
            "index_current": index_current,
            "owner": [tree.st_uid, tree.st_gid],
            "measured": [measured.used_bytes, measured.filesystem_used] if measured else None,
        }
    )
    partial = workspace.root / f"{MARKER}.{secrets.token_hex(4)}"
    partial.write_text(body)
    os.replace(partial, workspace.root / MARKER)


def take(root: Path, *, checkpoint: Checkpoint | None) -> Kept | None:
    """Adopt the workspace kept at ``root`` when it holds ``checkpoint`` (None: there is
    none, or it holds something else and must be rebuilt). The marker is gone afterwards
    either way. Blocking: run it in a thread."""
    marker = root / MARKER
    if not marker.exists():
        return None
    with _locked(root, wait=True) as held:
        if not held:
            return None
        try:
            recorded = json.loads(marker.read_text())
            marker.unlink()
        except (OSError, ValueError):
            return None
    if checkpoint is None or not isinstance(recorded, dict):
        return None
    if any(recorded.get(k) != v for k, v in _fingerprint(checkpoint).items()):
        return None
    if not (root / "tree").is_dir() or not (root / "host.git").is_dir():
        return None
    owner = recorded.get("owner")
    if not (isinstance(owner, list) and len(owner) == 2 and all(isinstance(i, int) for i in owner)):
        return None
    return Kept(
        index_current=recorded.get("index_current") is True,
        owner=(owner[0], owner[1]),
        measured=_measure(recorded.get("measured")),
    )


def _measure(recorded: object) -> TreeMeasure | None:
    if not (isinstance(recorded, list) and len(recorded) == 2):
        return None
    used, filesystem = recorded
    if not (isinstance(used, int) and isinstance(filesystem, int)):
        return None
    return TreeMeasure(used_bytes=used, filesystem_used=filesystem)


def trim(
    workspaces: Path, *, keep_most: int = KEEP_MOST, keep_seconds: float = KEEP_SECONDS
) -> int:
    """Remove kept workspaces beyond the newest ``keep_most`` or older than
    ``keep_seconds``; returns how many. Blocking: run it in a thread."""
    now = time.time()
    markers: list[tuple[float, Path]] = []
    for marker in workspaces.glob(f"*/{MARKER}"):
        try:
            markers.append((marker.stat().st_mtime, marker))
        except OSError:
            continue  # taken meanwhile
    markers.sort(reverse=True)
    removed = 0
    for rank, (mtime, marker) in enumerate(markers):
        if rank < keep_most and now - mtime <= keep_seconds:
            continue
        root = marker.parent
        trash = workspaces / f".trash-{root.name}-{secrets.token_hex(4)}"
        with _locked(root, wait=False) as held:
            if not held or not marker.exists():
                continue  # a run is adopting it, or has
            marker.unlink()
            os.rename(root, trash)
        shutil.rmtree(trash, ignore_errors=True)
        removed += 1
    return removed


class _locked:
    """An exclusive lock on the workspace's lock file (False: not taken, or no workspace)."""

    def __init__(self, root: Path, *, wait: bool) -> None:
        self.path = root / LOCK
        self.wait = wait
        self.stream: int | None = None

    def __enter__(self) -> bool:
        try:
            self.stream = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            fcntl.flock(self.stream, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True

    def __exit__(self, *exc: object) -> None:
        if self.stream is not None:
            os.close(self.stream)  # closing releases the lock
