"""Helpers shared by the `openjules sources` tests: real repositories to register, and the
sources API's view of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.conftest import git


def make_repo(
    parent: Path, name: str, *, branches: tuple[str, ...] = ("develop", "feature/x")
) -> Path:
    """A real repository with branch main (checked out, default) and ``branches``."""
    path = parent / name
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    (path / "README.md").write_text(f"# {name}\n")
    git("add", "README.md", cwd=path)
    git("commit", "-q", "-m", "initial", cwd=path)
    for branch in branches:
        git("branch", branch, cwd=path)
    return path


def get_source(client: httpx.Client, name: str) -> dict[str, Any]:
    response = client.get(f"/{name}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def branch_names(source: dict[str, Any]) -> list[str]:
    return sorted(b["displayName"] for b in source["githubRepo"]["branches"])
