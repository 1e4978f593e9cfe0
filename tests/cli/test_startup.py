"""Settings are checked when a command starts: one that can never work stops it with one
line naming the variable (or flag), the value and what is expected, before any database
work; a good start of `serve` and `worker` says which model and sandbox sessions use."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import pytest

from openjules.engine.sandbox import describe_sandbox
from openjules.settings import Settings
from tests.cli.support import (
    ServeProcess,
    Target,
    openjules_executable,
    refusal,
    run_openjules,
    run_with_defaults,
)

SECRET_KEY = "sk-secret-7f3a9c2e11d04b6a"
WORKER_START_TIMEOUT_S = 30.0


@pytest.fixture
def sqlite_target(tmp_path: Path) -> Target:
    home = tmp_path / "home"
    home.mkdir()
    return Target(backend="sqlite", home=home, data_dir=tmp_path / "data")


# (variable, value, what the message must also say)
BAD_ENVIRONMENT = [
    ("OPENJULES_RUNNER", "foo", "'local'"),
    ("OPENJULES_SANDBOX", "foo", "'bubblewrap' or 'unsandboxed'"),
    ("OPENJULES_MODEL_PROVIDER", "foo", "'openai', 'gemini', 'anthropic' or 'ollama'"),
    ("OPENJULES_MODEL_BASE_URL", "127.0.0.1:8081/v1", "http:// or https:// URL with a host"),
    ("OPENJULES_GITHUB_API_URL", "github.example.com/api/v3", "http:// or https:// URL"),
    ("OPENJULES_PUBLIC_BASE_URL", "ftp://jules.example.com", "http:// or https:// URL"),
    ("OPENJULES_PORT", "abc", "a whole number"),
    ("OPENJULES_PORT", "99999", "from 0 to 65535"),
    ("OPENJULES_WORKERS", "x", "a whole number"),
    ("OPENJULES_DATABASE_URL", "mysql://ops:hunter2@db.example.com/jules", "postgresql+psycopg"),
]
COMMANDS = [["serve"], ["worker"], ["keys", "list"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    BAD_ENVIRONMENT,
    ids=[f"{v}={x}" for v, x, _ in BAD_ENVIRONMENT],
)
def test_a_bad_variable_stops_every_command_with_one_line(
    sqlite_target: Target, command: list[str], variable: str, value: str, expected: str
) -> None:
    result = run_openjules(sqlite_target.with_env(**{variable: value}), *command)
    line = refusal(result)
    assert variable in line
    shown = value.replace(":hunter2@", ":***@")
    assert repr(shown) in line, "the bad value, as given"
    assert expected in line
    assert "hunter2" not in result.stderr, "a password is never shown"
    assert not sqlite_target.data_dir.exists(), "refused before any database work"
    assert not (sqlite_target.home / ".openjules").exists()


def test_an_empty_provider_is_no_provider(sqlite_target: Target) -> None:
    result = run_openjules(sqlite_target.with_env(OPENJULES_MODEL_PROVIDER=""), "keys", "list")
    assert result.returncode == 0, result.stderr
    assert "No API keys." in result.stdout


def test_a_provider_in_capitals_is_the_provider(sqlite_target: Target, tmp_path: Path) -> None:
    target = sqlite_target.with_env(OPENJULES_MODEL_PROVIDER="OpenAI", OPENJULES_MODEL_API_KEY="k")
    with ServeProcess(target, log_dir=tmp_path / "logs") as server:
        server.terminate_cleanly()
    assert "model: gpt-4.1 from openai at api.openai.com" in server.stdout().splitlines()


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    ("flags", "must_say"),
    [
        (["--database-url", "mysql://db.example.com/jules"], ["--database-url", "'mysql://"]),
        (["--database-url", "sqlite:///tmp/oj.db"], ["--database-url", "sqlite+aiosqlite:///"]),
        (["--database-url", "not a url"], ["--database-url", "postgresql+psycopg://"]),
        (
            ["--database-url", "sqlite+aiosqlite:///:memory:"],
            ["--database-url", "in-memory", "sqlite+aiosqlite:///PATH"],
        ),
        (["--data-dir", "{file}"], ["--data-dir", "{file}", "is a file, not a directory"]),
        (["--data-dir", "{file}/sub"], ["--data-dir", "{file}/sub", "cannot be created"]),
    ],
    ids=[
        "database-scheme",
        "sync-sqlite",
        "database-junk",
        "sqlite-in-memory",
        "data-dir-file",
        "data-dir-under-file",
    ],
)
def test_a_bad_flag_stops_every_command_with_one_line(
    tmp_path: Path, command: list[str], flags: list[str], must_say: list[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    file = tmp_path / "a-file"
    file.write_text("not a directory\n")
    target = Target(backend="sqlite", home=home, data_dir=tmp_path / "data", via_env=True)
    filled = [f.replace("{file}", str(file)) for f in flags]
    line = refusal(run_openjules(target, *command, *filled))
    for text in must_say:
        assert text.replace("{file}", str(file)) in line
    assert file.read_text() == "not a directory\n"
    assert not target.data_dir.exists(), "refused before any database work"
    assert not (home / ".openjules").exists()


def test_the_default_data_dir_being_a_file_is_named(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".openjules").write_text("")
    result = run_with_defaults(home, "keys", "list")
    line = refusal(result)
    assert str(home / ".openjules") in line
    assert "--data-dir" in line
    assert "OPENJULES_DATA_DIR" in line


def _sandbox_line(sandbox: str = "bubblewrap") -> str:
    """What the start-up self check says on this machine, asked in-process."""
    return asyncio.run(describe_sandbox(Settings(sandbox=sandbox))).line


def test_serve_names_the_model_and_the_sandbox_never_the_key(
    fresh_target: Target, tmp_path: Path
) -> None:
    target = fresh_target.with_env(
        OPENJULES_MODEL_BASE_URL="http://model-user:model-pass@127.0.0.1:9/v1",
        OPENJULES_MODEL_API_KEY=SECRET_KEY,
        OPENJULES_MODEL="fake-model",
    )
    with ServeProcess(target, log_dir=tmp_path / "logs") as server:
        server.terminate_cleanly()
    lines = server.stdout().splitlines()
    model = "model: fake-model from an OpenAI-compatible endpoint at 127.0.0.1:9"
    sandbox = _sandbox_line()
    assert model in lines, server.output()
    assert sandbox in server.stdout() + server.stderr(), server.output()
    listening = next(i for i, line in enumerate(lines) if line.startswith("openjules listening"))
    assert lines.index(model) < listening, "said before the server starts"
    everything = server.stdout() + server.stderr()
    assert SECRET_KEY not in everything
    assert "sk-secret" not in everything
    assert "model-pass" not in everything


def test_serve_without_a_model_says_how_to_configure_one(
    fresh_target: Target, tmp_path: Path
) -> None:
    with ServeProcess(fresh_target, log_dir=tmp_path / "logs") as server:
        server.terminate_cleanly()
    lines = [line for line in server.stdout().splitlines() if line.startswith("no model")]
    assert len(lines) == 1, server.output()
    assert lines[0].startswith("no model configured: sessions will fail until "), lines
    for variable in ("OPENJULES_MODEL_PROVIDER", "OPENJULES_MODEL_API_KEY", "OPENJULES_MODEL"):
        assert variable in lines[0]
    assert "sandbox: " in server.output()


def test_a_partly_configured_model_says_what_is_missing(
    sqlite_target: Target, tmp_path: Path
) -> None:
    target = sqlite_target.with_env(OPENJULES_MODEL_PROVIDER="anthropic")
    with ServeProcess(target, log_dir=tmp_path / "logs") as server:
        server.terminate_cleanly()
    assert (
        "no model configured: sessions will fail until you also set OPENJULES_MODEL_API_KEY"
        in server.stdout().splitlines()
    ), server.output()


def _run_worker(target: Target, log_dir: Path) -> tuple[str, str]:
    """`openjules worker` until it says it runs, then SIGTERM; its stdout and stderr."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / "worker.out", log_dir / "worker.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [openjules_executable(), "worker", *target.args()],
            env=target.env(),
            cwd=target.home,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while "concurrent session" not in out_path.read_text():
            assert proc.poll() is None, f"worker exited {proc.returncode}: {err_path.read_text()}"
            assert time.monotonic() < deadline, "worker did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, err_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=15)
    return out_path.read_text(), err_path.read_text()


def test_worker_names_the_model_and_the_sandbox_never_the_key(
    fresh_target: Target, tmp_path: Path
) -> None:
    target = fresh_target.with_env(
        OPENJULES_MODEL_PROVIDER="openai",
        OPENJULES_MODEL_API_KEY=SECRET_KEY,
        OPENJULES_SANDBOX="unsandboxed",
    )
    out, err = _run_worker(target, tmp_path / "logs")
    lines = out.splitlines()
    assert lines[0] == "model: gpt-4.1 from openai at api.openai.com", out
    assert lines[1] == _sandbox_line(sandbox="unsandboxed"), out
    assert "UNSANDBOXED" in lines[1]
    assert "Traceback" not in err, err
    assert SECRET_KEY not in out + err
    assert "sk-secret" not in out + err
    assert err.splitlines()[0].startswith("database: "), err
