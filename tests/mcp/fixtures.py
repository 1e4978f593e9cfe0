"""Module fixtures of the MCP tests whose sessions run (imported by the package's
conftest): the module's user and a repository registered as a source on ``agent``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from openjules.testing import LiveServer
from tests.agent_kit import local_source, new_key
from tests.support import make_repo

GREETER_FILES = {"app.py": "print('hello')\n", "README.md": "# greeter\n"}


@dataclass(frozen=True)
class Greeter:
    repo: Path
    source: str  # sources/github/acme/greeter


@pytest.fixture(scope="module")
def user_key(agent: LiveServer) -> str:
    """The key of the module's user, whom the MCP server acts for."""
    return new_key(agent, "mcp")


@pytest.fixture(scope="module")
def greeter(agent: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Greeter:
    """A repository (app.py, README.md on main) registered as acme/greeter."""
    repo = make_repo(tmp_path_factory.mktemp("greeter"), GREETER_FILES)
    return Greeter(repo=repo, source=local_source(agent, repo, "greeter"))
