"""End to end through the HTTP API: a real server with workers, the fake model over HTTP,
real git and real bubblewrap. What a user sees: activities in order, states, and a final
patch that applies to the starting branch."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from openjules.settings import Settings
from openjules.testing import FakeModel, LiveServer, provision_user
from openjules.testing import register_source as register
from tests.conftest import backends_with_temporal
from tests.engine.agent_support import call, needs_bubblewrap, patch_applies
from tests.support import TERMINAL, api_client, git, kinds, list_activities, wait_for_state

pytestmark = needs_bubblewrap

backend = backends_with_temporal()
WORK = [
    call("edit_file", path="app.py", old_text="'hello'", new_text="'hello, world'"),
    call("shell", command="python3 app.py"),
    call("complete_step", title="Greeted the world", description="Changed the greeting."),
    call("finish", summary="The app greets the world.",
         commit_message="Greet the world\n\nThe greeting now names its audience."),
]


def test_a_session_with_plan_approval_runs_to_a_patch_that_applies(
    client: httpx.Client, fake_model: FakeModel, source: str, repo: Path, tmp_path: Path
) -> None:
    fake_model.push(
        call("read_file", path="app.py"),
        call("propose_plan", steps=[{"title": "Greet the world",
                                     "description": "Edit app.py"}]),
        *WORK,
    )
    sid = client.post("/sessions", json={
        "prompt": "Make the app greet the world", "requirePlanApproval": True,
        "sourceContext": {"source": source, "githubRepoContext": {"startingBranch": "main"}},
    }).json()["id"]

    wait_for_state(client, sid, {"AWAITING_PLAN_APPROVAL"} | TERMINAL)
    assert kinds(list_activities(client, sid)) == ["planGenerated"]
    assert client.post(f"/sessions/{sid}:approvePlan").json() == {}
    session = wait_for_state(client, sid, TERMINAL)

    assert session["state"] == "COMPLETED"
    items = list_activities(client, sid)
    assert kinds(items) == ["planGenerated", "planApproved", "progressUpdated",
                            "progressUpdated", "sessionCompleted"]
    assert items[1]["originator"] == "user"
    ran = items[2]["progressUpdated"]
    assert ran["title"] == "Ran bash command"
    assert "hello, world" in ran["description"]
    assert "artifacts" not in items[2]  # no bashOutput unless enabled
    step_patch = items[3]["artifacts"][0]["changeSet"]["gitPatch"]
    assert "+print('hello, world')" in step_patch["unidiffPatch"]
    final = items[4]["artifacts"][0]["changeSet"]
    assert final["source"] == source
    assert final["gitPatch"]["suggestedCommitMessage"].startswith("Greet the world")
    assert final["gitPatch"]["baseCommitId"] == git("rev-parse", "main", cwd=repo).strip()
    assert session["outputs"] == [{"changeSet": final}]
    checked = patch_applies(repo, final["gitPatch"]["unidiffPatch"], tmp_path)
    assert (checked / "app.py").read_text() == "print('hello, world')\n"
    # The repository's AGENTS.md reached the model's instructions.
    assert "Always greet politely." in fake_model.requests[0]["messages"][0]["content"]


def test_without_plan_approval_the_plan_is_approved_automatically(
    client: httpx.Client, fake_model: FakeModel, source: str, repo: Path, tmp_path: Path
) -> None:
    fake_model.push(call("propose_plan", steps=[{"title": "Greet the world"}]), *WORK)
    sid = client.post("/sessions", json={
        "prompt": "Make the app greet the world", "sourceContext": {"source": source},
    }).json()["id"]
    session = wait_for_state(client, sid, TERMINAL)
    assert session["state"] == "COMPLETED"
    assert kinds(list_activities(client, sid)) == [
        "planGenerated", "planApproved", "progressUpdated", "progressUpdated",
        "sessionCompleted"]
    patch = session["outputs"][0]["changeSet"]["gitPatch"]["unidiffPatch"]
    assert (patch_applies(repo, patch, tmp_path) / "app.py").read_text() == (
        "print('hello, world')\n")


def test_a_question_waits_for_the_answer_and_the_model_receives_it(
    client: httpx.Client, fake_model: FakeModel, source: str
) -> None:
    fake_model.push(
        call("propose_plan", steps=[{"title": "Greet"}]),
        call("ask_user", text="Which greeting do you want?"),
    )
    sid = client.post("/sessions", json={
        "prompt": "Change the greeting", "sourceContext": {"source": source},
    }).json()["id"]
    wait_for_state(client, sid, {"AWAITING_USER_FEEDBACK"} | TERMINAL)
    asked = list_activities(client, sid)[-1]
    assert asked["agentMessaged"]["agentMessage"] == "Which greeting do you want?"
    requests_before = len(fake_model.requests)

    fake_model.push(
        call("edit_file", path="app.py", old_text="'hello'", new_text="'bonjour'"),
        call("finish", summary="Bonjour.", commit_message="Say bonjour"),
    )
    client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "Say bonjour"})
    session = wait_for_state(client, sid, TERMINAL)

    assert session["state"] == "COMPLETED"
    resumed = fake_model.requests[requests_before]["messages"]
    assert resumed[-1] == {"role": "user", "content": "Say bonjour"}
    assert "+print('bonjour')" in session["outputs"][0]["changeSet"]["gitPatch"]["unidiffPatch"]


def test_a_message_sent_while_the_agent_works_reaches_its_next_request(
    client: httpx.Client, fake_model: FakeModel, source: str
) -> None:
    fake_model.push(
        call("propose_plan", steps=[{"title": "Think"}]),
        call("shell", command="sleep 3"),
        call("finish", summary="Done.", commit_message="Nothing"),
    )
    sid = client.post("/sessions", json={
        "prompt": "Take your time", "sourceContext": {"source": source},
    }).json()["id"]
    deadline = time.monotonic() + 30
    while len(fake_model.requests) < 2:  # the model has asked for `sleep 3`
        assert time.monotonic() < deadline
        time.sleep(0.02)
    client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "Also mention the README"})
    wait_for_state(client, sid, TERMINAL)

    third = fake_model.requests[2]["messages"]
    assert {"role": "user", "content": "Also mention the README"} in third


def test_a_repoless_session_returns_the_files_it_wrote(
    client: httpx.Client, fake_model: FakeModel
) -> None:
    fake_model.push(
        call("propose_plan", steps=[{"title": "Write the answer"}]),
        call("write_file", path="answer.md", content="# 42\n"),
        call("finish", summary="Answered.", commit_message="Answer"),
    )
    sid = client.post("/sessions", json={"prompt": "What is the answer?"}).json()["id"]
    session = wait_for_state(client, sid, TERMINAL)
    assert session["state"] == "COMPLETED"
    change_set = session["outputs"][0]["changeSet"]
    assert "source" not in change_set
    assert "--- /dev/null\n+++ b/answer.md" in change_set["gitPatch"]["unidiffPatch"]


def test_without_a_model_a_session_fails_at_once_saying_how_to_configure_one(
    server_settings: Settings, tmp_path: Path
) -> None:
    settings = server_settings.model_copy(update={"data_dir": tmp_path / "d", "workers": 1})
    with LiveServer(settings) as live:
        key = provision_user(live.settings, name=f"nomodel-{secrets.token_hex(3)}")
        with api_client(live.api, key) as c:
            sid = c.post("/sessions", json={"prompt": "Do something"}).json()["id"]
            session = wait_for_state(c, sid, TERMINAL)
            reason = list_activities(c, sid)[-1]["sessionFailed"]["reason"]
    assert session["state"] == "FAILED"
    assert "OPENJULES_MODEL_BASE_URL" in reason


def _configure(settings: Settings, source: str, *, script: str, tmp_path: Path) -> None:
    """What `openjules sources configure NAME --setup-script FILE` does."""
    (tmp_path / "setup.sh").write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENJULES_")}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("openjules")), "sources", "configure",
         source.removeprefix("sources/github/"), "--setup-script", str(tmp_path / "setup.sh"),
         "--database-url", settings.resolved_database_url()],
        env={**env, "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "a setup script, no network" in done.stdout


def test_the_sources_setup_script_runs_in_the_sandbox_before_the_agent_works(
    client: httpx.Client, fake_model: FakeModel, source: str, agent_server: LiveServer,
    tmp_path: Path,
) -> None:
    _configure(agent_server.settings, source, tmp_path=tmp_path,
               script="echo prepared-by-setup > .setup-marker\n")
    fake_model.push(
        call("propose_plan", steps=[{"title": "Check"}]),
        call("shell", command="cat .setup-marker"),
        call("finish", summary="Checked.", commit_message="Check"),
    )
    sid = client.post("/sessions", json={"prompt": "Check the setup",
                                         "sourceContext": {"source": source}}).json()["id"]
    session = wait_for_state(client, sid, TERMINAL)
    assert session["state"] == "COMPLETED"
    ran = [a["progressUpdated"]["description"] for a in list_activities(client, sid)
           if "progressUpdated" in a]
    assert "prepared-by-setup" in ran[0]


def test_a_failing_setup_script_fails_the_session_with_its_output(
    client: httpx.Client,
    source: str,
    agent_server: LiveServer,
    fake_model: FakeModel,
    tmp_path: Path,
) -> None:
    """The first turn is asked while the setup script runs; the first tool that needs the
    tree fails the session with the script's output, and the model is asked no more."""
    _configure(agent_server.settings, source, tmp_path=tmp_path,
               script="echo 'npm ERR! missing package.json' >&2\nexit 3\n")
    fake_model.push(call("list_files", path="."), call("list_files", path="."))
    sid = client.post("/sessions", json={"prompt": "Anything",
                                         "sourceContext": {"source": source}}).json()["id"]
    session = wait_for_state(client, sid, TERMINAL)
    assert session["state"] == "FAILED"
    reason = list_activities(client, sid)[-1]["sessionFailed"]["reason"]
    assert "setup script failed (exit code 3)" in reason
    assert "npm ERR! missing package.json" in reason
    assert len(fake_model.requests) == 1


