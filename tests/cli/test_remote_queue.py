"""``openjules remote …`` on sessions that stay where they are put: a live server without
workers (both backends), so each state is the one the commands made. Starting sessions
(``--repo .``, repoless, ``--parallel``), listing and filtering them, the verbs, and the
exit code and one-line message of each refusal. Sessions that really run are in
test_remote_agent.py."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openjules.testing import LiveServer
from tests.agent_kit import local_source
from tests.cli.remote_support import Cli, clone, created_ids, error_line
from tests.support import MISSING_SESSION_ID, api_client, kinds, list_activities, make_repo


@pytest.fixture(scope="module")
def source_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("queue-repo"), {"app.py": "print('hello')\n"})


@pytest.fixture(scope="module")
def source(server: LiveServer, source_repo: Path) -> str:
    """The repository as the source acme/Queue-Demo (mixed case: matching ignores case)."""
    return local_source(server, source_repo, "Queue-Demo")


@pytest.fixture
def cli(server: LiveServer, api_key: str, tmp_path: Path) -> Cli:
    return Cli(home=tmp_path / "home", url=server.url, key=api_key)


@pytest.fixture
def api(server: LiveServer, api_key: str) -> Iterator[httpx.Client]:
    with api_client(server.api, api_key) as client:
        yield client


def test_new_with_repo_dot_uses_the_source_the_checkout_origin_names(
    cli: Cli, source: str, source_repo: Path, tmp_path: Path
) -> None:
    checkout = clone(
        source_repo, tmp_path / "checkout", origin="git@github.com:ACME/queue-demo.git"
    )
    (checkout / "sub").mkdir()

    done = cli.run(
        "remote", "new", "--repo", ".", "--session", "Fix it", "--branch", "main",
        "--title", "Fix the thing",
        cwd=checkout / "sub",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [sid] = created_ids(done.stdout)
    assert "acme/Queue-Demo (branch main)" in done.stderr
    assert f"openjules remote watch {sid}" in done.stderr
    [session] = cli.json("remote", "list")
    assert session["id"] == sid
    assert session["sourceContext"] == {
        "source": source,
        "githubRepoContext": {"startingBranch": "main"},
    }
    assert session["title"] == "Fix the thing"


def test_new_with_repo_dot_refuses_a_checkout_no_source_matches(
    cli: Cli, source: str, source_repo: Path, tmp_path: Path
) -> None:
    checkout = clone(source_repo, tmp_path / "other", origin="https://github.com/acme/other")

    line = error_line(cli.run("remote", "new", "--repo", ".", "--session", "x", cwd=checkout), 4)

    assert "No source acme/other" in line
    assert "https://github.com/acme/other" in line
    assert "acme/Queue-Demo" in line  # the sources there are
    unknown = error_line(cli.run("remote", "new", "--repo", "acme/nope", "--session", "x"), 4)
    assert "No source acme/nope" in unknown
    outside = error_line(cli.run("remote", "new", "--repo", ".", "--session", "x", cwd=tmp_path), 2)
    assert "not in a git checkout" in outside
    assert cli.json("remote", "list") == []


def test_parallel_repoless_sessions_list_filters_and_limit(cli: Cli, api: httpx.Client) -> None:
    prompt = f"Write a haiku {secrets.token_hex(3)}"
    three = created_ids(cli.ok("remote", "new", "--session", prompt, "--parallel", "3"))
    titled = cli.json("remote", "new", "--session", "-", "--title", "Piped", input="From stdin\n")

    assert len(set(three)) == 3
    assert [(s["prompt"], s["title"]) for s in titled] == [("From stdin\n", "Piped")]
    everything = cli.json("remote", "list")
    assert [s["id"] for s in everything] == [titled[0]["id"], *reversed(three)]
    assert {s["state"] for s in everything} == {"QUEUED"}
    assert all("sourceContext" not in s for s in everything)

    table = cli.ok("remote", "list").splitlines()
    assert table[0].split() == ["ID", "STATE", "UPDATED", "SOURCE", "TITLE"]
    assert [row.split()[:2] for row in table[1:]] == [[s["id"], "QUEUED"] for s in everything]
    assert table[1].endswith("Piped")

    assert len(cli.json("remote", "list", "--state", "queued")) == 4
    assert cli.json("remote", "list", "--state", "COMPLETED") == []
    assert [s["id"] for s in cli.json("remote", "list", "--limit", "2")] == [
        s["id"] for s in everything[:2]
    ]

    assert api.post(f"/sessions/{three[0]}:archive").status_code == 200
    assert [s["id"] for s in cli.json("remote", "list", "--archived")] == [three[0]]
    assert three[0] not in {s["id"] for s in cli.json("remote", "list")}
    both = cli.json("remote", "list", "--archived", "--state", "QUEUED")
    assert [s["id"] for s in both] == [three[0]]


def test_list_repo_lists_the_sources(cli: Cli, source: str) -> None:
    assert source in {s["name"] for s in cli.json("remote", "list", "--repo")}
    table = cli.ok("remote", "list", "--repo").splitlines()
    assert table[0].split()[:1] == ["SOURCE"]
    assert any(row.split()[:2] == ["acme/Queue-Demo", "main"] for row in table[1:])


def test_pause_resume_message_and_cancel_then_watch_exits_1(cli: Cli, api: httpx.Client) -> None:
    [sid] = created_ids(cli.ok("remote", "new", "--session", "Wait in the queue"))

    paused = cli.run("remote", "pause", sid, "--json")
    assert paused.returncode == 0, paused.stderr
    assert paused.stderr.strip() == f"Paused session {sid}; it is PAUSED now."
    assert json.loads(paused.stdout)["state"] == "PAUSED"
    assert "PAUSED" in error_line(cli.run("remote", "pause", sid), 5)
    resumed = cli.run("remote", "resume", sid)
    assert resumed.returncode == 0
    assert resumed.stdout == ""
    assert resumed.stderr.strip() == f"Resumed session {sid}; it is QUEUED now."

    answer = "Use [bold]French[/bold], please."
    assert cli.run("remote", "message", sid, answer).returncode == 0
    messages = [a for a in list_activities(api, sid) if "userMessaged" in a]
    assert [m["userMessaged"]["userMessage"] for m in messages] == [answer]

    assert "no plan awaiting approval" in error_line(cli.run("remote", "approve", sid), 5)
    cancelled = cli.run("remote", "cancel", sid)
    assert cancelled.returncode == 0
    assert cancelled.stderr.strip() == f"Cancelled session {sid}; it is FAILED now."

    watched = cli.run("remote", "watch", sid)
    assert watched.returncode == 1, watched.stderr
    lines = watched.stdout.splitlines()
    assert lines[0] == f"Session {sid}: Wait in the queue"
    body = watched.stdout
    for shown in (
        "Paused by the user",
        "Resumed by the user",
        answer,
        "Session failed",
        "Cancelled by the user.",
    ):
        assert shown in body
    assert body.index("Paused by the user") < body.index(answer) < body.index("Session failed")
    assert lines[-1] == f"Session {sid} FAILED."

    as_json = cli.run("remote", "watch", sid, "--json")
    assert as_json.returncode == 1
    streamed = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert streamed == list_activities(api, sid)
    assert kinds(streamed)[-1] == "sessionFailed"


def test_refusals_name_what_and_exit_with_their_code(cli: Cli) -> None:
    [sid] = created_ids(cli.ok("remote", "new", "--session", "Nothing yet"))

    assert "has no patch" in error_line(cli.run("remote", "pull", "--session", sid), 7)
    missing = error_line(cli.run("remote", "approve", MISSING_SESSION_ID), 4)
    assert missing == f"Error: Session {MISSING_SESSION_ID} was not found on {cli.url}."
    assert error_line(cli.run("remote", "watch", MISSING_SESSION_ID), 4) == missing
