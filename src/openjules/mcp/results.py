"""What the tools return: the wire models' JSON (camelCase, as the REST API sends it) as
structured content, described by an output schema, next to a readable text for the model.

The results that are not a wire model as such (lists with a "more" flag, a patch or the
lack of one) are small wire models of their own, so they read the same way.
"""

from __future__ import annotations

from mcp_types import CallToolResult, TextContent

from openjules._types import Activity, Session, Source, State, WireModel


class SourceList(WireModel):
    """``list_sources``: the repositories sessions can use."""

    sources: list[Source]
    # More sources exist than the limit allowed.
    has_more: bool


class SessionList(WireModel):
    """``list_sessions``: sessions, newest first."""

    sessions: list[Session]
    has_more: bool


class ActivityList(WireModel):
    """``list_activities``: a session's activities, oldest first."""

    session: str
    activities: list[Activity]
    # Older activities left out (when the latest ones were asked for).
    earlier: int
    # Newer activities left out (when those after a given one were asked for).
    has_more: bool


class PatchResult(WireModel):
    """``get_patch``: the session's changes as a unified diff, or that it has none."""

    session: str
    state: State
    has_changes: bool
    # The session's result (COMPLETED), not its work so far.
    final: bool
    unidiff_patch: str = ""
    base_commit_id: str = ""
    suggested_commit_message: str = ""


def result(value: WireModel, *texts: str) -> CallToolResult:
    """``value`` as structured content and ``texts`` as the readable content."""
    return CallToolResult(
        content=[TextContent(type="text", text=text) for text in texts if text],
        structured_content=value.to_wire(),
    )
