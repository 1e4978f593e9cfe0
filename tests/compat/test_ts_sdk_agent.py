"""The official TypeScript SDK, @google/jules-sdk 0.2.0, driving sessions the real agent runs.

The server here has workers; its agent talks to the scripted fake model over HTTP and works
in a real git checkout inside bubblewrap (the fixtures of tests/engine/agent_support.py).
The model's whole script is pushed before node starts, so the SDK sees a session run from
start to finish without the test stepping in: ``jules.run()`` in automated mode, and an
interactive ``jules.session()`` that waits for the plan, approves it and reads the result.
Each node script prints one JSON object of observations; the assertions are here.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.testing import FakeModel, LiveServer, Reply, provision_user
from tests.compat.conftest import NodeRunner
from tests.conftest import git, make_client
from tests.engine.agent_support import (
    agent_server,
    call,
    fake_model,
    needs_bubblewrap,
    patch_applies,
    repo,
    source,
)

# The agent fixtures are used by name; `source` here shadows the compat conftest's.
__all__ = ["agent_server", "fake_model", "repo", "source"]

pytestmark = [
    pytest.mark.compat,
    needs_bubblewrap,
]

PLAN_STEPS = [
    {"title": "Greet the world", "description": "Edit the greeting in app.py."},
    {"title": "Check it", "description": "Run the app."},
]
COMMIT_MESSAGE = "Greet the world\n\nThe greeting now names its audience."
# Everything the model answers, in order: six requests, the last one finishes.
SCRIPT: list[Reply] = [
    call("read_file", path="app.py"),
    call("propose_plan", steps=PLAN_STEPS),
    call("edit_file", path="app.py", old_text="'hello'", new_text="'hello, world'"),
    call("shell", command="python3 app.py"),
    call("complete_step", title="Greeted the world", description="Changed the greeting."),
    call("finish", summary="The app greets the world.", commit_message=COMMIT_MESSAGE),
]
EXPECTED = [
    "planGenerated", "planApproved", "progressUpdated", "progressUpdated", "sessionCompleted",
]
QUIET_MS = "300"
DEADLINE_MS = "30000"


@pytest.fixture
def agent_key(agent_server: LiveServer) -> str:
    return provision_user(agent_server.settings, name=f"sdk-agent-{secrets.token_hex(4)}")


@pytest.fixture
def wire(agent_server: LiveServer, agent_key: str) -> Iterator[httpx.Client]:
    """The same user's view over plain HTTP, to compare with what the SDK reported."""
    with make_client(agent_server, agent_key) as c:
        yield c


def _types(activities: list[dict[str, Any]]) -> list[str]:
    return [a["type"] for a in activities]


def _run_script(
    node_runner: NodeRunner, script: str, server: LiveServer, api_key: str, source: str
) -> Any:
    return node_runner.run(
        script,
        server=server,
        api_key=api_key,
        REPO=source.removeprefix("sources/github/"),
        BRANCH="main",
        QUIET_MS=QUIET_MS,
        DEADLINE_MS=DEADLINE_MS,
    )


def _check_activities(
    activities: list[dict[str, Any]], *, approver: str, patch: str, source: str
) -> None:
    """The agent's activities as the SDK mapped them, with their artifacts."""
    assert _types(activities) == EXPECTED
    assert len({a["id"] for a in activities}) == len(EXPECTED), "each activity once"
    assert [a["createTime"] for a in activities] == sorted(a["createTime"] for a in activities)
    generated, approved, ran, stepped, completed = activities

    assert generated["originator"] == "agent"
    plan = generated["plan"]
    assert [{"title": s["title"], "description": s["description"]} for s in plan["steps"]] == (
        PLAN_STEPS
    )
    assert approved["planId"] == plan["id"]
    assert approved["originator"] == approver

    assert ran["title"] == "Ran bash command"
    assert "python3 app.py" in ran["description"]
    assert "hello, world" in ran["description"]
    assert ran["artifacts"] == []

    assert stepped["title"] == "Greeted the world"
    assert stepped["description"] == "Changed the greeting."
    [step_change] = stepped["artifacts"]
    assert step_change["type"] == "changeSet"
    assert step_change["source"] == source
    assert "+print('hello, world')" in step_change["gitPatch"]["unidiffPatch"]

    [final_change] = completed["artifacts"]
    assert final_change["type"] == "changeSet"
    assert final_change["source"] == source
    assert final_change["gitPatch"]["unidiffPatch"] == patch
    assert final_change["gitPatch"]["suggestedCommitMessage"] == COMMIT_MESSAGE


