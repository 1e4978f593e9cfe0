"""Shared pieces for tests that run the agent end to end: a source repository, the fake
model, a live server with workers, and helpers to wait on states and read activities."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.settings import Settings
from openjules.testing import FakeModel, LiveServer, Reply, ToolCall, provision_user
from openjules.testing import register_source as register
from tests.conftest import git

# Tests that run commands need bubblewrap; `make test` installs it, and CI must not skip.
needs_bubblewrap = pytest.mark.skipif(
    shutil.which("bwrap") is None and not os.environ.get("CI"),
    reason="bubblewrap is not installed (make test installs it)",
)

TERMINAL = {"COMPLETED", "FAILED"}


def call(name: str, **arguments: Any) -> Reply:
    return Reply(tool_calls=[ToolCall(name, arguments)])


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "greeter"
    path.mkdir()
    git("init", "-q", "-b", "main", cwd=path)
    (path / "app.py").write_text("print('hello')\n")
    (path / "AGENTS.md").write_text("Always greet politely.\n")
    git("add", ".", cwd=path)
    git("commit", "-q", "-m", "initial", cwd=path)
    return path


@pytest.fixture
def fake_model() -> Iterator[FakeModel]:
    with FakeModel() as model:
        yield model


@pytest.fixture
def agent_settings_overrides() -> dict[str, Any]:
    """Extra settings for ``agent_server``; modules override this fixture."""
    return {}


@pytest.fixture
def agent_server(
    server_settings: Settings,
    fake_model: FakeModel,
    tmp_path: Path,
    agent_settings_overrides: dict[str, Any],
) -> Iterator[LiveServer]:
    settings = server_settings.model_copy(
        update={
            "data_dir": tmp_path / "data",
            "workers": 2,
            "model_base_url": fake_model.base_url,
            "model_api_key": "sk-fake",
            "model": "fake-model",
            "model_max_retries": 2,
            "model_timeout_seconds": 10.0,
            **agent_settings_overrides,
        }
    )
    with LiveServer(settings) as live:
        yield live


@pytest.fixture
def client(agent_server: LiveServer) -> Iterator[httpx.Client]:
    key = provision_user(agent_server.settings, name=f"agent-{secrets.token_hex(4)}")
    with httpx.Client(base_url=agent_server.api, headers={"X-Goog-Api-Key": key}, timeout=30) as c:
        yield c


@pytest.fixture
def source(agent_server: LiveServer, repo: Path) -> str:
    return register(
        agent_server.settings,
        location=str(repo),
        owner="acme",
        repo=f"greeter-{secrets.token_hex(3)}",
    )


def wait_for_state(
    client: httpx.Client, sid: str, states: set[str], timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        session: dict[str, Any] = client.get(f"/sessions/{sid}").json()
        if session["state"] in states:
            return session
        if time.monotonic() > deadline:
            raise AssertionError(f"session stayed {session['state']}, wanted {states}")
        time.sleep(0.05)


def activities(client: httpx.Client, sid: str) -> list[dict[str, Any]]:
    return list(
        client.get(f"/sessions/{sid}/activities", params={"pageSize": 100})
        .json()
        .get("activities", [])
    )


def kinds(items: list[dict[str, Any]]) -> list[str]:
    keys = (
        "planGenerated",
        "planApproved",
        "progressUpdated",
        "agentMessaged",
        "userMessaged",
        "sessionCompleted",
        "sessionFailed",
    )
    return [next(k for k in keys if k in a) for a in items]


def patch_applies(repo: Path, patch: str, tmp_path: Path) -> Path:
    check = tmp_path / f"check-{secrets.token_hex(3)}"
    git("clone", "-q", "-b", "main", str(repo), str(check), cwd=tmp_path)
    (tmp_path / "final.diff").write_text(patch)
    git("apply", "--check", str(tmp_path / "final.diff"), cwd=check)
    git("apply", str(tmp_path / "final.diff"), cwd=check)
    return check
