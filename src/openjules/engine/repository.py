"""Describe a git repository as a source record (branches read from the repository)."""

from __future__ import annotations

from openjules.engine import git
from openjules.store.sources import SourceRecord


def describe_repository(
    location: str, *, owner: str, repo: str, is_private: bool = False
) -> SourceRecord:
    """Read branches and the default branch; raises ``git.GitError`` with a readable reason."""
    info = git.read_remote(location)
    return SourceRecord(
        owner=owner,
        repo=repo,
        url=location,
        is_private=is_private,
        default_branch=info.default_branch,
        branches=info.branches,
    )
