"""Host-side git for delivery: build a session's commit from its base and patch, and push it.

The commit is made in a scratch repository that borrows the source mirror's objects, from
the checkpointed patch alone: its tree is exactly the base commit plus the session's
patch, whatever the agent left in its work tree's ``.git``.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from openjules.engine.git import GitError, HttpAuth, failure_reason, run_git, run_git_result


@dataclass(frozen=True)
class Author:
    name: str
    email: str

    def env(self) -> dict[str, str]:
        return {
            "GIT_AUTHOR_NAME": self.name,
            "GIT_AUTHOR_EMAIL": self.email,
            "GIT_COMMITTER_NAME": self.name,
            "GIT_COMMITTER_EMAIL": self.email,
        }


class PushRejected(GitError):
    """The remote refused the push; the message says why, in the remote's words."""


@dataclass(frozen=True)
class Scratch:
    """A bare repository for one delivery, borrowing ``mirror``'s objects."""

    path: Path

    def init(self, *, mirror: Path) -> None:
        """Create the repository afresh (a crashed delivery may have left one)."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        run_git(["init", "--quiet", "--bare", str(self.path)])
        alternates = self.path / "objects" / "info" / "alternates"
        alternates.write_text(str((mirror / "objects").resolve()) + "\n")

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _git(
        self,
        args: list[str],
        *,
        auth: HttpAuth | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> str:
        return run_git(["--git-dir", str(self.path), *args], auth=auth, extra_env=extra_env)

    def remote_tip(self, *, url: str, branch: str, auth: HttpAuth | None) -> str | None:
        """The commit ``branch`` points at in the remote, fetched here; None if absent."""
        listing = self._git(["ls-remote", url, f"refs/heads/{branch}"], auth=auth)
        line = listing.strip().splitlines()[0] if listing.strip() else ""
        if not line:
            return None
        self._git(["fetch", "--quiet", "--no-tags", url, f"refs/heads/{branch}"], auth=auth)
        return line.split("\t", 1)[0]

    def tree_of(self, commit: str) -> str:
        return self._git(["rev-parse", f"{commit}^{{tree}}"]).strip()

    def build_tree(self, *, base_commit: str, patch: str) -> str:
        """The tree of ``base_commit`` with ``patch`` applied (a temporary index)."""
        index = self.path / "delivery.index"
        patch_file = self.path / "delivery.patch"
        patch_file.write_text(patch)
        env = {"GIT_INDEX_FILE": str(index)}
        try:
            self._git(["read-tree", base_commit], extra_env=env)
            self._git(
                ["apply", "--cached", "--binary", "--whitespace=nowarn", str(patch_file)],
                extra_env=env,
            )
            return self._git(["write-tree"], extra_env=env).strip()
        finally:
            index.unlink(missing_ok=True)
            patch_file.unlink(missing_ok=True)

    def commit(self, *, tree: str, parent: str, message: str, author: Author) -> str:
        return self._git(
            ["commit-tree", tree, "-p", parent, "-m", message], extra_env=author.env()
        ).strip()

    def push(
        self, *, url: str, commit: str, branch: str, expected: str | None, auth: HttpAuth | None
    ) -> None:
        """Point the remote's ``branch`` at ``commit``, only if it is still ``expected``
        (None: the branch must not exist), so commits pushed by anyone else survive."""
        ref = f"refs/heads/{branch}"
        done = run_git_result(
            [
                "--git-dir",
                str(self.path),
                "push",
                "--porcelain",
                "--no-verify",
                f"--force-with-lease={ref}:{expected or ''}",
                url,
                f"{commit}:{ref}",
            ],
            auth=auth,
        )
        if done.returncode == 0:
            return
        raise PushRejected(_push_failure(done.stdout, done.stderr, branch=branch))


# "!\t<src>:<dst>\t[remote rejected] (pre-receive hook declined)"
_PORCELAIN_REJECTED = re.compile(r"^!\t[^\t]*\t\[([^\]]+)\](?: \((.*)\))?$")


def _push_failure(stdout: str, stderr: str, *, branch: str) -> str:
    status = ""
    for line in stdout.splitlines():
        match = _PORCELAIN_REJECTED.match(line)
        if match:
            status = match.group(1) + (f": {match.group(2)}" if match.group(2) else "")
    remote = [
        line.removeprefix("remote:").strip()
        for line in stderr.splitlines()
        if line.startswith("remote:") and line.removeprefix("remote:").strip()
    ]
    if status:
        said = f" The remote said: {' '.join(remote[:5])}" if remote else ""
        if "stale info" in status or "fetch first" in status or "non-fast-forward" in status:
            return f"the branch {branch} changed in the remote while openjules pushed ({status})."
        return f"the push of branch {branch} was rejected ({status}).{said}"
    reason = failure_reason(stderr or stdout) or "git push failed"
    return f"the push of branch {branch} failed: {reason}"
