"""AUTO_CREATE_PR end to end: a real server with workers, the fake model, real git and
bubblewrap, and the fake GitHub (real HTTP, real bare repositories). What a user sees: a
pull request whose branch holds exactly the session's patch, one pull request however many
follow-ups, and when the forge refuses, a completed session that says why and still hands
back its changes. The token never shows up anywhere a person or a log could read it."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.testing import FakeGitHub, FakeModel, LiveServer, Operation, register_github_source
from tests.conftest import backends_with_temporal
from tests.engine.agent_support import call, needs_bubblewrap, patch_applies
from tests.support import TERMINAL, git, kinds, list_activities, wait_for_state

pytestmark = needs_bubblewrap

backend = backends_with_temporal()
TOKEN = "ghp_" + "S3CRET" + secrets.token_hex(12)
COMMIT_MESSAGE = "Greet the world\n\nThe greeting now names its audience."
PLAN = call("propose_plan", steps=[{"title": "Greet", "description": "Edit app.py."}])
WORK = [
    PLAN,
    call("edit_file", path="app.py", old_text="'hello'", new_text="'hello, world'"),
    call("finish", summary="The app greets the world.", commit_message=COMMIT_MESSAGE),
]


@pytest.fixture
def github(tmp_path: Path, repo: Path) -> Iterator[FakeGitHub]:
    with FakeGitHub(tmp_path / "github", token=TOKEN) as fake:
        fake.add_repo("acme", "greeter", from_path=repo)
        yield fake


@pytest.fixture
def agent_settings_overrides(github: FakeGitHub) -> dict[str, Any]:
    return {"github_api_url": github.api_url, "github_token": TOKEN}


@pytest.fixture
def gh_source(agent_server: LiveServer, github: FakeGitHub) -> str:
    return register_github_source(agent_server.settings, owner="acme", repo="greeter")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def create(client: httpx.Client, source: str, *, auto_pr: bool = True) -> str:
    response = client.post(
        "/sessions",
        json={
            "prompt": "Make the app greet the world",
            "sourceContext": {"source": source, "githubRepoContext": {"startingBranch": "main"}},
            "automationMode": "AUTO_CREATE_PR" if auto_pr else "AUTOMATION_MODE_UNSPECIFIED",
        },
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def completed(client: httpx.Client, sid: str) -> dict[str, Any]:
    session = wait_for_state(client, sid, TERMINAL)
    assert session["state"] == "COMPLETED", json.dumps(list_activities(client, sid)[-1])
    return session


def outputs_by_kind(session: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for output in session.get("outputs", []):
        ((key, value),) = output.items()
        assert key not in found, f"two {key} outputs"
        found[key] = value
    return found


def wait_for_kind_count(
    client: httpx.Client, sid: str, kind: str, count: int, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while kinds(list_activities(client, sid)).count(kind) < count:
        assert time.monotonic() < deadline, f"fewer than {count} {kind} activities"
        time.sleep(0.05)


def checkout(bare: Path, branch: str, into: Path) -> Path:
    git("clone", "-q", "-b", branch, str(bare), str(into), cwd=bare.parent)
    return into


def tree_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def assert_token_nowhere(
    client: httpx.Client, sid: str, logs: pytest.LogCaptureFixture, data_dir: Path
) -> None:
    seen = json.dumps([client.get(f"/sessions/{sid}").json(), list_activities(client, sid)])
    assert TOKEN not in seen
    assert TOKEN not in logs.text
    # The worker may still be checking out a spare tree: files come and go meanwhile.
    for directory, _dirs, files in os.walk(data_dir):
        for name in files:
            path = Path(directory) / name
            try:
                content = path.read_bytes() if not path.is_symlink() else b""
            except FileNotFoundError:
                continue
            assert TOKEN.encode() not in content, f"token written to {path}"


def test_auto_create_pr_opens_a_pull_request_whose_branch_is_base_plus_patch(
    client: httpx.Client,
    fake_model: FakeModel,
    github: FakeGitHub,
    gh_source: str,
    agent_server: LiveServer,
    repo: Path,
    tmp_path: Path,
    logs: pytest.LogCaptureFixture,
) -> None:
    fake_model.push(*WORK)
    sid = create(client, gh_source)
    session = completed(client, sid)

    outputs = outputs_by_kind(session)
    pull = outputs["pullRequest"]
    head = pull["headRef"]
    assert re.fullmatch(rf"make-the-app-greet-the-world-{sid}", head), head
    assert pull == {
        "url": f"{github.url}/acme/greeter/pull/1",
        "title": "Greet the world",
        "description": pull["description"],
        "baseRef": "main",
        "headRef": head,
    }
    assert "The greeting now names its audience." in pull["description"]
    assert session["sourceContext"]["workingBranch"] == head
    patch = outputs["changeSet"]["gitPatch"]["unidiffPatch"]
    assert "+print('hello, world')" in patch

    (recorded,) = github.pulls(owner="acme", repo="greeter")
    assert (recorded.head, recorded.base, recorded.title) == (head, "main", "Greet the world")

    bare = github.repo_path("acme", "greeter")
    tip = git("rev-parse", f"refs/heads/{head}", cwd=bare).strip()
    assert recorded.head_sha == tip
    assert git("log", "-1", "--format=%B", tip, cwd=bare).strip() == COMMIT_MESSAGE
    main = git("rev-parse", "refs/heads/main", cwd=bare).strip()
    assert git("rev-parse", f"{tip}^", cwd=bare).strip() == main
    expected = patch_applies(repo, patch, tmp_path)
    assert tree_files(checkout(bare, head, tmp_path / "pr")) == tree_files(expected)

    # Nothing but the finish: no note about delivery when it went well.
    assert kinds(list_activities(client, sid))[-1] == "sessionCompleted"
    assert "agentMessaged" not in kinds(list_activities(client, sid))
    assert_token_nowhere(client, sid, logs, agent_server.settings.data_dir)


def test_a_follow_up_adds_a_commit_to_the_same_branch_and_keeps_one_pull_request(
    client: httpx.Client,
    fake_model: FakeModel,
    github: FakeGitHub,
    gh_source: str,
    repo: Path,
    tmp_path: Path,
) -> None:
    fake_model.push(*WORK)
    sid = create(client, gh_source)
    first = completed(client, sid)
    pull = outputs_by_kind(first)["pullRequest"]
    bare = github.repo_path("acme", "greeter")
    first_tip = git("rev-parse", f"refs/heads/{pull['headRef']}", cwd=bare).strip()

    fake_model.push(
        call("write_file", path="bye.py", content="print('bye')\n"),
        call("finish", summary="Says goodbye too.", commit_message="Say goodbye"),
    )
    assert client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "Also say bye"}).json() == {}
    wait_for_kind_count(client, sid, "sessionCompleted", 2)
    second = completed(client, sid)

    outputs = outputs_by_kind(second)
    assert outputs["pullRequest"] == pull
    assert len(github.pulls(owner="acme", repo="greeter")) == 1
    tip = git("rev-parse", f"refs/heads/{pull['headRef']}", cwd=bare).strip()
    assert git("rev-parse", f"{tip}^", cwd=bare).strip() == first_tip
    assert git("log", "-1", "--format=%s", tip, cwd=bare).strip() == "Say goodbye"
    cumulative = outputs["changeSet"]["gitPatch"]["unidiffPatch"]
    assert "+print('hello, world')" in cumulative
    assert "+print('bye')" in cumulative
    expected = patch_applies(repo, cumulative, tmp_path)
    assert tree_files(checkout(bare, pull["headRef"], tmp_path / "pr")) == tree_files(expected)


@dataclass(frozen=True)
class Mishap:
    """What goes wrong with GitHub as the agent finishes (the clone worked), and what the
    explaining activity must say."""

    happen: Callable[[FakeGitHub], None]
    says: tuple[str, ...]
    branch_pushed: bool = False


def failing(operation: Operation, status: int) -> Callable[[FakeGitHub], None]:
    return lambda github: github.fail(operation, status, times=10)


MISHAPS = {
    "push-rejected": Mishap(
        lambda github: github.reject_pushes(
            "acme", "greeter", message="Protected branch policy: no pushes"
        ),
        ("was rejected", "Protected branch policy"),
    ),
    "push-403": Mishap(failing(Operation.GIT_PUSH, 403), ("refused access (403)",)),
    "pull-401": Mishap(
        failing(Operation.CREATE_PULL, 401), ("rejected the token",), branch_pushed=True
    ),
    "pull-403": Mishap(
        failing(Operation.CREATE_PULL, 403),
        (
            "not allowed to open a pull request from make-the-app-greet-the-world-",
            "Pull requests (read and write)",  # what the token lacks
        ),
        branch_pushed=True,
    ),
    "pull-404": Mishap(
        failing(Operation.CREATE_PULL, 404), ("could not find",), branch_pushed=True
    ),
    "pull-422": Mishap(
        failing(Operation.CREATE_PULL, 422),
        ("refused to open a pull request",),
        branch_pushed=True,
    ),
    "network-down": Mishap(lambda github: github.stop(), ("could not be reached",)),
    "token-revoked": Mishap(
        lambda github: setattr(github, "token", "ghp_rotated" + secrets.token_hex(8)),
        ("refused the credentials. Check that OPENJULES_GITHUB_TOKEN",),
    ),
}


@pytest.mark.parametrize("mishap", sorted(MISHAPS))
def test_a_forge_failure_still_completes_with_the_change_set_and_says_why(
    mishap: str,
    client: httpx.Client,
    fake_model: FakeModel,
    github: FakeGitHub,
    gh_source: str,
    agent_server: LiveServer,
    logs: pytest.LogCaptureFixture,
) -> None:
    case = MISHAPS[mishap]
    fake_model.push(*WORK[:-1])

    def finish_after_the_mishap(_request: dict[str, Any]) -> Any:
        case.happen(github)
        return WORK[-1]

    fake_model.respond_with(finish_after_the_mishap)
    sid = create(client, gh_source)
    session = completed(client, sid)

    outputs = outputs_by_kind(session)
    assert "pullRequest" not in outputs
    assert "+print('hello, world')" in outputs["changeSet"]["gitPatch"]["unidiffPatch"]
    items = list_activities(client, sid)
    assert kinds(items)[-2:] == ["agentMessaged", "sessionCompleted"]
    notice = items[-2]["agentMessaged"]["agentMessage"]
    for phrase in case.says:
        assert phrase in notice, notice
    assert "changeSet" in notice
    if case.branch_pushed:  # the user can open the pull request by hand
        assert session["sourceContext"]["workingBranch"] in notice
    else:
        assert "workingBranch" not in session["sourceContext"]
    assert [p for p in github.pulls() if p.state == "open"] == []
    assert_token_nowhere(client, sid, logs, agent_server.settings.data_dir)


def test_without_auto_create_pr_nothing_is_pushed(
    client: httpx.Client, fake_model: FakeModel, github: FakeGitHub, gh_source: str
) -> None:
    fake_model.push(*WORK)
    sid = create(client, gh_source, auto_pr=False)
    session = completed(client, sid)
    assert list(outputs_by_kind(session)) == ["changeSet"]
    assert "workingBranch" not in session["sourceContext"]
    bare = github.repo_path("acme", "greeter")
    assert git("for-each-ref", "--format=%(refname)", "refs/heads", cwd=bare).split() == [
        "refs/heads/main"
    ]
    writes = [r.path for r in github.requests if r.method == "POST" and "upload-pack" not in r.path]
    assert writes == []


def test_a_source_on_another_git_host_gets_a_pushed_branch_and_no_pull_request(
    client: httpx.Client, fake_model: FakeModel, source: str, repo: Path, tmp_path: Path
) -> None:
    fake_model.push(*WORK)
    sid = create(client, source)
    session = completed(client, sid)
    assert list(outputs_by_kind(session)) == ["changeSet"]
    branch = session["sourceContext"]["workingBranch"]
    assert branch.endswith(f"-{sid}")
    notice = list_activities(client, sid)[-2]["agentMessaged"]["agentMessage"]
    assert f"`{branch}`" in notice
    assert "no pull request" in notice
    assert git("log", "-1", "--format=%B", branch, cwd=repo).strip() == COMMIT_MESSAGE
    patch = outputs_by_kind(session)["changeSet"]["gitPatch"]["unidiffPatch"]
    expected = patch_applies(repo, patch, tmp_path)
    assert tree_files(checkout(repo, branch, tmp_path / "pushed")) == tree_files(expected)


def test_a_repoless_session_with_auto_create_pr_returns_its_files_and_no_pull_request(
    client: httpx.Client, fake_model: FakeModel
) -> None:
    fake_model.push(
        PLAN,
        call("write_file", path="answer.md", content="# 42\n"),
        call("finish", summary="Wrote the answer.", commit_message="Answer"),
    )
    sid = client.post(
        "/sessions", json={"prompt": "Write answer.md", "automationMode": "AUTO_CREATE_PR"}
    ).json()["id"]
    session = completed(client, sid)
    assert "sourceContext" not in session
    (output,) = session["outputs"]
    change_set = output["changeSet"]
    assert "source" not in change_set
    patch = change_set["gitPatch"]["unidiffPatch"]
    assert "--- /dev/null" in patch
    assert "+++ b/answer.md" in patch
    assert "+# 42" in patch
    assert "agentMessaged" not in kinds(list_activities(client, sid))