def test_hooks_and_config_planted_in_the_workspace_git_never_run_on_the_host(
    client: httpx.Client, fake_model: FakeModel, source: str, tmp_path: Path
) -> None:
    marker = tmp_path / f"hook-ran-{secrets.token_hex(4)}"
    hook = f"#!/bin/sh\ntouch {marker}\n"
    plant = (
        f"printf '{hook}' > .git/hooks/post-commit && chmod +x .git/hooks/post-commit && "
        "cp .git/hooks/post-commit .git/hooks/pre-commit && "
        f"git config core.fsmonitor '{tmp_path}/fsmonitor.sh' && "
        "printf '* filter=evil\\n' > .gitattributes && "
        f"git config filter.evil.clean 'touch {marker}; cat'"
    )
    fake_model.push(
        call("propose_plan", steps=[{"title": "Plant hooks"}]),
        call("shell", command=plant),
        call("write_file", path="app.py", content="print('changed')\n"),
        call("complete_step", title="Changed the app"),
        call("finish", summary="Done.", commit_message="Change the app"),
    )
    sid = client.post("/sessions", json={"prompt": "Change the app",
                                         "sourceContext": {"source": source}}).json()["id"]
    session = wait_for_state(client, sid, TERMINAL)
    assert session["state"] == "COMPLETED"
    assert "+print('changed')" in session["outputs"][0]["changeSet"]["gitPatch"]["unidiffPatch"]
    assert not marker.exists()


