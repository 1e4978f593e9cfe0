"""sources.list and sources.get over HTTP: shapes, slashed names, filters, pagination."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.testing import LiveServer, register_source

PAGED = [f"sources/github/paged/repo-{i:02d}" for i in range(35)]
PUBLIC = "sources/github/acme/alpha"
PRIVATE = "sources/github/acme/beta"
LETTERS = ["sources/github/a/b", "sources/github/c/d", "sources/github/e/f"]


@pytest.fixture(scope="module")
def sources(server: LiveServer, git_repo: Path) -> list[str]:
    """Every source of this module's server: 35 paged ones plus a few named ones."""
    names = [*PAGED, PUBLIC, PRIVATE, *LETTERS]
    for name in names:
        owner, repo = name.split("/")[2:]
        register_source(
            server.settings, location=str(git_repo), owner=owner, repo=repo,
            is_private=name == PRIVATE,
        )
    return sorted(names)


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


def _names(body: dict[str, Any]) -> list[str]:
    return [s["name"] for s in body.get("sources", [])]


def _error(response: httpx.Response, code: int, status: str) -> str:
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["status"] == status
    assert error["message"]
    return str(error["message"])


def test_list_shows_github_repos(client: httpx.Client, sources: list[str]) -> None:
    body = _ok(client.get("/sources", params={"pageSize": 100}))
    assert "nextPageToken" not in body
    by_name = {s["name"]: s for s in body["sources"]}
    assert sorted(by_name) == sources
    assert by_name[PUBLIC] == {
        "name": PUBLIC,
        "id": "github/acme/alpha",
        "githubRepo": {
            "owner": "acme",
            "repo": "alpha",
            "defaultBranch": {"displayName": "main"},
            "branches": by_name[PUBLIC]["githubRepo"]["branches"],
        },
    }, "isPrivate: false is omitted"
    branches = sorted(b["displayName"] for b in by_name[PUBLIC]["githubRepo"]["branches"])
    assert branches == ["develop", "feature/x", "main"]
    assert by_name[PRIVATE]["githubRepo"]["isPrivate"] is True


def test_get_by_name_with_literal_slashes(client: httpx.Client, sources: list[str]) -> None:
    page = _ok(client.get("/sources", params={"pageSize": 100}))
    listed = {s["name"]: s for s in page["sources"]}
    for name in (PUBLIC, PRIVATE, "sources/github/a/b"):
        response = client.get(f"/{name}")
        assert response.url.path == f"/v1alpha/{name}"
        assert _ok(response) == listed[name]


@pytest.mark.parametrize(
    "path",
    [
        "sources/github/acme/nope",
        "sources/github/nobody/alpha",
        "sources/github/acme",
        "sources/github/acme/alpha/extra",
        "sources/gitlab/acme/alpha",
    ],
)
def test_unknown_source_is_not_found(client: httpx.Client, sources: list[str], path: str) -> None:
    _error(client.get(f"/{path}"), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "flt",
    [
        'name=sources/github/a/b OR name="sources/github/c/d"',
        "name=sources/github/a/b OR name=sources/github/c/d",
        'name="sources/github/a/b" OR name="sources/github/c/d"',
        "name = sources/github/c/d OR name = sources/github/a/b",
    ],
)
def test_filter_by_names(client: httpx.Client, sources: list[str], flt: str) -> None:
    body = _ok(client.get("/sources", params={"filter": flt}))
    assert _names(body) == ["sources/github/a/b", "sources/github/c/d"]
    assert "nextPageToken" not in body


def test_filter_single_name_and_no_match(client: httpx.Client, sources: list[str]) -> None:
    body = _ok(client.get("/sources", params={"filter": f'name="{PRIVATE}"'}))
    assert _names(body) == [PRIVATE]
    nothing = _ok(client.get("/sources", params={"filter": "name=sources/github/x/y"}))
    assert nothing == {}, "an empty list is omitted, as Google does"


@pytest.mark.parametrize("flt", ["owner=acme", "name=", "name=sources/github/a/b OR", "(("])
def test_bad_filter_is_invalid_argument(
    client: httpx.Client, sources: list[str], flt: str
) -> None:
    _error(client.get("/sources", params={"filter": flt}), 400, "INVALID_ARGUMENT")


def _walk(client: httpx.Client, **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    while True:
        query = {**params, **({"pageToken": token} if token else {})}
        body = _ok(client.get("/sources", params=query))
        pages.append(_names(body))
        token = body.get("nextPageToken", "")
        if not token:
            return pages
        assert len(pages) < 100, "pagination does not end"


def test_default_page_size_is_30_and_pages_cover_everything(
    client: httpx.Client, sources: list[str]
) -> None:
    pages = _walk(client)
    assert [len(p) for p in pages] == [30, len(sources) - 30]
    walked = [name for page in pages for name in page]
    assert walked == sources, "every source exactly once, in a stable order"


@pytest.mark.parametrize("size", [1, 7, 30, 39])
def test_page_size_walk_has_no_duplicates_or_gaps(
    client: httpx.Client, sources: list[str], size: int
) -> None:
    pages = _walk(client, pageSize=size)
    assert all(len(p) == size for p in pages[:-1])
    assert 1 <= len(pages[-1]) <= size
    assert [name for page in pages for name in page] == sources


def test_large_page_size_is_coerced_and_zero_means_default(
    client: httpx.Client, sources: list[str]
) -> None:
    assert _names(_ok(client.get("/sources", params={"pageSize": 1000}))) == sources
    assert len(_names(_ok(client.get("/sources", params={"pageSize": 0})))) == 30


def test_filter_and_pagination_together(client: httpx.Client, sources: list[str]) -> None:
    flt = " OR ".join(f"name={n}" for n in LETTERS)
    assert _walk(client, filter=flt, pageSize=2) == [LETTERS[:2], LETTERS[2:]]


@pytest.mark.parametrize("token", ["not a token", "%%%", "github/only-two", "sources/github/a/b"])
def test_malformed_page_token_is_invalid_argument(
    client: httpx.Client, sources: list[str], token: str
) -> None:
    _error(client.get("/sources", params={"pageToken": token}), 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize("size", ["-1", "abc"])
def test_bad_page_size_is_invalid_argument(
    client: httpx.Client, sources: list[str], size: str
) -> None:
    _error(client.get("/sources", params={"pageSize": size}), 400, "INVALID_ARGUMENT")


def test_sources_need_a_key(server: LiveServer, sources: list[str]) -> None:
    for path in ("/sources", f"/{PUBLIC}"):
        _error(httpx.get(f"{server.api}{path}", timeout=30), 401, "UNAUTHENTICATED")
