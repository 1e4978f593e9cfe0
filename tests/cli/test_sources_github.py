"""`openjules sources sync --github`, `add github:OWNER/REPO` and `refresh`, against a fake
GitHub (real HTTP, real bare repositories), seen through the command and the HTTP API.

The module's server database is shared by its tests, so every test uses owners of its own;
the test that prunes gets a database (and server) of its own, as pruning removes every
GitHub source the token does not reach.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from openjules.settings import Settings
from openjules.testing import (
    FakeGitHub,
    LiveServer,
    Operation,
    provision_user,
    register_github_source,
)
from tests.cli.sources_support import branch_names, get_source
from tests.cli.support import Target, ok, run_many, run_openjules
from tests.support import api_client, git, make_repo

WRONG_TOKEN = "ghp_wrongWRONGwrong0123456789abcdef"


def work_repo(path: Path) -> Path:
    """A real repository with branches main (checked out), develop and feature-x."""
    return make_repo(path, branches=("develop", "feature-x"))


def tag() -> str:
    return secrets.token_hex(3)


def with_github(target: Target, fake: FakeGitHub, *, api_url: str | None = None) -> Target:
    return target.with_env(
        OPENJULES_GITHUB_TOKEN=fake.token, OPENJULES_GITHUB_API_URL=api_url or fake.api_url
    )


def github_settings(server: LiveServer, fake: FakeGitHub) -> Settings:
    """The server's settings pointed at ``fake`` (for registering sources in-process)."""
    return server.settings.model_copy(
        update={"github_api_url": fake.api_url, "github_token": fake.token}
    )


def missing(client: httpx.Client, name: str) -> bool:
    response = client.get(f"/{name}")
    assert response.status_code in (200, 404), response.text
    return response.status_code == 404


def failed(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """stderr of a command that must fail cleanly with ``code``."""
    assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


def page_of(query: str) -> int:
    return int(dict(parse_qsl(query)).get("page", "1"))


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeGitHub]:
    with FakeGitHub(tmp_path / "github", max_per_page=2) as gh:
        yield gh


# -- sync --------------------------------------------------------------------------------


def test_sync_registers_every_repository_across_pages(
    fake: FakeGitHub, client: httpx.Client, server_target: Target, tmp_path: Path
) -> None:
    t = tag()
    work = work_repo(tmp_path / "work")
    fake.add_repo(f"acme-{t}", "app", from_path=work)
    fake.add_repo(f"acme-{t}", "secret", private=True)
    fake.add_repo(f"bob-{t}", "tools", from_path=work, default_branch="develop")
    fake.add_repo(f"carol-{t}", "site", default_branch="trunk")
    fake.add_repo(f"dave-{t}", "lib", from_path=work, private=True)
    expected = {
        f"acme-{t}/app": (False, "main", ["develop", "feature-x", "main"]),
        f"acme-{t}/secret": (True, "main", ["main"]),
        f"bob-{t}/tools": (False, "develop", ["develop", "feature-x", "main"]),
        f"carol-{t}/site": (False, "trunk", ["trunk"]),
        f"dave-{t}/lib": (True, "main", ["develop", "feature-x", "main"]),
    }

    out = ok(run_openjules(with_github(server_target, fake), "sources", "sync", "--github"))

    for full_name, (_, default, branches) in expected.items():
        assert f"Found {full_name}: default branch {default}, {len(branches)} branch(es)." in out, (
            out
        )
    assert "Synced 5 repositories from GitHub (0 skipped)." in out, out

    names = [f"sources/github/{n}" for n in expected]
    for name, (full_name, (private, default, branches)) in zip(
        names, expected.items(), strict=True
    ):
        owner, repo = full_name.split("/")
        source = get_source(client, name)
        github = source["githubRepo"]
        assert source["name"] == name
        assert source["id"] == name.removeprefix("sources/")
        assert github["owner"] == owner
        assert github["repo"] == repo
        if private:
            assert github["isPrivate"] is True
        else:
            assert "isPrivate" not in github, "isPrivate is omitted for a public repository"
        assert github["defaultBranch"] == {"displayName": default}
        assert branch_names(source) == branches
    listed = client.get("/sources", params={"filter": " OR ".join(f"name={n}" for n in names)})
    assert listed.status_code == 200, listed.text
    assert sorted(s["name"] for s in listed.json()["sources"]) == sorted(names)

    # Five repositories, at most two a page: three pages, each with the token.
    listing = [r for r in fake.requests if r.path == "/api/v3/user/repos"]
    assert sorted(page_of(r.query) for r in listing) == [1, 2, 3], listing
    assert {r.authorization for r in listing} == {f"Bearer {fake.token}"}
    # Three branches, at most two a page: the branch lists were paginated too.
    tools = [r for r in fake.requests if r.path == f"/api/v3/repos/bob-{t}/tools/branches"]
    assert sorted(page_of(r.query) for r in tools) == [1, 2], tools


