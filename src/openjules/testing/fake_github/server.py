"""``FakeGitHub``: the server, its test-side API, access checks and routes."""

from __future__ import annotations

import base64
import binascii
import re
import shlex
import shutil
import tempfile
import threading
import weakref
import zlib
from collections import deque
from pathlib import Path
from typing import Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from openjules.testing.fake_github.bare_repos import BareRepos
from openjules.testing.fake_github.git_http import Service, git_error, http_backend
from openjules.testing.fake_github.pulls import PullRequests
from openjules.testing.fake_github.records import (
    ApiError,
    Auth,
    Failure,
    Operation,
    PullRecord,
    RecordedRequest,
    Repo,
    default_message,
    node_id,
    now,
)
from openjules.testing.fake_github.rest import api_endpoint, json_response, paginate, repo_json
from openjules.testing.server import BackgroundServer, ThreadedUvicorn

DEFAULT_TOKEN = "ghp_fake0123456789abcdefTOKEN"

API_PREFIX = "/api/v3"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

# GitHub's own character sets; also keeps names from escaping ``root`` on disk.
_OWNER_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_REPO_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class _RecordingMiddleware:
    """Records every request (API and git) before routing, so 404s are recorded too."""

    def __init__(self, app: ASGIApp, owner: FakeGitHub) -> None:
        self._app = app
        self._owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            authorization = None
            for key, value in scope["headers"]:
                if key == b"authorization":
                    authorization = value.decode("latin-1")
            self._owner._record(
                RecordedRequest(
                    method=scope["method"],
                    path=scope["path"],
                    query=scope["query_string"].decode("latin-1"),
                    authorization=authorization,
                )
            )
        await self._app(scope, receive, send)


