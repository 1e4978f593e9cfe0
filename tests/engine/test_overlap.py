"""A run asks the model for its first turn while its workspace is still being prepared
(checkout, hand-over to the sandbox uid, the source's setup script): a plan shows while the
setup script still runs, a tool that needs the tree waits for it, and the instructions of
the repository's AGENTS.md come from the base commit (a regular file only)."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from openjules.engine.kept_workspaces import MARKER
from openjules.engine.repository import read_source
from openjules.store import sources
from openjules.store.oneshot import run_write
from openjules.testing import FakeModel, LiveServer
from tests.agent_kit import GO, HOLD, HOLD_S, held, release, wait_until
from tests.engine.agent_support import (
    call,
    job_state,
    needs_bubblewrap,
    patch_applies,
    start_session,
)
from tests.support import TERMINAL, git, list_activities, make_repo, wait_for_state

pytestmark = needs_bubblewrap

# Well within HOLD_S: a run that waited for the setup script before asking the model would
# show its plan only after the held script gave up waiting.
BEFORE_RELEASE_S = HOLD_S / 3
# The script's ignored files tell the tests it ran (once); built.txt, not ignored, is in the
# session's patch as in any tree the script ran in.
SETUP = held("echo prepared-by-setup > .setup-marker; echo ran >> .setup-runs; echo b > built.txt")
INSTRUCTIONS = "Always greet politely."


def _repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "greeter",
        {
            "app.py": "print('hello')\n",
            "AGENTS.md": f"{INSTRUCTIONS}\n",
            ".gitignore": ".setup-marker\n.setup-runs\n",
        },
    )


def _source(server: LiveServer, repo: Path, *, setup_script: str | None) -> str:
    """``repo`` registered with ``setup_script`` (what `openjules sources add` then
    `openjules sources configure --setup-script` do)."""
    record = read_source(
        server.settings, str(repo), owner="acme", repo=f"greeter-{secrets.token_hex(3)}"
    )
    record = replace(record, setup_script=setup_script)

    async def action(conn: Any) -> None:
        await sources.upsert(conn, record=record)

    run_write(server.settings.resolved_database_url(), action)
    return record.name


def _tree(server: LiveServer, session_id: str) -> Path:
    return server.settings.data_dir / "workspaces" / session_id / "tree"


def test_the_plan_shows_while_the_setup_script_still_runs(
    client: httpx.Client, agent_server: LiveServer, fake_model: FakeModel, tmp_path: Path
) -> None:
    repo = _repo(tmp_path)
    source = _source(agent_server, repo, setup_script=SETUP)
    fake_model.push(
        call("propose_plan", steps=[{"title": "Greet the world"}]),
        call("read_file", path=".setup-runs"),
        # The run's first patch stages what a file tool names, and whatever the setup
        # script left that the private index has not seen yet.
        call("edit_file", path="app.py", old_text="'hello'", new_text="'hello, world'"),
        call("finish", summary="Greets the world.", commit_message="Greet the world"),
    )
    sid = start_session(
        client,
        prompt="Make the app greet the world",
        source=source,
        require_plan_approval=True,
        until="AWAITING_PLAN_APPROVAL",
        timeout=BEFORE_RELEASE_S,
    )
    assert "planGenerated" in list_activities(client, sid)[0]
    tree = _tree(agent_server, sid)
    assert not (tree / GO).exists()
    assert not (tree / ".setup-marker").exists()
    # The instructions came from the base commit, whether or not the tree was there yet.
    assert INSTRUCTIONS in fake_model.requests[0]["messages"][0]["content"]

    release(agent_server, sid)
    # The planning run ends once the setup script is done, keeping the prepared tree.
    deadline = time.monotonic() + 30
    while job_state(agent_server, sid) != "done":
        assert time.monotonic() < deadline, "the planning run never ended"
        time.sleep(0.02)
    assert (tree.parent / MARKER).exists()
    assert not (tree / HOLD).exists()

    assert client.post(f"/sessions/{sid}:approvePlan").status_code == 200
    session = wait_for_state(client, sid, TERMINAL)

    assert session["state"] == "COMPLETED"
    read = fake_model.requests[2]["messages"][-1]  # read_file's result
    assert read["role"] == "tool"
    assert read["content"].splitlines() == ["    1| ran"]  # the adopted tree was not set up again
    patch = session["outputs"][0]["changeSet"]["gitPatch"]["unidiffPatch"]
    assert ".setup" not in patch
    assert "+++ b/built.txt" in patch
    assert (patch_applies(repo, patch, tmp_path) / "app.py").read_text() == (
        "print('hello, world')\n"
    )


def test_a_first_tool_that_needs_the_tree_waits_for_the_setup_script(
    client: httpx.Client, agent_server: LiveServer, fake_model: FakeModel, tmp_path: Path
) -> None:
    source = _source(agent_server, _repo(tmp_path), setup_script=SETUP)
    fake_model.push(
        call("read_file", path=".setup-marker"),
        call("propose_plan", steps=[{"title": "Nothing to do"}]),
        call("finish", summary="The setup had run.", commit_message="Nothing"),
    )
    sid = client.post(
        "/sessions",
        json={
            "prompt": "Read what the setup made",
            "sourceContext": {"source": source},
        },
    ).json()["id"]

    # The first turn is asked while the setup script waits for the test.
    wait_until(lambda: fake_model.requests, seconds=BEFORE_RELEASE_S, what="the first turn")
    assert not (_tree(agent_server, sid) / ".setup-marker").exists()
    release(agent_server, sid)
    session = wait_for_state(client, sid, TERMINAL)

    assert session["state"] == "COMPLETED"
    tool_result = fake_model.requests[1]["messages"][-1]
    assert tool_result["role"] == "tool"
    assert "prepared-by-setup" in tool_result["content"]


def test_an_agents_md_that_is_a_symbolic_link_gives_no_instructions(
    client: httpx.Client, agent_server: LiveServer, fake_model: FakeModel, tmp_path: Path
) -> None:
    host_file = tmp_path / "host-secret.txt"
    host_file.write_text("HOST-SECRET-INSTRUCTIONS\n")
    repo = make_repo(tmp_path / "linked", {"app.py": "print('hello')\n"})
    (repo / "AGENTS.md").symlink_to(host_file)
    system = _first_system_prompt(client, agent_server, fake_model, repo)
    assert "HOST-SECRET-INSTRUCTIONS" not in system
    assert str(host_file) not in system  # nor the link's target read as its text
    assert "<agents_md>" not in system


def test_an_agents_md_linking_inside_the_repository_is_not_followed_either(
    client: httpx.Client, agent_server: LiveServer, fake_model: FakeModel, tmp_path: Path
) -> None:
    repo = make_repo(
        tmp_path / "linked",
        {"app.py": "print('hello')\n", "docs/guide.md": "GUIDE-IN-THE-REPOSITORY\n"},
    )
    (repo / "AGENTS.md").symlink_to("docs/guide.md")
    system = _first_system_prompt(client, agent_server, fake_model, repo)
    assert "GUIDE-IN-THE-REPOSITORY" not in system
    assert "<agents_md>" not in system


def _first_system_prompt(
    client: httpx.Client, agent_server: LiveServer, fake_model: FakeModel, repo: Path
) -> str:
    """Commit what ``repo`` holds, plan a session on it, and return the system prompt the
    model got."""
    git("add", "--all", cwd=repo)
    git("commit", "-q", "-m", "links", cwd=repo)
    source = _source(agent_server, repo, setup_script=None)
    fake_model.push(call("propose_plan", steps=[{"title": "Look"}]))
    start_session(
        client,
        prompt="Look around",
        source=source,
        require_plan_approval=True,
        until="AWAITING_PLAN_APPROVAL",
    )
    return str(fake_model.requests[0]["messages"][0]["content"])
