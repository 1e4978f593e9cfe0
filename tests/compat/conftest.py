"""Fixtures for driving the real third-party Jules clients against a live openjules server.

The TypeScript side runs ``node tests/compat/node/<script>.mjs`` with the pinned
``@google/jules-sdk`` (installed by ``npm ci`` in tests/compat/node). Each script prints one
JSON object of observations; :func:`NodeRunner.run` returns it parsed. Without node or
node_modules the TS tests are skipped, except under CI, where they fail.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from openjules.testing import LiveServer, register_source
from tests.support import OWNER, REPO

NODE_DIR = Path(__file__).parent / "node"
SDK_ENTRY = NODE_DIR / "node_modules" / "@google" / "jules-sdk" / "dist" / "index.mjs"
NODE_TIMEOUT_S = 60

# Every compat test registers the root conftest's git_repo (branches main (default), develop,
# feature/x) as tests.support.SOURCE_NAME, and once more as OWNER/OTHER_REPO.
OTHER_REPO = "tools"
MISSING_REPO = "acme/no-such-repo"


class NodeRunner:
    """Runs a compat script with node; JULES_HOME and HOME point at a scratch directory."""

    def __init__(self, node: str, home: Path) -> None:
        self.node = node
        self.home = home

    def run(self, script: str, *, server: LiveServer, api_key: str, **env: str) -> Any:
        """Run ``script`` to the end; returns the JSON object of its last stdout line."""
        return self.finish(self.start(script, server=server, api_key=api_key, **env))

    def start(
        self, script: str, *, server: LiveServer, api_key: str, **env: str
    ) -> subprocess.Popen[str]:
        full_env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.home),
            "JULES_HOME": str(self.home),
            "BASE_URL": server.api,
            "API_KEY": api_key,
            **env,
        }
        return subprocess.Popen(
            [self.node, str(NODE_DIR / script)],
            cwd=self.home,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def read_line(self, process: subprocess.Popen[str], *, timeout: float) -> Any:
        """The next stdout line of a running script, parsed as JSON.

        Reads the pipe byte by byte, below the text wrapper, so nothing after the line is
        buffered away from :meth:`finish` (``communicate`` reads the raw pipe too).
        """
        assert process.stdout is not None
        fd = process.stdout.fileno()
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(fd, 1) if ready else b""
            if not chunk:
                _, stderr = self.kill(process)
                pytest.fail(f"node gave no line in {timeout}s (got {line!r}):\n{stderr}")
            line += chunk
        return json.loads(line)

    def finish(self, process: subprocess.Popen[str]) -> Any:
        try:
            stdout, stderr = process.communicate(timeout=NODE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _, stderr = self.kill(process)
            pytest.fail(f"node did not finish in {NODE_TIMEOUT_S}s:\n{stderr}")
        if process.returncode != 0:
            pytest.fail(f"node exited {process.returncode}:\n{stderr}")
        lines = stdout.strip().splitlines()
        if not lines:
            pytest.fail(f"node printed nothing; stderr:\n{stderr}")
        return json.loads(lines[-1])

    @staticmethod
    def kill(process: subprocess.Popen[str]) -> tuple[str, str]:
        process.kill()
        return process.communicate()


@pytest.fixture(scope="session")
def node_runner(tmp_path_factory: pytest.TempPathFactory) -> NodeRunner:
    node = shutil.which("node")
    problem = None
    if node is None:
        problem = "node is not installed (needed for the @google/jules-sdk compat tests)"
    elif not SDK_ENTRY.is_file():
        problem = f"{SDK_ENTRY} is missing; run `npm ci` in {NODE_DIR} (or `make test`)"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"required in CI: {problem}")
        pytest.skip(problem)
    assert node is not None
    return NodeRunner(node, tmp_path_factory.mktemp("jules-home"))


@pytest.fixture(scope="module")
def source(server: LiveServer, git_repo: Path) -> str:
    """``sources/github/acme/demo`` (and a second source, ``acme/tools``) on this server."""
    register_source(server.settings, location=str(git_repo), owner=OWNER, repo=OTHER_REPO)
    return register_source(server.settings, location=str(git_repo), owner=OWNER, repo=REPO)
