"""A small GitHub REST client: repositories, branches and pull requests.

Synchronous (the CLI calls it directly, the engine from a thread). Every failure becomes a
``GitHubError`` whose message says what was being done, what GitHub answered and what a
person can do about it, with the token scrubbed out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx

from openjules.engine.forge.access import GitHubAccess

API_VERSION = "2022-11-28"
PER_PAGE = 100
MAX_PAGES = 1000
# Reads are retried on network errors and 5xx answers; writes are not (a pull request
# created by an attempt whose answer was lost would be created twice).
READ_RETRIES = 2
RETRY_DELAY_S = 0.5
TOKEN_HELP = (
    "A fine-grained token needs Contents (read and write) and Pull requests (read and "
    "write) on the repository; a classic token needs the repo scope."
)


class GitHubError(RuntimeError):
    """GitHub refused or could not be reached; the message is meant for a person."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class GitHubClient:
    def __init__(
        self,
        access: GitHubAccess,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.access = access
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "openjules",
        }
        if access.token:
            headers["Authorization"] = f"Bearer {access.token}"
        self._http = httpx.Client(
            headers=headers, timeout=timeout, transport=transport, follow_redirects=False
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- repositories ------------------------------------------------------------------

    def repositories(self) -> Iterator[dict[str, Any]]:
        """Every repository the token can reach (owned, collaborator, organisation)."""
        yield from self._pages(
            "/user/repos",
            params={"affiliation": "owner,collaborator,organization_member"},
            action="list the repositories the token can reach",
        )

    def repository(self, owner: str, repo: str) -> dict[str, Any]:
        data: dict[str, Any] = self._request(
            "GET", f"/repos/{owner}/{repo}", action=f"read {owner}/{repo}"
        ).json()
        return data

    def branches(self, owner: str, repo: str) -> list[str]:
        return sorted(
            str(b["name"])
            for b in self._pages(
                f"/repos/{owner}/{repo}/branches", action=f"list the branches of {owner}/{repo}"
            )
        )

    # -- pull requests -----------------------------------------------------------------

    def open_pull(self, owner: str, repo: str, *, head: str) -> dict[str, Any] | None:
        """The open pull request from branch ``head`` of ``owner/repo``, if there is one."""
        pulls = self._request(
            "GET",
            f"/repos/{owner}/{repo}/pulls",
            params={"state": "open", "head": f"{owner}:{head}"},
            action=f"look for a pull request from {head} in {owner}/{repo}",
        ).json()
        return pulls[0] if pulls else None

    def create_pull(
        self, owner: str, repo: str, *, title: str, body: str, head: str, base: str
    ) -> dict[str, Any]:
        data: dict[str, Any] = self._request(
            "POST",
            f"/repos/{owner}/{repo}/pulls",
            json={"title": title, "body": body, "head": head, "base": base},
            action=f"open a pull request from {head} into {base} of {owner}/{repo}",
        ).json()
        return data

    # -- transport ---------------------------------------------------------------------

    def _pages(
        self, path: str, *, action: str, params: dict[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        url: str | None = self._url(path)
        query: dict[str, str] | None = {**(params or {}), "per_page": str(PER_PAGE)}
        for _ in range(MAX_PAGES):
            if url is None:
                return
            response = self._request("GET", url, params=query, action=action)
            yield from response.json()
            # The next page's URL carries every query parameter itself. It must stay on the
            # API's host: the token goes wherever it points.
            url = response.links.get("next", {}).get("url")
            query = None
            if url is not None and not _same_origin(url, self.access.api_url):
                raise GitHubError(
                    f"GitHub's next-page link while trying to {action} points to another "
                    f"host ({httpx.URL(url).host}); openjules did not follow it."
                )
        raise GitHubError(f"GitHub returned more than {MAX_PAGES} pages while trying to {action}.")

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.access.api_url + path

    def _request(
        self,
        method: str,
        path: str,
        *,
        action: str,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
    ) -> httpx.Response:
        attempts = 1 + (READ_RETRIES if method == "GET" else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._http.request(method, self._url(path), params=params, json=json)
            except httpx.HTTPError as exc:
                if last:
                    raise GitHubError(
                        self.access.redact(
                            f"Could not reach GitHub at {self.access.api_url} to {action}: "
                            f"{_network_reason(exc)}."
                        )
                    ) from None
            else:
                if response.status_code < 400:
                    return response
                if response.status_code < 500 or last:
                    raise GitHubError(
                        self.access.redact(_describe(response, action=action)),
                        status=response.status_code,
                    )
            time.sleep(RETRY_DELAY_S * (attempt + 1))
        raise AssertionError("unreachable")


def _same_origin(url: str, base: str) -> bool:
    a, b = httpx.URL(url), httpx.URL(base)
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _network_reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "the request timed out"
    if isinstance(exc, httpx.ConnectError):
        return "the connection was refused or the host is unknown"
    return type(exc).__name__


def _github_message(response: httpx.Response) -> str:
    """GitHub's own words: ``message`` plus the ``errors`` entries of a 422."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if not isinstance(body, dict):
        return response.reason_phrase
    message = str(body.get("message") or response.reason_phrase)
    details = []
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            text = error.get("message") or " ".join(
                str(error[k]) for k in ("resource", "field", "code") if error.get(k)
            )
            details.append(str(text))
        else:
            details.append(str(error))
    return f"{message}: {'; '.join(details)}" if details else message


def _describe(response: httpx.Response, *, action: str) -> str:
    status = response.status_code
    said = _github_message(response)
    if status == 401:
        return (
            f"GitHub rejected the token while trying to {action} (401 {said}). "
            "Check that OPENJULES_GITHUB_TOKEN holds a valid, unexpired token."
        )
    if status == 403 and response.headers.get("x-ratelimit-remaining") == "0":
        reset = response.headers.get("x-ratelimit-reset", "")
        when = (
            datetime.fromtimestamp(int(reset), tz=UTC).strftime("%H:%M UTC")
            if reset.isdigit()
            else "later"
        )
        return (
            f"GitHub's API rate limit is used up, so openjules could not {action}; "
            f"it resets at {when}."
        )
    if status == 403:
        return f"The GitHub token is not allowed to {action} (403 {said}). {TOKEN_HELP}"
    if status == 404:
        return (
            f"GitHub could not find what is needed to {action} (404 {said}): the repository "
            "does not exist, or the token cannot see it."
        )
    if status == 422:
        return f"GitHub refused to {action} (422 {said})."
    return f"GitHub answered {status} ({said}) while openjules tried to {action}."
