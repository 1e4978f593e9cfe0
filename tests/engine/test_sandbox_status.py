"""The start-up self check says which sandbox runs commands and whether it works here, and
when it does not, what to do about it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from openjules.engine.sandbox import SandboxStatus, describe_sandbox
from openjules.settings import Settings
from tests.engine.agent_support import needs_bubblewrap

NOBODY = 65534


def _path_with(tmp_path: Path, tools: dict[str, str]) -> str:
    """A PATH directory holding only ``tools``: real ones by name, or fake scripts."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for name, script in tools.items():
        target = directory / name
        if script:
            target.write_text(script)
            target.chmod(0o755)
        else:
            real = shutil.which(name)
            assert real is not None, f"{name} is needed by this test"
            target.symlink_to(real)
    return str(directory)


@pytest.fixture
def bwrap_version() -> str:
    """What `bwrap --version` says, asked independently of the code under test."""
    out = subprocess.run(["bwrap", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[-1]


@needs_bubblewrap
async def test_a_working_bubblewrap_is_named_with_its_version(bwrap_version: str) -> None:
    status = await describe_sandbox(Settings(sandbox="bubblewrap", sandbox_uid=NOBODY))
    assert status.ok, status.line
    assert status.line.startswith(f"sandbox: bubblewrap {bwrap_version}, checked by running")
    if os.geteuid() == 0:
        assert "(commands run as uid 65534)" in status.line
    else:
        assert "uid" not in status.line


async def test_unsandboxed_is_ok_with_a_warning() -> None:
    status = await describe_sandbox(Settings(sandbox="unsandboxed"))
    assert status == SandboxStatus(
        ok=True,
        line="sandbox: UNSANDBOXED — agent commands run without isolation (development only)",
    )


async def test_without_bubblewrap_the_line_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _path_with(tmp_path, {"prlimit": "", "setpriv": ""}))
    status = await describe_sandbox(Settings(sandbox="bubblewrap"))
    assert not status.ok
    assert "bubblewrap is not installed" in status.line
    assert "apt-get install bubblewrap" in status.line
    assert "OPENJULES_SANDBOX=unsandboxed" in status.line


async def test_a_bubblewrap_that_cannot_run_reports_its_first_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What bwrap says where unprivileged user namespaces are disabled.
    fake_bwrap = (
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "bubblewrap 9.9.9"; exit 0; fi\n'
        'echo "bwrap: No permissions to create new namespace, likely because the kernel '
        'does not allow non-privileged user namespaces." >&2\n'
        'echo "second line" >&2\n'
        "exit 1\n"
    )
    path = _path_with(tmp_path, {"prlimit": "", "setpriv": "", "bwrap": fake_bwrap})
    monkeypatch.setenv("PATH", path)
    status = await describe_sandbox(Settings(sandbox="bubblewrap"))
    assert not status.ok
    assert "bubblewrap 9.9.9 is installed but cannot run commands here" in status.line
    assert "bwrap: No permissions to create new namespace" in status.line
    assert "second line" not in status.line


async def test_without_prlimit_neither_sandbox_is_ok(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bwrap that is never reached: the check stops at the missing prlimit.
    monkeypatch.setenv("PATH", _path_with(tmp_path, {"bwrap": "#!/bin/sh\nexit 1\n"}))
    for kind in ("bubblewrap", "unsandboxed"):
        status = await describe_sandbox(Settings(sandbox=kind))
        assert not status.ok, kind
        assert "prlimit" in status.line


