"""What ``openjules login`` / ``remote …`` exit with, and the one place where what the SDK
raises becomes a one-line ``Error: …`` on stderr and an exit code a script can rely on.

Every command of the ``remote`` group (and ``login``/``logout``) is a ``RemoteCommand``:
its ``invoke`` maps the SDK's exceptions; commands themselves never catch them.
"""

from __future__ import annotations

import os
import sys
from enum import IntEnum
from typing import Any, NoReturn

import click
import httpx

from openjules._errors import (
    AlreadyExists,
    APIError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from openjules.client import Client, ConfigError, ConnectionFailed, Unsupported
from openjules.client.config import DEFAULT_URL, URL_ENV, read_stored

# ctx.meta keys: the server a command talks to (for messages), and a sentence added to any
# error (e.g. login's "Nothing was stored.").
SERVER_URL_META = "openjules.remote.url"
ERROR_NOTE_META = "openjules.remote.error_note"


class ExitCode(IntEnum):
    OK = 0
    SESSION_FAILED = 1
    USAGE = 2
    NOT_AUTHORIZED = 3
    NOT_FOUND = 4
    REFUSED = 5
    UNAVAILABLE = 6
    NO_PATCH = 7
    INTERRUPTED = 130
    # 128 + SIGPIPE, as a shell reports a writer whose reader went away.
    BROKEN_PIPE = 141


# What each code means, as ``openjules remote --help`` lists them.
EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "done (watch: the session COMPLETED)",
    ExitCode.SESSION_FAILED: "watch: the session FAILED",
    ExitCode.USAGE: "usage: a bad option or argument, or one the server calls invalid",
    ExitCode.NOT_AUTHORIZED: "not logged in, no API key, or the key was refused",
    ExitCode.NOT_FOUND: "no such session or source",
    ExitCode.REFUSED: "refused: not in the session's state, a dirty tree, a patch that "
    "does not apply",
    ExitCode.UNAVAILABLE: "the server cannot be reached, is unavailable or failed",
    ExitCode.NO_PATCH: "pull: the session has no patch",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
    ExitCode.BROKEN_PIPE: "the reader of the output went away (e.g. `| head`)",
}


def exit_codes_help() -> str:
    """The exit codes as a help paragraph (``\\b`` keeps click from rewrapping it)."""
    lines = [f"  {int(code):>3}  {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items()]
    return "\b\nExit codes:\n" + "\n".join(lines)


class RemoteError(click.ClickException):
    """A one-line error (``Error: …`` on stderr) with the exit code it stands for."""

    def __init__(self, message: str, *, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code
        # click exits with ``exit_code``, a class attribute it reads from the instance.
        object.__setattr__(self, "exit_code", int(code))


def fail(message: str, *, code: ExitCode) -> NoReturn:
    raise RemoteError(message, code=code)


def server_url() -> str:
    """The server the commands talk to unless a command names one (for messages)."""
    stored = read_stored()
    return os.environ.get(URL_ENV) or (stored.url if stored else "") or DEFAULT_URL


def open_client(
    ctx: click.Context, *, url: str | None = None, api_key: str | None = None
) -> Client:
    """The SDK client for this command (closed when the command ends): ``url``/``api_key``,
    else ``OPENJULES_URL``/``JULES_API_KEY``, else what ``openjules login`` stored."""
    ctx.meta[SERVER_URL_META] = url or server_url()
    return ctx.with_resource(Client(base_url=url, api_key=api_key))


def _not_found(ctx: click.Context, *, url: str, message: str) -> str:
    session = ctx.params.get("session_id")
    if session:
        return f"Session {session} was not found on {url}."
    return f"Not found on {url}: {message}"


def translate(exc: Exception, ctx: click.Context) -> RemoteError:
    """The RemoteError for what the SDK raised (messages never hold the API key)."""
    url = str(ctx.meta.get(SERVER_URL_META) or server_url())
    if isinstance(exc, ConfigError):
        return RemoteError(str(exc), code=ExitCode.NOT_AUTHORIZED)
    if isinstance(exc, ConnectionFailed):
        return RemoteError(exc.message[:1].upper() + exc.message[1:], code=ExitCode.UNAVAILABLE)
    if isinstance(exc, httpx.InvalidURL):
        return RemoteError(f"Not a usable server URL: {url} ({exc})", code=ExitCode.NOT_AUTHORIZED)
    if isinstance(exc, httpx.HTTPError):
        return RemoteError(f"The server at {url} answered badly: {exc}", code=ExitCode.UNAVAILABLE)
    assert isinstance(exc, APIError)
    message = exc.message or type(exc).__name__
    if isinstance(exc, Unauthenticated | PermissionDenied):
        hint = " Log in again with `openjules login`, or set JULES_API_KEY."
        if ctx.command.name == "login":
            hint = ""  # the key being refused is the one just given
        return RemoteError(
            f"The server at {url} refused the API key: {message.rstrip('.')}.{hint}",
            code=ExitCode.NOT_AUTHORIZED,
        )
    if isinstance(exc, NotFound):
        return RemoteError(_not_found(ctx, url=url, message=message), code=ExitCode.NOT_FOUND)
    if isinstance(exc, Unsupported):
        return RemoteError(
            f"The server at {url} does not support this: {message}", code=ExitCode.REFUSED
        )
    if isinstance(exc, FailedPrecondition | AlreadyExists):
        return RemoteError(message, code=ExitCode.REFUSED)
    if isinstance(exc, InvalidArgument):
        return RemoteError(message, code=ExitCode.USAGE)
    return RemoteError(
        f"The server at {url} could not do it ({exc.status}): {message}",
        code=ExitCode.UNAVAILABLE,
    )


def _with_note(error: RemoteError, ctx: click.Context) -> RemoteError:
    note = ctx.meta.get(ERROR_NOTE_META)
    if note:
        return RemoteError(f"{error.message.rstrip('.')}. {note}", code=error.code)
    return error


# What a command may raise that ``translate`` turns into an exit code.
SDK_ERRORS = (APIError, ConfigError, httpx.HTTPError, httpx.InvalidURL)


class RemoteCommand(click.Command):
    """A command whose SDK errors end it with one line and a documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SDK_ERRORS as exc:
            raise _with_note(translate(exc, ctx), ctx) from None
        except RemoteError as exc:
            raise _with_note(exc, ctx) from None
        except BrokenPipeError:
            # The reader went away (`… | head`): stop quietly, as other tools do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(int(ExitCode.BROKEN_PIPE))


class RemoteGroup(click.Group):
    command_class = RemoteCommand

    def list_commands(self, ctx: click.Context) -> list[str]:
        # In the order they were added (the order of a session's life), not sorted.
        return list(self.commands)
