"""The one ``AsyncClient`` a running MCP server shares between its tool calls: opened when
the server starts (the SDK's lifespan), closed when it stops, reached from a tool through
its ``Context``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

from openjules.client import AsyncClient, Credentials

# What every tool receives (and the SDK leaves out of the input schema).
Ctx = Context[AsyncClient, Any]


def jules(ctx: Ctx) -> AsyncClient:
    """The server's client, from a tool's context."""
    return ctx.request_context.lifespan_context


def lifespan(
    credentials: Credentials,
) -> Callable[[MCPServer[AsyncClient]], AbstractAsyncContextManager[AsyncClient]]:
    @asynccontextmanager
    async def opened(_server: MCPServer[AsyncClient]) -> AsyncIterator[AsyncClient]:
        async with AsyncClient(base_url=credentials.url, api_key=credentials.api_key) as client:
            yield client

    return opened
