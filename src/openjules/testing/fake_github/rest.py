"""GitHub's REST API (v3) as JSON: repositories, pull requests, pages, errors."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from openjules.testing.fake_github.records import ApiError, Pull, Repo, node_id

API_VERSION = "2022-11-28"
JSON_MEDIA_TYPE = "application/json; charset=utf-8"
DEFAULT_PER_PAGE = 30

Handler = Callable[[Request], Awaitable[Response]]


class Site(Protocol):
    """Where the fake is served and as whom it answers (``FakeGitHub`` is one)."""

    url: str
    api_url: str
    login: str
    max_per_page: int

    def clone_url(self, owner: str, name: str) -> str: ...


def api_endpoint(handler: Handler) -> Handler:
    """Wrap an API handler: turn ``ApiError`` into GitHub's error response."""

    async def endpoint(request: Request) -> Response:
        try:
            response: Response = await handler(request)
        except ApiError as error:
            body: dict[str, Any] = {"message": error.message}
            if error.errors is not None:
                body["errors"] = error.errors
            body["documentation_url"] = error.documentation_url
            body["status"] = str(error.status)
            return json_response(body, status=error.status)
        return response

    return endpoint


def repo_json(site: Site, repo: Repo, *, authenticated: bool) -> dict[str, Any]:
    owner_id = zlib.crc32(repo.owner.lower().encode())
    data: dict[str, Any] = {
        "id": repo.id,
        "node_id": node_id("R_", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "owner": {
            "login": repo.owner,
            "id": owner_id,
            "node_id": node_id("U_", owner_id),
            "type": "User",
            "site_admin": False,
            "html_url": f"{site.url}/{repo.owner}",
            "url": f"{site.api_url}/users/{repo.owner}",
        },
        "private": repo.private,
        "visibility": "private" if repo.private else "public",
        "html_url": f"{site.url}/{repo.full_name}",
        "description": None,
        "fork": False,
        "url": f"{site.api_url}/repos/{repo.full_name}",
        "clone_url": site.clone_url(repo.owner, repo.name),
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


def pull_json(
    site: Site, repo: Repo, pull: Pull, branches: dict[str, str], *, head_sha: str
) -> dict[str, Any]:
    record = pull.record
    repo_data = repo_json(site, repo, authenticated=True)
    api = f"{site.api_url}/repos/{repo.full_name}"
    user = {"login": site.login, "id": zlib.crc32(site.login.encode()), "type": "User"}
    return {
        "id": pull.id,
        "node_id": node_id("PR_", pull.id),
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
            "user": repo_data["owner"],
            "repo": repo_data,
        },
        "base": {
            "label": f"{repo.owner}:{record.base}",
            "ref": record.base,
            "sha": branches.get(record.base, ""),
            "user": repo_data["owner"],
            "repo": repo_data,
        },
    }


def paginate(site: Site, request: Request, total: int) -> tuple[slice, str | None]:
    """The slice for ``?per_page=&page=`` and GitHub's ``Link`` header (None if one page)."""
    per_page = min(
        _positive_int(request.query_params.get("per_page"), DEFAULT_PER_PAGE), site.max_per_page
    )
    page = _positive_int(request.query_params.get("page"), 1)
    last = max(1, -(-total // per_page))
    # GitHub keeps the caller's query as sent and only rewrites (or appends) page=.
    params = parse_qsl(request.url.query, keep_blank_values=True)
    base = f"{site.url}{request.url.path}"

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


def _positive_int(value: str | None, default: int) -> int:
    # GitHub ignores unusable paging parameters rather than rejecting them.
    try:
        number = int(value) if value is not None else default
    except ValueError:
        return default
    return number if number > 0 else default


def json_response(
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
