"""``remote watch``: follow a session live until it ends.

On a terminal the activities are styled (rich) under a spinner; into a pipe or a file
they are plain lines; with ``--json`` each activity is one JSON line (what a script
reads). When the session waits for a person the command says what to run, and goes on
following.
"""

from __future__ import annotations

import json
import sys
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import click
from rich.console import Console
from rich.status import Status
from rich.text import Text

from openjules._types import Activity, Session, State
from openjules.cli.remote_errors import ExitCode, RemoteCommand, open_client
from openjules.cli.remote_render import activity_lines, ending_lines, header_lines, waiting_lines
from openjules.client import Client
from openjules.client.following import newer_than_filter


class Screen:
    """Where the lines go: a styled terminal (with a spinner), plain text, or — with
    ``--json`` — nowhere but the activities themselves on stdout (notes on stderr)."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        terminal = not as_json and sys.stdout.isatty()
        self.console = Console(highlight=False) if terminal else None
        self._status: Status | None = None

    def running(self, session_id: str) -> AbstractContextManager[Any]:
        if self.console is None:
            return nullcontext()
        self._status = self.console.status(
            f"Following session {session_id} (Ctrl-C stops watching; the session goes on)"
        )
        return self._status

    def state(self, session: Session) -> None:
        if self._status is not None:
            self._status.update(f"Session {session.id} is {session.state.value}")

    def activity(self, activity: Activity) -> None:
        if self.as_json:
            click.echo(json.dumps(activity.to_wire(), ensure_ascii=False))
        else:
            self.show(activity_lines(activity))

    def show(self, lines: list[Text], *, note: bool = False) -> None:
        if self.console is not None:
            for line in lines:
                self.console.print(line, soft_wrap=True)
            return
        for line in lines:
            click.echo(line.plain, err=note and self.as_json)


def _may_wait(activity: Activity) -> bool:
    """Whether the session may wait for a person after ``activity``: a plan, a message
    from the agent (a question), or a pause or resume by the user."""
    return (
        activity.plan_generated is not None
        or activity.agent_messaged is not None
        or (activity.progress_updated is not None and activity.originator == "user")
    )


def _is_latest(client: Client, session_id: str, activity: Activity) -> bool:
    """Whether nothing came after ``activity`` (a stream replaying history passes plans
    and questions the session has moved on from)."""
    page = client.list_activities_page(session_id, page_size=1, filter=newer_than_filter(activity))
    return not page.activities


def follow(client: Client, session: Session, screen: Screen) -> Session:
    """Show every activity of ``session`` until it has ended; the session then."""
    for activity in client.stream_activities(session.id):
        screen.activity(activity)
        if not _may_wait(activity):
            continue
        current = client.get_session(session.id)
        screen.state(current)
        hint = waiting_lines(current)
        if hint and _is_latest(client, session.id, activity):
            screen.show(hint, note=True)
    return client.get_session(session.id)


@click.command(cls=RemoteCommand)
@click.argument("session_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print each activity as one JSON line.")
@click.pass_context
def watch(ctx: click.Context, *, session_id: str, as_json: bool) -> None:
    """Follow session ID live (its history first) until it ends: the plan, commands with
    the end of their output, messages and state changes. Exits 0 when the session
    COMPLETED and 1 when it FAILED.

    \b
    Examples:
      openjules remote watch 1234567890123456789
      openjules remote watch 1234567890123456789 --json | jq -c '.progressUpdated // empty'
    """
    client = open_client(ctx)
    screen = Screen(as_json=as_json)
    session = client.get_session(session_id)
    if not as_json:
        screen.show(header_lines(session))
    try:
        with screen.running(session.id):
            final = follow(client, session, screen)
    except KeyboardInterrupt:
        click.echo(
            f"Stopped watching session {session.id}; it goes on "
            f"(follow it again with `openjules remote watch {session.id}`).",
            err=True,
        )
        ctx.exit(int(ExitCode.INTERRUPTED))
    screen.show(ending_lines(final), note=True)
    if final.state is State.FAILED:
        ctx.exit(int(ExitCode.SESSION_FAILED))
