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

import asyncio
import base64
import binascii
import dataclasses
import enum
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import weakref
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from openjules.testing.server import BackgroundServer, ThreadedUvicorn

DEFAULT_TOKEN = "ghp_fake0123456789abcdefTOKEN"

API_PREFIX = "/api/v3"
API_VERSION = "2022-11-28"
DOCS_URL = "https://docs.github.com/rest"
CREATE_PULL_DOCS_URL = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"
JSON_MEDIA_TYPE = "application/json; charset=utf-8"
DEFAULT_PER_PAGE = 30
GIT_TIMEOUT_S = 120.0
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

# GitHub's own character sets; also keeps names from escaping ``root`` on disk.
_OWNER_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_REPO_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")

_DEFAULT_MESSAGES = {
    400: "Bad Request",
    401: "Bad credentials",
    403: "Resource not accessible by personal access token",
    404: "Not Found",
    409: "Conflict",
    422: "Validation Failed",
    429: "API rate limit exceeded",
    500: "Server Error",
    502: "Server Error",
    503: "Service Unavailable",
}


class Operation(enum.Enum):
    """What a failure can be injected into (see ``FakeGitHub.fail``)."""

    LIST_REPOS = "list_repos"
    GET_REPO = "get_repo"
    LIST_BRANCHES = "list_branches"
    LIST_PULLS = "list_pulls"
    CREATE_PULL = "create_pull"
    GET_PULL = "get_pull"
    GIT_FETCH = "git_fetch"
    GIT_PUSH = "git_push"


class _Auth(enum.Enum):
    ANONYMOUS = "anonymous"
    VALID = "valid"
    INVALID = "invalid"


class _Service(enum.Enum):
    UPLOAD_PACK = "git-upload-pack"
    RECEIVE_PACK = "git-receive-pack"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    authorization: str | None


@dataclass
class PullRecord:
    number: int
    owner: str
    repo: str
    title: str
    body: str
    head: str  # branch name, without the "owner:" prefix
    base: str
    head_sha: str
    state: str
    draft: bool
    html_url: str


@dataclass
class _Repo:
    owner: str
    name: str
    path: Path
    private: bool
    default_branch: str
    id: int
    created_at: str
    next_pull: int = 1

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class _Pull:
    record: PullRecord
    id: int
    created_at: str
    maintainer_can_modify: bool


@dataclass(frozen=True)
class _Failure:
    status: int
    message: str


