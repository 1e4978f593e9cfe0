"""The git commands the fake runs on its bare repositories, in an isolated environment."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from openjules._cancellation import within
from openjules.testing.fake_github.git_http import GIT_TIMEOUT_S, isolated_env
from openjules.testing.fake_github.records import ApiError, Repo


class BareRepos:
    """Git on the bare repositories, with ``home`` as HOME of every git process."""

    def __init__(self, home: Path) -> None:
        self._home = home

    # -- repository setup (test thread, blocking) --------------------------------------

    def run(
        self, args: Sequence[str], *, git_dir: Path | None = None, stdin: str | None = None
    ) -> str:
        prefix = ["git"] if git_dir is None else ["git", f"--git-dir={git_dir}"]
        done = subprocess.run(
            [*prefix, *args],
            env=isolated_env(self._home),
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=GIT_TIMEOUT_S,
        )
        if done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def copy(self, source: Path, path: Path, default_branch: str | None) -> str:
        source = source.resolve()
        self.run(["clone", "--bare", "--quiet", "--", str(source), str(path)])
        # A bare clone already maps heads to heads; fetching them again guarantees every
        # local branch of the source is a branch here, whatever the clone defaults are.
        self.run(
            ["fetch", "--quiet", "--update-head-ok", str(source), "+refs/heads/*:refs/heads/*"],
            git_dir=path,
        )
        # The server-side copy must not point back at the test's working tree.
        self.run(["remote", "remove", "origin"], git_dir=path)
        branch = default_branch
        if branch is None:
            source_head = subprocess.run(
                ["git", "-C", str(source), "symbolic-ref", "--quiet", "--short", "HEAD"],
                env=isolated_env(self._home),
                capture_output=True,
                text=True,
                check=False,
            )
            branch = source_head.stdout.strip() if source_head.returncode == 0 else None
        if branch is None:  # a detached source: keep whatever HEAD the clone chose
            branch = self.run(["symbolic-ref", "--short", "HEAD"], git_dir=path)
        exists = subprocess.run(
            ["git", f"--git-dir={path}", "show-ref", "--verify", "--quiet", f"refs/heads/{branch}"],
            env=isolated_env(self._home),
            check=False,
        )
        if exists.returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            raise ValueError(f"default branch {branch!r} is not a branch of {source}")
        self.run(["symbolic-ref", "HEAD", f"refs/heads/{branch}"], git_dir=path)
        return branch

    def init(self, path: Path, name: str, branch: str) -> None:
        self.run(["init", "--bare", "--quiet", f"--initial-branch={branch}", str(path)])
        # Plumbing instead of a temporary work tree: one blob, one tree, one commit.
        blob = self.run(["hash-object", "-w", "--stdin"], git_dir=path, stdin=f"# {name}\n")
        tree = self.run(["mktree"], git_dir=path, stdin=f"100644 blob {blob}\tREADME.md\n")
        commit = self.run(["commit-tree", tree, "-m", "Initial commit"], git_dir=path)
        self.run(["update-ref", f"refs/heads/{branch}", commit], git_dir=path)

    # -- git, from the event loop ------------------------------------------------------

    async def output(self, repo: Repo, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            "git",
            f"--git-dir={repo.path}",
            *args,
            env=isolated_env(self._home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, _ = await within(proc.communicate(), seconds=GIT_TIMEOUT_S)
        return proc.returncode or 0, out.decode()

    async def branches(self, repo: Repo) -> dict[str, str]:
        code, out = await self.output(
            repo, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/"
        )
        if code != 0:
            raise ApiError(500, "Server Error")
        branches: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, ref = line.partition(" ")
            branches[ref.removeprefix("refs/heads/")] = sha
        return branches

    async def is_ancestor(self, repo: Repo, commit: str, of: str) -> bool:
        code, _ = await self.output(repo, "merge-base", "--is-ancestor", commit, of)
        if code not in (0, 1):
            raise ApiError(500, "Server Error")
        return code == 0
