"""``get_patch``: a session's changes as the unified diff ``git apply`` takes."""

from __future__ import annotations

from typing import Annotated

from mcp_types import CallToolResult

from openjules.client.patches import output_patch
from openjules.mcp.connection import Ctx, jules
from openjules.mcp.errors import reported
from openjules.mcp.params import SessionId
from openjules.mcp.render import patch_text
from openjules.mcp.results import PatchResult, result


@reported
async def get_patch(ctx: Ctx, session: SessionId) -> Annotated[CallToolResult, PatchResult]:
    """The session's changes as a unified diff (unidiffPatch) with the commit it applies
    to (baseCommitId) and a suggested commit message. For a COMPLETED session this is its
    result; before that, its work so far. Says so plainly when there are no changes."""
    client = jules(ctx)
    found = await client.get_session(session)
    final = output_patch(found)
    patch = final if final is not None else await client.patch(found)
    changed = patch is not None and bool(patch.unidiff_patch)
    value = PatchResult(
        session=found.name,
        state=found.state,
        has_changes=changed,
        final=final is not None,
        unidiff_patch=patch.unidiff_patch if patch else "",
        base_commit_id=patch.base_commit_id if patch else "",
        suggested_commit_message=patch.suggested_commit_message if patch else "",
    )
    summary = patch_text(found, patch, final=final is not None)
    # The diff alone in a block of its own: exactly what `git apply` takes.
    return result(value, summary, patch.unidiff_patch if changed and patch else "")
