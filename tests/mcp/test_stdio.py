"""``openjules mcp`` over stdio, as Claude Desktop, Cursor or VS Code run it: the real
executable spawned by the official MCP client SDK (``mcp.client.stdio``), with the server
and key in its environment, against a live server (both backends) whose agent runs on the
fake model in the real sandbox.

One MCP server process per module; two agent sessions per backend: one driven from plan
approval through a question to its patch, one cancelled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.client.stdio import StdioServerParameters, stdio_client

from openjules.store.session_actions import CANCELLED_REASON
from openjules.testing import LiveServer
from tests.agent_kit import Scripts
from tests.engine.agent_support import needs_bubblewrap
from tests.engine.worker_support import call
from tests.mcp.fixtures import Greeter
from tests.mcp.support import OPENJULES, McpClient, Progress, mcp_env, text_of
from tests.support import MISSING_SESSION_ID, git

pytestmark = needs_bubblewrap

TOOLS = {
    "list_sources",
    "create_session",
    "get_session",
    "list_sessions",
    "list_activities",
    "approve_plan",
    "send_message",
    "wait_for_session",
    "get_patch",
    "cancel_session",
}


@pytest.fixture(scope="module")
def mcp(
    agent: LiveServer, user_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[McpClient]:
    """``openjules mcp`` over stdio for the module's user (its stderr in a log file)."""
    home = tmp_path_factory.mktemp("mcp-stdio")
    params = StdioServerParameters(
        command=OPENJULES,
        args=["mcp"],
        env=mcp_env(agent, user_key, config_dir=home / "config"),
    )
    with (home / "stderr.log").open("w") as errlog:
        client = McpClient(stdio_client(params, errlog=errlog))
        try:
            yield client
        finally:
            client.close()


def schema_of(tool: Any) -> dict[str, Any]:
    schema: dict[str, Any] = tool.input_schema
    return schema


def test_the_ten_tools_with_their_schemas(mcp: McpClient) -> None:
    tools = {tool.name: tool for tool in mcp.tools()}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description, tool.name
        assert tool.input_schema["type"] == "object"
        # Structured results come with the schema of their JSON.
        assert tool.output_schema is not None
        assert tool.output_schema["type"] == "object"

    create = tools["create_session"].input_schema
    assert create["required"] == ["prompt"]
    assert set(create["properties"]) == {
        "prompt",
        "source",
        "branch",
        "title",
        "require_plan_approval",
        "auto_pr",
    }
    assert create["properties"]["require_plan_approval"]["type"] == "boolean"
    assert "OWNER/REPO" in create["properties"]["source"]["description"]
    # The Session's wire fields (camelCase), as the REST API sends them.
    session_schema = tools["get_session"].output_schema
    assert session_schema is not None
    assert {"id", "state", "sourceContext", "outputs"} <= set(session_schema["properties"])

    wait = tools["wait_for_session"].input_schema
    assert wait["required"] == ["session"]
    assert wait["properties"]["until"]["enum"] == ["done", "needs_input", "settled"]
    assert wait["properties"]["until"]["default"] == "settled"
    assert wait["properties"]["timeout"]["type"] == "number"

    listing = tools["list_sessions"].input_schema
    assert "COMPLETED" in listing["$defs"]["State"]["enum"]
    assert set(listing["properties"]) == {"state", "archived", "limit"}
    assert set(tools["list_activities"].input_schema["properties"]) == {
        "session",
        "limit",
        "after",
    }
    assert tools["send_message"].input_schema["required"] == ["session", "message"]

    for name in ("list_sources", "get_session", "list_sessions", "get_patch"):
        annotations = tools[name].annotations
        assert annotations is not None
        assert annotations.read_only_hint is True, name
    cancel = tools["cancel_session"].annotations
    assert cancel is not None
    assert cancel.destructive_hint is True


