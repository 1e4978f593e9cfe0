"""``openjules mcp --http PORT``: the streamable HTTP transport (endpoint /mcp) as a real
process, driven with the official MCP client SDK's streamable HTTP client against a live
server on both backends; one agent session per backend (a repository-less one, followed to
the files it wrote). This server finds the server and key where `openjules login` stored
them (the stdio tests give them in the environment)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from mcp.client.streamable_http import streamable_http_client

from openjules.client import Credentials
from openjules.client.config import store
from openjules.testing import LiveServer
from tests.agent_kit import Scripts
from tests.engine.agent_support import needs_bubblewrap
from tests.engine.worker_support import call
from tests.mcp.support import McpClient, McpHttpProcess, Progress, text_of
from tests.support import MISSING_SESSION_ID

pytestmark = needs_bubblewrap


@pytest.fixture(scope="module")
def http_server(
    agent: LiveServer, user_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[McpHttpProcess]:
    home = tmp_path_factory.mktemp("mcp-http")
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "OPENJULES_CONFIG_DIR": str(home / "config"),
    }
    store(Credentials(url=agent.url, api_key=user_key), environ=env)
    process = McpHttpProcess(env, log_dir=home)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def mcp(http_server: McpHttpProcess) -> Iterator[McpClient]:
    client = McpClient(streamable_http_client(http_server.url))
    try:
        yield client
    finally:
        client.close()


def test_it_says_where_it_listens_and_refuses_requests_for_other_host_names(
    agent: LiveServer, http_server: McpHttpProcess, mcp: McpClient
) -> None:
    assert f"streamable HTTP at {http_server.url}" in http_server.stderr()
    assert agent.url in http_server.stderr()
    assert len(mcp.tools()) == 10
    # A web page that rebinds its own name to 127.0.0.1 cannot drive it from a browser.
    rebound = httpx.post(
        http_server.url,
        headers={"Host": "attacker.example", "Accept": "application/json, text/event-stream"},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        timeout=10,
    )
    assert rebound.status_code == 421


def test_a_session_without_a_repository_followed_to_the_files_it_wrote(
    mcp: McpClient, scripts: Scripts
) -> None:
    prompt = scripts.prompt(
        "Write a haiku about patches",
        [
            call("propose_plan", steps=[{"title": "Write the haiku"}]),
            call("write_file", path="haiku.txt", content="diff in the moonlight\n"),
            call("finish", summary="Wrote haiku.txt.", commit_message="Add a haiku"),
        ],
    )
    created = mcp.ok("create_session", prompt=prompt)
    sid = created["id"]
    assert "sourceContext" not in created

    progress: list[Progress] = []
    done = mcp.call("wait_for_session", session=sid, until="done", progress_log=progress)
    assert done.structured_content["state"] == "COMPLETED", text_of(
        mcp.call("list_activities", session=sid)
    )
    assert progress, "no progress notification arrived"
    assert "COMPLETED" in (progress[-1].message or "")

    patch = mcp.ok("get_patch", session=sid)
    assert patch["hasChanges"] is True
    assert "+++ b/haiku.txt" in patch["unidiffPatch"]
    assert "+diff in the moonlight" in patch["unidiffPatch"]

    listed = mcp.call("list_sessions", limit=5)
    assert sid in [s["id"] for s in listed.structured_content["sessions"]]
    assert sid in text_of(listed)
    assert mcp.ok("get_session", session=sid)["state"] == "COMPLETED"


def test_an_unknown_session_is_the_servers_not_found(mcp: McpClient) -> None:
    missing = mcp.call("get_session", session=MISSING_SESSION_ID)
    assert missing.is_error
    assert "NOT_FOUND: Requested entity was not found." in text_of(missing)
    waited = mcp.call("wait_for_session", session=MISSING_SESSION_ID)
    assert waited.is_error
    assert "NOT_FOUND: " in text_of(waited)
