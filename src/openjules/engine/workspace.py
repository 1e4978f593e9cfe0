"""Per-session workspaces: a cached mirror per source, a fast local clone per session, and
patches computed host-side without trusting anything the agent could have written.

Layout under ``{data_dir}/``::

    mirrors/{owner}/{repo}.git        bare mirror of the source (fetched, never gc-pruned)
    workspaces/{session_id}/tree      the work tree the sandbox sees (with its own .git)
    workspaces/{session_id}/host.git  a private git dir, never visible in the sandbox

The agent may rewrite ``tree/.git`` (config, hooks, filters) at will. Host-side git never
reads it: patches are computed by ``host.git`` with ``tree`` as its work tree, and
``host.git``'s configuration is ours alone. Git skips any path named ``.git``, so the
agent's git directory never shows up in a patch.
"""

from __future__ import annotations

import fcntl
import shutil
from dataclasses import dataclass
from pathlib import Path

from openjules.engine.git import GitError, run_git

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def mirror_path(data_dir: Path, *, owner: str, repo: str) -> Path:
    return data_dir / "mirrors" / owner / f"{repo}.git"


def sync_mirror(*, url: str, mirror: Path) -> None:
    """Create the mirror, or fetch new commits into it. Old objects are kept (no prune of
    objects) because session clones borrow them through git alternates.

    Sessions of one source share the mirror, in one process or several: a file lock makes
    their syncs take turns (clones from the mirror need no lock; git updates atomically).
    """
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with open(mirror.with_name(mirror.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (mirror / "HEAD").exists():
            tmp = mirror.with_name(mirror.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            run_git(["clone", "--mirror", "--quiet", url, str(tmp)])
            run_git(["config", "gc.auto", "0"], cwd=tmp)
            tmp.rename(mirror)
            return
        run_git(["fetch", "--quiet", "--prune", "origin", "+refs/heads/*:refs/heads/*"],
                cwd=mirror)


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def tree(self) -> Path:
        return self.root / "tree"

    @property
    def host_git(self) -> Path:
        return self.root / "host.git"

    def _host(self, args: list[str]) -> str:
        return run_git(
            ["--git-dir", str(self.host_git), "--work-tree", str(self.tree), *args],
            cwd=self.tree,
        )

    def patch(self, *, base_commit: str) -> str:
        """The cumulative patch from ``base_commit`` to the work tree, new files included."""
        self._host(["add", "--all", "."])
        return self._host(
            [
                "diff",
                "--cached",
                "--binary",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                base_commit,
            ]
        )

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def workspace_path(data_dir: Path, session_id: str) -> Path:
    return data_dir / "workspaces" / session_id


def create_from_mirror(
    *, mirror: Path, root: Path, branch: str, base_commit: str | None = None
) -> tuple[Workspace, str]:
    """Clone ``branch`` (or ``base_commit``) of ``mirror`` into a new workspace.

    ``--shared`` borrows the mirror's objects instead of copying them, so the cost is the
    checkout alone; a ref in the mirror keeps the base commit alive across fetches.
    Returns the workspace and the base commit id.
    """
    workspace = Workspace(root)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    commit = (
        base_commit or run_git(["rev-parse", f"refs/heads/{branch}^{{commit}}"], cwd=mirror).strip()
    )
    run_git(["update-ref", f"refs/openjules/base/{root.name}", commit], cwd=mirror)
    run_git(["clone", "--quiet", "--shared", "--no-checkout", str(mirror), str(workspace.tree)])
    run_git(["checkout", "--quiet", "-B", branch, commit], cwd=workspace.tree)
    _init_host_git(workspace, objects_from=mirror, base_commit=commit)
    return workspace, commit


def create_empty(*, root: Path) -> tuple[Workspace, str]:
    """A workspace for a repoless session: an empty repository; the base is the empty tree."""
    workspace = Workspace(root)
    if root.exists():
        shutil.rmtree(root)
    workspace.tree.mkdir(parents=True)
    run_git(["init", "--quiet", "-b", "main", str(workspace.tree)])
    _init_host_git(workspace, objects_from=None, base_commit=None)
    return workspace, EMPTY_TREE


def _init_host_git(
    workspace: Workspace, *, objects_from: Path | None, base_commit: str | None
) -> None:
    run_git(["init", "--quiet", "--bare", str(workspace.host_git)])
    if objects_from is not None:
        alternates = workspace.host_git / "objects" / "info" / "alternates"
        alternates.write_text(str((objects_from / "objects").resolve()) + "\n")
    if base_commit is not None:
        # Start the private index at the base so the first `add --all` hashes only changes.
        run_git(
            [
                "--git-dir",
                str(workspace.host_git),
                "--work-tree",
                str(workspace.tree),
                "read-tree",
                base_commit,
            ],
            cwd=workspace.tree,
        )


def apply_patch(workspace: Workspace, patch: str) -> None:
    """Re-apply a checkpointed patch onto a fresh workspace (resume after a crash)."""
    if not patch.strip():
        return
    patch_file = workspace.root / "resume.patch"
    patch_file.write_text(patch)
    try:
        run_git(
            [
                "--git-dir",
                str(workspace.host_git),
                "--work-tree",
                str(workspace.tree),
                "apply",
                "--binary",
                "--whitespace=nowarn",
                str(patch_file),
            ],
            cwd=workspace.tree,
        )
    except GitError as exc:
        raise GitError(f"could not restore the workspace from its checkpoint: {exc}") from exc
    finally:
        patch_file.unlink(missing_ok=True)