def test_a_session_driven_through_mcp_from_plan_approval_to_its_patch(
    mcp: McpClient, scripts: Scripts, greeter: Greeter, tmp_path: Path
) -> None:
    prompt = scripts.prompt(
        "Make the app greet the world",
        [
            call(
                "propose_plan",
                steps=[{"title": "Greet the world", "description": "Edit app.py."}],
            ),
            call("edit_file", path="app.py", old_text="'hello'", new_text="'hello, world'"),
            call("ask_user", text="Should the app also say goodbye?"),
            call("write_file", path="goodbye.py", content="print('goodbye')\n"),
            call(
                "finish",
                summary="The app greets the world and says goodbye.",
                commit_message="Greet the world and say goodbye",
            ),
        ],
    )
    sources = mcp.call("list_sources")
    assert greeter.source in [s["name"] for s in sources.structured_content["sources"]]
    assert "acme/greeter" in text_of(sources)

    created = mcp.ok(
        "create_session",
        prompt=prompt,
        source="acme/greeter",
        title="Greet the world",
        require_plan_approval=True,
    )
    sid = created["id"]
    assert created["sourceContext"]["source"] == greeter.source
    assert created["title"] == "Greet the world"

    # Plan approval: the wait reports its progress as the session moves.
    progress: list[Progress] = []
    waited = mcp.call("wait_for_session", session=sid, until="needs_input", progress_log=progress)
    assert waited.structured_content["state"] == "AWAITING_PLAN_APPROVAL"
    assert "approve_plan" in text_of(waited)
    assert progress, "no progress notification arrived"
    assert all(p.message and sid in p.message for p in progress)
    assert "AWAITING_PLAN_APPROVAL" in (progress[-1].message or "")
    values = [p.progress for p in progress]
    assert values == sorted(set(values)), "progress must increase with each notification"

    plan = mcp.call("list_activities", session=sid)
    activities = plan.structured_content["activities"]
    proposed = next(a for a in activities if "planGenerated" in a)
    assert [s["title"] for s in proposed["planGenerated"]["plan"]["steps"]] == ["Greet the world"]
    assert "proposed plan" in text_of(plan)

    approved = mcp.ok("approve_plan", session=sid)
    assert approved["state"] != "AWAITING_PLAN_APPROVAL"

    # The agent's question, read after the plan and answered with send_message.
    asked = mcp.ok("wait_for_session", session=sid)
    assert asked["state"] == "AWAITING_USER_FEEDBACK"
    later = mcp.call("list_activities", session=sid, after=proposed["id"])
    assert proposed["id"] not in [a["id"] for a in later.structured_content["activities"]]
    assert "Should the app also say goodbye?" in text_of(later)
    answered = mcp.ok("send_message", session=sid, message="Yes: add goodbye.py.")
    assert answered["state"] != "AWAITING_USER_FEEDBACK"

    done = mcp.call("wait_for_session", session=sid, until="done")
    assert done.structured_content["state"] == "COMPLETED"
    assert "get_patch" in text_of(done)

    patch = mcp.call("get_patch", session=sid)
    found = patch.structured_content
    assert found["hasChanges"] is True
    assert found["final"] is True
    assert found["suggestedCommitMessage"] == "Greet the world and say goodbye"
    # The readable result ends with the diff alone, exactly as `git apply` takes it.
    assert patch.content[-1].text == found["unidiffPatch"]  # type: ignore[union-attr]
    clone = tmp_path / "clone"
    git("clone", "-q", str(greeter.repo), str(clone), cwd=tmp_path)
    git("checkout", "-q", found["baseCommitId"], cwd=clone)
    (tmp_path / "session.patch").write_text(found["unidiffPatch"])
    git("apply", str(tmp_path / "session.patch"), cwd=clone)
    assert (clone / "app.py").read_text() == "print('hello, world')\n"
    assert (clone / "goodbye.py").read_text() == "print('goodbye')\n"

    session = mcp.ok("get_session", session=f"sessions/{sid}")
    assert session["state"] == "COMPLETED"
    assert any("changeSet" in output for output in session["outputs"])
    completed = mcp.ok("list_sessions", state="COMPLETED")
    assert sid in [s["id"] for s in completed["sessions"]]
    waiting = mcp.ok("list_sessions", state=["AWAITING_PLAN_APPROVAL", "IN_PROGRESS"])
    assert sid not in [s["id"] for s in waiting["sessions"]]
    assert sid not in [s["id"] for s in mcp.ok("list_sessions", archived=True)["sessions"]]


def test_cancel_a_session_waiting_for_approval(mcp: McpClient, scripts: Scripts) -> None:
    prompt = scripts.prompt(
        "Upgrade every dependency",
        [call("propose_plan", steps=[{"title": "Upgrade", "description": "Bump versions."}])],
    )
    sid = mcp.ok("create_session", prompt=prompt, require_plan_approval=True)["id"]
    assert mcp.ok("wait_for_session", session=sid)["state"] == "AWAITING_PLAN_APPROVAL"

    # Waiting for an end that cannot come before someone acts: the wait says it is still
    # waiting, then gives up with the session as it is (not an error).
    progress: list[Progress] = []
    stuck = mcp.call(
        "wait_for_session", session=sid, until="done", timeout=1, progress_log=progress
    )
    assert not stuck.is_error
    assert stuck.structured_content["state"] == "AWAITING_PLAN_APPROVAL"
    assert "Still AWAITING_PLAN_APPROVAL after 1 s" in text_of(stuck)
    assert any("still AWAITING_PLAN_APPROVAL" in (p.message or "") for p in progress)

    cancelled = mcp.call("cancel_session", session=sid)
    assert cancelled.structured_content["state"] == "FAILED"
    assert "Cancelled" in text_of(cancelled)
    ended = mcp.call("list_activities", session=sid, limit=1)
    assert ended.structured_content["activities"][0]["sessionFailed"]["reason"] == CANCELLED_REASON
    assert ended.structured_content["earlier"] >= 1

    # Nothing was changed: a plain "no changes", not an error.
    patch = mcp.call("get_patch", session=sid)
    assert not patch.is_error
    assert patch.structured_content["hasChanges"] is False
    assert "has no changes" in text_of(patch)

    # A verb the session's state does not allow: the server's reason.
    refused = mcp.call("approve_plan", session=sid)
    assert refused.is_error
    assert "FAILED_PRECONDITION: " in text_of(refused)


def test_errors_carry_the_servers_status_and_message(mcp: McpClient) -> None:
    missing = mcp.call("get_session", session=MISSING_SESSION_ID)
    assert missing.is_error
    assert "NOT_FOUND: Requested entity was not found." in text_of(missing)

    malformed = mcp.call("get_session", session="not/an/id")
    assert malformed.is_error
    assert "INVALID_ARGUMENT: Not a session id or name" in text_of(malformed)

    unknown_source = mcp.call("create_session", prompt="Fix it", source="acme/missing")
    assert unknown_source.is_error
    assert "sources/github/acme/missing" in text_of(unknown_source)
