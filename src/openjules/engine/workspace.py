"""Per-session workspaces: a cached mirror per source, a fast local clone per session, and
patches computed host-side without trusting anything the agent could have written.

Layout under ``{data_dir}/``::

    mirrors/{owner}/{repo}.git        bare mirror of the source (fetched, never gc-pruned)
    mirrors/{owner}/{repo}.spares/    at most one checked-out tree waiting for the next session
    workspaces/{session_id}/tree      the work tree the sandbox sees (with its own .git)
    workspaces/{session_id}/host.git  a private git dir, never visible in the sandbox

The agent may rewrite ``tree/.git`` (config, hooks, filters) at will. Host-side git never
reads it: patches are computed by ``host.git`` with ``tree`` as its work tree, and
``host.git``'s configuration is ours alone. Git skips any path named ``.git``, so the
agent's git directory never shows up in a patch.

Checking out a large tree costs about what ``git clone --no-local`` costs: writing the files
dominates both. So after a session, ``prepare_spare`` checks out one spare tree per mirror,
off any session's critical path, and the next ``create_from_mirror`` adopts its files (a few
renames) and moves them to the requested commit (only files that differ are rewritten).
A spare is made by host-side git, lives where no sandbox can see it, and is used once: an
atomic rename hands it to exactly one session. A tree an agent has used is never recycled.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from openjules.engine.git import GitError, HttpAuth, run_git, run_git_result

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# An index ends with the hash of its content (20 bytes for SHA-1; 32 covers SHA-256 too).
INDEX_CHECKSUM_BYTES = 32


# Where the sandbox sees the borrowed objects; the tree's alternates file points here.
SANDBOX_OBJECTS = "/.openjules/objects"


def mirror_path(data_dir: Path, *, owner: str, repo: str) -> Path:
    return data_dir / "mirrors" / owner / f"{repo}.git"


def sync_mirror(*, url: str, mirror: Path, auth: HttpAuth | None = None) -> None:
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
            run_git(["clone", "--mirror", "--quiet", url, str(tmp)], auth=auth)
            run_git(["config", "gc.auto", "0"], cwd=tmp)
            tmp.rename(mirror)
            return
        run_git(
            ["fetch", "--quiet", "--prune", "origin", "+refs/heads/*:refs/heads/*"],
            cwd=mirror,
            auth=auth,
        )


@dataclass(frozen=True)
class Workspace:
    root: Path
    # The mirror's object store that the tree's clone borrows through git alternates,
    # mounted read-only at SANDBOX_OBJECTS so git works in the sandbox. Recorded here,
    # never read back from the agent-writable alternates file.
    borrowed_objects: Path | None = None

    def sandbox_binds(self) -> tuple[tuple[Path, str], ...]:
        """(host path, sandbox path) pairs to mount read-only for commands."""
        if self.borrowed_objects is None:
            return ()
        return ((self.borrowed_objects, SANDBOX_OBJECTS),)

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

    def patch(self, *, base_commit: str, only: Sequence[str] | None = None) -> str:
        """The cumulative patch from ``base_commit`` to the work tree, new files included
        (``stage``, then ``staged_patch``)."""
        self.stage(only=only)
        return self.staged_patch(base_commit=base_commit)

    def stage(self, *, only: Sequence[str] | None = None) -> None:
        """Bring the private index up to date with the work tree.

        With ``only``, the caller vouches that the index already holds every other change
        (see ``DatabaseJournal``), so just those paths are staged: a few milliseconds
        instead of a look at every file of the tree. Git refuses some paths it would skip
        in a whole-tree add (ignored files, say); those take the whole-tree add."""
        if only:
            try:
                self._host(["--literal-pathspecs", "add", "--all", "--", *only])
                return
            except GitError:
                pass
        self._host(["add", "--all", "."])

    def staged_patch(self, *, base_commit: str) -> str:
        """The patch from ``base_commit`` to the private index."""
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

    def index_checksum(self) -> bytes:
        """The private index's own checksum (its last bytes): equal checksums, equal
        index, equal ``staged_patch``. A stage that changed no file usually leaves it
        equal; not always (after a new shared index, or files as new as the index, git
        rewrites some entries' bookkeeping), and then the patch is just computed again."""
        try:
            with open(self.host_git / "index", "rb") as index:
                index.seek(-INDEX_CHECKSUM_BYTES, os.SEEK_END)
                return index.read()
        except OSError:
            return b""

    def refresh_index(self) -> None:
        """Record the files' current stat data in the private index where their content is
        unchanged (after the tree was handed to another uid, every file's stat changed), so
        the next whole-tree ``patch`` reads only files that really changed."""
        # Exit status 1 only says some files differ from the index; those are left as is.
        run_git_result(
            [
                "--git-dir",
                str(self.host_git),
                "--work-tree",
                str(self.tree),
                "update-index",
                "-q",
                "--refresh",
            ],
            cwd=self.tree,
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
    checkout alone, and a ready spare tree (see ``prepare_spare``) saves most of that; a
    ref in the mirror keeps the base commit alive across fetches.
    Returns the workspace and the base commit id.
    """
    workspace = Workspace(root, borrowed_objects=(mirror / "objects").resolve())
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    commit = (
        base_commit or run_git(["rev-parse", f"refs/heads/{branch}^{{commit}}"], cwd=mirror).strip()
    )
    run_git(["update-ref", f"refs/openjules/base/{root.name}", commit], cwd=mirror)
    # The repository (.git) is always a fresh clone; a spare only contributes files.
    run_git(["clone", "--quiet", "--shared", "--no-checkout", str(mirror), str(workspace.tree)])
    _adopt_spare(mirror, workspace)
    # --force: start from the index and files as they are (a spare's, or none) and rewrite
    # whatever differs from ``commit``.
    run_git(["checkout", "--quiet", "--force", "-B", branch, commit], cwd=workspace.tree)
    _init_host_git(
        workspace,
        objects_from=mirror,
        base_commit=commit,
        index_from=workspace.tree / ".git" / "index",
    )
    # From here on the host uses host.git only; the tree's own repository is the agent's,
    # and inside the sandbox it finds the borrowed objects at SANDBOX_OBJECTS.
    (workspace.tree / ".git" / "objects" / "info" / "alternates").write_text(SANDBOX_OBJECTS + "\n")
    return workspace, commit


def spares_path(mirror: Path) -> Path:
    return mirror.with_name(mirror.name.removesuffix(".git") + ".spares")


def prepare_spare(*, mirror: Path) -> bool:
    """Check out a spare tree of ``mirror``'s default branch for the next session, unless
    one is ready or another process is making one. Slow (a full checkout): run it where no
    session waits, e.g. after a session. Returns whether a spare is ready."""
    spares = spares_path(mirror)
    spares.mkdir(parents=True, exist_ok=True)
    with open(spares / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if any(spares.glob("ready-*")):
            return True
        for stale in spares.glob("building-*"):  # left by a crash; only lock holders build
            shutil.rmtree(stale, ignore_errors=True)
        token = secrets.token_hex(8)
        building = spares / f"building-{token}"
        try:
            tree = building / "tree"
            run_git(["clone", "--quiet", "--shared", "--no-checkout", str(mirror), str(tree)])
            run_git(["checkout", "--quiet", "--force"], cwd=tree)
            building.rename(spares / f"ready-{token}")
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        return True


def _adopt_spare(mirror: Path, workspace: Workspace) -> bool:
    """Move a ready spare's files and index into the fresh clone at ``workspace.tree``.

    Renaming the spare's directory claims it atomically, so one session alone gets it.
    Returns False, leaving the tree a bare clone, when there is no spare or it cannot be
    moved here (another file system).
    """
    claimed = workspace.root / "spare"
    for ready in sorted(spares_path(mirror).glob("ready-*")):
        try:
            ready.rename(claimed)
            break
        except OSError:
            continue  # taken by another session meanwhile, or a different file system
    else:
        return False
    spare_tree = claimed / "tree"
    moved: list[Path] = []
    try:
        for entry in os.scandir(spare_tree):
            if entry.name != ".git":
                os.rename(entry.path, workspace.tree / entry.name)
                moved.append(workspace.tree / entry.name)
        os.rename(spare_tree / ".git" / "index", workspace.tree / ".git" / "index")
        return True
    except OSError:
        for path in moved:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return False
    finally:
        shutil.rmtree(claimed, ignore_errors=True)


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
    workspace: Workspace,
    *,
    objects_from: Path | None,
    base_commit: str | None,
    index_from: Path | None = None,
) -> None:
    run_git(["init", "--quiet", "--bare", str(workspace.host_git)])
    # A split index: staging a few files rewrites a small index beside the shared one
    # instead of every entry of the tree (a patch after each step stages files).
    with open(workspace.host_git / "config", "a") as config:
        config.write("[core]\n\tsplitIndex = true\n")
    if objects_from is not None:
        alternates = workspace.host_git / "objects" / "info" / "alternates"
        alternates.write_text(str((objects_from / "objects").resolve()) + "\n")
    if index_from is not None:
        # The index our own checkout has just written, before any agent ran: the base
        # commit's entries with the stat data of the files as checked out, so the first
        # `add --all` re-reads only files whose stat changed (every file, though, once a
        # root server hands the tree to the sandbox uid). copy2 keeps the file's mtime,
        # which git's check for racily clean entries compares against.
        shutil.copy2(index_from, workspace.host_git / "index")
    elif base_commit is not None:
        # Start the private index at the base (entries without stat data: the first
        # `add --all` hashes every file once).
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