def test_a_symlink_to_a_host_file_in_the_repository_cannot_be_read_through_the_tools(
    client: httpx.Client, fake_model: FakeModel, agent_server: LiveServer, repo: Path,
) -> None:
    (repo / "passwd").symlink_to("/etc/passwd")
    git("add", "passwd", cwd=repo)
    git("commit", "-q", "-m", "a link out", cwd=repo)
    linked = register(agent_server.settings, location=str(repo), owner="acme",
                      repo=f"linked-{secrets.token_hex(3)}")
    fake_model.push(
        call("read_file", path="passwd"),
        call("search", pattern="root", path="."),
        call("propose_plan", steps=[{"title": "Nothing"}]),
        call("finish", summary="Done.", commit_message="Nothing"),
    )
    sid = client.post("/sessions", json={"prompt": "Read the passwd file",
                                         "sourceContext": {"source": linked}}).json()["id"]
    wait_for_state(client, sid, TERMINAL)
    tool_outputs = [m["content"] for r in fake_model.requests for m in r["messages"]
                    if m["role"] == "tool"]
    assert tool_outputs
    assert not any("root:x:0:0" in text for text in tool_outputs)
    assert any("outside" in text.lower() for text in tool_outputs[:1])


def test_long_tool_output_reaches_the_model_truncated_with_a_marker(
    client: httpx.Client, fake_model: FakeModel, source: str
) -> None:
    fake_model.push(
        call("shell", command="head -c 300000 /dev/zero | tr '\\0' a; echo; echo THE-END"),
        call("propose_plan", steps=[{"title": "Nothing"}]),
        call("finish", summary="Done.", commit_message="Nothing"),
    )
    sid = client.post("/sessions", json={"prompt": "Print a lot",
                                         "sourceContext": {"source": source}}).json()["id"]
    wait_for_state(client, sid, TERMINAL)
    shell_output = fake_model.requests[1]["messages"][-1]["content"]
    assert len(shell_output) < 25_000
    assert "truncated" in shell_output or "omitted" in shell_output
    assert "THE-END" in shell_output


