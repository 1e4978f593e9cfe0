"""Housekeeping after a run (removing the workspace, checking out the source's spare tree
for its next session) runs to its end, even when a lease renewal finds the session no
longer runnable meanwhile and stops the run: the job is released only after the spare is
ready, so the next session adopts it instead of checking out from scratch."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.engine.workspace import mirror_path, spares_path
from openjules.testing import FakeModel, LiveServer, register_source
from tests.engine.agent_support import call, job_state, needs_bubblewrap
from tests.support import TERMINAL, make_repo, wait_for_state

pytestmark = needs_bubblewrap
FILES = 4000  # enough that checking out the spare outlasts several lease renewals


@pytest.fixture
def agent_settings_overrides() -> dict[str, Any]:
    # Renewals every 0.1 s: one lands while the spare tree is being checked out.
    return {"workers": 1, "lease_seconds": 0.3}


def test_the_spare_tree_is_ready_when_the_job_is_released(
    agent_server: LiveServer, client: httpx.Client, fake_model: FakeModel, tmp_path: Path
) -> None:
    repo = make_repo(
        tmp_path / "big", {f"src/m{i // 100}/f{i}.py": f"x = {i}\n" for i in range(FILES)}
    )
    name = f"big-{secrets.token_hex(3)}"
    source = register_source(agent_server.settings, location=str(repo), owner="acme", repo=name)
    spares = spares_path(mirror_path(agent_server.settings.data_dir, owner="acme", repo=name))
    fake_model.push(
        call("propose_plan", steps=[{"title": "Nothing"}]),
        call("finish", summary="Nothing to do.", commit_message="Nothing"),
    )
    sid = client.post("/sessions", json={"prompt": "Nothing", "sourceContext": {
        "source": source, "githubRepoContext": {"startingBranch": "main"}}}).json()["id"]
    assert wait_for_state(client, sid, set(TERMINAL))["state"] == "COMPLETED"

    deadline = time.monotonic() + 60
    while job_state(agent_server, sid) != "done":
        assert time.monotonic() < deadline, "the job was never released"
        time.sleep(0.02)
    # Released: the housekeeping is over, whatever the renewals said meanwhile.
    assert list(spares.glob("building-*")) == []
    assert len(list(spares.glob("ready-*"))) == 1
    assert not (agent_server.settings.data_dir / "workspaces" / sid).exists()
