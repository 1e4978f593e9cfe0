"""FakeGitHub over real HTTP: GitHub's REST shapes, and real git clone/push against it."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.testing.fake_github import FakeGitHub, Operation
from tests.support import make_repo, run_git

DOCS = "https://docs.github.com/rest"


def commit(work: Path, name: str, content: str) -> str:
    (work / name).write_text(content)
    run_git("add", name, cwd=work)
    run_git("commit", "-q", "-m", f"add {name}", cwd=work)
    return run_git("rev-parse", "HEAD", cwd=work).stdout.strip()


@pytest.fixture
def gh(tmp_path: Path) -> Iterator[FakeGitHub]:
    with FakeGitHub(tmp_path / "github") as server:
        yield server


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A local repository with branches main (1 commit) and feature (1 more)."""
    work = make_repo(tmp_path / "source", {"README.md": "# demo\n"}, message="add README.md")
    run_git("checkout", "-q", "-b", "feature", cwd=work)
    commit(work, "feature.txt", "new\n")
    run_git("checkout", "-q", "main", cwd=work)
    return work


def auth(gh: FakeGitHub) -> dict[str, str]:
    return {"Authorization": f"Bearer {gh.token}"}


def error(status: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"message": message, **extra, "documentation_url": DOCS, "status": str(status)}


def test_user_repos_walks_pages_by_github_link_headers(tmp_path: Path) -> None:
    with FakeGitHub(tmp_path / "github", max_per_page=2) as gh:
        for name in ["echo", "alpha", "delta", "charlie", "bravo"]:
            gh.add_repo("octocat", name)
        base = f"{gh.api_url}/user/repos"
        first = httpx.get(base, params={"per_page": 50, "affiliation": "owner"}, headers=auth(gh))
        assert first.status_code == 200
        assert first.headers["content-type"] == "application/json; charset=utf-8"
        assert first.headers["x-ratelimit-remaining"]
        # per_page=50 is capped at max_per_page=2, but the links keep the caller's query.
        assert first.headers["link"] == (
            f'<{base}?per_page=50&affiliation=owner&page=2>; rel="next", '
            f'<{base}?per_page=50&affiliation=owner&page=3>; rel="last"'
        )
        pages = [first]
        while 'rel="next"' in pages[-1].headers.get("link", ""):
            next_url = pages[-1].links["next"]["url"]
            pages.append(httpx.get(next_url, headers=auth(gh)))

        assert len(pages) == 3
        assert pages[1].headers["link"] == (
            f'<{base}?per_page=50&affiliation=owner&page=1>; rel="prev", '
            f'<{base}?per_page=50&affiliation=owner&page=3>; rel="next", '
            f'<{base}?per_page=50&affiliation=owner&page=3>; rel="last", '
            f'<{base}?per_page=50&affiliation=owner&page=1>; rel="first"'
        )
        assert set(pages[2].links) == {"prev", "first"}
        names = [repo["full_name"] for page in pages for repo in page.json()]
        assert names == [f"octocat/{n}" for n in ["alpha", "bravo", "charlie", "delta", "echo"]]


def test_single_page_has_no_link_header(gh: FakeGitHub) -> None:
    gh.add_repo("octocat", "only")
    response = httpx.get(f"{gh.api_url}/user/repos", headers=auth(gh))
    assert [r["name"] for r in response.json()] == ["only"]
    assert "link" not in response.headers


def test_user_repos_requires_authentication(gh: FakeGitHub) -> None:
    response = httpx.get(f"{gh.api_url}/user/repos")
    assert response.status_code == 401
    assert response.json() == error(401, "Requires authentication")


@pytest.mark.parametrize("scheme", ["Bearer", "token", "Basic"])
def test_bad_token_is_refused_in_every_auth_form(gh: FakeGitHub, scheme: str) -> None:
    gh.add_repo("octocat", "hello")
    for token, expected in [("wrong", 401), (gh.token, 200)]:
        value = (
            base64.b64encode(f"anyone:{token}".encode()).decode() if scheme == "Basic" else token
        )
        headers = {"Authorization": f"{scheme} {value}"}
        # Even a public resource is refused when the token is wrong, as on GitHub.
        response = httpx.get(f"{gh.api_url}/repos/octocat/hello", headers=headers)
        assert response.status_code == expected
        if expected == 401:
            assert response.json() == error(401, "Bad credentials")
            assert response.headers["content-type"] == "application/json; charset=utf-8"


def test_repo_json_and_branches_of_a_copied_repository(gh: FakeGitHub, source: Path) -> None:
    gh.add_repo("octocat", "demo", from_path=source)
    repo = httpx.get(f"{gh.api_url}/repos/octocat/demo", headers=auth(gh)).json()
    assert repo["full_name"] == "octocat/demo"
    assert repo["owner"]["login"] == "octocat"
    assert repo["private"] is False
    assert repo["visibility"] == "public"
    assert repo["default_branch"] == "main"
    assert repo["clone_url"] == f"{gh.url}/octocat/demo.git"
    assert repo["html_url"] == f"{gh.url}/octocat/demo"
    assert repo["permissions"]["push"] is True
    assert isinstance(repo["id"], int)

    branches = httpx.get(f"{gh.api_url}/repos/octocat/demo/branches").json()
    expected = {
        name: run_git("rev-parse", name, cwd=source).stdout.strip() for name in ["feature", "main"]
    }
    assert [b["name"] for b in branches] == ["feature", "main"]
    assert {b["name"]: b["commit"]["sha"] for b in branches} == expected
    assert all(b["protected"] is False for b in branches)


