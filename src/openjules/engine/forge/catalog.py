"""GitHub repositories as source records: what ``sources sync --github`` and
``sources add github:OWNER/REPO`` register."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from openjules.engine.forge.github import GitHubClient
from openjules.store.sources import Forge, SourceRecord


@dataclass(frozen=True)
class Skipped:
    """A repository that cannot be a source, and why."""

    full_name: str
    reason: str


def describe(client: GitHubClient, data: dict[str, Any]) -> SourceRecord | Skipped:
    """A source record for the repository GitHub described as ``data`` (branches read)."""
    owner = str(data["owner"]["login"])
    repo = str(data["name"])
    full_name = f"{owner}/{repo}"
    if data.get("archived"):
        return Skipped(full_name, "archived (read-only)")
    branches = client.branches(owner, repo)
    if not branches:
        return Skipped(full_name, "empty repository (no branches yet)")
    default = str(data.get("default_branch") or "")
    return SourceRecord(
        owner=owner,
        repo=repo,
        # GitHub's own clone URL: the token is sent to this host only.
        url=str(data.get("clone_url") or client.access.clone_url(owner, repo)),
        is_private=bool(data.get("private")),
        default_branch=default if default in branches else branches[0],
        branches=branches,
        forge=Forge.GITHUB,
    )


def repository(client: GitHubClient, *, owner: str, repo: str) -> SourceRecord | Skipped:
    return describe(client, client.repository(owner, repo))


def every_repository(client: GitHubClient) -> Iterator[SourceRecord | Skipped]:
    """Each repository the token can reach, in GitHub's order, as it is read."""
    for data in client.repositories():
        yield describe(client, data)
