"""The session tools: create, read, list, and the verbs a person uses on a running
session (approve its plan, message it, cancel it)."""

from __future__ import annotations

from typing import Annotated

from mcp_types import CallToolResult
from pydantic import Field

from openjules._types import Session, State
from openjules.mcp.connection import Ctx, jules
from openjules.mcp.errors import reported
from openjules.mcp.paging import take
from openjules.mcp.params import SessionId
from openjules.mcp.render import session_text, sessions_text
from openjules.mcp.results import SessionList, result

MAX_LIMIT = 200


@reported
async def create_session(
    ctx: Ctx,
    prompt: Annotated[
        str,
        Field(
            min_length=1,
            description="The task for the coding agent, as you would tell a colleague.",
        ),
    ],
    source: Annotated[
        str | None,
        Field(
            description="The repository: OWNER/REPO or sources/github/OWNER/REPO (see "
            "list_sources). Omit it for a session without a repository (the agent starts "
            "from an empty workspace)."
        ),
    ] = None,
    branch: Annotated[
        str | None,
        Field(description="The branch to start from (default: the repository's default branch)."),
    ] = None,
    title: Annotated[
        str | None, Field(description="A short title (default: the prompt's first line).")
    ] = None,
    require_plan_approval: Annotated[
        bool,
        Field(
            description="Stop after planning until approve_plan is called (the plan is read "
            "with list_activities)."
        ),
    ] = False,
    auto_pr: Annotated[
        bool,
        Field(description="When the work is done, push it on a branch and open a pull request."),
    ] = False,
) -> Annotated[CallToolResult, Session]:
    """Start a coding session: the agent works on the task in a sandbox on its own (plan,
    edits, commands) and ends with a patch. Returns the new session (QUEUED); follow it
    with wait_for_session."""
    session = await jules(ctx).create_session(
        prompt=prompt,
        source=source or None,
        starting_branch=branch or None,
        title=title or None,
        require_plan_approval=require_plan_approval,
        auto_pr=auto_pr,
    )
    return result(session, f"Created. {session_text(session)}")


@reported
async def get_session(ctx: Ctx, session: SessionId) -> Annotated[CallToolResult, Session]:
    """A session now: its state, title, repository and branch, web page, and its outputs
    (pull request, patch) once it has them."""
    found = await jules(ctx).get_session(session)
    return result(found, session_text(found))


@reported
async def list_sessions(
    ctx: Ctx,
    state: Annotated[
        State | list[State] | None,
        Field(description="Only sessions in this state (or in one of these states)."),
    ] = None,
    archived: Annotated[
        bool, Field(description="List archived sessions instead of the others.")
    ] = False,
    limit: Annotated[
        int, Field(ge=1, le=MAX_LIMIT, description="At most this many sessions.")
    ] = 20,
) -> Annotated[CallToolResult, SessionList]:
    """List your sessions, newest first: id, state, repository@branch and title of each."""
    found = await take(
        jules(ctx).list_sessions(
            filter=sessions_filter(state=state, archived=archived),
            page_size=min(limit + 1, 100),
        ),
        limit + 1,
    )
    has_more = len(found) > limit
    shown = found[:limit]
    return result(
        SessionList(sessions=shown, has_more=has_more), sessions_text(shown, has_more=has_more)
    )


def sessions_filter(*, state: State | list[State] | None, archived: bool) -> str | None:
    """The AIP-160 filter of ``list_sessions``' arguments (the API lists the sessions that
    are not archived when there is no filter)."""
    states = [state] if isinstance(state, State) else list(state or [])
    terms = []
    if states:
        terms.append("(" + " OR ".join(f"state = {s.value}" for s in states) + ")")
    if archived:
        terms.append("archived = true")
    return " AND ".join(terms) or None


@reported
async def approve_plan(ctx: Ctx, session: SessionId) -> Annotated[CallToolResult, Session]:
    """Approve the plan of a session in AWAITING_PLAN_APPROVAL, so the agent carries it
    out. Returns the session."""
    client = jules(ctx)
    await client.approve_plan(session)
    after = await client.get_session(session)
    return result(after, f"Plan approved. {session_text(after)}")


@reported
async def send_message(
    ctx: Ctx,
    session: SessionId,
    message: Annotated[
        str,
        Field(
            min_length=1,
            description="What to tell the agent: an answer to its question, a change of "
            "plan, or a follow-up task for a finished session.",
        ),
    ],
) -> Annotated[CallToolResult, Session]:
    """Send a message to a session's agent: answer its question (AWAITING_USER_FEEDBACK),
    steer it while it works, or give a finished session more work. Returns the session."""
    client = jules(ctx)
    await client.send_message(session, message)
    after = await client.get_session(session)
    return result(after, f"Message sent. {session_text(after)}")


@reported
async def cancel_session(ctx: Ctx, session: SessionId) -> Annotated[CallToolResult, Session]:
    """Stop a session for good: the agent stops and the session ends as FAILED (its work
    so far stays readable with get_patch). Returns the session."""
    client = jules(ctx)
    await client.cancel_session(session)
    after = await client.get_session(session)
    return result(after, f"Cancelled. {session_text(after)}")
