"""The example deployment in deploy/: every setting it names exists, and every openjules
command it runs is one the CLI accepts, so renaming either breaks this test instead of a
deployment. No Docker and no network: the files are read, and the CLI asked for --help."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from openjules.settings import ENV_PREFIX, Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SETTING = re.compile(r"\bOPENJULES_[A-Z0-9_]+")
# `openjules` and the command words after it, in a shell script.
SHELL_INVOCATION = re.compile(r"\bopenjules((?: [a-z][a-z-]*)+)")
# The installed CLI next to this interpreter (the venv's), else the same entry point.
_SCRIPT = Path(sys.executable).with_name("openjules")
CLI = (
    [str(_SCRIPT)]
    if _SCRIPT.exists()
    else [sys.executable, "-c", "from openjules.cli.main import main; main()"]
)


def test_every_setting_named_exists() -> None:
    known = {ENV_PREFIX + field.upper() for field in Settings.model_fields}
    named = {
        (str(path.relative_to(DEPLOY)), name)
        for path in sorted(DEPLOY.rglob("*"))
        if path.is_file()
        for name in SETTING.findall(path.read_text())
    }
    assert named, "no OPENJULES_ setting found under deploy/"
    assert sorted(f"{path}: {name}" for path, name in named if name not in known) == []


def test_compose_commands() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    commands: dict[str, list[str]] = {}
    for name, service in services.items():
        command = service.get("command")
        argv = shlex.split(command) if isinstance(command, str) else list(command or [""])
        if argv[0] == "openjules":
            commands[f"compose service {name}"] = argv[1:]
        elif argv[0] in ("sh", "bash"):
            for n, match in enumerate(SHELL_INVOCATION.finditer(argv[-1])):
                commands[f"compose service {name}, #{n + 1}"] = match[1].split()
    assert {"compose service api", "compose service worker"} <= set(commands)
    assert services["api"]["environment"]["OPENJULES_MAX_CONCURRENT_SESSIONS"] == "0"
    assert_accepted(commands)


def test_dockerfile_and_unit_commands() -> None:
    commands: dict[str, list[str]] = {}
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("CMD "):
            argv = json.loads(line.removeprefix("CMD "))
            assert argv[0] == "openjules"
            commands["Dockerfile CMD"] = argv[1:]
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.removeprefix("ExecStart=").lstrip("-@+!:"))
                assert Path(argv[0]).name == "openjules", line
                commands[unit.name] = argv[1:]
    assert set(commands) == {
        "Dockerfile CMD",
        "openjules-api.service",
        "openjules-worker@.service",
    }
    assert_accepted(commands)


def assert_accepted(commands: dict[str, list[str]]) -> None:
    """Each command line, with --help added, is accepted by the CLI: its (sub)command
    exists and takes the options given. The CLI starts once per distinct line, at once."""
    lines = {tuple(args) for args in commands.values()}
    runs = {
        args: subprocess.Popen(
            [*CLI, *args, "--help"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for args in lines
    }
    # Why, in the CLI's last line ("Error: No such command 'workers'.").
    errors = {
        args: ["", *run.communicate(timeout=60)[1].strip().splitlines()][-1]
        for args, run in runs.items()
    }
    refused = [
        f"{where}: openjules {shlex.join(args)}: {errors[tuple(args)]}"
        for where, args in commands.items()
        if runs[tuple(args)].returncode != 0
    ]
    assert refused == []
