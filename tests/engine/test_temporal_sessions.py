"""What an operator sees in Temporal: one workflow per session that has work, named after
the session; none left running for a session that waits for a person."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.testing import FakeModel, LiveServer
from tests.conftest import TEMPORAL, backends
from tests.engine.agent_support import call, needs_bubblewrap, start_session
from tests.support import TERMINAL, wait_for_state

pytestmark = needs_bubblewrap
backend = backends(TEMPORAL)

TEMPORAL_CLI = str(Path(sys.executable).with_name("temporal"))


@pytest.fixture
def fake_model() -> Iterator[FakeModel]:
    """A model that takes a second per turn: long enough to look at a running session."""
    with FakeModel(latency=1.0) as model:
        yield model


def describe(server: LiveServer, session_id: str) -> dict[str, Any]:
    """`temporal workflow describe` of the session's workflow, as an operator runs it."""
    shown = subprocess.run(
        [
            TEMPORAL_CLI,
            "workflow",
            "describe",
            "--address",
            server.settings.temporal_address,
            "--workflow-id",
            f"openjules-session-{session_id}",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    info: dict[str, Any] = json.loads(shown.stdout)["workflowExecutionInfo"]
    return info


def shown_as(server: LiveServer, session_id: str, status: str, *, within: float = 15) -> None:
    """Wait until the session's workflow is shown with ``status`` (a run ends, and a new
    one starts, a moment after the session's state changed)."""
    deadline = time.monotonic() + within
    while (shown := describe(server, session_id)["status"]) != status:
        assert time.monotonic() < deadline, f"{shown} after {within} s, not {status}"
        time.sleep(0.1)


def test_a_sessions_workflow_runs_while_it_works_and_ends_while_it_waits(
    agent_server: LiveServer, client: httpx.Client, fake_model: FakeModel, source: str
) -> None:
    fake_model.push(
        call("propose_plan", steps=[{"title": "Greet the world"}]),
        call("write_file", path="hello.txt", content="hello\n"),
        call("complete_step", title="Greeted"),
        call("finish", summary="Greeted.", commit_message="Greet"),
    )
    sid = start_session(
        client,
        prompt="Greet the world",
        source=source,
        until="AWAITING_PLAN_APPROVAL",
        require_plan_approval=True,
    )
    assert describe(agent_server, sid)["type"]["name"] == "openjules.session"
    shown_as(agent_server, sid, "WORKFLOW_EXECUTION_STATUS_COMPLETED")  # waiting: holds nothing

    assert client.post(f"/sessions/{sid}:approvePlan").json() == {}
    # Working: three turns of a second each are to come.
    shown_as(agent_server, sid, "WORKFLOW_EXECUTION_STATUS_RUNNING", within=2.5)
    assert client.get(f"/sessions/{sid}").json()["state"] == "IN_PROGRESS"

    assert wait_for_state(client, sid, TERMINAL)["state"] == "COMPLETED"
    shown_as(agent_server, sid, "WORKFLOW_EXECUTION_STATUS_COMPLETED")
