"""A fake GitHub: real HTTP, GitHub's REST API (v3) and git's smart HTTP protocol.

Repositories are real bare git repositories under ``root``; git requests are served by
the real ``git http-backend``, so clones, fetches and pushes behave exactly as against
GitHub. The REST API answers under ``/api/v3`` (the GitHub Enterprise path layout)::

    with FakeGitHub(tmp_path / "github") as gh:
        gh.add_repo("octocat", "hello", from_path=work_tree)  # all branches copied
        ...  # OPENJULES_GITHUB_API_URL=gh.api_url, token gh.token
        git clone gh.clone_url("octocat", "hello")
        assert gh.pulls(repo="hello")[0].head == "feature"

Failures are injected per operation (``gh.fail(Operation.CREATE_PULL, 403)``) and pushes
can be refused by a real pre-receive hook (``gh.reject_pushes(...)``). Every request, API
and git, is recorded in ``gh.requests``.

Served endpoints: ``GET /user``, ``GET /user/repos``, ``GET /repos/{owner}/{repo}``,
``GET /repos/{owner}/{repo}/branches``, ``GET|POST /repos/{owner}/{repo}/pulls``,
``GET /repos/{owner}/{repo}/pulls/{number}``; anything else under ``/api/v3`` is 404.
"""

from __future__ import annotations

from openjules.testing.fake_github.records import Operation, PullRecord, RecordedRequest
from openjules.testing.fake_github.server import DEFAULT_TOKEN, FakeGitHub

__all__ = ["DEFAULT_TOKEN", "FakeGitHub", "Operation", "PullRecord", "RecordedRequest"]
