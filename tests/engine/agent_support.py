"""Shared pieces for tests that run the agent end to end: a source repository, the fake
model, a live server with workers, and the bubblewrap marker. Waiting on states and reading
activities is in tests/support.py."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.settings import Settings
from openjules.store import tables
from openjules.store.oneshot import run_write
from openjules.testing import FakeModel, LiveServer, Reply, ToolCall, provision_user
from openjules.testing import register_source as register
from tests.support import TERMINAL, api_client, git, make_repo, wait_for_state

# Tests that run commands need bubblewrap; `make test` installs it, and CI must not skip.
needs_bubblewrap = pytest.mark.skipif(
    shutil.which("bwrap") is None and not os.environ.get("CI"),
    reason="bubblewrap is not installed (make test installs it)",
)


def call(name: str, **arguments: Any) -> Reply:
    return Reply(tool_calls=[ToolCall(name, arguments)])


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The greeter repository (branch main): app.py and an AGENTS.md."""
    return make_repo(
        tmp_path / "greeter",
        {"app.py": "print('hello')\n", "AGENTS.md": "Always greet politely.\n"},
    )


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
    with api_client(agent_server.api, key) as c:
        yield c


@pytest.fixture
def source(agent_server: LiveServer, repo: Path) -> str:
    return register(
        agent_server.settings,
        location=str(repo),
        owner="acme",
        repo=f"greeter-{secrets.token_hex(3)}",
    )


def patch_applies(repo: Path, patch: str, tmp_path: Path) -> Path:
    check = tmp_path / f"check-{secrets.token_hex(3)}"
    git("clone", "-q", "-b", "main", str(repo), str(check), cwd=tmp_path)
    (tmp_path / "final.diff").write_text(patch)
    git("apply", "--check", str(tmp_path / "final.diff"), cwd=check)
    git("apply", str(tmp_path / "final.diff"), cwd=check)
    return check


def start_session(
    client: httpx.Client,
    *,
    prompt: str,
    source: str,
    until: str,
    require_plan_approval: bool = False,
    branch: str | None = None,
    timeout: float = 60,
) -> str:
    """Create a session on ``source`` and wait until it is in state ``until`` (failing if it
    ends otherwise); its id."""
    context: dict[str, Any] = {"source": source}
    if branch is not None:
        context["githubRepoContext"] = {"startingBranch": branch}
    body: dict[str, Any] = {"prompt": prompt, "sourceContext": context}
    if require_plan_approval:
        body["requirePlanApproval"] = True
    sid: str = client.post("/sessions", json=body).json()["id"]
    shown = wait_for_state(client, sid, {until} | TERMINAL, timeout=timeout)
    assert shown["state"] == until, shown
    return sid


def job_state(server: LiveServer, session_id: str) -> str:
    """The state of the session's job ("" when it has none): "done" once its run ended and
    the job was released, housekeeping included."""

    async def action(conn: Any) -> str:
        row = (
            await conn.execute(tables.jobs.select().where(tables.jobs.c.session_id == session_id))
        ).first()
        return str(row.state) if row is not None else ""

    return run_write(server.settings.resolved_database_url(), action)
