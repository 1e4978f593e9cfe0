"""The GitHub REST client (engine/forge/github.py) against real HTTP servers: the fake
GitHub, and small hostile or rate-limited servers. What an operator sees: errors that say
what happened and what to do, retries only where they are safe, and a token that never
goes to another host."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from openjules.engine.forge.access import GitHubAccess
from openjules.engine.forge.github import GitHubClient, GitHubError
from openjules.testing import FakeGitHub, Operation
from openjules.testing.server import ThreadedUvicorn
from tests.support import unused_port

TOKEN = "ghp_clientTEST0123456789"


class Recorder:
    """A loopback server answering ``answer`` to every request, recording Authorization."""

    def __init__(self, answer: Response | None = None) -> None:
        self.authorizations: list[str | None] = []
        self._lock = threading.Lock()
        self._answer = answer

        async def endpoint(request: Request) -> Response:
            with self._lock:
                self.authorizations.append(request.headers.get("authorization"))
            return self._answer or JSONResponse([])

        self.server = ThreadedUvicorn(
            lambda _port: Starlette(routes=[Route("/{path:path}", endpoint)]), name="recorder"
        )
        self.url = self.server.url

    def answer(self, response: Response) -> None:
        self._answer = response


@pytest.fixture
def github(tmp_path: Path) -> Iterator[FakeGitHub]:
    with FakeGitHub(tmp_path / "github", token=TOKEN) as fake:
        fake.add_repo("acme", "app")
        yield fake


def client_for(api_url: str) -> GitHubClient:
    return GitHubClient(GitHubAccess(api_url=api_url, token=TOKEN), timeout=5)


def test_a_next_page_link_to_another_host_is_not_followed_with_the_token() -> None:
    elsewhere = Recorder()
    api = Recorder()
    elsewhere.server.start()
    api.server.start()
    try:
        api.answer(
            JSONResponse(
                [],
                headers={"Link": f'<{elsewhere.url}/user/repos?page=2>; rel="next"'},
            )
        )
        with client_for(api.url) as client, pytest.raises(GitHubError) as raised:
            list(client.repositories())
    finally:
        api.server.stop()
        elsewhere.server.stop()
    assert "points to another host" in raised.value.message
    assert api.authorizations == [f"Bearer {TOKEN}"]
    assert elsewhere.authorizations == []


def test_a_rate_limit_says_when_it_resets() -> None:
    api = Recorder(
        JSONResponse(
            {"message": "API rate limit exceeded"},
            status_code=403,
            headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1795449600"},
        )
    )
    api.server.start()
    try:
        with client_for(api.url) as client, pytest.raises(GitHubError) as raised:
            client.repository("acme", "app")
    finally:
        api.server.stop()
    assert raised.value.status == 403
    assert "rate limit is used up" in raised.value.message
    assert "resets at 16:00 UTC" in raised.value.message  # 1795449600 is 16:00:00 UTC


def test_reads_are_retried_after_a_server_error(github: FakeGitHub) -> None:
    github.fail(Operation.GET_REPO, 502, times=1)
    with client_for(github.api_url) as client:
        assert client.repository("acme", "app")["full_name"] == "acme/app"
    reads = [r for r in github.requests if r.path == "/api/v3/repos/acme/app"]
    assert len(reads) == 2


def test_opening_a_pull_request_is_never_retried(github: FakeGitHub) -> None:
    github.fail(Operation.CREATE_PULL, 500, times=1)
    with client_for(github.api_url) as client, pytest.raises(GitHubError) as raised:
        client.create_pull("acme", "app", title="t", body="", head="topic", base="main")
    assert raised.value.status == 500
    assert "GitHub answered 500" in raised.value.message
    posts = [r for r in github.requests if r.method == "POST"]
    assert len(posts) == 1, "a retried POST could open the pull request twice"


def test_a_validation_error_carries_githubs_reasons(github: FakeGitHub) -> None:
    with client_for(github.api_url) as client, pytest.raises(GitHubError) as raised:
        client.create_pull("acme", "app", title="t", body="", head="no-such-branch", base="main")
    message = raised.value.message
    assert raised.value.status == 422
    assert message.startswith("GitHub refused to open a pull request from no-such-branch into main")
    assert "Validation Failed" in message
    assert "head" in message


def test_an_unreachable_github_is_named_and_the_token_is_not(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{unused_port()}/api/v3"
    with client_for(url) as client, pytest.raises(GitHubError) as raised:
        client.repository("acme", "app")
    assert raised.value.message.startswith(f"Could not reach GitHub at {url} to read acme/app")
    assert TOKEN not in raised.value.message


def test_a_bad_token_is_explained(github: FakeGitHub) -> None:
    access = GitHubAccess(api_url=github.api_url, token="ghp_wrong0000")
    with GitHubClient(access) as client, pytest.raises(GitHubError) as raised:
        list(client.repositories())
    assert raised.value.status == 401
    assert "rejected the token" in raised.value.message
    assert "OPENJULES_GITHUB_TOKEN" in raised.value.message
    assert "ghp_wrong0000" not in raised.value.message


@pytest.mark.parametrize(
    ("api_url", "clone_url", "sends_token"),
    [
        ("https://api.github.com", "https://github.com/acme/app.git", True),
        ("https://api.github.com", "https://gitlab.com/acme/app.git", False),
        ("https://api.github.com", "https://github.com.evil.example/acme/app.git", False),
        ("https://ghe.example.com/api/v3", "https://ghe.example.com/acme/app.git", True),
        ("https://ghe.example.com/api/v3", "http://ghe.example.com/acme/app.git", False),
    ],
)
def test_git_gets_the_token_only_for_the_githubs_own_host(
    api_url: str, clone_url: str, sends_token: bool
) -> None:
    access = GitHubAccess(api_url=api_url, token=TOKEN)
    assert (access.git_auth(clone_url) is not None) is sends_token
    assert TOKEN not in repr(access)
    auth = access.git_auth(clone_url)
    if auth is not None:
        assert TOKEN not in repr(auth)
