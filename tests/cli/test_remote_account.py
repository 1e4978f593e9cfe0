"""``openjules login`` / ``logout`` and where the ``remote`` commands find the server and
the key, through the real executable against a live server on both backends.

The key is read from stdin (one line) since these runs have no terminal; every run
checks that the key is never printed (tests.cli.remote_support)."""

from __future__ import annotations

import json
import secrets
import stat
from pathlib import Path

import pytest

from openjules.testing import LiveServer
from tests.cli.remote_support import Cli, error_line, run_on_a_terminal
from tests.cli.support import free_port


@pytest.fixture
def cli(server: LiveServer, api_key: str, tmp_path: Path) -> Cli:
    """A user who has not logged in, with no server or key in the environment; their key
    must never be printed."""
    return Cli(home=tmp_path / "home", secrets=(api_key,))


@pytest.fixture
def offline(tmp_path: Path) -> Cli:
    """A user whose commands never reach a server (so they run once, not per backend),
    with a key of the right shape that must never be printed."""
    key = f"ojk_{secrets.token_hex(6)}_{secrets.token_urlsafe(30)}"
    return Cli(home=tmp_path / "home", secrets=(key,))


def test_login_checks_the_key_stores_it_readable_by_the_user_alone_and_remote_uses_it(
    server: LiveServer, api_key: str, cli: Cli
) -> None:
    done = cli.run("login", "--url", server.url, input=f"{api_key}\n")

    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert server.url in done.stderr
    assert str(cli.credentials) in done.stderr
    assert stat.S_IMODE(cli.credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.config_dir.stat().st_mode) == 0o700
    assert json.loads(cli.credentials.read_text()) == {"url": server.url, "api_key": api_key}

    # The remote commands now need nothing in the environment.
    created = cli.json("remote", "new", "--session", "Logged in")
    assert [s["prompt"] for s in cli.json("remote", "list")] == ["Logged in"]
    assert created[0]["url"].startswith(f"{server.url}/session/")


def test_login_at_a_terminal_reads_the_key_at_a_prompt_without_echo(
    server: LiveServer, api_key: str, cli: Cli
) -> None:
    code, shown = run_on_a_terminal(
        cli, "login", "--url", server.url, answer=("API key: ", api_key)
    )

    assert code == 0, shown
    assert "API key: " in shown
    assert api_key not in shown  # the terminal did not echo it
    assert f"Logged in to {server.url}" in shown
    assert json.loads(cli.credentials.read_text()) == {"url": server.url, "api_key": api_key}


def test_a_key_the_server_refuses_is_not_stored(server: LiveServer, api_key: str, cli: Cli) -> None:
    bad = f"ojk_{secrets.token_hex(6)}_{secrets.token_urlsafe(30)}"
    cli = Cli(home=cli.home, secrets=(api_key, bad))

    line = error_line(cli.run("login", "--url", server.url, input=bad + "\n"), 3)
    assert "refused the API key" in line
    assert "Nothing was stored" in line
    assert not cli.credentials.exists()

    # A good login stays as it was when a later one is refused.
    cli.ok("login", "--url", server.url, input=api_key + "\n")
    stored = cli.credentials.read_bytes()
    error_line(cli.run("login", "--url", server.url, input=bad + "\n"), 3)
    assert cli.credentials.read_bytes() == stored


def test_login_to_a_server_that_does_not_answer_stores_nothing(offline: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    line = error_line(offline.run("login", "--url", url, input=offline.secrets[0] + "\n"), 6)

    assert line.startswith(f"Error: Cannot reach the server at {url}")
    assert line.endswith("Nothing was stored.")
    assert not offline.credentials.exists()


def test_login_without_a_key_or_with_a_bad_url_is_a_usage_error(offline: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert "No API key" in error_line(offline.run("login", "--url", url, input=""), 2)
    key = offline.secrets[0] + "\n"
    line = error_line(offline.run("login", "--url", "127.0.0.1:8080", input=key), 2)
    assert "http://" in line
    assert not offline.credentials.exists()


def test_login_takes_the_url_from_the_environment(
    server: LiveServer, api_key: str, cli: Cli
) -> None:
    cli.with_env(OPENJULES_URL=server.url).ok("login", input=api_key + "\n")

    assert json.loads(cli.credentials.read_text())["url"] == server.url


def test_logout_forgets_and_says_whether_there_was_anything(
    server: LiveServer, api_key: str, cli: Cli
) -> None:
    cli.ok("login", "--url", server.url, input=api_key + "\n")

    done = cli.run("logout")
    assert done.returncode == 0
    assert done.stderr.startswith("Logged out")
    assert not cli.credentials.exists()
    again = cli.run("logout")
    assert again.returncode == 0
    assert again.stderr.startswith("Not logged in")

    line = error_line(cli.run("remote", "list"), 3)
    assert "openjules login" in line


def test_the_environment_names_the_server_and_key_without_login(
    server: LiveServer, api_key: str, cli: Cli
) -> None:
    user = Cli(home=cli.home, url=server.url, key=api_key)
    assert user.json("remote", "list") == []
    assert not user.credentials.exists()

    # The environment wins over a stored login.
    user.ok("login", "--url", server.url, input=api_key + "\n")
    other = f"ojk_{secrets.token_hex(6)}_{secrets.token_urlsafe(30)}"
    refused = Cli(home=cli.home, url=server.url, key=other, secrets=(api_key,))
    line = error_line(refused.run("remote", "list"), 3)
    assert "refused the API key" in line


def test_a_server_that_does_not_answer_is_exit_code_6(offline: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    user = Cli(home=offline.home, url=url, key=offline.secrets[0])

    line = error_line(user.run("remote", "list"), 6)

    assert line.startswith(f"Error: Cannot reach the server at {url}")