def test_sync_skips_an_empty_repository(
    fake: FakeGitHub, client: httpx.Client, server_target: Target
) -> None:
    t = tag()
    fake.add_repo(f"erin-{t}", "full")
    empty = fake.add_repo(f"erin-{t}", "empty")
    git("update-ref", "-d", "refs/heads/main", cwd=empty)

    out = ok(run_openjules(with_github(server_target, fake), "sources", "sync", "--github"))

    assert f"Skipped erin-{t}/empty: empty repository (no branches yet)." in out, out
    assert f"Found erin-{t}/full: default branch main, 1 branch(es)." in out, out
    assert "Synced 1 repositories from GitHub (1 skipped)." in out, out
    assert get_source(client, f"sources/github/erin-{t}/full")["githubRepo"]["repo"] == "full"
    assert missing(client, f"sources/github/erin-{t}/empty")


@pytest.fixture
def own_server(fresh_target: Target) -> Iterator[tuple[Target, httpx.Client]]:
    """A server over a database of this test's own (``fresh_target``), and a client."""
    settings = Settings(
        data_dir=fresh_target.data_dir,
        database_url=fresh_target.database_url or "",
        auth_cache_seconds=0,
        workers=0,
    )
    with LiveServer(settings) as live:
        key = provision_user(live.settings, name="pruner")
        with api_client(live.api, key) as client:
            yield fresh_target, client


def test_resync_reports_unreachable_sources_and_prune_removes_them(
    own_server: tuple[Target, httpx.Client], tmp_path: Path
) -> None:
    target, client = own_server
    local = work_repo(tmp_path / "local-work")
    ok(run_openjules(target, "sources", "add", str(local)))
    local_name = "sources/github/local/local-work"
    kept, gone = "sources/github/frank/kept", "sources/github/frank/gone"

    with FakeGitHub(tmp_path / "before") as before:
        before.add_repo("frank", "kept")
        before.add_repo("frank", "gone")
        out = ok(run_openjules(with_github(target, before), "sources", "sync", "--github"))
        assert "Synced 2 repositories from GitHub (0 skipped)." in out, out
        assert "not found" not in out, out

    # The same account later: frank/gone was deleted (or the token lost access to it).
    with FakeGitHub(tmp_path / "after") as after:
        after.add_repo("frank", "kept")
        synced = with_github(target, after)

        out = ok(run_openjules(synced, "sources", "sync", "--github"))
        assert "Synced 1 repositories from GitHub (0 skipped)." in out, out
        assert "1 registered GitHub source(s) were not found; --prune removes them." in out, out
        assert not missing(client, gone), "kept without --prune"

        out = ok(run_openjules(synced, "sources", "sync", "--github", "--prune"))
        assert "Removed 1 that the token no longer reaches." in out, out

    assert missing(client, gone)
    assert get_source(client, kept)["githubRepo"]["repo"] == "kept"
    # Not a GitHub source: --prune leaves it alone.
    assert get_source(client, local_name)["githubRepo"]["repo"] == "local-work"
    listed = client.get("/sources").json()["sources"]
    assert sorted(s["name"] for s in listed) == sorted([kept, local_name])


