"""``openjules remote --help`` lists every command and the exit codes, and each command's
``--help`` shows an example (through the real executable; no server needed). Also which
OWNER/REPO ``--repo .`` reads from each form of an ``origin`` URL."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from openjules.cli.remote_checkout import repository_of_url
from openjules.cli.remote_errors import EXIT_CODE_MEANINGS, ExitCode
from tests.cli.remote_support import Cli, error_line

REMOTE_COMMANDS = [
    "new",
    "list",
    "watch",
    "approve",
    "message",
    "pause",
    "resume",
    "cancel",
    "pull",
]


def test_remote_help_lists_every_command_and_the_exit_codes(tmp_path: Path) -> None:
    cli = Cli(home=tmp_path)
    commands = [["remote"], ["login"], ["logout"], *(["remote", c] for c in REMOTE_COMMANDS)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(lambda c: (" ".join(c), cli.run(*c, "--help")), commands))
    helps = dict(runs)

    listed = helps["remote"].stdout.split("Commands:\n", 1)[1]
    assert [line.split()[0] for line in listed.splitlines() if line.strip()] == REMOTE_COMMANDS
    codes = helps["remote"].stdout.split("Exit codes:\n", 1)[1]
    for code in ExitCode:
        meaning = re.escape(EXIT_CODE_MEANINGS[code][:30])
        assert re.search(rf"^\s+{int(code)}\s+{meaning}", codes, re.MULTILINE), codes
    for name, done in helps.items():
        assert done.returncode == 0, done.stderr
        examples = done.stdout.split("Example", 1)
        assert len(examples) == 2, f"no example in `openjules {name} --help`:\n{done.stdout}"
        assert "openjules " in examples[1]


def test_usage_errors_exit_2_before_anything_is_asked_of_the_server(tmp_path: Path) -> None:
    """(No server runs: each is refused before the command would reach one.)"""
    cli = Cli(home=tmp_path, url="http://127.0.0.1:9", key="ojk_000000000000_unused")
    sid = "1234567890123456789"
    with ThreadPoolExecutor(max_workers=4) as pool:
        branch, both, state, parallel, empty = pool.map(
            lambda args: cli.run("remote", *args),
            [
                ["new", "--session", "x", "--branch", "main"],
                ["list", "--repo", "--state", "QUEUED"],
                ["list", "--state", "DONE"],
                ["new", "--session", "x", "--parallel", "6"],
                ["message", sid, " "],
            ],
        )
    assert "--branch needs --repo" in error_line(branch, 2)
    assert "--state and --archived apply to sessions" in error_line(both, 2)
    assert "'DONE' is not one of" in state.stderr
    assert state.returncode == 2
    assert "6 is not in the range 1<=x<=5" in parallel.stderr
    assert parallel.returncode == 2
    assert "The message is empty" in error_line(empty, 2)


@pytest.mark.parametrize(
    ("url", "repository"),
    [
        ("https://github.com/acme/api.git", "acme/api"),
        ("https://github.com/acme/api", "acme/api"),
        ("https://github.com/acme/api/", "acme/api"),
        ("https://token@github.example.com:8443/acme/api.git", "acme/api"),
        ("git@github.com:acme/api.git", "acme/api"),
        ("github.com:acme/api", "acme/api"),
        ("ssh://git@github.com:22/acme/api.git", "acme/api"),
        ("git://example.com/mirrors/acme/api.git", "acme/api"),
        ("file:///srv/git/acme/api.git", "acme/api"),
        ("/srv/git/acme/api", "acme/api"),
        ("../acme/api.git", "acme/api"),
        ("https://github.com/api.git", None),
        ("api", None),
    ],
)
def test_repo_dot_reads_owner_and_repo_from_any_origin_url(
    url: str, repository: str | None
) -> None:
    assert repository_of_url(url) == repository
