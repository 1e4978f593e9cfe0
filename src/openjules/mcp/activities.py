"""``list_activities``: what happened in a session (plan, messages, commands, changes)."""

from __future__ import annotations

from collections import deque
from typing import Annotated

from mcp_types import CallToolResult
from pydantic import Field

from openjules._types import Activity
from openjules.client import AsyncClient
from openjules.client.following import newer_than_filter
from openjules.mcp.connection import Ctx, jules
from openjules.mcp.errors import reported
from openjules.mcp.paging import take
from openjules.mcp.params import SessionId
from openjules.mcp.render import activities_text
from openjules.mcp.results import ActivityList, result

MAX_LIMIT = 200
PAGE_SIZE = 100


@reported
async def list_activities(
    ctx: Ctx,
    session: SessionId,
    limit: Annotated[
        int, Field(ge=1, le=MAX_LIMIT, description="At most this many activities.")
    ] = 20,
    after: Annotated[
        str | None,
        Field(
            description="An activity id from an earlier call: only the activities that came "
            "after it (the first `limit` of them). Without it: the latest `limit` activities."
        ),
    ] = None,
) -> Annotated[CallToolResult, ActivityList]:
    """A session's activities, oldest first: the proposed plan and its approval, the
    agent's messages and questions, your messages, progress with the commands it ran and
    their output, and how the session ended. Each line starts with the activity's id."""
    client = jules(ctx)
    ref = await client.get_session(session)
    if after:
        shown, earlier, has_more = await _after(client, session, after=after, limit=limit)
    else:
        shown, earlier, has_more = await _latest(client, session, limit=limit)
    listing = ActivityList(session=ref.name, activities=shown, earlier=earlier, has_more=has_more)
    return result(listing, activities_text(ref.id, shown, earlier=earlier, has_more=has_more))


async def _after(
    client: AsyncClient, session: str, *, after: str, limit: int
) -> tuple[list[Activity], int, bool]:
    last = await client.get_activity(session, after)
    found = await take(
        client.list_activities(
            session, filter=newer_than_filter(last), page_size=min(limit + 1, PAGE_SIZE)
        ),
        limit + 1,
    )
    return found[:limit], 0, len(found) > limit


async def _latest(
    client: AsyncClient, session: str, *, limit: int
) -> tuple[list[Activity], int, bool]:
    latest: deque[Activity] = deque(maxlen=limit)
    total = 0
    async for activity in client.list_activities(session, page_size=PAGE_SIZE):
        latest.append(activity)
        total += 1
    return list(latest), total - len(latest), False
