"""What the fake GitHub keeps: repositories, pull requests, recorded requests, failures."""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path

DOCS_URL = "https://docs.github.com/rest"

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


class Auth(enum.Enum):
    ANONYMOUS = "anonymous"
    VALID = "valid"
    INVALID = "invalid"


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
class Repo:
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
class Pull:
    record: PullRecord
    id: int
    created_at: str
    maintainer_can_modify: bool


@dataclass(frozen=True)
class Failure:
    status: int
    message: str


class ApiError(Exception):
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


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_message(status: int) -> str:
    if status in _DEFAULT_MESSAGES:
        return _DEFAULT_MESSAGES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def node_id(prefix: str, number: int) -> str:
    # Opaque like GitHub's global node ids; only stability and uniqueness matter.
    return prefix + base64.b64encode(f"fake:{prefix}{number}".encode()).decode().rstrip("=")