def _check_outcome(
    outcome: dict[str, Any], *, sid: str, repo: Path, tmp_path: Path
) -> str:
    """result(): completed, no PR, and changeSet()/generatedFiles() describe the patch."""
    assert outcome["state"] == "completed"
    assert outcome["sessionId"] == sid
    assert outcome["title"] == "Make the app greet the world"
    assert outcome["pullRequest"] is None
    change = outcome["changeSet"]
    assert change["source"] == "session"  # what the SDK's outcome.changeSet() always says
    git_patch = change["gitPatch"]
    patch: str = git_patch["unidiffPatch"]
    assert "-print('hello')\n+print('hello, world')" in patch
    assert git_patch["baseCommitId"] == git("rev-parse", "main", cwd=repo).strip()
    assert git_patch["suggestedCommitMessage"] == COMMIT_MESSAGE
    assert change["summary"] == {"totalFiles": 1, "created": 0, "modified": 1, "deleted": 0}
    assert change["files"] == [
        {"path": "app.py", "changeType": "modified", "additions": 1, "deletions": 1}
    ]
    assert outcome["generatedFiles"] == [
        {"path": "app.py", "changeType": "modified", "content": "print('hello, world')",
         "additions": 1, "deletions": 1}
    ]
    # The patch the SDK handed over applies to the source repository's main.
    checked = patch_applies(repo, patch, tmp_path)
    assert (checked / "app.py").read_text() == "print('hello, world')\n"
    return patch


def test_run_completes_with_the_agents_patch(
    node_runner: NodeRunner,
    agent_server: LiveServer,
    agent_key: str,
    wire: httpx.Client,
    fake_model: FakeModel,
    source: str,
    repo: Path,
    tmp_path: Path,
) -> None:
    fake_model.push(*SCRIPT)
    seen = _run_script(node_runner, "agent_run.mjs", agent_server, agent_key, source)
    sid = seen["id"]

    patch = _check_outcome(seen["outcome"], sid=sid, repo=repo, tmp_path=tmp_path)
    for key in ("runStream", "sessionStream"):
        followed = seen[key]
        assert followed["error"] is None, key
        assert followed["timedOut"] is False, key
        _check_activities(followed["activities"], approver="system", patch=patch, source=source)
    assert seen["runStream"]["activities"] == seen["sessionStream"]["activities"]

    info = seen["info"]
    assert info["state"] == "completed"
    [output] = info["outputs"]
    assert output["type"] == "changeSet"
    assert output["changeSet"]["source"] == source
    assert output["changeSet"]["gitPatch"] == seen["outcome"]["changeSet"]["gitPatch"]

    session = wire.get(f"/sessions/{sid}").json()
    assert session["state"] == "COMPLETED"
    assert session["outputs"] == [{"changeSet": output["changeSet"]}]
    assert fake_model.remaining == 0
    assert len(fake_model.requests) == len(SCRIPT)


def test_interactive_session_waits_for_approval_then_completes(
    node_runner: NodeRunner,
    agent_server: LiveServer,
    agent_key: str,
    wire: httpx.Client,
    fake_model: FakeModel,
    source: str,
    repo: Path,
    tmp_path: Path,
) -> None:
    fake_model.push(*SCRIPT)
    seen = _run_script(node_runner, "agent_interactive.mjs", agent_server, agent_key, source)
    sid = seen["id"]

    # waitFor('awaitingPlanApproval') returned with the plan there and nothing after it.
    assert seen["waiting"] == "awaitingPlanApproval"
    [plan_activity] = seen["historyBefore"]
    assert plan_activity["type"] == "planGenerated"
    assert [s["title"] for s in plan_activity["plan"]["steps"]] == [
        s["title"] for s in PLAN_STEPS
    ]
    assert [s.get("index", 0) for s in plan_activity["plan"]["steps"]] == [0, 1]
    # approve() moved the session on at once.
    assert seen["afterApprove"] == "inProgress"

    patch = _check_outcome(seen["outcome"], sid=sid, repo=repo, tmp_path=tmp_path)
    _check_activities(seen["historyAfter"], approver="user", patch=patch, source=source)
    assert seen["historyAfter"][0] == plan_activity
    followed = seen["stream"]
    assert followed["error"] is None
    assert followed["timedOut"] is False
    assert followed["activities"] == seen["historyAfter"]

    assert seen["info"]["state"] == "completed"
    [output] = seen["info"]["outputs"]
    assert output["changeSet"]["gitPatch"]["unidiffPatch"] == patch
    session = wire.get(f"/sessions/{sid}").json()
    assert session["state"] == "COMPLETED"
    assert session["sourceContext"] == {
        "source": source, "githubRepoContext": {"startingBranch": "main"}}
    assert fake_model.remaining == 0
