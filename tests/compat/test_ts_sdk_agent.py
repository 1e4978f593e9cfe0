"""The official TypeScript SDK, @google/jules-sdk 0.2.0, driving sessions the real agent runs.

The server here has workers; its agent talks to the scripted fake model over HTTP and works
in a real git checkout inside bubblewrap (the fixtures of tests/engine/agent_support.py).
The model's whole script is pushed before node starts, so the SDK sees a session run from
start to finish without the test stepping in: ``jules.run()`` in automated mode, and an
interactive ``jules.session()`` that waits for the plan, approves it and reads the result.
With the fake GitHub (real HTTP, real bare repositories): ``jules.sources()`` lists the
repositories registered from it, and ``jules.run({autoPr: true})`` ends with a pull request
there. A repoless ``jules.run()`` hands back its files through ``outcome.generatedFiles()``.
Each node script prints one JSON object of observations; the assertions are here.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.testing import (
    FakeGitHub,
    FakeModel,
    LiveServer,
    Reply,
    provision_user,
)
from tests.cli.support import Target, ok, run_openjules
from tests.compat.conftest import MISSING_REPO, NodeRunner
from tests.conftest import backends_with_temporal
from tests.engine.agent_support import (
    agent_server,
    call,
    fake_model,
    needs_bubblewrap,
    patch_applies,
    repo,
    source,
)
from tests.support import api_client, git, make_repo

# The agent fixtures are used by name; `source` here shadows the compat conftest's.
__all__ = ["agent_server", "fake_model", "repo", "source"]

pytestmark = [
    pytest.mark.compat,
    needs_bubblewrap,
]
backend = backends_with_temporal()

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
    with api_client(agent_server.api, agent_key) as c:
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


# --- GitHub: sources listed from it, and a pull request opened on it -------------------

# What the fake GitHub holds besides the `repo` fixture (acme/greeter, branch main): each
# repository's default branch, its other branches, and whether it is private.
MORE_GITHUB_REPOS = {
    "acme/lib": ("main", ["develop", "release/1.0"], False),
    "octo-org/tools": ("trunk", ["feature/fast"], True),
}
# What jules.sources() must show for each registered repository.
EXPECTED_SOURCES = {
    "acme/greeter": {"isPrivate": False, "defaultBranch": "main", "branches": ["main"]},
    "acme/lib": {
        "isPrivate": False, "defaultBranch": "main",
        "branches": ["develop", "main", "release/1.0"],
    },
    "octo-org/tools": {
        "isPrivate": True, "defaultBranch": "trunk", "branches": ["feature/fast", "trunk"],
    },
}


@pytest.fixture
def github(tmp_path: Path, repo: Path) -> Iterator[FakeGitHub]:
    """acme/greeter (the `repo` fixture) and two more; one item per page, so registering
    reads every repository's branches over several pages."""
    with FakeGitHub(tmp_path / "github", max_per_page=1) as fake:
        fake.add_repo("acme", "greeter", from_path=repo)
        for full_name, (default, others, private) in MORE_GITHUB_REPOS.items():
            owner, name = full_name.split("/")
            work = make_repo(tmp_path / "more" / full_name, branch=default, branches=others)
            fake.add_repo(owner, name, from_path=work, private=private)
        yield fake


@pytest.fixture
def agent_settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A test that uses the fake GitHub gets a server configured with it; the others run
    as before, with no GitHub."""
    if "github" not in request.fixturenames:
        return {}
    fake: FakeGitHub = request.getfixturevalue("github")
    return {"github_api_url": fake.api_url, "github_token": fake.token}


@pytest.fixture
def github_sources(
    agent_server: LiveServer, github: FakeGitHub, tmp_path: Path
) -> dict[str, str]:
    """Every repository of the fake GitHub registered by the real `openjules sources sync
    --github` against the server's database (one repository per page: three pages)."""
    settings = agent_server.settings
    home = tmp_path / "cli-home"
    home.mkdir()
    target = Target(
        backend="", home=home, data_dir=settings.data_dir, database_url=settings.database_url
    ).with_env(OPENJULES_GITHUB_API_URL=github.api_url, OPENJULES_GITHUB_TOKEN=github.token)
    out = ok(run_openjules(target, "sources", "sync", "--github"))
    assert f"Synced {len(EXPECTED_SOURCES)} repositories from GitHub (0 skipped)." in out, out
    pages = sorted(r.query for r in github.requests if r.path == "/api/v3/user/repos")
    assert len(pages) == 3, pages
    # The branches really were read page by page (acme/lib has three).
    assert any(
        r.path.endswith("/repos/acme/lib/branches") and "page=3" in r.query
        for r in github.requests
    )
    return {full_name: f"sources/github/{full_name}" for full_name in EXPECTED_SOURCES}


