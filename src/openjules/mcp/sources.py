"""``list_sources``: the repositories sessions can work on."""

from __future__ import annotations

from typing import Annotated

from mcp_types import CallToolResult
from pydantic import Field

from openjules.mcp.connection import Ctx, jules
from openjules.mcp.errors import reported
from openjules.mcp.paging import take
from openjules.mcp.render import sources_text
from openjules.mcp.results import SourceList, result

MAX_LIMIT = 500


@reported
async def list_sources(
    ctx: Ctx,
    limit: Annotated[
        int, Field(ge=1, le=MAX_LIMIT, description="At most this many sources.")
    ] = 100,
) -> Annotated[CallToolResult, SourceList]:
    """List the repositories (sources) this openjules server can run sessions on: each
    with its name for create_session (OWNER/REPO, or sources/github/OWNER/REPO), its
    default branch and its branches."""
    # One more than asked tells whether there are more.
    found = await take(jules(ctx).list_sources(page_size=min(limit + 1, 100)), limit + 1)
    has_more = len(found) > limit
    shown = found[:limit]
    return result(
        SourceList(sources=shown, has_more=has_more), sources_text(shown, has_more=has_more)
    )
