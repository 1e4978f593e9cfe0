"""The git work of ``remote new --repo .`` and ``remote pull --apply``: which repository the
current checkout is (its ``origin``), whether its tree is clean, and applying a patch to
it all or nothing (``git apply`` checks every hunk before it writes a file)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from openjules.cli.remote_errors import ExitCode, fail

GIT_TIMEOUT_S = 60.0
# ``user@host:path`` (scp-like ssh), told from a local path by the colon before any slash.
_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?[^/:]+:(?P<path>.*)$")


@dataclass(frozen=True)
class FileChange:
    path: str
    added: str  # "-" for a binary file, as git prints it
    removed: str


def _git(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=stdin,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        fail(
            "git is not installed (it is needed to work with the current checkout).",
            code=ExitCode.REFUSED,
        )


def _first_line(output: bytes) -> str:
    lines = [line for line in output.decode(errors="replace").splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def checkout_root(cwd: Path) -> Path:
    """The top of the git checkout ``cwd`` is in (a usage error outside one)."""
    done = _git("rev-parse", "--show-toplevel", cwd=cwd)
    if done.returncode != 0:
        fail(f"{cwd} is not in a git checkout.", code=ExitCode.USAGE)
    return Path(done.stdout.decode().strip())


def origin_url(cwd: Path) -> str:
    root = checkout_root(cwd)
    done = _git("remote", "get-url", "origin", cwd=root)
    if done.returncode != 0:
        fail(f"The checkout at {root} has no `origin` remote.", code=ExitCode.USAGE)
    return done.stdout.decode().strip()


def repository_of_url(url: str) -> str | None:
    """``OWNER/REPO`` from a remote's URL: https://host/OWNER/REPO(.git),
    git@host:OWNER/REPO(.git), ssh://…, or any URL or path whose last two segments are
    OWNER/REPO; None when it has fewer than two."""
    text = url.strip()
    if "://" in text:
        path = urlsplit(text).path
    elif (scp := _SCP_LIKE.match(text)) is not None:
        path = scp["path"]
    else:
        path = text
    parts = [part for part in path.replace("\\", "/").split("/") if part]
    if parts and parts[-1].endswith(".git"):
        parts[-1] = parts[-1].removesuffix(".git")
    parts = [part for part in parts if part]
    if len(parts) < 2:
        return None
    return f"{parts[-2]}/{parts[-1]}"


def dirty_paths(root: Path) -> list[str]:
    """What ``git status --porcelain`` lists (changed, staged or untracked files)."""
    done = _git("status", "--porcelain", cwd=root)
    if done.returncode != 0:
        fail(f"git status failed in {root}: {_first_line(done.stderr)}", code=ExitCode.REFUSED)
    return [line[3:] for line in done.stdout.decode(errors="replace").splitlines() if line]


def head_commit(root: Path) -> str:
    done = _git("rev-parse", "--verify", "-q", "HEAD", cwd=root)
    return done.stdout.decode().strip() if done.returncode == 0 else ""


def why_patch_does_not_apply(root: Path, patch: str) -> str | None:
    """``git apply --check``'s first complaint, or None when the patch applies."""
    done = _git("apply", "--check", "-", cwd=root, stdin=patch.encode())
    if done.returncode == 0:
        return None
    return _first_line(done.stderr) or f"git apply --check exited with {done.returncode}"


def files_of(root: Path, patch: str) -> list[FileChange]:
    """The files the patch changes, with lines added and removed (``git apply --numstat``)."""
    done = _git("apply", "--numstat", "-", cwd=root, stdin=patch.encode())
    changes = []
    for line in done.stdout.decode(errors="replace").splitlines():
        added, removed, path = [*line.split("\t", 2), "", ""][:3]
        if path:
            changes.append(FileChange(path=path, added=added, removed=removed))
    return changes


def apply_patch(root: Path, patch: str) -> None:
    """Apply ``patch`` to the work tree at ``root`` (all of it, or nothing)."""
    done = _git("apply", "-", cwd=root, stdin=patch.encode())
    if done.returncode != 0:
        fail(
            f"The patch does not apply to {root}: {_first_line(done.stderr)}",
            code=ExitCode.REFUSED,
        )
