"""``openjules mcp``: an MCP server (Model Context Protocol, the official ``mcp`` SDK) whose
tools drive sessions on an openjules (or Jules-compatible) server through the SDK's
``AsyncClient``: list_sources, create_session, get_session, list_sessions,
list_activities, approve_plan, send_message, wait_for_session, get_patch, cancel_session.

Like the SDK, it is a client: it reaches the server over HTTP only.
"""

from openjules.mcp.server import HTTP_PATH, build_server, serve_http, serve_stdio

__all__ = ["HTTP_PATH", "build_server", "serve_http", "serve_stdio"]
