"""Host-side git. Every call disables hooks, prompts and external helpers: repositories
are untrusted input."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class HttpAuth:
    """An ``Authorization`` header git sends to URLs under ``url_prefix`` only.

    It reaches git through the environment (``GIT_CONFIG_*``), never a command line, a
    config file or a remote URL, so it cannot leak into ``ps``, a repository or an error
    message; and it is scoped to one host, so a redirect elsewhere does not carry it.
    """

    url_prefix: str
    header: str = field(repr=False)

    def env(self) -> dict[str, str]:
        return {
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": f"http.{self.url_prefix}.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: {self.header}",
            "GIT_CONFIG_KEY_1": "http.followRedirects",
            "GIT_CONFIG_VALUE_1": "false",
        }


def git_env(auth: HttpAuth | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    # No system or user configuration: filters, fsmonitor, pagers and URL rewrites there
    # would run or redirect on repository content we do not trust.
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="/bin/true",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL="/dev/null",
        # ssh must fail rather than ask about host keys or passphrases: nobody can answer.
        GIT_SSH_COMMAND="ssh -o BatchMode=yes",
    )
    if auth is not None:
        env.update(auth.env())
    return env


def run_git_result(
    args: list[str],
    *,
    cwd: Path | None = None,
    timeout: float = GIT_TIMEOUT_S,
    auth: HttpAuth | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run git and return its result whatever the exit code (callers that parse failures)."""
    env = git_env(auth)
    if extra_env:
        env.update(extra_env)
    try:
        return subprocess.run(
            ["git", *SAFE_CONFIG, *args],
            cwd=cwd,
            env=env,
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


def failure_reason(output: str) -> str:
    """The line of git's output that says why it failed ("" if there is none)."""
    detail = [ln.strip() for ln in output.splitlines() if ln.strip()]
    # The first "fatal:"/"error:" line says why; the last is often generic advice.
    reasons = [ln for ln in detail if ln.startswith(("fatal:", "error:"))] or detail[-1:]
    return reasons[0] if reasons else ""


def run_git(
    args: list[str],
    *,
    cwd: Path | None = None,
    timeout: float = GIT_TIMEOUT_S,
    auth: HttpAuth | None = None,
    extra_env: dict[str, str] | None = None,
) -> str:
    done = run_git_result(args, cwd=cwd, timeout=timeout, auth=auth, extra_env=extra_env)
    if done.returncode != 0:
        reason = failure_reason(done.stderr or done.stdout) or f"exit code {done.returncode}"
        raise GitError(f"git {args[0]} failed: {reason}")
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


def read_remote(location: str, *, auth: HttpAuth | None = None) -> RemoteInfo:
    """Branches and the default branch of a repository, read with ``git ls-remote``."""
    output = run_git(["ls-remote", "--symref", location, "HEAD", "refs/heads/*"], auth=auth)
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


def redact_url(url: str) -> str:
    """``url`` without user name or password, fit for messages people and logs see."""
    if "://" not in url:
        return url
    parsed = urlparse(url)
    if parsed.username is None and parsed.password is None:
        return url
    host = parsed.hostname or ""
    if parsed.port is not None:
        host = f"{host}:{parsed.port}"
    return parsed._replace(netloc=host).geturl()