class FakeGitHub(BackgroundServer):
    """GitHub's REST API and git smart HTTP over bare repositories in ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        token: str = DEFAULT_TOKEN,
        max_per_page: int = 100,
        login: str = "octocat",
    ) -> None:
        if max_per_page < 1:
            raise ValueError("max_per_page must be at least 1")
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.login = login
        self.max_per_page = max_per_page
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._repos: dict[tuple[str, str], Repo] = {}
        self._failures: dict[Operation, deque[Failure]] = {op: deque() for op in Operation}
        self._next_repo_id = 100_001
        # HOME for git processes: outside ``root`` (which is GIT_PROJECT_ROOT), removed on
        # stop or, if the server never ran, when this object is collected.
        self._home = Path(tempfile.mkdtemp(prefix="fake-github-home-"))
        self._remove_home = weakref.finalize(self, shutil.rmtree, self._home, True)
        self._bare_repos = BareRepos(self._home)
        self._server = ThreadedUvicorn(lambda _port: self._app(), name="fake-github")
        self.url: str = self._server.url
        self.api_url: str = self.url + API_PREFIX
        self._pull_requests = PullRequests(self, self._lock, self._bare_repos)

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self._remove_home()

    def start(self) -> Self:
        try:
            return super().start()
        except BaseException:
            self._remove_home()
            raise

    # -- test-side API -----------------------------------------------------------------

    def add_repo(
        self,
        owner: str,
        name: str,
        *,
        from_path: Path | None = None,
        private: bool = False,
        default_branch: str | None = None,
    ) -> Path:
        """Create bare repository ``root/owner/name.git``; returns its path.

        ``from_path`` (a local repository) is copied with all its branches; without it the
        repository gets one initial commit (README.md) on ``default_branch`` or "main".
        """
        if not _OWNER_RE.match(owner):
            raise ValueError(f"invalid GitHub owner name: {owner!r}")
        if not _REPO_RE.match(name) or name in (".", "..") or name.endswith(".git"):
            raise ValueError(f"invalid GitHub repository name: {name!r}")
        key = (owner.lower(), name.lower())
        with self._lock:
            if key in self._repos:
                raise ValueError(f"repository {owner}/{name} already exists")
        path = self.root / owner / f"{name}.git"
        path.parent.mkdir(parents=True, exist_ok=True)
        if from_path is not None:
            branch = self._bare_repos.copy(Path(from_path), path, default_branch)
        else:
            branch = default_branch or "main"
            self._bare_repos.init(path, name, branch)
        # http-backend refuses receive-pack for anonymous users unless this is set; the
        # fake decides who may push itself (see ``_git``).
        self._bare_repos.run(["config", "http.receivepack", "true"], git_dir=path)
        with self._lock:
            if key in self._repos:
                raise ValueError(f"repository {owner}/{name} already exists")
            self._repos[key] = Repo(
                owner=owner,
                name=name,
                path=path,
                private=private,
                default_branch=branch,
                id=self._next_repo_id,
                created_at=now(),
            )
            self._next_repo_id += 1
        return path

    def repo_path(self, owner: str, name: str) -> Path:
        return self._lookup_or_raise(owner, name).path

    def clone_url(self, owner: str, name: str) -> str:
        return f"{self.url}/{owner}/{name}.git"

    def pulls(self, *, owner: str | None = None, repo: str | None = None) -> list[PullRecord]:
        """Copies of the pull requests created so far, in creation order."""
        return self._pull_requests.records(owner=owner, repo=repo)

    def fail(
        self, operation: Operation, status: int, *, times: int = 1, message: str | None = None
    ) -> None:
        """Answer the next ``times`` requests of ``operation`` with ``status``.

        API operations get GitHub's JSON error body; GIT_FETCH/GIT_PUSH fail on their
        ``info/refs`` request with a plain-text message, which git prints as "remote: ...".
        """
        failure = Failure(status, message if message is not None else default_message(status))
        with self._lock:
            self._failures[operation].extend([failure] * times)

    def reject_pushes(self, owner: str, name: str, *, message: str) -> None:
        """Install a pre-receive hook that prints ``message`` and declines every push."""
        hook = self._lookup_or_raise(owner, name).path / "hooks" / "pre-receive"
        hook.parent.mkdir(exist_ok=True)
        # Read the ref updates first so receive-pack never writes into a closed pipe.
        hook.write_text(
            f"#!/bin/sh\ncat >/dev/null\nprintf '%s\\n' {shlex.quote(message)} >&2\nexit 1\n"
        )
        hook.chmod(0o755)

    def allow_pushes(self, owner: str, name: str) -> None:
        hook = self._lookup_or_raise(owner, name).path / "hooks" / "pre-receive"
        hook.unlink(missing_ok=True)

    # -- state -------------------------------------------------------------------------

    def _lookup(self, owner: str, name: str) -> Repo | None:
        # GitHub resolves owner and repository names case-insensitively.
        with self._lock:
            return self._repos.get((owner.lower(), name.lower()))

    def _lookup_or_raise(self, owner: str, name: str) -> Repo:
        repo = self._lookup(owner, name)
        if repo is None:
            raise KeyError(f"no repository {owner}/{name}; add it with add_repo()")
        return repo

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _take_failure(self, operation: Operation) -> Failure | None:
        with self._lock:
            queue = self._failures[operation]
            return queue.popleft() if queue else None

    # -- authentication ----------------------------------------------------------------

    def _authenticate(self, request: Request) -> Auth:
        header = request.headers.get("authorization")
        if header is None:
            return Auth.ANONYMOUS
        scheme, _, credentials = header.strip().partition(" ")
        credentials = credentials.strip()
        scheme = scheme.lower()
        if scheme in ("bearer", "token"):
            supplied = credentials
        elif scheme == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return Auth.INVALID
            # Any user name: git clients send "x-access-token", "git", the login, ...
            _, _, supplied = decoded.partition(":")
        else:
            return Auth.INVALID
        return Auth.VALID if supplied == self.token else Auth.INVALID

    # -- HTTP app ----------------------------------------------------------------------

    def _app(self) -> ASGIApp:
        api = API_PREFIX
        routes = [
            Route(f"{api}/user", api_endpoint(self._get_user), methods=["GET"]),
            Route(f"{api}/user/repos", api_endpoint(self._list_repos), methods=["GET"]),
            Route(f"{api}/repos/{{owner}}/{{repo}}", api_endpoint(self._get_repo), methods=["GET"]),
            Route(
                f"{api}/repos/{{owner}}/{{repo}}/branches",
                api_endpoint(self._list_branches),
                methods=["GET"],
            ),
            Route(
                f"{api}/repos/{{owner}}/{{repo}}/pulls",
                api_endpoint(self._list_pulls),
                methods=["GET"],
            ),
            Route(
                f"{api}/repos/{{owner}}/{{repo}}/pulls",
                api_endpoint(self._create_pull),
                methods=["POST"],
            ),
            Route(
                f"{api}/repos/{{owner}}/{{repo}}/pulls/{{number:int}}",
                api_endpoint(self._get_pull),
                methods=["GET"],
            ),
            # GitHub answers unknown paths and unsupported methods alike with a JSON 404.
            Route(f"{api}/{{rest:path}}", api_endpoint(self._not_found), methods=ALL_METHODS),
            Route(f"{api}", api_endpoint(self._not_found), methods=ALL_METHODS),
            Route("/{owner}/{repo}/info/refs", self._git, methods=["GET"]),
            Route("/{owner}/{repo}/git-upload-pack", self._git, methods=["POST"]),
            Route("/{owner}/{repo}/git-receive-pack", self._git, methods=["POST"]),
        ]
        return _RecordingMiddleware(Starlette(routes=routes), self)

    async def _not_found(self, _request: Request) -> Response:
        raise ApiError(404, "Not Found")

    def _check_failure(self, operation: Operation) -> None:
        failure = self._take_failure(operation)
        if failure is not None:
            raise ApiError(failure.status, failure.message)

    def _require_auth(self, request: Request) -> None:
        auth = self._authenticate(request)
        if auth is Auth.INVALID:
            raise ApiError(401, "Bad credentials")
        if auth is Auth.ANONYMOUS:
            raise ApiError(401, "Requires authentication")

    def _readable_repo(self, request: Request) -> tuple[Repo, Auth]:
        """The repository named in the path, as visible to this request (404 otherwise)."""
        auth = self._authenticate(request)
        # A wrong token is refused even where no token is needed, as GitHub does.
        if auth is Auth.INVALID:
            raise ApiError(401, "Bad credentials")
        repo = self._lookup(request.path_params["owner"], request.path_params["repo"])
        # Private repositories are indistinguishable from missing ones without auth.
        if repo is None or (repo.private and auth is not Auth.VALID):
            raise ApiError(404, "Not Found")
        return repo, auth

    async def _get_user(self, request: Request) -> Response:
        self._require_auth(request)
        return json_response(
            {
                "login": self.login,
                "id": zlib.crc32(self.login.encode()),
                "node_id": node_id("U_", zlib.crc32(self.login.encode())),
                "type": "User",
                "site_admin": False,
                "html_url": f"{self.url}/{self.login}",
                "url": f"{self.api_url}/users/{self.login}",
            }
        )

    async def _list_repos(self, request: Request) -> Response:
        self._check_failure(Operation.LIST_REPOS)
        self._require_auth(request)
        with self._lock:
            repos = sorted(self._repos.values(), key=lambda r: r.full_name.lower())
        page, links = paginate(self, request, len(repos))
        return json_response(
            [repo_json(self, repo, authenticated=True) for repo in repos[page]], links=links
        )

    async def _get_repo(self, request: Request) -> Response:
        self._check_failure(Operation.GET_REPO)
        repo, auth = self._readable_repo(request)
        return json_response(repo_json(self, repo, authenticated=auth is Auth.VALID))

    async def _list_branches(self, request: Request) -> Response:
        self._check_failure(Operation.LIST_BRANCHES)
        repo, _ = self._readable_repo(request)
        # Read at request time: branches pushed since add_repo() are listed too.
        branches = sorted((await self._bare_repos.branches(repo)).items())
        page, links = paginate(self, request, len(branches))
        return json_response(
            [
                {
                    "name": name,
                    "commit": {
                        "sha": sha,
                        "url": f"{self.api_url}/repos/{repo.full_name}/commits/{sha}",
                    },
                    "protected": False,
                }
                for name, sha in branches[page]
            ],
            links=links,
        )

    async def _list_pulls(self, request: Request) -> Response:
        self._check_failure(Operation.LIST_PULLS)
        repo, _ = self._readable_repo(request)
        return await self._pull_requests.list_pulls(request, repo)

    async def _get_pull(self, request: Request) -> Response:
        self._check_failure(Operation.GET_PULL)
        repo, _ = self._readable_repo(request)
        return await self._pull_requests.get_pull(request, repo)

    async def _create_pull(self, request: Request) -> Response:
        self._check_failure(Operation.CREATE_PULL)
        self._require_auth(request)
        repo, _ = self._readable_repo(request)
        return await self._pull_requests.create_pull(request, repo)

    # -- git ---------------------------------------------------------------------------

    async def _git(self, request: Request) -> Response:
        """Smart HTTP: check access like GitHub, then hand over to ``git http-backend``."""
        tail = request.url.path.rsplit("/", 2)
        if tail[-1] == "refs":
            action = "info/refs"
            wanted = request.query_params.get("service")
            service = Service(wanted) if wanted in ("git-upload-pack", "git-receive-pack") else None
            if service is not None:
                operation = (
                    Operation.GIT_PUSH if service is Service.RECEIVE_PACK else Operation.GIT_FETCH
                )
                failure = self._take_failure(operation)
                if failure is not None:
                    return git_error(failure.status, failure.message)
        else:
            action = tail[-1]
            service = Service(action)
        auth = self._authenticate(request)
        if auth is Auth.INVALID:
            return git_error(401, "Invalid username or password.")
        owner = request.path_params["owner"]
        repo = self._lookup(owner, request.path_params["repo"].removesuffix(".git"))
        # Like GitHub: ask anonymous callers for credentials rather than reveal that a
        # repository is missing or private; pushing always needs them.
        if auth is Auth.ANONYMOUS and (
            repo is None or repo.private or service is Service.RECEIVE_PACK
        ):
            return git_error(401, "Authentication required.")
        if repo is None:
            return git_error(404, "Repository not found.")
        return await http_backend(
            request,
            root=self.root,
            home=self._home,
            repo=repo,
            action=action,
            remote_user=self.login if auth is Auth.VALID else None,
        )
