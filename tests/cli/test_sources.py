"""`openjules sources add|list|refresh`, seen through the command and the HTTP API."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest

from openjules.testing import LiveServer, register_source
from tests.cli.sources_support import branch_names, get_source
from tests.cli.support import Target, ok, run_many, run_openjules
from tests.support import git, make_repo

BRANCHES = ("develop", "feature/x")


def test_add_path_is_named_local_dirname(
    client: httpx.Client, server_target: Target, tmp_path: Path
) -> None:
    directory = f"demo-{secrets.token_hex(3)}"
    repo = make_repo(tmp_path / directory, branches=BRANCHES)
    out = ok(run_openjules(server_target, "sources", "add", str(repo)))
    name = f"sources/github/local/{directory}"
    assert name in out

    source = get_source(client, name)
    assert source == {
        "name": name,
        "id": f"github/local/{directory}",
        "githubRepo": {
            "owner": "local",
            "repo": directory,
            "defaultBranch": {"displayName": "main"},
            "branches": source["githubRepo"]["branches"],
        },
    }, "isPrivate is omitted for a public repository"
    assert branch_names(source) == ["develop", "feature/x", "main"]
    listed = client.get("/sources", params={"filter": f"name={name}"}).json()
    assert listed["sources"] == [source]


def test_add_with_name_and_private_then_list(
    client: httpx.Client, server_target: Target, git_repo: Path
) -> None:
    repo = f"widgets-{secrets.token_hex(3)}"
    out = ok(
        run_openjules(
            server_target, "sources", "add", str(git_repo), "--name", f"acme/{repo}", "--private"
        )
    )
    name = f"sources/github/acme/{repo}"
    assert name in out
    source = get_source(client, name)
    assert source["githubRepo"]["owner"] == "acme"
    assert source["githubRepo"]["repo"] == repo
    assert source["githubRepo"]["isPrivate"] is True
    assert source["githubRepo"]["defaultBranch"] == {"displayName": "main"}

    listing = ok(run_openjules(server_target, "sources", "list"))
    line = next(line for line in listing.splitlines() if name in line)
    assert "main" in line
    assert str(git_repo) in line


def test_add_git_url(client: httpx.Client, server_target: Target, tmp_path: Path) -> None:
    """A file:// URL to a bare `NAME.git` repository: named OWNER/NAME from the URL path."""
    work = make_repo(tmp_path / "work", branches=BRANCHES)
    owner = f"team-{secrets.token_hex(3)}"
    (tmp_path / owner).mkdir()
    bare = tmp_path / owner / "service.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)

    out = ok(run_openjules(server_target, "sources", "add", bare.as_uri()))
    name = f"sources/github/{owner}/service"
    assert name in out
    source = get_source(client, name)
    assert source["githubRepo"]["defaultBranch"] == {"displayName": "main"}
    assert branch_names(source) == ["develop", "feature/x", "main"]


def test_refresh_picks_up_branches_and_default_branch(
    server: LiveServer, client: httpx.Client, server_target: Target, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "moving", branches=BRANCHES)
    short = f"acme/moving-{secrets.token_hex(3)}"
    name = register_source(server.settings, location=str(repo), owner="acme", repo=short[5:])
    assert get_source(client, name)["githubRepo"]["defaultBranch"]["displayName"] == "main"

    git("branch", "release/1.0", cwd=repo)
    git("branch", "-D", "feature/x", cwd=repo)
    git("symbolic-ref", "HEAD", "refs/heads/develop", cwd=repo)
    # Nothing changes until the operator refreshes.
    assert branch_names(get_source(client, name)) == ["develop", "feature/x", "main"]

    out = ok(run_openjules(server_target, "sources", "refresh", short))
    assert name in out
    assert "develop" in out
    source = get_source(client, name)
    assert source["githubRepo"]["defaultBranch"] == {"displayName": "develop"}
    assert branch_names(source) == ["develop", "main", "release/1.0"]

    git("branch", "hotfix", cwd=repo)
    out = ok(run_openjules(server_target, "sources", "refresh"))  # every source
    assert name in out
    assert "hotfix" in branch_names(get_source(client, name))

    unknown = run_openjules(server_target, "sources", "refresh", "acme/no-such-repo")
    assert unknown.returncode != 0
    assert "Traceback" not in unknown.stderr
    assert "acme/no-such-repo" in unknown.stderr


@pytest.fixture
def sqlite_target(tmp_path: Path) -> Target:
    home = tmp_path / "home"
    home.mkdir()
    return Target(backend="sqlite", home=home, data_dir=tmp_path / "data")


def test_bad_locations_and_names_are_clean_errors(sqlite_target: Target, tmp_path: Path) -> None:
    plain = tmp_path / "plain-dir"
    plain.mkdir()
    repo = make_repo(tmp_path / "fine", branches=BRANCHES)
    missing, not_git, no_slash, bad_char = run_many(
        sqlite_target,
        ["sources", "add", str(tmp_path / "no-such-dir")],
        ["sources", "add", str(plain)],
        ["sources", "add", str(repo), "--name", "only-owner"],
        ["sources", "add", str(repo), "--name", "acme/re po"],
    )
    for result in (missing, not_git, no_slash, bad_char):
        assert result.returncode != 0, result.stdout
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(("Error", "Usage")), result.stderr
    assert "no-such-dir" in missing.stderr
    assert "no such directory" in missing.stderr
    # git's own reason, not its generic advice ("... and the repository exists.")
    assert "plain-dir" in not_git.stderr
    assert "git repository" in not_git.stderr, not_git.stderr
    assert "OWNER/REPO" in no_slash.stderr
    assert "re po" in bad_char.stderr
    assert not (sqlite_target.home / ".openjules").exists()
