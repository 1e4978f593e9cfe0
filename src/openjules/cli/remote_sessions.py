"""``remote new``, ``remote list`` and the verbs on one session (``approve``, ``message``,
``cancel``, ``pause``, ``resume``)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from pathlib import Path

import click

from openjules._types import Session, State
from openjules.cli.remote_checkout import origin_url, repository_of_url
from openjules.cli.remote_errors import (
    SERVER_URL_META,
    ExitCode,
    RemoteCommand,
    fail,
    open_client,
)
from openjules.cli.remote_output import (
    note,
    print_json,
    repository,
    sessions_table,
    source_repository,
    sources_table,
    text_or_stdin,
)
from openjules.client import Client

# As Jules Tools: at most five sessions on one task at once.
MAX_PARALLEL = 5
DEFAULT_LIMIT = 30
MAX_PAGE_SIZE = 100
STATES = [s.value for s in State if s is not State.STATE_UNSPECIFIED]


def _source_for(client: Client, repo: str, *, server: str) -> str:
    """The name of the user's source ``repo`` is (``.``: the current checkout's origin),
    matched without regard to case; an error listing the sources when none matches."""
    origin = ""
    if repo == ".":
        url = origin_url(Path.cwd())
        wanted = repository_of_url(url)
        if wanted is None:
            fail(
                f"Cannot tell OWNER/REPO from this checkout's origin ({url}); "
                "pass --repo OWNER/REPO.",
                code=ExitCode.USAGE,
            )
        origin = f" (this checkout's origin is {url})"
    else:
        wanted = repository(repo.strip().strip("/"))
    sources = list(client.list_sources())
    for source in sources:
        if source_repository(source).lower() == wanted.lower():
            return source.name
    there = ", ".join(sorted(source_repository(s) for s in sources)) or "none"
    fail(
        f"No source {wanted} on {server}{origin}. Sources there: {there}.",
        code=ExitCode.NOT_FOUND,
    )


def _show_created(created: list[Session], *, as_json: bool) -> None:
    if as_json:
        print_json([s.to_wire() for s in created])
        return
    for session in created:
        click.echo(f"{session.id} {session.url}")


@click.command(cls=RemoteCommand)
@click.option(
    "--repo",
    metavar="OWNER/REPO|.",
    help="The repository (a source on the server); '.' is the current checkout's origin. "
    "Without it the session starts from an empty workspace.",
)
@click.option("--branch", metavar="BRANCH", help="Starting branch [default: the source's].")
@click.option(
    "--session",
    "prompt",
    required=True,
    metavar="PROMPT",
    help="What the agent should do ('-' reads it from stdin).",
)
@click.option(
    "--parallel",
    type=click.IntRange(1, MAX_PARALLEL),
    metavar="N",
    default=1,
    show_default=True,
    help=f"Start N sessions on the same task (at most {MAX_PARALLEL}).",
)
@click.option("--require-approval", is_flag=True, help="Wait for `approve` before working.")
@click.option("--auto-pr", is_flag=True, help="Open a pull request when the session completes.")
@click.option("--title", metavar="TITLE", help="Title [default: the prompt's first line].")
@click.option("--json", "as_json", is_flag=True, help="Print the sessions as a JSON array.")
@click.pass_context
def new(
    ctx: click.Context,
    *,
    repo: str | None,
    branch: str | None,
    prompt: str,
    parallel: int,
    require_approval: bool,
    auto_pr: bool,
    title: str | None,
    as_json: bool,
) -> None:
    """Start a session (or N at once): prints each one's ID and URL.

    \b
    Examples:
      openjules remote new --repo . --session "Fix the flaky login test"
      openjules remote new --repo acme/api --branch develop --parallel 3 \\
          --require-approval --session "Speed up the CSV export"
      git diff | openjules remote new --session - --title "Review this diff"
    """
    if branch and not repo:
        fail("--branch needs --repo (a repoless session has no branch).", code=ExitCode.USAGE)
    text = text_or_stdin(prompt, what="prompt")
    client = open_client(ctx)
    source = _source_for(client, repo, server=ctx.meta[SERVER_URL_META]) if repo else None
    created: list[Session] = []
    try:
        for _ in range(parallel):
            created.append(
                client.create_session(
                    prompt=text,
                    source=source,
                    starting_branch=branch,
                    title=title,
                    require_plan_approval=require_approval,
                    auto_pr=auto_pr,
                )
            )
    finally:
        # What was started is shown even when a later one fails to start.
        if created:
            _show_created(created, as_json=as_json)
    first = created[0]
    where = "without a repository"
    if first.source_context is not None:
        where = "on " + repository(first.source_context.source)
        repo_context = first.source_context.github_repo_context
        if repo_context is not None and repo_context.starting_branch:
            where += f" (branch {repo_context.starting_branch})"
    started = "1 session" if len(created) == 1 else f"{len(created)} sessions"
    note(f"Started {started} {where}. Follow it live: openjules remote watch {first.id}")


@click.command("list", cls=RemoteCommand)
@click.option("--session", "kind", flag_value="session", default=True, help="List sessions.")
@click.option("--repo", "kind", flag_value="repo", help="List sources (repositories).")
@click.option(
    "--state",
    type=click.Choice(STATES, case_sensitive=False),
    help="Only sessions in this state.",
)
@click.option("--archived", is_flag=True, help="Only archived sessions.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="At most N rows, newest first (0: all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.pass_context
def list_(
    ctx: click.Context,
    *,
    kind: str,
    state: str | None,
    archived: bool,
    limit: int,
    as_json: bool,
) -> None:
    """List your sessions (the default) or the sources sessions can use.

    \b
    Examples:
      openjules remote list
      openjules remote list --state AWAITING_PLAN_APPROVAL
      openjules remote list --repo
      openjules remote list --json --limit 0 | jq -r '.[].id'
    """
    if kind == "repo" and (state or archived):
        fail("--state and --archived apply to sessions, not to --repo.", code=ExitCode.USAGE)
    client = open_client(ctx)
    page_size = min(limit, MAX_PAGE_SIZE) if limit else None
    if kind == "repo":
        sources = list(islice(client.list_sources(page_size=page_size), limit or None))
        if as_json:
            print_json([s.to_wire() for s in sources])
        elif sources:
            click.echo(sources_table(sources))
        else:
            note("No sources: an operator adds them with `openjules sources add`.")
        return
    terms = []
    if state:
        terms.append(f"state = {state.upper()}")
    if archived:
        terms.append("archived = true")
    found = client.list_sessions(filter=" AND ".join(terms) or None, page_size=page_size)
    sessions = list(islice(found, limit or None))
    if as_json:
        print_json([s.to_wire() for s in sessions])
    elif sessions:
        click.echo(sessions_table(sessions))
    else:
        note("No sessions.")


def _verb(
    name: str,
    *,
    act: Callable[[Client, str], None],
    done: str,
    help_text: str,
) -> click.Command:
    """A command doing one thing to session ID; says what it did and the state after."""

    @click.command(name, cls=RemoteCommand, help=help_text)
    @click.argument("session_id", metavar="ID")
    @click.option("--json", "as_json", is_flag=True, help="Print the session afterwards.")
    @click.pass_context
    def command(ctx: click.Context, *, session_id: str, as_json: bool) -> None:
        client = open_client(ctx)
        act(client, session_id)
        session = client.get_session(session_id)
        note(f"{done.format(id=session.id)}; it is {session.state.value} now.")
        if as_json:
            print_json(session.to_wire())

    return command


approve = _verb(
    "approve",
    act=lambda client, sid: client.approve_plan(sid),
    done="Approved the plan of session {id}",
    help_text="""Approve the plan of session ID (one waiting for approval).

    \b
    Example:
      openjules remote approve 1234567890123456789
    """,
)
cancel = _verb(
    "cancel",
    act=lambda client, sid: client.cancel_session(sid),
    done="Cancelled session {id}",
    help_text="""Stop session ID for good (it ends FAILED; a message wakes it again).

    \b
    Example:
      openjules remote cancel 1234567890123456789
    """,
)
pause = _verb(
    "pause",
    act=lambda client, sid: client.pause_session(sid),
    done="Paused session {id}",
    help_text="""Pause session ID while it is queued, planning or working.

    \b
    Example:
      openjules remote pause 1234567890123456789
    """,
)
resume = _verb(
    "resume",
    act=lambda client, sid: client.resume_session(sid),
    done="Resumed session {id}",
    help_text="""Resume session ID where it was paused.

    \b
    Example:
      openjules remote resume 1234567890123456789
    """,
)


@click.command(cls=RemoteCommand)
@click.argument("session_id", metavar="ID")
@click.argument("text", metavar="TEXT")
@click.option("--json", "as_json", is_flag=True, help="Print the session afterwards.")
@click.pass_context
def message(ctx: click.Context, *, session_id: str, text: str, as_json: bool) -> None:
    """Send TEXT to session ID: an answer to its question, or a new instruction
    ('-' reads TEXT from stdin). A session that ended starts again on it.

    \b
    Examples:
      openjules remote message 1234567890123456789 "Yes, use French."
      openjules remote message 1234567890123456789 - < review-notes.md
    """
    body = text_or_stdin(text, what="message")
    client = open_client(ctx)
    client.send_message(session_id, body)
    session = client.get_session(session_id)
    note(f"Sent to session {session.id}; it is {session.state.value} now.")
    if as_json:
        print_json(session.to_wire())
