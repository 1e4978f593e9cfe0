"""The MCP server: openjules' ten tools over one ``AsyncClient``, served over stdio or
streamable HTTP by the official ``mcp`` SDK (``MCPServer``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

from openjules import __version__
from openjules.client import AsyncClient, Credentials
from openjules.mcp.activities import list_activities
from openjules.mcp.connection import lifespan
from openjules.mcp.patches import get_patch
from openjules.mcp.sessions import (
    approve_plan,
    cancel_session,
    create_session,
    get_session,
    list_sessions,
    send_message,
)
from openjules.mcp.sources import list_sources
from openjules.mcp.waiting import wait_for_session

NAME = "openjules"
HTTP_PATH = "/mcp"
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

INSTRUCTIONS = """\
openjules runs coding sessions: an agent works on a task in a repository (or in an empty
workspace) inside a sandbox, and ends with a patch or a pull request.
The usual flow: list_sources to pick a repository; create_session with the task;
wait_for_session until it needs someone or is done; when it waits for plan approval, read
the plan with list_activities and approve_plan; when it asks a question, answer with
send_message; once COMPLETED, get_patch returns the diff. cancel_session stops one for good.
Keep the session ids from the results: every other tool takes one."""

READS = ToolAnnotations(read_only_hint=True, open_world_hint=False)
# Changes a session, adds to it, and never destroys anything.
ACTS = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)


@dataclass(frozen=True)
class ToolSpec:
    fn: Callable[..., Awaitable[Any]]
    title: str
    annotations: ToolAnnotations


TOOLS = (
    ToolSpec(list_sources, "List repositories", READS),
    ToolSpec(
        create_session,
        "Start a coding session",
        # With auto_pr it pushes a branch and opens a pull request on GitHub.
        ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True),
    ),
    ToolSpec(get_session, "Get a session", READS),
    ToolSpec(list_sessions, "List sessions", READS),
    ToolSpec(list_activities, "List a session's activities", READS),
    ToolSpec(approve_plan, "Approve a session's plan", ACTS),
    ToolSpec(send_message, "Message a session's agent", ACTS),
    ToolSpec(wait_for_session, "Wait for a session", READS),
    ToolSpec(get_patch, "Get a session's patch", READS),
    ToolSpec(
        cancel_session,
        "Cancel a session",
        ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False),
    ),
)


def build_server(
    *, credentials: Credentials, log_level: LogLevel = "WARNING"
) -> MCPServer[AsyncClient]:
    """The server, ready to run; its client to the openjules server opens when it starts.

    (``MCPServer`` sets up logging to stderr as it is made: stdout is the protocol's.)"""
    server: MCPServer[AsyncClient] = MCPServer(
        NAME,
        title="openjules",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan(credentials),
        log_level=log_level,
    )
    for spec in TOOLS:
        server.add_tool(spec.fn, title=spec.title, annotations=spec.annotations)
    return server


async def serve_stdio(server: MCPServer[AsyncClient]) -> None:
    await server.run_stdio_async()


async def serve_http(server: MCPServer[AsyncClient], *, host: str, port: int) -> None:
    """Streamable HTTP at ``http://HOST:PORT/mcp`` (with the SDK's DNS-rebinding guard
    when HOST is a loopback name or address)."""
    await server.run_streamable_http_async(host=host, port=port, streamable_http_path=HTTP_PATH)
