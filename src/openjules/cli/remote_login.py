"""``openjules login`` and ``logout``: the server URL and API key the ``remote`` commands
(and the SDK, and ``openjules mcp``) use when the environment names none."""

from __future__ import annotations

import os
import sys

import click

from openjules.cli.remote_errors import (
    ERROR_NOTE_META,
    ExitCode,
    RemoteCommand,
    fail,
    open_client,
)
from openjules.cli.remote_output import note
from openjules.client import ConfigError, Credentials
from openjules.client.config import (
    DEFAULT_URL,
    KEY_ENV,
    URL_ENV,
    api_root,
    credentials_path,
    forget,
    store,
)


def _read_key() -> str:
    """The key: typed at a prompt that does not echo it, or one line of piped stdin."""
    stdin = sys.stdin
    if stdin is not None and stdin.isatty():
        typed: str = click.prompt("API key", hide_input=True, err=True)
        key = typed.strip()
    else:
        key = stdin.readline().strip() if stdin is not None else ""
    if not key:
        fail(
            'No API key: type it at the prompt, or pipe it in on one line (echo "$KEY" | '
            "openjules login). An operator makes one with `openjules keys create --user NAME`.",
            code=ExitCode.USAGE,
        )
    if any(c.isspace() for c in key):
        # Never echoed: it is (most of) a secret.
        fail("The API key has spaces in it: give the key alone, on one line.", code=ExitCode.USAGE)
    return key


@click.command(cls=RemoteCommand)
@click.option(
    "--url",
    metavar="URL",
    help=f"The server [env {URL_ENV}; default {DEFAULT_URL}].",
)
@click.pass_context
def login(ctx: click.Context, *, url: str | None) -> None:
    """Store the server URL and your API key (checked with the server first) for the
    `openjules remote` commands. The key is read without echo at a prompt, or as one line
    from stdin when stdin is not a terminal; it is never printed. The file is readable by
    you alone (mode 0600). JULES_API_KEY and OPENJULES_URL, when set, win over it.

    \b
    Examples:
      openjules login --url https://jules.example.com
      echo "$OPENJULES_KEY" | openjules login --url http://127.0.0.1:8080
    """
    chosen = (url or os.environ.get(URL_ENV) or DEFAULT_URL).strip().rstrip("/")
    try:
        api_root(chosen)
    except ConfigError as exc:
        fail(str(exc), code=ExitCode.USAGE)
    key = _read_key()
    ctx.meta[ERROR_NOTE_META] = "Nothing was stored."
    client = open_client(ctx, url=chosen, api_key=key)
    client.list_sessions_page(page_size=1)
    path = store(Credentials(url=chosen, api_key=key))
    note(f"Logged in to {chosen}: stored in {path} (readable by you alone).")
    if os.environ.get(KEY_ENV):
        note(f"Note: {KEY_ENV} is set in this shell; commands use it, not the stored key.")
    if os.environ.get(URL_ENV, chosen).rstrip("/") != chosen:
        note(f"Note: {URL_ENV} is set in this shell; commands use it, not {chosen}.")


@click.command(cls=RemoteCommand)
def logout() -> None:
    """Forget the stored server URL and API key.

    \b
    Example:
      openjules logout
    """
    path = credentials_path()
    if forget():
        note(f"Logged out: removed {path}.")
    else:
        note(f"Not logged in: nothing was stored at {path}.")
    if os.environ.get(KEY_ENV):
        note(f"Note: {KEY_ENV} is still set in this shell.")