def test_default_branch_option_sets_head(gh: FakeGitHub, source: Path, tmp_path: Path) -> None:
    gh.add_repo("octocat", "demo", from_path=source, default_branch="feature")
    assert httpx.get(f"{gh.api_url}/repos/octocat/demo").json()["default_branch"] == "feature"
    run_git("clone", "-q", gh.clone_url("octocat", "demo"), "clone", cwd=tmp_path)
    assert (tmp_path / "clone" / "feature.txt").exists()


def test_private_repo_is_invisible_without_auth(gh: FakeGitHub, tmp_path: Path) -> None:
    gh.add_repo("octocat", "secret", private=True)
    for path in ["", "/branches", "/pulls"]:
        anonymous = httpx.get(f"{gh.api_url}/repos/octocat/secret{path}")
        assert anonymous.status_code == 404
        assert anonymous.json() == error(404, "Not Found")
    visible = httpx.get(f"{gh.api_url}/repos/octocat/secret", headers=auth(gh))
    assert visible.status_code == 200
    assert visible.json()["visibility"] == "private"

    refused = run_git("clone", gh.clone_url("octocat", "secret"), "anon", cwd=tmp_path, check=False)
    assert refused.returncode != 0
    run_git("clone", "-q", gh.clone_url("octocat", "secret"), "mine", cwd=tmp_path, token=gh.token)
    assert (tmp_path / "mine" / "README.md").read_text() == "# secret\n"


def test_unknown_paths_and_repos_are_github_404s(gh: FakeGitHub) -> None:
    for url in ["/nope", "/repos/octocat/missing", "/repos/octocat/missing/pulls/1"]:
        response = httpx.get(f"{gh.api_url}{url}", headers=auth(gh))
        assert response.status_code == 404
        assert response.json() == error(404, "Not Found")


def test_clone_public_repo_without_auth(gh: FakeGitHub, source: Path, tmp_path: Path) -> None:
    gh.add_repo("octocat", "demo", from_path=source)
    run_git("clone", "-q", gh.clone_url("octocat", "demo"), "clone", cwd=tmp_path)
    clone = tmp_path / "clone"
    assert (clone / "README.md").read_text() == "# demo\n"
    remote_branches = run_git("branch", "-r", cwd=clone).stdout
    assert "origin/feature" in remote_branches
    assert all(r.authorization is None for r in gh.requests)


@pytest.fixture
def clone(gh: FakeGitHub, source: Path, tmp_path: Path) -> Path:
    """A clone of octocat/demo with a local, unpushed branch "topic" one commit ahead."""
    gh.add_repo("octocat", "demo", from_path=source)
    run_git("clone", "-q", gh.clone_url("octocat", "demo"), "clone", cwd=tmp_path)
    work = tmp_path / "clone"
    run_git("checkout", "-q", "-b", "topic", cwd=work)
    commit(work, "topic.txt", "topic\n")
    return work


def test_push_needs_the_token(gh: FakeGitHub, clone: Path) -> None:
    anonymous = run_git("push", "origin", "topic", cwd=clone, check=False)
    assert anonymous.returncode != 0
    # git asked for credentials after the 401 and could not prompt for them.
    assert "could not read Username" in anonymous.stderr
    # Credentials in the URL: after a 401 for those, git gives up instead of asking.
    wrong_url = gh.clone_url("octocat", "demo").replace("://", "://x-access-token:wrong@")
    wrong = run_git("push", wrong_url, "topic", cwd=clone, check=False)
    assert wrong.returncode != 0
    assert "Authentication failed" in wrong.stderr

    run_git("push", "-q", "origin", "topic", cwd=clone, token=gh.token)
    pushed = run_git("rev-parse", "topic", cwd=clone).stdout.strip()
    branches = httpx.get(f"{gh.api_url}/repos/octocat/demo/branches").json()
    assert {"name": "topic", "sha": pushed} in [
        {"name": b["name"], "sha": b["commit"]["sha"]} for b in branches
    ]