def test_a_repository_that_became_empty_is_skipped_but_not_pruned(
    own_server: tuple[Target, httpx.Client], tmp_path: Path
) -> None:
    target, client = own_server
    with FakeGitHub(tmp_path / "github") as gh:
        gh.add_repo("hana", "app")
        emptied = gh.add_repo("hana", "emptied")
        synced = with_github(target, gh)
        ok(run_openjules(synced, "sources", "sync", "--github"))
        git("update-ref", "-d", "refs/heads/main", cwd=emptied)

        out = ok(run_openjules(synced, "sources", "sync", "--github", "--prune"))

    assert "Skipped hana/emptied: empty repository (no branches yet)." in out, out
    assert "Synced 1 repositories from GitHub (1 skipped)." in out, out
    assert "Removed" not in out, out
    assert "not found" not in out, out
    # Still reachable, so still registered (with what it had).
    assert branch_names(get_source(client, "sources/github/hana/emptied")) == ["main"]


def test_resync_keeps_setup_script_and_network(
    fake: FakeGitHub, server: LiveServer, server_target: Target, tmp_path: Path
) -> None:
    t = tag()
    fake.add_repo(f"gina-{t}", "svc")
    target = with_github(server_target, fake)
    register_github_source(github_settings(server, fake), owner=f"gina-{t}", repo="svc")
    script = tmp_path / "setup.sh"
    script.write_text("#!/bin/sh\npip install -e .\n")
    out = ok(
        run_openjules(
            target,
            "sources",
            "configure",
            f"gina-{t}/svc",
            "--setup-script",
            str(script),
            "--network",
        )
    )
    assert "a setup script, network allowed" in out, out

    fake_branch = fake.repo_path(f"gina-{t}", "svc")
    git("branch", "next", "main", cwd=fake_branch)
    out = ok(run_openjules(target, "sources", "sync", "--github"))
    assert f"Found gina-{t}/svc: default branch main, 2 branch(es)." in out, out

    out = ok(run_openjules(target, "sources", "configure", f"gina-{t}/svc"))
    assert out.strip() == (
        f"Configured sources/github/gina-{t}/svc: a setup script, network allowed."
    ), out


# -- add github:OWNER/REPO ---------------------------------------------------------------


def test_add_github_repository(
    fake: FakeGitHub, client: httpx.Client, server_target: Target, tmp_path: Path
) -> None:
    t = tag()
    owner = f"acme-{t}"
    fake.add_repo(owner, "app", from_path=work_repo(tmp_path / "work"), private=True)
    fake.add_repo(owner, "other")

    target = with_github(server_target, fake)
    out = ok(run_openjules(target, "sources", "add", f"github:{owner}/app"))

    name = f"sources/github/{owner}/app"
    assert f"Added {name} (" in out, out
    assert "default branch main, 3 branch(es)." in out, out
    assert fake.token not in out
    source = get_source(client, name)
    assert source["githubRepo"]["isPrivate"] is True
    assert source["githubRepo"]["defaultBranch"] == {"displayName": "main"}
    assert branch_names(source) == ["develop", "feature-x", "main"]
    listing = ok(run_openjules(target, "sources", "list"))
    line = next(line for line in listing.splitlines() if line.startswith(f"{name}\t"))
    assert line.split("\t")[1:5] == [
        "main", "3 branches", "github", fake.clone_url(owner, "app")
    ], line
    # One repository only, read directly (not by listing the account's repositories).
    assert missing(client, f"sources/github/{owner}/other")
    assert not [r for r in fake.requests if r.path == "/api/v3/user/repos"]


def test_add_by_url_of_the_configured_github_makes_a_github_source(
    fake: FakeGitHub, client: httpx.Client, server_target: Target
) -> None:
    """Pasting the repository's URL is the same as github:OWNER/REPO (pull requests apply)."""
    owner = f"ivy-{tag()}"
    fake.add_repo(owner, "web", private=True)
    target = with_github(server_target, fake)

    out = ok(run_openjules(target, "sources", "add", fake.clone_url(owner, "web")))

    name = f"sources/github/{owner}/web"
    assert f"Added {name} (" in out, out
    assert get_source(client, name)["githubRepo"]["isPrivate"] is True, "read through the API"
    assert [r for r in fake.requests if r.path == f"/api/v3/repos/{owner}/web"]


