"""Pull requests of the fake GitHub: listed, read and created through the REST API."""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from openjules.testing.fake_github.bare_repos import BareRepos
from openjules.testing.fake_github.records import ApiError, Pull, PullRecord, Repo, now
from openjules.testing.fake_github.rest import Site, json_response, paginate, pull_json

CREATE_PULL_DOCS_URL = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"


class PullRequests:
    """The pull requests of every repository; ``lock`` is the fake's lock.

    The handlers take the repository already checked readable by the caller.
    """

    def __init__(self, site: Site, lock: threading.Lock, repos: BareRepos) -> None:
        self._site = site
        self._lock = lock
        self._repos = repos
        self._pulls: list[Pull] = []
        self._next_pull_id = 500_001

    def records(self, *, owner: str | None = None, repo: str | None = None) -> list[PullRecord]:
        """Copies of the pull requests created so far, in creation order."""
        with self._lock:
            return [
                dataclasses.replace(pull.record)
                for pull in self._pulls
                if (owner is None or pull.record.owner.lower() == owner.lower())
                and (repo is None or pull.record.repo.lower() == repo.lower())
            ]

    async def list_pulls(self, request: Request, repo: Repo) -> Response:
        params = request.query_params
        state = params.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise ApiError(
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
        page, links = paginate(self._site, request, len(pulls))
        branches = await self._repos.branches(repo)
        return json_response([self._json(repo, p, branches) for p in pulls[page]], links=links)

    async def get_pull(self, request: Request, repo: Repo) -> Response:
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
            raise ApiError(404, "Not Found")
        return json_response(self._json(repo, found[0], await self._repos.branches(repo)))

    async def create_pull(self, request: Request, repo: Repo) -> Response:
        try:
            payload = json.loads(await request.body())
        except ValueError as exc:
            raise ApiError(400, "Problems parsing JSON") from exc
        if not isinstance(payload, dict):
            raise ApiError(400, "Problems parsing JSON")
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
                raise ApiError(
                    422,
                    f"Invalid request.\n\nFor 'properties/{field}', "
                    f"{json.dumps(value)} is not a {label}.",
                    documentation_url=CREATE_PULL_DOCS_URL,
                )

        def validation_failed(errors: list[dict[str, str]]) -> ApiError:
            return ApiError(
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
        branches = await self._repos.branches(repo)
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
        if await self._repos.is_ancestor(repo, branches[head], branches[base]):
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
            pull = Pull(
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
                    html_url=f"{self._site.url}/{repo.full_name}/pull/{number}",
                ),
                id=self._next_pull_id,
                created_at=now(),
                maintainer_can_modify=bool(payload.get("maintainer_can_modify", True)),
            )
            self._next_pull_id += 1
            self._pulls.append(pull)
        return json_response(
            self._json(repo, pull, branches),
            status=201,
            headers={"Location": f"{self._site.api_url}/repos/{repo.full_name}/pulls/{number}"},
        )

    def _json(self, repo: Repo, pull: Pull, branches: dict[str, str]) -> dict[str, Any]:
        record = pull.record
        with self._lock:
            if record.state == "open" and record.head in branches:
                # An open pull request follows its head branch, as on GitHub.
                record.head_sha = branches[record.head]
            head_sha = record.head_sha
        return pull_json(self._site, repo, pull, branches, head_sha=head_sha)
