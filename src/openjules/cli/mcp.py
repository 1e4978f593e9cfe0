"""``openjules mcp``: the MCP server (``openjules.mcp``) over stdio or streamable HTTP."""

from __future__ import annotations

import click


@click.command()
def mcp() -> None:
    """Serve openjules' tools to an MCP client (Claude Desktop, Cursor, VS Code)."""
    raise click.ClickException("not yet")