def test_add_github_refusals(fake: FakeGitHub, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    target = with_github(Target(backend="sqlite", home=home, data_dir=tmp_path / "data"), fake)
    fake.add_repo("acme", "app")
    with_name, no_slash, unknown = run_many(
        target,
        ["sources", "add", "github:acme/app", "--name", "acme/other"],
        ["sources", "add", "github:bad"],
        ["sources", "add", "github:acme/no-such-repo"],
    )
    assert "--name" in failed(with_name, 2), with_name.stderr
    assert "github:OWNER/REPO" in failed(no_slash, 2), no_slash.stderr
    error = failed(unknown, 1)
    assert "acme/no-such-repo" in error
    assert "could not find" in error
    assert len(error.strip().splitlines()) == 1, error
    # Nothing was read from GitHub for the refused arguments.
    paths = {r.path for r in fake.requests}
    assert paths == {
        "/api/v3/repos/acme/no-such-repo",
    }, paths


# -- refresh -----------------------------------------------------------------------------


def test_refresh_reads_github_sources_through_the_api(
    fake: FakeGitHub,
    server: LiveServer,
    client: httpx.Client,
    server_target: Target,
) -> None:
    t = tag()
    owner = f"hal-{t}"
    bare = fake.add_repo(owner, "moving")
    name = register_github_source(github_settings(server, fake), owner=owner, repo="moving")
    assert branch_names(get_source(client, name)) == ["main"]

    git("branch", "release-1", "main", cwd=bare)
    assert branch_names(get_source(client, name)) == ["main"], "nothing changes before refresh"
    before = len(fake.requests)

    target = with_github(server_target, fake)
    out = ok(run_openjules(target, "sources", "refresh", f"{owner}/moving"))

    assert f"Refreshed {name}: default branch main, 2 branch(es)." in out, out
    assert branch_names(get_source(client, name)) == ["main", "release-1"]
    api = [r for r in fake.requests[before:] if r.path.startswith("/api/v3/")]
    assert f"/api/v3/repos/{owner}/moving/branches" in {r.path for r in api}
    assert {r.authorization for r in api} == {f"Bearer {fake.token}"}


# -- errors ------------------------------------------------------------------------------


@pytest.fixture
def offline_target(tmp_path: Path) -> Target:
    """SQLite in a data dir of its own: these commands fail before any source is saved."""
    home = tmp_path / "home"
    home.mkdir()
    return Target(backend="sqlite", home=home, data_dir=tmp_path / "data")


def test_sync_errors_are_one_readable_line_without_the_token(
    fake: FakeGitHub, offline_target: Target
) -> None:
    fake.add_repo("acme", "app")
    no_token = offline_target.with_env(OPENJULES_GITHUB_API_URL=fake.api_url)
    wrong = offline_target.with_env(
        OPENJULES_GITHUB_TOKEN=WRONG_TOKEN, OPENJULES_GITHUB_API_URL=fake.api_url
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [
            pool.submit(run_openjules, t, "sources", "sync", "--github") for t in (no_token, wrong)
        ]
        unset, rejected = (j.result() for j in jobs)

    assert "OPENJULES_GITHUB_TOKEN" in failed(unset)
    error = failed(rejected)
    assert "rejected the token" in error, error
    assert len(error.strip().splitlines()) == 1, error
    for text in (rejected.stdout, rejected.stderr):
        assert WRONG_TOKEN not in text
        assert fake.token not in text

    fake.fail(Operation.LIST_REPOS, 403)
    forbidden = run_openjules(with_github(offline_target, fake), "sources", "sync", "--github")
    error = failed(forbidden)
    assert "not allowed" in error, error
    assert fake.token not in forbidden.stdout + forbidden.stderr


def test_api_url_with_trailing_slash(
    fake: FakeGitHub, client: httpx.Client, server_target: Target
) -> None:
    t = tag()
    fake.add_repo(f"ivy-{t}", "slash")
    target = with_github(server_target, fake, api_url=fake.api_url + "/")

    out = ok(run_openjules(target, "sources", "sync", "--github"))

    assert f"Found ivy-{t}/slash: default branch main, 1 branch(es)." in out, out
    assert get_source(client, f"sources/github/ivy-{t}/slash")["githubRepo"]["repo"] == "slash"
    assert not [r for r in fake.requests if "//" in r.path], fake.requests