def test_bash_output_artifacts_are_attached_only_when_enabled(
    server_settings: Settings, fake_model: FakeModel, repo: Path, tmp_path: Path
) -> None:
    """Off by default (the current TypeScript SDK rejects them, spec §5.10); on by setting."""
    fake_model.push(
        call("shell", command="echo listed; exit 3"),
        call("propose_plan", steps=[{"title": "Nothing"}]),
        call("finish", summary="Done.", commit_message="Nothing"),
    )
    with _server_with(server_settings, fake_model, tmp_path,
                      bash_output_artifacts=True) as live:
        _session, items = _run(live, repo, "List")
    assert items[0]["artifacts"] == [{"bashOutput": {"command": "echo listed; exit 3",
                                                     "output": "listed\n", "exitCode": 3}}]


def _server_with(server_settings: Settings, fake_model: FakeModel, tmp_path: Path,
                 **overrides: object) -> LiveServer:
    return LiveServer(server_settings.model_copy(update={
        "data_dir": tmp_path / "data", "workers": 1, "model_base_url": fake_model.base_url,
        "model_api_key": "k", "model": "fake-model", **overrides,
    }))


def _run(live: LiveServer, repo: Path, prompt: str) -> tuple[dict[str, Any], list[Any]]:
    key = provision_user(live.settings, name=f"u-{secrets.token_hex(3)}")
    source = register(live.settings, location=str(repo), owner="acme",
                      repo=f"r-{secrets.token_hex(3)}")
    with api_client(live.api, key) as c:
        sid = c.post("/sessions", json={"prompt": prompt,
                                        "sourceContext": {"source": source}}).json()["id"]
        return wait_for_state(c, sid, TERMINAL), list_activities(c, sid)


def test_the_wall_clock_limit_fails_the_session_with_a_reason(
    server_settings: Settings, fake_model: FakeModel, repo: Path, tmp_path: Path
) -> None:
    fake_model.push(call("shell", command="sleep 2"), call("shell", command="true"))
    with _server_with(server_settings, fake_model, tmp_path, agent_wall_seconds=1.0) as live:
        session, items = _run(live, repo, "Take too long")
    assert session["state"] == "FAILED"
    assert items[-1]["sessionFailed"]["reason"] == (
        "The session ran past its time limit of 1s.")
    assert len(fake_model.requests) == 1


def test_old_tool_outputs_are_elided_as_the_transcript_grows(
    server_settings: Settings, fake_model: FakeModel, repo: Path, tmp_path: Path
) -> None:
    noisy = "head -c 3000 /dev/zero | tr '\\0' x"
    fake_model.push(
        *[call("shell", command=noisy) for _ in range(30)],
        call("propose_plan", steps=[{"title": "Nothing"}]),
        call("finish", summary="Done.", commit_message="Nothing"),
    )
    with _server_with(server_settings, fake_model, tmp_path,
                      agent_context_chars=20_000) as live:
        session, _items = _run(live, repo, "Be noisy")
    assert session["state"] == "COMPLETED"
    last = fake_model.requests[-1]["messages"]
    tool_messages = [m["content"] for m in last if m["role"] == "tool"]
    assert "older output elided" in tool_messages[0]
    assert "x" * 2900 in tool_messages[-2]  # the newest shell output stays whole
    assert all(m["role"] != "tool" or m.get("tool_call_id") for m in last)


def test_git_works_inside_the_sandbox(
    client: httpx.Client, fake_model: FakeModel, source: str, repo: Path
) -> None:
    """The clone borrows the mirror's objects; the sandbox must see them read-only."""
    fake_model.push(
        call("shell", command="git log --oneline -1 && git status --short && echo GIT-OK"),
        call("propose_plan", steps=[{"title": "Nothing"}]),
        call("finish", summary="Done.", commit_message="Nothing"),
    )
    sid = client.post("/sessions", json={"prompt": "Look at the history",
                                         "sourceContext": {"source": source}}).json()["id"]
    wait_for_state(client, sid, TERMINAL)
    ran = list_activities(client, sid)[0]["progressUpdated"]["description"]
    assert "initial" in ran
    assert "GIT-OK" in ran
    assert "Exit Code: 0" in ran
