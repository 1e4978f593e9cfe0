"""``openjules mcp`` as a command: its help, the errors it stops on before serving, that
stdout carries nothing but the protocol over stdio, and a server it cannot reach told to
the model as such. No openjules server runs here (or one that is gone)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.cli.support import free_port
from tests.mcp.support import OPENJULES, McpClient, text_of

RUN_TIMEOUT_S = 60
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "a terminal", "version": "0"},
    },
}


def run_mcp(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPENJULES, "mcp", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No server or key in the environment, and no stored login."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(tmp_path),
        "OPENJULES_CONFIG_DIR": str(tmp_path / "config"),
        **extra,
    }


def test_help_shows_both_transports_with_examples(tmp_path: Path) -> None:
    done = run_mcp("--help", env=bare_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "--http PORT" in done.stdout
    assert "Examples:" in done.stdout
    assert "openjules mcp --http 8765" in done.stdout
    assert "JULES_API_KEY" in done.stdout
    assert "--api-key" in done.stdout  # why there is none
    assert "Claude Desktop" in done.stdout


def test_without_a_key_it_stops_at_once_saying_where_keys_come_from(tmp_path: Path) -> None:
    done = run_mcp(env=bare_env(tmp_path))
    assert done.returncode == 1
    assert done.stdout == ""
    assert "No API key" in done.stderr
    assert "JULES_API_KEY" in done.stderr
    assert "openjules login" in done.stderr


def test_a_bad_server_url_and_host_without_http_are_refused(tmp_path: Path) -> None:
    env = bare_env(tmp_path, JULES_API_KEY="ojk_000000000000_x")
    bad_url = run_mcp("--url", "127.0.0.1:8080", env=env)
    assert bad_url.returncode == 1
    assert "must start with http:// or https://" in bad_url.stderr
    host_alone = run_mcp("--host", "0.0.0.0", env=env)
    assert host_alone.returncode == 2
    assert "--host only applies with --http" in host_alone.stderr


def test_over_stdio_nothing_but_the_protocol_reaches_stdout(tmp_path: Path) -> None:
    """A client that sends nothing and closes stdin: the server ends, having written
    nothing (a stray line on stdout would break the client's JSON-RPC stream)."""
    env = bare_env(tmp_path, JULES_API_KEY="ojk_000000000000_x")
    done = run_mcp(env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_a_server_that_cannot_be_reached_is_a_tool_error_saying_so(tmp_path: Path) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    params = StdioServerParameters(
        command=OPENJULES,
        args=["mcp", "--url", gone],
        env=bare_env(tmp_path, JULES_API_KEY="ojk_000000000000_x"),
    )
    with (tmp_path / "stderr.log").open("w") as errlog:
        mcp = McpClient(stdio_client(params, errlog=errlog))
        try:
            result = mcp.call("list_sessions")
        finally:
            mcp.close()
    assert result.is_error
    assert f"UNAVAILABLE: cannot reach the server at {gone}" in text_of(result)


def test_ctrl_c_ends_the_stdio_server_at_once(tmp_path: Path) -> None:
    """Someone trying the command in a terminal: Ctrl-C ends it (without waiting for more
    input) quietly, with SIGINT's exit status."""
    process = subprocess.Popen(
        [OPENJULES, "mcp"],
        env=bare_env(tmp_path, JULES_API_KEY="ojk_000000000000_x"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        # Serving: it answers an initialize request (stdin then stays open, unread).
        process.stdin.write(json.dumps(INITIALIZE) + "\n")
        process.stdin.flush()
        answer = json.loads(process.stdout.readline())
        assert answer["id"] == INITIALIZE["id"]
        assert answer["result"]["serverInfo"]["name"] == "openjules"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=RUN_TIMEOUT_S) == 130
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
