"""``openjules remote …`` driving sessions the agent really works (the fake model, the real
sandbox and git) on a live server, both backends: a session started from a checkout
(``--repo .``) followed live by ``watch`` through plan approval and a question to its
completion; three sessions at once (``--parallel 3``) whose patch ``pull`` prints byte
for byte and ``pull --apply`` applies to a clean checkout, or refuses to touch; a
cancelled session ``watch`` reports with exit code 1.

One user's command line for the module (the server and key in its environment); five
agent sessions per backend.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.testing import LiveServer
from tests.agent_fixtures import agent, agent_overrides, model, scripts  # noqa: F401
from tests.agent_kit import Scripts, local_source, new_key
from tests.cli.remote_support import (
    Cli,
    clone,
    created_ids,
    error_line,
    run_on_a_terminal,
    tree_state,
)
from tests.engine.agent_support import needs_bubblewrap
from tests.engine.worker_support import call
from tests.support import api_client, git, list_activities, make_repo, wait_for_state

pytestmark = needs_bubblewrap

AGENT_S = 120
REPO = "acme/greeter"
CHANGES = "# Changes\n\n- The app greets the world.\n"


@pytest.fixture(scope="module")
def source_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(
        tmp_path_factory.mktemp("greeter"),
        {"app.py": "print('hello')\n", "README.md": "# greeter\n"},
    )


@pytest.fixture(scope="module")
def source(agent: LiveServer, source_repo: Path) -> str:  # noqa: F811
    return local_source(agent, source_repo, "greeter")


@pytest.fixture(scope="module")
def user(agent: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Cli:  # noqa: F811
    return Cli(home=tmp_path_factory.mktemp("cli-user"), url=agent.url, key=new_key(agent))


@pytest.fixture(scope="module")
def api(agent: LiveServer, user: Cli) -> Iterator[httpx.Client]:  # noqa: F811
    assert user.key
    with api_client(agent.api, user.key) as client:
        yield client


def finished(api: httpx.Client, sid: str) -> dict[str, Any]:
    return wait_for_state(api, sid, {"COMPLETED", "FAILED"}, timeout=AGENT_S)


@pytest.fixture(scope="module")
def changelog(
    user: Cli,
    scripts: Scripts,  # noqa: F811
    source: str,
    api: httpx.Client,
) -> list[dict[str, Any]]:
    """Three sessions on one task (``--parallel 3``, the prompt piped in), completed."""
    prompt = scripts.prompt(
        "Add a changelog",
        [
            call("propose_plan", steps=[{"title": "Write CHANGES.md"}]),
            call("write_file", path="CHANGES.md", content=CHANGES),
            call("edit_file", path="README.md", old_text="# greeter", new_text="# greeter!"),
            call("finish", summary="Added CHANGES.md.", commit_message="Add a changelog"),
        ],
    )
    started = user.json(
        "remote", "new", "--repo", REPO, "--parallel", "3", "--session", "-", input=prompt
    )
    assert [s["prompt"] for s in started] == [prompt] * 3
    sessions = [finished(api, s["id"]) for s in started]
    assert [s["state"] for s in sessions] == ["COMPLETED"] * 3, sessions
    return sessions


def patch_of(session: dict[str, Any]) -> dict[str, str]:
    patch: dict[str, str] = next(o["changeSet"] for o in session["outputs"] if "changeSet" in o)[
        "gitPatch"
    ]
    return patch


def in_order(text: str, *parts: str) -> None:
    """Each of ``parts`` appears in ``text``, each after the one before."""
    at = 0
    for part in parts:
        found = text.find(part, at)
        assert found >= 0, f"{part!r} not found after offset {at} in:\n{text}"
        at = found + len(part)


def test_new_from_a_checkout_and_watch_it_live_through_approval_and_a_question(
    user: Cli,
    scripts: Scripts,  # noqa: F811
    source: str,
    source_repo: Path,
    api: httpx.Client,
    tmp_path: Path,
) -> None:
    prompt = scripts.prompt(
        "Make the app greet the world",
        [
            call("read_file", path="app.py"),
            call(
                "propose_plan",
                steps=[
                    {"title": "Greet the world", "description": "Edit app.py."},
                    {"title": "Say goodbye", "description": "Add goodbye.py if wanted."},
                ],
            ),
            call("edit_file", path="app.py", old_text="'hello'", new_text="'hello, world'"),
            call("shell", command="python3 app.py"),
            call("ask_user", text="Should the app also say goodbye?"),
            call("write_file", path="goodbye.py", content="print('goodbye')\n"),
            call("finish", summary="Greets the world, says goodbye.", commit_message="Greet"),
        ],
    )
    checkout = clone(source_repo, tmp_path / "greeter", origin=f"https://github.com/{REPO}.git")

    done = user.run(
        "remote", "new", "--repo", ".", "--require-approval", "--session", "-",
        cwd=checkout, input=prompt,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [sid] = created_ids(done.stdout)
    watch = user.watch(sid)
    try:
        approve_hint = f"Waiting for plan approval: run openjules remote approve {sid}"
        watch.wait_for(lambda line: line == approve_hint, what="how to approve the plan")
        approved = user.run("remote", "approve", sid)
        assert approved.returncode == 0, approved.stderr
        assert approved.stderr.startswith(f"Approved the plan of session {sid}; it is ")

        answer_hint = f'Waiting for your answer: run openjules remote message {sid} "…"'
        watch.wait_for(lambda line: line == answer_hint, what="how to answer the question")
        assert user.run("remote", "message", sid, "Yes, say goodbye.").returncode == 0
        code = watch.finish()
    except BaseException:
        watch.finish(kill=True)
        raise

    assert code == 0, watch.shown()
    assert api.get(f"/sessions/{sid}").json()["sourceContext"]["source"] == source
    in_order(
        watch.stdout,
        f"Session {sid}: Make the app greet the world\n",
        f"{REPO} @ main · ",
        "Plan (2 steps)\n",
        "1. Greet the world\n",
        "Edit app.py.\n",
        "2. Say goodbye\n",
        approve_hint,
        "Plan approved\n",
        "Ran bash command\n",
        "$ python3 app.py\n",
        "hello, world\n",
        "Agent:\n",
        "Should the app also say goodbye?\n",
        answer_hint,
        "You:\n",
        "Yes, say goodbye.\n",
        "Session completed\n",
        "Changed: app.py, goodbye.py\n",
        f"Session {sid} COMPLETED.\n",
        f"Patch: openjules remote pull --session {sid}",
    )
    assert re.search(r"^\d\d:\d\d:\d\d Plan \(2 steps\)$", watch.stdout, re.MULTILINE)


def test_cancel_a_session_waiting_for_approval_then_watch_exits_1(
    user: Cli,
    scripts: Scripts,  # noqa: F811
    api: httpx.Client,
) -> None:
    prompt = scripts.prompt(
        "Rewrite everything", [call("propose_plan", steps=[{"title": "Start over"}])]
    )
    [sid] = created_ids(
        user.ok("remote", "new", "--require-approval", "--session", "-", input=prompt)
    )
    wait_for_state(api, sid, {"AWAITING_PLAN_APPROVAL"}, timeout=AGENT_S)

    cancelled = user.run("remote", "cancel", sid, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["state"] == "FAILED"

    watched = user.run("remote", "watch", sid)
    assert watched.returncode == 1, watched.stderr
    in_order(
        watched.stdout,
        "no repository · FAILED",
        "1. Start over",
        "Session failed\n",
        "Cancelled by the user.\n",
        f"Session {sid} FAILED.",
    )
    # It no longer waits: no hint to approve a plan that nothing waits on.
    assert "Waiting for" not in watched.stdout
    assert "no plan awaiting approval" in error_line(user.run("remote", "approve", sid), 5)
    assert "has no patch" in error_line(user.run("remote", "pull", "--session", sid), 7)


def test_parallel_sessions_are_listed_with_their_state_and_source(
    user: Cli, changelog: list[dict[str, Any]]
) -> None:
    ids = [s["id"] for s in changelog]
    assert len(set(ids)) == 3

    completed = {s["id"] for s in user.json("remote", "list", "--state", "COMPLETED")}
    assert set(ids) <= completed
    assert not set(ids) & {s["id"] for s in user.json("remote", "list", "--state", "FAILED")}
    rows = {row.split()[0]: row.split() for row in user.ok("remote", "list").splitlines()[1:]}
    for sid in ids:
        assert rows[sid][1] == "COMPLETED"
        assert rows[sid][4] == REPO
    assert REPO in user.ok("remote", "list", "--repo")


def test_pull_prints_the_patch_byte_for_byte(user: Cli, changelog: list[dict[str, Any]]) -> None:
    session = changelog[0]

    pulled = user.run("remote", "pull", "--session", session["id"], binary=True)

    assert pulled.returncode == 0
    assert pulled.stderr == b""
    assert pulled.stdout == patch_of(session)["unidiffPatch"].encode()


def test_pull_apply_on_a_clean_checkout_gives_the_base_plus_the_patch(
    user: Cli, changelog: list[dict[str, Any]], source_repo: Path, tmp_path: Path
) -> None:
    session = changelog[1]
    patch = patch_of(session)
    checkout = clone(source_repo, tmp_path / "checkout")
    assert git("rev-parse", "HEAD", cwd=checkout).strip() == patch["baseCommitId"]
    # What a user gets with `pull | git apply` in a second clone.
    piped = clone(source_repo, tmp_path / "piped")
    patch_file = tmp_path / "session.patch"
    patch_file.write_bytes(
        user.run("remote", "pull", "--session", session["id"], binary=True).stdout
    )
    git("apply", str(patch_file), cwd=piped)

    applied = user.run("remote", "pull", "--session", session["id"], "--apply", cwd=checkout)

    assert applied.returncode == 0, applied.stderr
    assert applied.stdout == ""
    assert applied.stderr.splitlines() == [
        f"Applied the patch of session {session['id']} to {checkout} (2 files):",
        "  CHANGES.md (+3 -0)",
        "  README.md (+1 -1)",
    ]
    assert tree_state(checkout) == tree_state(piped)
    assert (checkout / "CHANGES.md").read_text() == CHANGES
    assert (checkout / "README.md").read_text() == "# greeter!\n"
    assert git("status", "--porcelain", cwd=checkout) == " M README.md\n?? CHANGES.md\n"


def test_pull_apply_leaves_a_dirty_checkout_or_one_the_patch_does_not_fit_untouched(
    user: Cli, changelog: list[dict[str, Any]], source_repo: Path, tmp_path: Path
) -> None:
    sid = changelog[2]["id"]
    dirty = clone(source_repo, tmp_path / "dirty")
    (dirty / "app.py").write_text("print('work in progress')\n")
    before = tree_state(dirty)

    line = error_line(user.run("remote", "pull", "--session", sid, "--apply", cwd=dirty), 5)

    assert "app.py" in line
    assert "Nothing was changed" in line
    assert tree_state(dirty) == before

    moved_on = clone(source_repo, tmp_path / "moved-on")
    (moved_on / "README.md").write_text("# greeter, renamed\n")
    git("commit", "-q", "-am", "Rename", cwd=moved_on)
    before = tree_state(moved_on)

    line = error_line(user.run("remote", "pull", "--session", sid, "--apply", cwd=moved_on), 5)

    assert "does not apply" in line
    assert "README.md" in line
    assert tree_state(moved_on) == before
    assert "not in a git checkout" in error_line(
        user.run("remote", "pull", "--session", sid, "--apply", cwd=tmp_path), 2
    )


def test_watch_a_completed_session_as_json_lines_and_on_a_terminal(
    user: Cli, changelog: list[dict[str, Any]], api: httpx.Client
) -> None:
    sid = changelog[0]["id"]

    as_json = user.run("remote", "watch", sid, "--json")

    assert as_json.returncode == 0, as_json.stderr
    streamed = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert streamed == list_activities(api, sid)
    assert "sessionCompleted" in streamed[-1]
    assert as_json.stderr.splitlines()[0] == f"Session {sid} COMPLETED."

    code, shown = run_on_a_terminal(user, "remote", "watch", sid)
    assert code == 0, shown
    assert "\x1b[" in shown  # styled
    for text in ("Write CHANGES.md", "Session completed", f"Session {sid} COMPLETED."):
        assert text in shown
