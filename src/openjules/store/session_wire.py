"""A stored session as clients see it: the wire ``Session``, with its web ``url`` (the API
answers with it; webhook deliveries carry it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from openjules._types import GitHubRepoContext, Session, SourceContext
from openjules.store.clock import format_timestamp

if TYPE_CHECKING:  # only a type here: sessions records webhook events, which render these
    from openjules.store.sessions import SessionRecord


def render_session(record: SessionRecord, *, base_url: str) -> Session:
    source_context = None
    if record.source_name:
        source_context = SourceContext(
            source=record.source_name,
            github_repo_context=GitHubRepoContext(starting_branch=record.starting_branch or ""),
            working_branch=record.working_branch or "",
        )
    return Session(
        name=f"sessions/{record.id}",
        id=record.id,
        prompt=record.prompt,
        source_context=source_context,
        title=record.title,
        create_time=format_timestamp(record.create_time),
        update_time=format_timestamp(record.update_time),
        state=record.state,
        url=session_url(record.id, base_url=base_url),
        outputs=record.outputs,
        archived=record.archived,
    )


def session_url(session_id: str, *, base_url: str) -> str:
    """The session's page in the web app (``Session.url``)."""
    return f"{base_url}/session/{session_id}"
