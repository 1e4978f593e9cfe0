"""``openjules mcp``: the MCP server (``openjules.mcp``) over stdio or streamable HTTP."""

from __future__ import annotations

import ipaddress
import os
import signal
from collections.abc import Callable

import anyio
import click

from openjules.client import ConfigError
from openjules.client.config import KEY_ENV, URL_ENV, resolve

EPILOG = f"""\b
Examples:
  # What an MCP client (Claude Desktop, Cursor, VS Code) runs, with in its "env":
  #   {URL_ENV}=http://127.0.0.1:8080  {KEY_ENV}=ojk_...
  openjules mcp
  # One server for clients that connect over HTTP: http://127.0.0.1:8765/mcp
  openjules mcp --http 8765

The server and key come from {URL_ENV} / {KEY_ENV}, else from `openjules login`.
There is no --api-key option on purpose: a key on a command line is visible to
every user of the machine (ps); put it in the MCP client's "env" or run
`openjules login` once.
"""


@click.command(epilog=EPILOG)
@click.option(
    "--http",
    "port",
    type=click.IntRange(1, 65535),
    default=None,
    metavar="PORT",
    help="Serve streamable HTTP on PORT (endpoint /mcp) instead of stdio.",
)
@click.option(
    "--host",
    default=None,
    metavar="ADDRESS",
    help="With --http: the address to listen on [default: 127.0.0.1]. Anyone who can "
    "reach it acts with your API key.",
)
@click.option(
    "--url",
    default=None,
    help=f"The openjules server [env {URL_ENV}; else `openjules login`'s; "
    "default http://127.0.0.1:8080].",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log each request to the openjules server, and tool calls that fail, to stderr.",
)
def mcp(port: int | None, host: str | None, url: str | None, verbose: bool) -> None:
    """Serve openjules' tools to an MCP client (Claude Desktop, Cursor, VS Code): start,
    follow, approve, message and cancel sessions, and fetch their patches.

    Over stdio (the default) stdout carries only the protocol; messages go to stderr.
    """
    if host is not None and port is None:
        raise click.UsageError("--host only applies with --http PORT.")
    try:
        credentials = resolve(url=url, api_key=None)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    # Imported here: the SDK's server stack (starlette, uvicorn) is only loaded when the
    # command runs, not for every `openjules` command.
    from openjules.mcp import HTTP_PATH, build_server, serve_http, serve_stdio

    server = build_server(credentials=credentials, log_level="INFO" if verbose else "WARNING")
    if port is None:
        # The SDK reads stdin in a worker thread that no cancellation stops: Ctrl-C (someone
        # trying the command in a terminal) would wait for the next line of input. Nothing
        # here needs a graceful end (the state is the server's), so it ends at once.
        signal.signal(signal.SIGINT, lambda _signum, _frame: os._exit(130))
        anyio.run(serve_stdio, server)
        return
    address = host or "127.0.0.1"
    if not _loopback(address):
        click.echo(
            f"warning: listening on {address}: anyone who can reach port {port} can use "
            f"openjules with this API key (no MCP client authentication)",
            err=True,
        )
    shown = f"[{address}]" if ":" in address else address
    click.echo(
        f"openjules mcp: streamable HTTP at http://{shown}:{port}{HTTP_PATH} "
        f"(sessions on {credentials.url})",
        err=True,
    )
    _until_interrupted(lambda: anyio.run(lambda: serve_http(server, host=address, port=port)))


def _until_interrupted(run: Callable[[], None]) -> None:
    """``run()``; Ctrl-C ends it quietly (uvicorn stops gracefully, then raises it again),
    with the shell's exit status for SIGINT rather than a traceback."""
    try:
        run()
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