def test_pull_request_lifecycle(gh: FakeGitHub, clone: Path) -> None:
    run_git("push", "-q", "origin", "topic", cwd=clone, token=gh.token)
    pushed = run_git("rev-parse", "topic", cwd=clone).stdout.strip()
    pulls = f"{gh.api_url}/repos/octocat/demo/pulls"
    create_docs = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"

    def create(payload: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(pulls, json=payload, headers=auth(gh) if headers is None else headers)

    anonymous = create({"title": "t", "head": "topic", "base": "main"}, headers={})
    assert anonymous.status_code == 401
    not_json = httpx.post(pulls, content=b"{title", headers=auth(gh))
    assert not_json.status_code == 400
    assert not_json.json()["message"] == "Problems parsing JSON"

    missing = create({"title": "t", "base": "main"})
    assert missing.status_code == 422
    assert missing.json() == {
        "message": "Validation Failed",
        "errors": [{"resource": "PullRequest", "field": "head", "code": "missing_field"}],
        "documentation_url": create_docs,
        "status": "422",
    }
    bad_head = create({"title": "t", "head": "octocat:nope", "base": "main"})
    assert bad_head.json()["errors"] == [
        {"resource": "PullRequest", "field": "head", "code": "invalid"}
    ]
    bad_base = create({"title": "t", "head": "topic", "base": "nope"})
    assert bad_base.json()["errors"] == [
        {"resource": "PullRequest", "field": "base", "code": "invalid"}
    ]
    nothing_new = create({"title": "t", "head": "main", "base": "topic"})
    assert nothing_new.status_code == 422
    assert nothing_new.json()["errors"] == [
        {
            "resource": "PullRequest",
            "code": "custom",
            "message": "No commits between topic and main",
        }
    ]
    assert gh.pulls() == []

    created = create({"title": "Add topic", "head": "octocat:topic", "base": "main", "body": "b"})
    assert created.status_code == 201
    pr = created.json()
    assert pr["number"] == 1
    assert pr["html_url"] == f"{gh.url}/octocat/demo/pull/1"
    assert pr["url"] == f"{pulls}/1"
    assert pr["state"] == "open"
    assert pr["head"]["sha"] == pushed
    assert pr["head"]["label"] == "octocat:topic"
    assert pr["base"]["ref"] == "main"
    assert pr["created_at"].endswith("Z")
    [record] = gh.pulls(owner="octocat", repo="demo")
    assert (record.number, record.head, record.base, record.head_sha, record.body) == (
        1,
        "topic",
        "main",
        pushed,
        "b",
    )

    duplicate = create({"title": "Again", "head": "topic", "base": "main"})
    assert duplicate.status_code == 422
    assert duplicate.json()["errors"] == [
        {
            "resource": "PullRequest",
            "code": "custom",
            "message": "A pull request already exists for octocat:topic.",
        }
    ]

    found = httpx.get(pulls, params={"head": "octocat:topic", "base": "main"}).json()
    assert [p["number"] for p in found] == [1]
    assert httpx.get(pulls, params={"head": "octocat:other"}).json() == []
    assert httpx.get(pulls, params={"state": "closed"}).json() == []
    assert httpx.get(f"{pulls}/1").json()["title"] == "Add topic"
    assert httpx.get(f"{pulls}/2").status_code == 404


def test_injected_api_failure_answers_once(gh: FakeGitHub, clone: Path) -> None:
    run_git("push", "-q", "origin", "topic", cwd=clone, token=gh.token)
    gh.fail(Operation.CREATE_PULL, 403)
    payload = {"title": "t", "head": "topic", "base": "main"}
    url = f"{gh.api_url}/repos/octocat/demo/pulls"
    refused = httpx.post(url, json=payload, headers=auth(gh))
    assert refused.status_code == 403
    assert refused.json() == error(403, "Resource not accessible by personal access token")
    assert httpx.post(url, json=payload, headers=auth(gh)).status_code == 201


def test_injected_git_push_failure(gh: FakeGitHub, clone: Path) -> None:
    gh.fail(Operation.GIT_PUSH, 403, message="Permission to octocat/demo.git denied.")
    refused = run_git("push", "origin", "topic", cwd=clone, check=False, token=gh.token)
    assert refused.returncode != 0
    assert "403" in refused.stderr
    assert "remote: Permission to octocat/demo.git denied." in refused.stderr
    # One failure only: fetching is unaffected and the next push goes through.
    run_git("fetch", "-q", "origin", cwd=clone)
    run_git("push", "-q", "origin", "topic", cwd=clone, token=gh.token)


def test_reject_pushes_runs_a_real_pre_receive_hook(gh: FakeGitHub, clone: Path) -> None:
    gh.reject_pushes("octocat", "demo", message="pushes are frozen today")
    refused = run_git("push", "origin", "topic", cwd=clone, check=False, token=gh.token)
    assert refused.returncode != 0
    assert "remote: pushes are frozen today" in refused.stderr
    assert "pre-receive hook declined" in refused.stderr
    branches = httpx.get(f"{gh.api_url}/repos/octocat/demo/branches").json()
    assert "topic" not in [b["name"] for b in branches]

    gh.allow_pushes("octocat", "demo")
    run_git("push", "-q", "origin", "topic", cwd=clone, token=gh.token)


def test_requests_are_recorded(gh: FakeGitHub) -> None:
    gh.add_repo("octocat", "hello")
    httpx.get(f"{gh.api_url}/repos/octocat/hello/branches?per_page=1", headers=auth(gh))
    assert gh.requests[-1].method == "GET"
    assert gh.requests[-1].path == "/api/v3/repos/octocat/hello/branches"
    assert gh.requests[-1].query == "per_page=1"
    assert gh.requests[-1].authorization == f"Bearer {gh.token}"