def test_sources_lists_each_registered_github_repository_once(
    node_runner: NodeRunner,
    agent_server: LiveServer,
    agent_key: str,
    github_sources: dict[str, str],
) -> None:
    seen = node_runner.run(
        "sources.mjs",
        server=agent_server,
        api_key=agent_key,
        REPO="octo-org/tools",
        MISSING_REPO=MISSING_REPO,
    )
    names = [s["name"] for s in seen["listed"]]
    assert len(names) == len(set(names)), names
    for full_name, expected in EXPECTED_SOURCES.items():
        owner, name = full_name.split("/")
        assert github_sources[full_name] == f"sources/github/{full_name}"
        [listed] = [s for s in seen["listed"] if s["name"] == f"sources/github/{full_name}"]
        assert listed["id"] == f"github/{full_name}"
        assert listed["type"] == "githubRepo"
        repo_view = listed["githubRepo"]
        assert repo_view["owner"] == owner
        assert repo_view["repo"] == name
        # isPrivate: false is omitted on the wire (proto3 JSON), so it reads as undefined.
        assert repo_view.get("isPrivate", False) is expected["isPrivate"], full_name
        assert repo_view["defaultBranch"] == expected["defaultBranch"], full_name
        assert sorted(repo_view["branches"]) == expected["branches"], full_name

    [filtered] = seen["filtered"]
    assert filtered == seen["got"]
    assert seen["got"]["name"] == "sources/github/octo-org/tools"
    assert seen["got"]["githubRepo"]["isPrivate"] is True
    assert seen["missingIsUndefined"] is True


def test_run_with_auto_pr_opens_a_pull_request_on_github(
    node_runner: NodeRunner,
    agent_server: LiveServer,
    agent_key: str,
    wire: httpx.Client,
    fake_model: FakeModel,
    github: FakeGitHub,
    github_sources: dict[str, str],
    repo: Path,
) -> None:
    fake_model.push(*SCRIPT)
    seen = node_runner.run(
        "agent_autopr.mjs",
        server=agent_server,
        api_key=agent_key,
        REPO="acme/greeter",
        BRANCH="main",
        QUIET_MS=QUIET_MS,
        DEADLINE_MS=DEADLINE_MS,
    )
    sid = seen["id"]
    source_name = github_sources["acme/greeter"]

    # The stream shows the run as usual, and nothing about delivery (it went well).
    followed = seen["stream"]
    assert followed["error"] is None
    assert followed["timedOut"] is False
    assert _types(followed["activities"]) == EXPECTED

    outcome = seen["outcome"]
    assert outcome["state"] == "completed"
    assert outcome["sessionId"] == sid
    pull = outcome["pullRequest"]
    assert pull is not None, "run.result() has no pull request"
    head = pull["headRef"]
    assert head.endswith(f"-{sid}"), head
    assert pull == {
        "url": f"{github.url}/acme/greeter/pull/1",
        "title": COMMIT_MESSAGE.splitlines()[0],
        "description": pull["description"],
        "baseRef": "main",
        "headRef": head,
    }
    assert "The greeting now names its audience." in pull["description"]
    patch = outcome["changeSet"]["gitPatch"]["unidiffPatch"]
    assert "-print('hello')\n+print('hello, world')" in patch
    assert outcome["generatedFiles"] == [
        {"path": "app.py", "changeType": "modified", "content": "print('hello, world')",
         "additions": 1, "deletions": 1}
    ]

    # The session says where its branch is (automationMode is input only: never echoed).
    info = seen["info"]
    assert info["state"] == "completed"
    assert info["sourceContext"]["source"] == source_name
    assert info["sourceContext"]["githubRepoContext"] == {"startingBranch": "main"}
    assert info["sourceContext"]["workingBranch"] == head
    by_type = {o["type"]: o for o in info["outputs"]}
    assert len(by_type) == len(info["outputs"]) == 2
    assert by_type["pullRequest"]["pullRequest"] == pull
    assert by_type["changeSet"]["changeSet"]["source"] == source_name
    assert by_type["changeSet"]["changeSet"]["gitPatch"]["unidiffPatch"] == patch
    session = wire.get(f"/sessions/{sid}").json()
    assert session["state"] == "COMPLETED"
    assert {"pullRequest": pull} in session["outputs"]

    # On GitHub: exactly one pull request, from a pushed branch holding the agent's commit
    # on top of main.
    [recorded] = github.pulls()
    assert (recorded.owner, recorded.repo, recorded.number) == ("acme", "greeter", 1)
    assert (recorded.head, recorded.base, recorded.state) == (head, "main", "open")
    assert recorded.title == "Greet the world"
    assert recorded.html_url == pull["url"]
    bare = github.repo_path("acme", "greeter")
    tip = git("rev-parse", "--verify", f"refs/heads/{head}", cwd=bare).strip()
    assert recorded.head_sha == tip
    assert git("log", "-1", "--format=%B", tip, cwd=bare).strip() == COMMIT_MESSAGE
    main = git("rev-parse", "refs/heads/main", cwd=bare).strip()
    assert main == git("rev-parse", "main", cwd=repo).strip(), "main itself was not touched"
    assert git("rev-parse", f"{tip}^", cwd=bare).strip() == main
    assert git("show", f"{tip}:app.py", cwd=bare) == "print('hello, world')\n"
    assert git("diff", "--name-only", main, tip, cwd=bare).split() == ["app.py"]
    assert fake_model.remaining == 0


