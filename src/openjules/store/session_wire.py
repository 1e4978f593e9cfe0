"""A stored session as clients see it: the wire ``Session``, with its web ``url`` (the API
answers with it; webhook deliveries carry it)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

from openjules._types import GitHubRepoContext, Session, SessionOutput, SourceContext, State
from openjules.store import tables
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


def session_json(record: SessionRecord, *, base_url: str) -> bytes:
    """``render_session(record, base_url=base_url).to_json()``, byte for byte, without
    building the models (the API's lists render dozens per request)."""
    return to_json(
        _body(
            record.id,
            record.prompt,
            record.title,
            record.source_name,
            record.starting_branch,
            record.working_branch,
            create_time=record.create_time,
            update_time=record.update_time,
            state=record.state.value,
            outputs=[output.to_wire() for output in record.outputs],
            archived=record.archived,
            base_url=base_url,
        )
    )


# What a session's wire form is made of, in the order ``row_body`` reads them.
WIRE_COLUMNS = (
    tables.sessions.c.id,
    tables.sessions.c.prompt,
    tables.sessions.c.title,
    tables.sessions.c.source_name,
    tables.sessions.c.starting_branch,
    tables.sessions.c.working_branch,
    tables.sessions.c.create_time,
    tables.sessions.c.update_time,
    tables.sessions.c.state,
    tables.sessions.c.outputs,
    tables.sessions.c.archived,
)
WIRE_ID, WIRE_CREATE_TIME = 0, 6


def row_body(row: Sequence[Any], *, base_url: str) -> dict[str, Any]:
    """The JSON object of ``session_json`` from a row of ``WIRE_COLUMNS``, without the
    record (its outputs are validated only when there are some)."""
    stored = row[9]
    outputs = (
        [SessionOutput.model_validate(o).to_wire() for o in json.loads(stored)]
        if stored != "[]"
        else []
    )
    return _body(
        *row[:6],
        create_time=row[6],
        update_time=row[7],
        state=State(row[8]).value,
        outputs=outputs,
        archived=bool(row[10]),
        base_url=base_url,
    )


def _body(
    session_id: str,
    prompt: str,
    title: str,
    source_name: str | None,
    starting_branch: str | None,
    working_branch: str | None,
    *,
    create_time: int,
    update_time: int,
    state: str,
    outputs: list[dict[str, Any]],
    archived: bool,
    base_url: str,
) -> dict[str, Any]:
    # The fields of ``Session`` in declaration order, each left out when it holds its
    # default (exclude_defaults); pydantic's own serializer then writes them.
    body: dict[str, Any] = {"name": f"sessions/{session_id}"}
    if session_id:
        body["id"] = session_id
    if prompt:
        body["prompt"] = prompt
    if source_name:
        # render_session always sets a GitHubRepoContext: it appears even when empty ({}).
        repo_context = {"startingBranch": starting_branch} if starting_branch else {}
        context: dict[str, Any] = {"source": source_name, "githubRepoContext": repo_context}
        if working_branch:
            context["workingBranch"] = working_branch
        body["sourceContext"] = context
    if title:
        body["title"] = title
    body["createTime"] = wire_timestamp(create_time)
    body["updateTime"] = wire_timestamp(update_time)
    if state != State.STATE_UNSPECIFIED.value:
        body["state"] = state
    body["url"] = session_url(session_id, base_url=base_url)
    if outputs:
        body["outputs"] = outputs
    if archived:
        body["archived"] = True
    return body


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return format_timestamp(seconds * 1_000_000)[: -len(".000000Z")]


def wire_timestamp(us: int) -> str:
    """``format_timestamp(us)``, its date and time of day remembered per second
    (``time.strftime`` is most of the cost of rendering a page of sessions or activities;
    activities written in a burst share their second)."""
    seconds, micros = divmod(us, 1_000_000)
    return f"{_second(seconds)}.{micros:06d}Z"


def session_url(session_id: str, *, base_url: str) -> str:
    """The session's page in the web app (``Session.url``)."""
    return f"{base_url}/session/{session_id}"
