"""What a tool reports when the call to the server fails: the server's own words.

The MCP SDK hands a ``ToolError``'s message to the model (``isError`` result) and hides
any other exception behind "Error executing tool NAME", so every failure the user can act
on (a wrong id, a state that does not allow the verb, a server that is down) is turned
into a ``ToolError`` here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from openjules._errors import APIError
from openjules.client import ConfigError

P = ParamSpec("P")
T = TypeVar("T")


def message_of(error: APIError) -> str:
    """``NOT_FOUND: Requested entity was not found.``: the status a program can match and
    the sentence a person reads."""
    return f"{error.status}: {error.message}" if error.message else error.status


def reported(tool: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """``tool`` with the server's errors (and an unreachable server) as ``ToolError``."""

    # functools.wraps keeps the signature the SDK reads to build the tool's input schema.
    @wraps(tool)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await tool(*args, **kwargs)
        except APIError as error:
            raise ToolError(message_of(error)) from error
        except ConfigError as error:
            raise ToolError(f"FAILED_PRECONDITION: {error}") from error

    return run
