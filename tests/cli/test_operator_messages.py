"""What operator commands tell the person running them: which database they used (and
that they just created one), and what a key id is when given a whole key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.support import Target, create_key, ok, run_openjules, run_with_defaults
from tests.support import make_repo

NEW_DATABASE = "a new, empty database was created there"


@pytest.fixture
def sqlite_target(tmp_path: Path) -> Target:
    home = tmp_path / "home"
    home.mkdir()
    return Target(backend="sqlite", home=home, data_dir=tmp_path / "data")


def database_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("database: ")]


def expected_database(target: Target) -> str:
    """How a command names the target's database: its URL without credentials."""
    if target.database_url:
        scheme, _, rest = target.database_url.partition("://")
        return f"database: {scheme}://{rest.split('@')[-1]}"
    return f"database: sqlite+aiosqlite:///{target.sqlite_file}"


@pytest.mark.parametrize(
    "command",
    [["keys", "list"], ["keys", "create", "--user", "ann"], ["sources", "list"]],
    ids=" ".join,
)
def test_database_commands_say_which_database_once(
    fresh_target: Target, command: list[str]
) -> None:
    result = run_openjules(fresh_target, *command)
    ok(result)
    assert database_lines(result.stderr) == [expected_database(fresh_target)], result.stderr
    assert "database: " not in result.stdout, "notes go to stderr: stdout stays parseable"
    if fresh_target.database_url:
        assert "postgres@" not in result.stderr, "no credentials"


def test_keys_create_still_ends_with_the_bare_key(fresh_target: Target) -> None:
    key = create_key(fresh_target, "bea")  # asserts the last line of stdout is the key
    assert key.startswith("ojk_")


def test_sources_add_says_it_created_a_new_database(sqlite_target: Target, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "boba")
    first = run_openjules(sqlite_target, "sources", "add", str(repo), "--name", "acme/boba")
    ok(first)
    lines = [line for line in first.stderr.splitlines() if line.strip()]
    assert lines[0] == expected_database(sqlite_target), first.stderr
    assert lines[1].startswith(NEW_DATABASE), first.stderr
    assert "OPENJULES_DATA_DIR" in lines[1]
    assert "--data-dir" in lines[1]
    assert sqlite_target.sqlite_file.exists()

    again = run_openjules(sqlite_target, "sources", "add", str(repo), "--name", "acme/boba")
    ok(again)
    assert database_lines(again.stderr) == [expected_database(sqlite_target)]
    assert NEW_DATABASE not in again.stderr, "only a database just created is new"


def test_sources_add_without_a_data_dir_names_the_default_database(tmp_path: Path) -> None:
    """The mistake this guards against: a server started with OPENJULES_DATA_DIR, and
    `sources add` run in another shell without it, silently writing elsewhere."""
    home = tmp_path / "home"
    home.mkdir()
    repo = make_repo(tmp_path / "boba")
    result = run_with_defaults(home, "sources", "add", str(repo))
    ok(result)
    default = home / ".openjules" / "openjules.db"
    assert database_lines(result.stderr) == [f"database: sqlite+aiosqlite:///{default}"]
    assert NEW_DATABASE in result.stderr
    assert "set OPENJULES_DATA_DIR or pass --data-dir" in result.stderr
    assert default.exists()


def test_sources_add_on_postgresql_names_it_without_credentials(
    fresh_target: Target, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "boba")
    result = run_openjules(fresh_target, "sources", "add", str(repo))
    ok(result)
    assert database_lines(result.stderr) == [expected_database(fresh_target)]
    if fresh_target.backend == "postgresql":
        assert NEW_DATABASE not in result.stderr, "only a new SQLite file is reported as new"
    else:
        assert NEW_DATABASE in result.stderr


def test_revoking_a_whole_key_explains_ids_and_never_echoes_it(fresh_target: Target) -> None:
    key = create_key(fresh_target, "carl")
    _, key_id, secret = key.split("_", 2)

    result = run_openjules(fresh_target, "keys", "revoke", key)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines
    assert "not its id" in lines[0]
    assert key_id in lines[0], "the id, derived from the key, is said"
    assert "openjules keys list" in lines[0]
    assert key not in output
    assert secret not in output
    assert secret[:8] not in output, "not even part of the secret"

    listing = ok(run_openjules(fresh_target, "keys", "list"))
    assert f"{key_id} " in listing
    assert listing.splitlines()[-1].split()[-1] == "live", "nothing was revoked"

    # A mangled key (no id to derive) is refused the same way, without echoing it.
    mangled = f"ojk_{secret}"
    refused = run_openjules(fresh_target, "keys", "revoke", mangled)
    assert refused.returncode == 1
    assert "keys list" in refused.stderr
    assert secret not in refused.stdout + refused.stderr

    ok(run_openjules(fresh_target, "keys", "revoke", key_id))
    listing = ok(run_openjules(fresh_target, "keys", "list"))
    assert key_id not in listing, "revoked by its id"
