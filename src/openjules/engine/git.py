"""Host-side git. Every call disables hooks, prompts and external helpers: repositories
are untrusted input."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

GIT_TIMEOUT_S = 120
SAFE_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "protocol.file.allow=always",
    "-c",
    "credential.helper=",
)


class GitError(RuntimeError):
    """A git command failed; the message says which and why, in words for a person."""


@dataclass(frozen=True)
class RemoteInfo:
    default_branch: str
    branches: list[str]


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    # No system or user configuration: filters, fsmonitor, pagers and URL rewrites there
    # would run or redirect on repository content we do not trust.
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="/bin/true",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL="/dev/null",
    )
    return env


def run_git(args: list[str], *, cwd: Path | None = None, timeout: float = GIT_TIMEOUT_S) -> str:
    try:
        done = subprocess.run(
            ["git", *SAFE_CONFIG, *args],
            cwd=cwd,
            env=git_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed on this machine.") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} timed out after {timeout:.0f}s.") from exc
    if done.returncode != 0:
        detail = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        # The first "fatal:"/"error:" line says why; the last is often generic advice.
        reasons = [ln for ln in detail if ln.startswith(("fatal:", "error:"))] or detail[-1:]
        raise GitError(f"git {args[0]} failed: {reasons[0] if reasons else done.returncode}")
    return done.stdout


def is_url(location: str) -> bool:
    return bool(
        re.match(r"^[a-z][a-z0-9+.-]*://", location) or re.match(r"^[^/]+@[^/]+:", location)
    )


def normalize_location(location: str) -> str:
    """A local path becomes absolute (and must exist); URLs pass through."""
    if is_url(location):
        return location
    path = Path(location).expanduser().resolve()
    if not path.exists():
        raise GitError(f"{location}: no such directory.")
    return str(path)


def read_remote(location: str) -> RemoteInfo:
    """Branches and the default branch of a repository, read with ``git ls-remote``."""
    output = run_git(["ls-remote", "--symref", location, "HEAD", "refs/heads/*"])
    default = ""
    branches: list[str] = []
    for line in output.splitlines():
        if line.startswith("ref: ") and line.endswith("\tHEAD"):
            default = line[len("ref: refs/heads/") :].split("\t")[0]
            continue
        _sha, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/"):
            branches.append(ref[len("refs/heads/") :])
    if not branches:
        raise GitError(f"{location} has no branches; push at least one commit first.")
    branches.sort()
    if default not in branches:
        default = next((b for b in ("main", "master") if b in branches), branches[0])
    return RemoteInfo(default_branch=default, branches=branches)


def default_source_name(location: str) -> tuple[str, str]:
    """``local/<dir>`` for a path; ``<owner>/<repo>`` from a URL's last two segments."""
    if not is_url(location):
        return "local", Path(location).resolve().name.removesuffix(".git")
    path = urlparse(location).path if "://" in location else location.split(":", 1)[1]
    parts = [p for p in path.strip("/").split("/") if p]
    repo = parts[-1].removesuffix(".git") if parts else "repo"
    owner = parts[-2] if len(parts) >= 2 else "local"
    return owner, repo