class _ApiError(Exception):
    """Raised inside API handlers; answered as GitHub's JSON error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[dict[str, str]] | None = None,
        documentation_url: str = DOCS_URL,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.documentation_url = documentation_url


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _default_message(status: int) -> str:
    if status in _DEFAULT_MESSAGES:
        return _DEFAULT_MESSAGES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _node_id(prefix: str, number: int) -> str:
    # Opaque like GitHub's global node ids; only stability and uniqueness matter.
    return prefix + base64.b64encode(f"fake:{prefix}{number}".encode()).decode().rstrip("=")


def _isolated_env(home: Path) -> dict[str, str]:
    """Environment for every git process: no system or user configuration, no prompts."""
    return {
        "PATH": os.environ.get("PATH") or os.defpath,
        "HOME": str(home),
        "LANG": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Fake GitHub",
        "GIT_AUTHOR_EMAIL": "noreply@github.invalid",
        "GIT_COMMITTER_NAME": "Fake GitHub",
        "GIT_COMMITTER_EMAIL": "noreply@github.invalid",
    }


_Handler = Callable[[Request], Awaitable[Response]]


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
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._pulls: list[_Pull] = []
        self._failures: dict[Operation, deque[_Failure]] = {op: deque() for op in Operation}
        self._next_repo_id = 100_001
        self._next_pull_id = 500_001
        # HOME for git processes: outside ``root`` (which is GIT_PROJECT_ROOT), removed on
        # stop or, if the server never ran, when this object is collected.
        self._home = Path(tempfile.mkdtemp(prefix="fake-github-home-"))
        self._remove_home = weakref.finalize(self, shutil.rmtree, self._home, True)
        self._server = ThreadedUvicorn(lambda _port: self._app(), name="fake-github")
        self.url: str = self._server.url
        self.api_url: str = self.url + API_PREFIX

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
            branch = self._copy_repo(Path(from_path), path, default_branch)
        else:
            branch = default_branch or "main"
            self._init_repo(path, name, branch)
        # http-backend refuses receive-pack for anonymous users unless this is set; the
        # fake decides who may push itself (see ``_git``).
        self._run(["config", "http.receivepack", "true"], git_dir=path)
        with self._lock:
            if key in self._repos:
                raise ValueError(f"repository {owner}/{name} already exists")
            self._repos[key] = _Repo(
                owner=owner,
                name=name,
                path=path,
                private=private,
                default_branch=branch,
                id=self._next_repo_id,
                created_at=_now(),
            )
            self._next_repo_id += 1
        return path

    def repo_path(self, owner: str, name: str) -> Path:
        return self._lookup_or_raise(owner, name).path

    def clone_url(self, owner: str, name: str) -> str:
        return f"{self.url}/{owner}/{name}.git"

    def pulls(self, *, owner: str | None = None, repo: str | None = None) -> list[PullRecord]:
        """Copies of the pull requests created so far, in creation order."""
        with self._lock:
            return [
                dataclasses.replace(pull.record)
                for pull in self._pulls
                if (owner is None or pull.record.owner.lower() == owner.lower())
                and (repo is None or pull.record.repo.lower() == repo.lower())
            ]

    def fail(
        self, operation: Operation, status: int, *, times: int = 1, message: str | None = None
    ) -> None:
        """Answer the next ``times`` requests of ``operation`` with ``status``.

        API operations get GitHub's JSON error body; GIT_FETCH/GIT_PUSH fail on their
        ``info/refs`` request with a plain-text message, which git prints as "remote: ...".
        """
        failure = _Failure(status, message if message is not None else _default_message(status))
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

    # -- repository setup (test thread, blocking) --------------------------------------

    def _run(
        self, args: Sequence[str], *, git_dir: Path | None = None, stdin: str | None = None
    ) -> str:
        prefix = ["git"] if git_dir is None else ["git", f"--git-dir={git_dir}"]
        done = subprocess.run(
            [*prefix, *args],
            env=_isolated_env(self._home),
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=GIT_TIMEOUT_S,
        )
        if done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def _copy_repo(self, source: Path, path: Path, default_branch: str | None) -> str:
        source = source.resolve()
        self._run(["clone", "--bare", "--quiet", "--", str(source), str(path)])
        # A bare clone already maps heads to heads; fetching them again guarantees every
        # local branch of the source is a branch here, whatever the clone defaults are.
        self._run(
            ["fetch", "--quiet", "--update-head-ok", str(source), "+refs/heads/*:refs/heads/*"],
            git_dir=path,
        )
        # The server-side copy must not point back at the test's working tree.
        self._run(["remote", "remove", "origin"], git_dir=path)
        branch = default_branch
        if branch is None:
            source_head = subprocess.run(
                ["git", "-C", str(source), "symbolic-ref", "--quiet", "--short", "HEAD"],
                env=_isolated_env(self._home),
                capture_output=True,
                text=True,
                check=False,
            )
            branch = source_head.stdout.strip() if source_head.returncode == 0 else None
        if branch is None:  # a detached source: keep whatever HEAD the clone chose
            branch = self._run(["symbolic-ref", "--short", "HEAD"], git_dir=path)
        exists = subprocess.run(
            ["git", f"--git-dir={path}", "show-ref", "--verify", "--quiet", f"refs/heads/{branch}"],
            env=_isolated_env(self._home),
            check=False,
        )
        if exists.returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            raise ValueError(f"default branch {branch!r} is not a branch of {source}")
        self._run(["symbolic-ref", "HEAD", f"refs/heads/{branch}"], git_dir=path)
        return branch

    def _init_repo(self, path: Path, name: str, branch: str) -> None:
        self._run(["init", "--bare", "--quiet", f"--initial-branch={branch}", str(path)])
        # Plumbing instead of a temporary work tree: one blob, one tree, one commit.
        blob = self._run(["hash-object", "-w", "--stdin"], git_dir=path, stdin=f"# {name}\n")
        tree = self._run(["mktree"], git_dir=path, stdin=f"100644 blob {blob}\tREADME.md\n")
        commit = self._run(["commit-tree", tree, "-m", "Initial commit"], git_dir=path)
        self._run(["update-ref", f"refs/heads/{branch}", commit], git_dir=path)

    def _lookup(self, owner: str, name: str) -> _Repo | None:
        # GitHub resolves owner and repository names case-insensitively.
        with self._lock:
            return self._repos.get((owner.lower(), name.lower()))

    def _lookup_or_raise(self, owner: str, name: str) -> _Repo:
        repo = self._lookup(owner, name)
        if repo is None:
            raise KeyError(f"no repository {owner}/{name}; add it with add_repo()")
        return repo

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _take_failure(self, operation: Operation) -> _Failure | None:
        with self._lock:
            queue = self._failures[operation]
            return queue.popleft() if queue else None

    # -- authentication ----------------------------------------------------------------

    def _authenticate(self, request: Request) -> _Auth:
        header = request.headers.get("authorization")
        if header is None:
            return _Auth.ANONYMOUS
        scheme, _, credentials = header.strip().partition(" ")
        credentials = credentials.strip()
        scheme = scheme.lower()
        if scheme in ("bearer", "token"):
            supplied = credentials
        elif scheme == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return _Auth.INVALID
            # Any user name: git clients send "x-access-token", "git", the login, ...
            _, _, supplied = decoded.partition(":")
        else:
            return _Auth.INVALID
        return _Auth.VALID if supplied == self.token else _Auth.INVALID

    # -- HTTP app ----------------------------------------------------------------------

    def _app(self) -> ASGIApp:
        api = API_PREFIX
        routes = [
            Route(f"{api}/user", self._api(self._get_user), methods=["GET"]),
            Route(f"{api}/user/repos", self._api(self._list_repos), methods=["GET"]),
            Route(f"{api}/repos/{{owner}}/{{repo}}", self._api(self._get_repo), methods=["GET"]),
            Route(
                f"{api}/repos/{{owner}}/{{repo}}/branches",
                self._api(self._list_branches),
                methods=["GET"],
            ),
            Route(
                f"{api}/repos/{{owner}}/{{repo}}/pulls",
                self._api(self._list_pulls),
                methods=["GET"],
            ),
            Route(
                f"{api}/repos/{{owner}}/{{repo}}/pulls",
                self._api(self._create_pull),
                methods=["POST"],
            ),
            Route(
                f"{api}/repos/{{owner}}/{{repo}}/pulls/{{number:int}}",
                self._api(self._get_pull),
                methods=["GET"],
            ),
            # GitHub answers unknown paths and unsupported methods alike with a JSON 404.
            Route(f"{api}/{{rest:path}}", self._api(self._not_found), methods=ALL_METHODS),
            Route(f"{api}", self._api(self._not_found), methods=ALL_METHODS),
            Route("/{owner}/{repo}/info/refs", self._git, methods=["GET"]),
            Route("/{owner}/{repo}/git-upload-pack", self._git, methods=["POST"]),
            Route("/{owner}/{repo}/git-receive-pack", self._git, methods=["POST"]),
        ]
        return _RecordingMiddleware(Starlette(routes=routes), self)

    @staticmethod
    def _api(handler: _Handler) -> _Handler:
        """Wrap an API handler: turn ``_ApiError`` into GitHub's error response."""

        async def endpoint(request: Request) -> Response:
            try:
                response: Response = await handler(request)
            except _ApiError as error:
                body: dict[str, Any] = {"message": error.message}
                if error.errors is not None:
                    body["errors"] = error.errors
                body["documentation_url"] = error.documentation_url
                body["status"] = str(error.status)
                return _json(body, status=error.status)
            return response

        return endpoint

    async def _not_found(self, _request: Request) -> Response:
        raise _ApiError(404, "Not Found")

    def _check_failure(self, operation: Operation) -> None:
        failure = self._take_failure(operation)
        if failure is not None:
            raise _ApiError(failure.status, failure.message)

    def _require_auth(self, request: Request) -> None:
        auth = self._authenticate(request)
        if auth is _Auth.INVALID:
            raise _ApiError(401, "Bad credentials")
        if auth is _Auth.ANONYMOUS:
            raise _ApiError(401, "Requires authentication")

    def _readable_repo(self, request: Request) -> tuple[_Repo, _Auth]:
        """The repository named in the path, as visible to this request (404 otherwise)."""
        auth = self._authenticate(request)
        # A wrong token is refused even where no token is needed, as GitHub does.
        if auth is _Auth.INVALID:
            raise _ApiError(401, "Bad credentials")
        repo = self._lookup(request.path_params["owner"], request.path_params["repo"])
        # Private repositories are indistinguishable from missing ones without auth.
        if repo is None or (repo.private and auth is not _Auth.VALID):
            raise _ApiError(404, "Not Found")
        return repo, auth

    async def _get_user(self, request: Request) -> Response:
        self._require_auth(request)
        return _json(
            {
                "login": self.login,
                "id": zlib.crc32(self.login.encode()),
                "node_id": _node_id("U_", zlib.crc32(self.login.encode())),
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
        page, links = self._paginate(request, len(repos))
        return _json(
            [self._repo_json(repo, authenticated=True) for repo in repos[page]], links=links
        )

    async def _get_repo(self, request: Request) -> Response:
        self._check_failure(Operation.GET_REPO)
        repo, auth = self._readable_repo(request)
        return _json(self._repo_json(repo, authenticated=auth is _Auth.VALID))

    async def _list_branches(self, request: Request) -> Response:
        self._check_failure(Operation.LIST_BRANCHES)
        repo, _ = self._readable_repo(request)
        # Read at request time: branches pushed since add_repo() are listed too.
        branches = sorted((await self._branches(repo)).items())
        page, links = self._paginate(request, len(branches))
        return _json(
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
        params = request.query_params
        state = params.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise _ApiError(
                422,
                "Validation Failed",
                errors=[{"resource": "Issue", "field": "state", "code": "invalid", "value": state}],
            )
        head_filter = params.get("head")
        base_filter = params.get("base")
        with self._lock:
            pulls = [p for p in self._pulls if p.record.owner == repo.owner]
            pulls = [p for p in pulls if p.record.repo == repo.name]
            pulls = [p for p in pulls if state == "all" or p.record.state == state]
            # GitHub only honours "user:ref"; a bare branch name filters nothing.
            if head_filter and ":" in head_filter:
                head_owner, _, head_ref = head_filter.partition(":")
                pulls = [
                    p
                    for p in pulls
                    if p.record.owner.lower() == head_owner.lower() and p.record.head == head_ref
                ]
            if base_filter:
                pulls = [p for p in pulls if p.record.base == base_filter]
            # GitHub's default order: newest first.
            pulls.sort(key=lambda p: p.record.number, reverse=True)
        page, links = self._paginate(request, len(pulls))
        branches = await self._branches(repo)
        return _json([self._pull_json(repo, p, branches) for p in pulls[page]], links=links)

    async def _get_pull(self, request: Request) -> Response:
        self._check_failure(Operation.GET_PULL)
        repo, _ = self._readable_repo(request)
        number = request.path_params["number"]
        with self._lock:
            found = [
                p
                for p in self._pulls
                if p.record.owner == repo.owner
                and p.record.repo == repo.name
                and p.record.number == number
            ]
        if not found:
            raise _ApiError(404, "Not Found")
        return _json(self._pull_json(repo, found[0], await self._branches(repo)))

    async def _create_pull(self, request: Request) -> Response:
        self._check_failure(Operation.CREATE_PULL)
        self._require_auth(request)
        repo, _ = self._readable_repo(request)
        try:
            payload = json.loads(await request.body())
        except ValueError as exc:
            raise _ApiError(400, "Problems parsing JSON") from exc
        if not isinstance(payload, dict):
            raise _ApiError(400, "Problems parsing JSON")
        for field, kind, label in (
            ("title", str, "string"),
            ("head", str, "string"),
            ("base", str, "string"),
            ("body", str, "string"),
            ("draft", bool, "boolean"),
            ("maintainer_can_modify", bool, "boolean"),
        ):
            value = payload.get(field)
            # JSON null is accepted for optional fields; wrong types are schema errors.
            if value is not None and not isinstance(value, kind):
                raise _ApiError(
                    422,
                    f"Invalid request.\n\nFor 'properties/{field}', "
                    f"{json.dumps(value)} is not a {label}.",
                    documentation_url=CREATE_PULL_DOCS_URL,
                )

        def validation_failed(errors: list[dict[str, str]]) -> _ApiError:
            return _ApiError(
                422, "Validation Failed", errors=errors, documentation_url=CREATE_PULL_DOCS_URL
            )

        missing = [f for f in ("title", "head", "base") if not payload.get(f)]
        if missing:
            raise validation_failed(
                [{"resource": "PullRequest", "field": f, "code": "missing_field"} for f in missing]
            )
        title: str = payload["title"]
        head_spec: str = payload["head"]
        base: str = payload["base"]
        head_owner, _, head = head_spec.rpartition(":")
        branches = await self._branches(repo)
        invalid: list[str] = []
        # There are no forks here: "OWNER:BRANCH" must name this repository's owner.
        if (head_owner and head_owner.lower() != repo.owner.lower()) or head not in branches:
            invalid.append("head")
        if base not in branches:
            invalid.append("base")
        if invalid:
            raise validation_failed(
                [{"resource": "PullRequest", "field": f, "code": "invalid"} for f in invalid]
            )
        label = f"{repo.owner}:{head}"
        with self._lock:
            duplicate = any(
                p.record.owner == repo.owner
                and p.record.repo == repo.name
                and p.record.state == "open"
                and p.record.head == head
                and p.record.base == base
                for p in self._pulls
            )
        if duplicate:
            raise validation_failed(
                [
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"A pull request already exists for {label}.",
                    }
                ]
            )
        if await self._is_ancestor(repo, branches[head], branches[base]):
            raise validation_failed(
                [
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"No commits between {base} and {head}",
                    }
                ]
            )
        with self._lock:
            number = repo.next_pull
            repo.next_pull += 1
            pull = _Pull(
                record=PullRecord(
                    number=number,
                    owner=repo.owner,
                    repo=repo.name,
                    title=title,
                    body=payload.get("body") or "",
                    head=head,
                    base=base,
                    head_sha=branches[head],
                    state="open",
                    draft=bool(payload.get("draft", False)),
                    html_url=f"{self.url}/{repo.full_name}/pull/{number}",
                ),
                id=self._next_pull_id,
                created_at=_now(),
                maintainer_can_modify=bool(payload.get("maintainer_can_modify", True)),
            )
            self._next_pull_id += 1
            self._pulls.append(pull)
        return _json(
            self._pull_json(repo, pull, branches),
            status=201,
            headers={"Location": f"{self.api_url}/repos/{repo.full_name}/pulls/{number}"},
        )

    # -- JSON shapes -------------------------------------------------------------------

    def _repo_json(self, repo: _Repo, *, authenticated: bool) -> dict[str, Any]:
        owner_id = zlib.crc32(repo.owner.lower().encode())
        data: dict[str, Any] = {
            "id": repo.id,
            "node_id": _node_id("R_", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": {
                "login": repo.owner,
                "id": owner_id,
                "node_id": _node_id("U_", owner_id),
                "type": "User",
                "site_admin": False,
                "html_url": f"{self.url}/{repo.owner}",
                "url": f"{self.api_url}/users/{repo.owner}",
            },
            "private": repo.private,
            "visibility": "private" if repo.private else "public",
            "html_url": f"{self.url}/{repo.full_name}",
            "description": None,
            "fork": False,
            "url": f"{self.api_url}/repos/{repo.full_name}",
            "clone_url": self.clone_url(repo.owner, repo.name),
            "default_branch": repo.default_branch,
            "archived": False,
            "disabled": False,
            "created_at": repo.created_at,
            "updated_at": repo.created_at,
        }
        # GitHub reports the caller's permissions only to an authenticated caller.
        if authenticated:
            data["permissions"] = {
                "admin": True,
                "maintain": True,
                "push": True,
                "triage": True,
                "pull": True,
            }
        return data

    def _pull_json(self, repo: _Repo, pull: _Pull, branches: dict[str, str]) -> dict[str, Any]:
        record = pull.record
        with self._lock:
            if record.state == "open" and record.head in branches:
                # An open pull request follows its head branch, as on GitHub.
                record.head_sha = branches[record.head]
            head_sha = record.head_sha
        repo_json = self._repo_json(repo, authenticated=True)
        api = f"{self.api_url}/repos/{repo.full_name}"
        user = {"login": self.login, "id": zlib.crc32(self.login.encode()), "type": "User"}
        return {
            "id": pull.id,
            "node_id": _node_id("PR_", pull.id),
            "number": record.number,
            "url": f"{api}/pulls/{record.number}",
            "html_url": record.html_url,
            "diff_url": f"{record.html_url}.diff",
            "patch_url": f"{record.html_url}.patch",
            "issue_url": f"{api}/issues/{record.number}",
            "commits_url": f"{api}/pulls/{record.number}/commits",
            "state": record.state,
            "locked": False,
            "title": record.title,
            "body": record.body or None,
            "user": user,
            "labels": [],
            "assignees": [],
            "requested_reviewers": [],
            "draft": record.draft,
            "merged": False,
            "mergeable": None,
            "merge_commit_sha": None,
            "maintainer_can_modify": pull.maintainer_can_modify,
            "created_at": pull.created_at,
            "updated_at": pull.created_at,
            "closed_at": None,
            "merged_at": None,
            "head": {
                "label": f"{repo.owner}:{record.head}",
                "ref": record.head,
                "sha": head_sha,
                "user": repo_json["owner"],
                "repo": repo_json,
            },
            "base": {
                "label": f"{repo.owner}:{record.base}",
                "ref": record.base,
                "sha": branches.get(record.base, ""),
                "user": repo_json["owner"],
                "repo": repo_json,
            },
        }

    def _paginate(self, request: Request, total: int) -> tuple[slice, str | None]:
        """The slice for ``?per_page=&page=`` and GitHub's ``Link`` header (None if one page)."""
        per_page = min(
            _positive_int(request.query_params.get("per_page"), DEFAULT_PER_PAGE), self.max_per_page
        )
        page = _positive_int(request.query_params.get("page"), 1)
        last = max(1, -(-total // per_page))
        # GitHub keeps the caller's query as sent and only rewrites (or appends) page=.
        params = parse_qsl(request.url.query, keep_blank_values=True)
        base = f"{self.url}{request.url.path}"

        def link(target: int, rel: str) -> str:
            replaced = [(k, str(target) if k == "page" else v) for k, v in params]
            if not any(k == "page" for k, _ in params):
                replaced.append(("page", str(target)))
            return f'<{base}?{urlencode(replaced)}>; rel="{rel}"'

        parts = []
        if page > 1:
            parts.append(link(page - 1, "prev"))
        if page < last:
            parts += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            parts.append(link(1, "first"))
        start = (page - 1) * per_page
        return slice(start, start + per_page), ", ".join(parts) or None

    # -- git, from the event loop ------------------------------------------------------

    async def _git_output(self, repo: _Repo, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            "git",
            f"--git-dir={repo.path}",
            *args,
            env=_isolated_env(self._home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), GIT_TIMEOUT_S)
        return proc.returncode or 0, out.decode()

    async def _branches(self, repo: _Repo) -> dict[str, str]:
        code, out = await self._git_output(
            repo, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/"
        )
        if code != 0:
            raise _ApiError(500, "Server Error")
        branches: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, ref = line.partition(" ")
            branches[ref.removeprefix("refs/heads/")] = sha
        return branches

    async def _is_ancestor(self, repo: _Repo, commit: str, of: str) -> bool:
        code, _ = await self._git_output(repo, "merge-base", "--is-ancestor", commit, of)
        if code not in (0, 1):
            raise _ApiError(500, "Server Error")
        return code == 0

    async def _git(self, request: Request) -> Response:
        """Smart HTTP: check access like GitHub, then hand over to ``git http-backend``."""
        tail = request.url.path.rsplit("/", 2)
        if tail[-1] == "refs":
            action = "info/refs"
            wanted = request.query_params.get("service")
            service = (
                _Service(wanted) if wanted in ("git-upload-pack", "git-receive-pack") else None
            )
            if service is not None:
                operation = (
                    Operation.GIT_PUSH if service is _Service.RECEIVE_PACK else Operation.GIT_FETCH
                )
                failure = self._take_failure(operation)
                if failure is not None:
                    return _git_error(failure.status, failure.message)
        else:
            action = tail[-1]
            service = _Service(action)
        auth = self._authenticate(request)
        if auth is _Auth.INVALID:
            return _git_error(401, "Invalid username or password.")
        owner = request.path_params["owner"]
        repo = self._lookup(owner, request.path_params["repo"].removesuffix(".git"))
        # Like GitHub: ask anonymous callers for credentials rather than reveal that a
        # repository is missing or private; pushing always needs them.
        if auth is _Auth.ANONYMOUS and (
            repo is None or repo.private or service is _Service.RECEIVE_PACK
        ):
            return _git_error(401, "Authentication required.")
        if repo is None:
            return _git_error(404, "Repository not found.")
        return await self._http_backend(request, repo, action, auth)

    async def _http_backend(
        self, request: Request, repo: _Repo, action: str, auth: _Auth
    ) -> Response:
        body = await request.body()
        env = _isolated_env(self._home)
        env.update(
            GIT_PROJECT_ROOT=str(self.root),
            GIT_HTTP_EXPORT_ALL="1",
            # The canonical on-disk name, whatever case the client used.
            PATH_INFO=f"/{repo.owner}/{repo.name}.git/{action}",
            REQUEST_METHOD=request.method,
            QUERY_STRING=request.url.query,
            CONTENT_TYPE=request.headers.get("content-type", ""),
            # The length of the body as received (still gzipped if the client gzipped it).
            CONTENT_LENGTH=str(len(body)),
            REMOTE_ADDR=request.client.host if request.client else "127.0.0.1",
            SERVER_PROTOCOL="HTTP/1.1",
        )
        if auth is _Auth.VALID:
            env["REMOTE_USER"] = self.login
        if encoding := request.headers.get("content-encoding"):
            env["HTTP_CONTENT_ENCODING"] = encoding
        if protocol := request.headers.get("git-protocol"):
            env["GIT_PROTOCOL"] = protocol
        proc = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(body), GIT_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return _git_error(504, "git http-backend timed out")
        return _cgi_response(out, err)


def _positive_int(value: str | None, default: int) -> int:
    # GitHub ignores unusable paging parameters rather than rejecting them.
    try:
        number = int(value) if value is not None else default
    except ValueError:
        return default
    return number if number > 0 else default


def _json(
    data: Any,
    *,
    status: int = 200,
    links: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    all_headers = {
        "X-GitHub-Api-Version-Selected": API_VERSION,
        "X-GitHub-Media-Type": "github.v3; format=json",
        "X-RateLimit-Limit": "5000",
        "X-RateLimit-Remaining": "4999",
        "X-RateLimit-Used": "1",
        "X-RateLimit-Resource": "core",
        **(headers or {}),
    }
    if links:
        all_headers["Link"] = links
    return JSONResponse(data, status_code=status, headers=all_headers, media_type=JSON_MEDIA_TYPE)


def _git_error(status: int, message: str) -> Response:
    # Plain text: git prints a text/plain error body to the user as "remote: ...".
    headers = {"WWW-Authenticate": 'Basic realm="GitHub"'} if status == 401 else None
    return PlainTextResponse(message + "\n", status_code=status, headers=headers)


def _cgi_response(out: bytes, err: bytes) -> Response:
    """Turn a CGI answer (headers, blank line, body) into an HTTP response."""
    ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := out.find(sep)) >= 0]
    if not ends:
        detail = err.decode(errors="replace").strip() or "no CGI headers"
        return _git_error(500, f"git http-backend failed: {detail}")
    end, width = min(ends)
    status = 200
    headers: dict[str, str] = {}
    for line in out[:end].decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "status":
            status = int(value.split()[0])
        elif name.strip():
            headers[name.strip()] = value.strip()
    return Response(out[end + width :], status_code=status, headers=headers)