# --- Repoless: the files come back through outcome.generatedFiles() --------------------

ANSWER_PATH = "answer.md"
# No final newline: the SDK's generatedFiles() joins the added lines with "\n", so this is
# exactly what a user reads back.
ANSWER = "# The answer\n\nForty-two, computed with care."
REPOLESS_SCRIPT: list[Reply] = [
    call("propose_plan", steps=[{"title": "Write the answer", "description": "answer.md"}]),
    call("write_file", path=ANSWER_PATH, content=ANSWER),
    call("finish", summary="Wrote the answer.", commit_message="Answer the question"),
]


def test_repoless_run_hands_back_the_files_it_wrote(
    node_runner: NodeRunner,
    agent_server: LiveServer,
    agent_key: str,
    wire: httpx.Client,
    fake_model: FakeModel,
) -> None:
    fake_model.push(*REPOLESS_SCRIPT)
    seen = node_runner.run(
        "agent_repoless.mjs",
        server=agent_server,
        api_key=agent_key,
        PROMPT="What is the answer? Write it to answer.md.",
        FILE_PATH=ANSWER_PATH,
    )
    sid = seen["id"]

    outcome = seen["outcome"]
    assert outcome["state"] == "completed"
    assert outcome["sessionId"] == sid
    assert outcome["pullRequest"] is None
    expected_file = {
        "path": ANSWER_PATH, "changeType": "created", "content": ANSWER,
        "additions": len(ANSWER.splitlines()), "deletions": 0,
    }
    assert outcome["got"] == expected_file
    assert outcome["got"]["content"] == ANSWER
    assert outcome["all"] == [expected_file]
    assert outcome["created"] == [expected_file]
    assert outcome["changeSetSource"] == "session"

    # No repository: no source anywhere, and the only output is the change set.
    info = seen["info"]
    assert info["state"] == "completed"
    assert info["sourceContext"] is None
    [output] = info["outputs"]
    assert output["type"] == "changeSet"
    assert "source" not in output["changeSet"]
    patch = output["changeSet"]["gitPatch"]["unidiffPatch"]
    assert f"--- /dev/null\n+++ b/{ANSWER_PATH}" in patch
    assert output["changeSet"]["gitPatch"]["suggestedCommitMessage"] == "Answer the question"

    session = wire.get(f"/sessions/{sid}").json()
    assert session["state"] == "COMPLETED"
    assert "sourceContext" not in session
    assert session["outputs"] == [{"changeSet": output["changeSet"]}]
    assert fake_model.remaining == 0
